"""The Evaluate page: eval.json's scores, the confusion matrix and per-class accuracy, the
collapse warning, the stored evaluations, and the button and progress of the analysis job."""

from __future__ import annotations

import base64
import json

import numpy as np
from streamlit.testing.v1 import AppTest

from app_driver import open_page, texts
from ssl_core.analyses import runner as analysis
from ssl_core.store.atomic import atomic_write_json



def open_evaluate(run_id: str) -> AppTest:
    return open_page("evaluate", {"run": run_id})


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def decoded(values) -> list:
    """A figure array as plotly's JSON holds it: a list, or {"dtype", "bdata"} (numpy input)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_scores_confusion_matrix_and_per_class_accuracy(run):
    scores = run.read_eval()
    at = open_evaluate(run.id)
    assert metric(at, "kNN top-1 (k=20)") == f"{scores['knn_top1']:.1%}"
    assert metric(at, "linear top-1") == f"{scores['linear_top1']:.1%}"
    assert metric(at, "effective rank").startswith(f"{scores['effective_rank']:.1f} of {scores['embedding_dim']}")
    heatmap = next(c for c in charts(at) if c["data"][0]["type"] == "heatmap")["data"][0]
    assert heatmap["z"] == scores["confusion_knn"]
    names = json.loads((run.embeddings_dir / "class_names.json").read_text())
    assert heatmap["x"] == names
    assert {"Confusion matrix (kNN, k=20)", "Accuracy per class"} <= set(texts(at.subheader))
    assert not at.error, "no collapse warning on this run"


def test_the_collapse_warning_is_shown_prominently(run):
    scores = run.read_eval()
    scores["collapse_warning"] = "effective rank 1.2 of 256 dimensions: the embedding is collapsing"
    atomic_write_json(run.eval_path, scores)
    at = open_evaluate(run.id)
    assert any("Collapse warning" in e and "effective rank 1.2 of 256" in e for e in texts(at.error))


def test_missing_evaluations_offer_the_button(run):
    at = open_evaluate(run.id)
    button = at.button(key="evaluate_run_missing")
    assert button.label == "Run missing evaluations" and not button.disabled
    assert any("layer-wise probe, factor probe, fine-tuning" in c for c in texts(at.caption))


def test_stored_evaluations_are_shown_and_the_button_is_off(run):
    folder = run.analysis_dir
    atomic_write_json(folder / "layers.json", {"layers": [{"name": "block1", "dim": 32, "linear_top1": 0.21},
                                                          {"name": "block4", "dim": 256, "linear_top1": 0.74}],
                                               "settings": {"pooling": "global average pool", "train_rows": 160,
                                                            "train_rows_available": 160, "test_rows": 64}})
    atomic_write_json(folder / "factors.json", {"factors": [
        {"name": "pos_x", "kind": "continuous", "metric": "R2", "score": 0.69},
        {"name": "background", "kind": "categorical", "metric": "accuracy", "score": 0.95, "chance": 0.21}],
        "settings": {}})
    atomic_write_json(folder / "finetune.json", {"modes": [
        {"mode": "frozen", "top1": 0.5, "epochs": 4, "steps": 60, "seconds": 5.0},
        {"mode": "full", "top1": 0.8, "epochs": 4, "steps": 60, "seconds": 20.0}], "settings": {}})
    atomic_write_json(folder / "robustness.json", {"clean_top1": 0.6, "mean_corruption_top1": 0.5, "corruptions": [
        {"name": "jpeg", "title": "JPEG", "parameter": "JPEG quality", "values": [80, 65, 58, 50, 40],
         "top1": [0.58, 0.55, 0.5, 0.46, 0.41], "mean_top1": 0.5}], "settings": {}})
    at = open_evaluate(run.id)
    specs = charts(at)
    layer_curve = next(c["data"][0] for c in specs if c["data"][0].get("mode") == "lines+markers")
    assert decoded(layer_curve["x"]) == ["block1", "block4"] and decoded(layer_curve["y"]) == [0.21, 0.74]
    bars = next(c["data"] for c in specs if c["data"][0]["type"] == "bar" and c["data"][0].get("name") == "probe")
    assert decoded(bars[0]["x"]) == ["pos_x", "background"] and decoded(bars[0]["y"]) == [0.69, 0.95]
    assert bars[1]["name"] == "chance"
    table = at.dataframe[-1].value
    assert list(table["mode"]) == ["frozen", "full"] and list(table["top1"]) == [0.5, 0.8]
    button = at.button(key="evaluate_run_missing")
    assert button.disabled and button.label == "All evaluations are stored"


def test_a_running_job_shows_its_progress(run):
    analysis.write_job(run, names=["layers"], current="layers", fraction=0.4, message="probing block2")
    at = open_evaluate(run.id)  # this process is the job's pid: alive
    bar = at.get("progress")[0]
    assert bar.proto.value == 40 and "layer-wise probe: probing block2" in bar.proto.text
    assert at.button(key="evaluate_run_missing").disabled
