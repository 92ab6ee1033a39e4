"""A folder of unlabelled images, end to end: what self-supervised learning is for.

A flat folder of mnist5k digits is written without a labels.csv (their labels kept aside), a
SimCLR run trains on it, and every step after training runs as a user would run it: embed, eval,
map, index, clusters and outliers, neighbours, compare, export, and the command line. Label scores
cannot exist there; each step says "no labels" and the label-free scores stand in. The hidden
labels then check that training learned something: its k-means clusters agree with them better
than those of the same encoder at its random initialisation.
"""

from __future__ import annotations

import json

import pytest
import torch

from ssl_core.analyses.runner import run_analyses
from ssl_core.analyses.clusters import cluster_run, load_clusters
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.workflows.pipeline import run_all
from ssl_core.store.run_store import RunStore, summarize
from tiny_runs import unlabelled_config, write_unlabelled_digits

DIGITS = 600  # 480 train, 120 test


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    """(store, hidden labels by file name, trained run, random-init run) on one folder of digits.

    SimCLR, 3 epochs at batch 32 (45 steps), from seed 0; the random-init run is the same encoder
    at the same seed, untrained. Both go through every step after training, map and index
    included. Torch gets one thread meanwhile: with the suite busy beside it, two threads on two
    cores wait on each other (this training took 15 s with two, 3.4 s with one)."""
    root = tmp_path_factory.mktemp("unlabelled")
    hidden = write_unlabelled_digits(root / "digits", DIGITS)
    store = RunStore(root / "runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trained = store.create(unlabelled_config(root / "digits", "simclr", epochs=3))
        run_all(trained, progress=False, log=lambda message: None)
        untrained = store.create(unlabelled_config(root / "digits", "random"))
        run_all(untrained, progress=False, log=lambda message: None)
    finally:
        torch.set_num_threads(threads)
    return store, hidden, trained, untrained


def kmeans_nmi(run, hidden: dict[str, int]) -> float:
    """NMI of the run's k-means clusters (k=10: the digits' classes, the k a user who knows them
    would ask for) against the labels the folder was written without."""
    from sklearn.metrics import normalized_mutual_info_score

    cluster_run(run, k=10, seed=0)
    _, arrays = load_clusters(run)
    _, _, ids, _ = load_all_embeddings(run)
    return float(normalized_mutual_info_score([hidden[i] for i in ids], arrays["kmeans_labels"]))


def test_training_skips_the_knn_check_and_says_why(unlabelled):
    _, _, trained, untrained = unlabelled
    for run in (trained, untrained):  # the check each epoch (trained), the check at the end (random: 0 steps)
        assert run.read_status()["status"] == "finished", run.read_status()
        metrics = run.read_metrics()
        assert not any("knn_top1" in m for m in metrics)
        reasons = [m["knn_skipped"] for m in metrics if "knn_skipped" in m]
        assert len(reasons) == 1 and reasons[0].startswith("no labels:"), metrics
        assert any(m.get("lidar", 0) > 1 for m in metrics), "the label-free health is measured all the same"
    assert any("loss" in m for m in trained.read_metrics())


def test_eval_gives_the_label_free_scores(unlabelled):
    _, _, trained, _ = unlabelled
    scores = trained.read_eval()
    assert scores["labelled"] is False and scores["note"].startswith("no labels:")
    assert scores["knn_top1"] is None and scores["linear_top1"] is None and "confusion_knn" not in scores
    assert 1.0 < scores["effective_rank"] <= scores["embedding_dim"]
    assert -4.0 < scores["uniformity"] < 0.0
    assert (scores["num_train"], scores["num_test"]) == (480, 120)
    assert summarize(trained).knn_top1 is None


def test_kmeans_on_the_trained_encoder_finds_the_hidden_digits_better_than_a_random_one(unlabelled):
    _, hidden, trained, untrained = unlabelled
    learned, floor = kmeans_nmi(trained, hidden), kmeans_nmi(untrained, hidden)
    assert learned > floor + 0.03, (f"k-means NMI against the hidden labels: trained SimCLR {learned:.3f}, "
                                    f"random init {floor:.3f}; training on unlabelled digits should help")


def test_analyses_run_without_labels_and_name_those_that_need_them(unlabelled):
    _, _, trained, _ = unlabelled
    result = run_analyses(trained, recompute=True, device="cpu")
    assert set(result["ran"]) == {"factors", "clusters", "outliers"}
    assert set(result["not_applicable"]) == {"layers", "finetune", "robustness", "label_issues"}
    assert all(reason.startswith("no labels:") for reason in result["not_applicable"].values())
    clusters = result["results"]["clusters"]
    assert clusters["labelled"] is False and clusters["scored_on"].startswith("no labels:")
    assert clusters["kmeans"]["nmi"] is None and clusters["kmeans"]["num_clusters"] >= 2
    assert all(c["purity"] is None for c in clusters["kmeans"]["clusters"])
    assert result["results"]["outliers"]["top_outliers"][0]["label"] == -1
    with pytest.raises(ValueError, match="'layers' does not apply: no labels"):
        run_analyses(trained, ["layers"], device="cpu")


def test_neighbours_have_no_label_to_share(unlabelled):
    from ssl_core.steps.index import neighbors

    _, _, trained, _ = unlabelled
    result = neighbors(trained, 5, k=4)
    assert len(result["neighbors"]) == 4 and all(h["label"] == -1 for h in result["neighbors"])
    assert result["same_label"] is None, "unlabelled images do not share a label with each other"


def test_compare_gives_cka_and_overlap_and_skips_per_class_scores(unlabelled):
    from ssl_core.analyses.compare import compare_runs, knn_skipped, per_class_unavailable

    _, _, trained, untrained = unlabelled
    result = compare_runs(trained, untrained, k=5)
    assert result["images"] == 120 and 0.0 < result["cka"] < 1.0 and 0.0 < result["knn_overlap"] < 1.0
    for run in (trained, untrained):
        assert per_class_unavailable(run).startswith("no labels:")
        assert knn_skipped(run).startswith("no labels:")


def test_export_draws_the_map_unlabelled_and_the_csv_keeps_label_free_scores(unlabelled):
    import csv
    import io

    from ssl_core.analyses.export import map_html, metrics_csv

    _, _, trained, untrained = unlabelled
    page = map_html(trained)
    assert '"name":"unlabelled"' in page and "no labels" in page
    rows = list(csv.DictReader(io.StringIO(metrics_csv([trained, untrained]))))
    assert [r["run_id"] for r in rows] == [trained.id, untrained.id]
    for row, run in zip(rows, (trained, untrained)):
        assert row["knn_top1"] == "" and row["linear_top1"] == ""
        assert float(row["effective_rank"]) == run.read_eval()["effective_rank"]
    assert not any(column.startswith("job_") for column in rows[0]), "analysis/job.json holds no scores"


def test_the_command_line_trains_a_relative_folder_and_says_no_labels(unlabelled, tmp_path, monkeypatch, capsys):
    """`ssl-explorer train --dataset PHOTOS --knn-every 0` from the folder's parent: it once
    ended with "kNN accuracy needs labelled queries"; the run must also find the folder from
    anywhere else afterwards (the app, another shell)."""
    from ssl_core.cli import main

    store, _, trained, _ = unlabelled
    photos = tmp_path / "PHOTOS"
    write_unlabelled_digits(photos, 40)
    monkeypatch.chdir(tmp_path)
    runs_dir = tmp_path / "runs"
    assert main(["train", "--dataset", "PHOTOS", "--method", "random", "--epochs", "1", "--knn-every", "0",
                 "--device", "cpu", "--no-progress", "--skip", "project,index", "--runs-dir", str(runs_dir)]) == 0
    out, err = capsys.readouterr()
    run = RunStore(runs_dir).get(out.strip().splitlines()[-1])
    assert run.config.data.dataset == str(photos), "stored as an absolute path"
    assert "no labels:" in err and "effective rank" in err
    monkeypatch.chdir(store.root)
    assert main(["neighbors", trained.id, "--index", "3", "-k", "2", "--runs-dir", str(store.root)]) == 0
    table = capsys.readouterr().out
    assert "unlabelled" in table and "no labels" in table and "share the query's label" not in table
    assert main(["eval", run.id, "--runs-dir", str(runs_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["labelled"] is False
