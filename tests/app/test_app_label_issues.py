"""The Clusters page's label issues (each likely mislabelled image beside its nearest neighbours)
and subgroup gaps (kNN top-1 per factor level, the largest gaps flagged); and what it says for a
run without labels."""

from __future__ import annotations

import numpy as np

from app_driver import open_page, rendered, texts
from ssl_core.analyses.label_issues import label_issue_run
from ssl_core.steps.embed import load_all_embeddings


def test_likely_label_issues_are_shown_with_their_neighbours_and_the_subgroup_gaps_as_a_table(run):
    summary = label_issue_run(run)
    _, labels, ids, _ = load_all_embeddings(run)
    names = run.read_class_names()
    at = open_page("clusters", {"run": run.id})
    captions = [rendered(c) for image in at.get("image") for c in image.captions]
    top = summary["top_issues"]
    assert len(captions) == 8 * 8  # the slider's default: 8 images, each with 7 neighbours
    first = top[0]
    expected = [f"{first['id']} · labelled {first['label_name']}"] + [
        f"{ids[n]} · {names[labels[n]]}" for n in first["neighbours"][:7]]
    assert captions[:8] == expected
    assert any(f"labelled **{first['label_name']}** · its neighbours say **{first['majority_name']}**"
               in rendered(m.value) for m in at.markdown)
    assert any(f"Confident learning counts {summary['issues']['flagged']:,} of" in c for c in texts(at.caption))
    at.slider(key="clusters_issues_shown").set_value(2).run()
    assert len(at.get("image")) == 2 * 8

    levels = summary["subgroups"]["levels"]
    table = next(frame.value for frame in at.dataframe if "factor" in frame.value.columns)
    assert table[["factor", "level"]].values.tolist() == [[e["factor"], e["level"]] for e in levels]
    assert table["kNN top-1"].tolist() == [e["top1"] for e in levels]
    assert table["flagged"].tolist() == [e["flagged"] for e in levels]
    flagged = [e for e in levels if e["flagged"]]
    if flagged:
        assert any(f"{flagged[0]['factor']} = {flagged[0]['level']}" in w for w in texts(at.warning))
    else:
        assert any("No factor level is significantly worse" in s for s in texts(at.success))
    assert not at.exception


def test_a_run_without_labels_says_why_instead_of_offering_the_job(run):
    for split in ("train", "test"):
        path = run.embeddings_dir / f"{split}_labels.npy"
        np.save(path, np.full_like(np.load(path), -1))
    at = open_page("clusters", {"run": run.id})
    infos = [i for i in texts(at.info) if "No label issues" in i or "No subgroup gaps" in i]
    assert len(infos) == 2 and all("no labels: label issues" in i.lower() for i in infos), infos
    assert not any(b.label in ("Compute the label issues", "Compute the subgroup gaps") for b in at.button)
