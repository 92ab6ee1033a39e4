"""Robustness to corruptions in the app: the Evaluate page's chart (accuracy against severity per
corruption, clean as a reference line, mCA in the caption) or the command that computes it, and
the Compare page's curves and table of several runs."""

from __future__ import annotations

import json
import shutil

from streamlit.testing.v1 import AppTest

from app_driver import APP, open_page, texts
from ssl_core.analyses.robustness import CORRUPTIONS, robustness_run, severity_means
from ssl_core.store.runs import Run


def spec(at: AppTest, key: str) -> dict:
    """The figure of the plotly chart whose widget key is `key`."""
    found = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart") if key in chart.proto.id]
    assert found, f"no chart {key}"
    return found[0]


def test_the_evaluate_page_names_the_command_then_charts_the_stored_result(run):
    at = open_page("evaluate", {"run": run.id})
    assert any(f"`ssl-explorer analyze {run.id} --only robustness`" in c for c in texts(at.caption)), texts(at.caption)
    assert at.button(key="evaluate_run_missing").help.endswith("finetune, robustness")

    summary = robustness_run(run)
    at = open_page("evaluate", {"run": run.id})
    figure = spec(at, "evaluate_robustness")
    assert [trace["name"] for trace in figure["data"]] == [c.title for c in CORRUPTIONS.values()]
    for trace, entry in zip(figure["data"], summary["corruptions"]):
        assert list(trace["x"]) == [1, 2, 3, 4, 5] and list(trace["y"]) == entry["top1"]
    clean = [shape for shape in figure["layout"]["shapes"] if shape.get("line", {}).get("dash") == "dash"]
    assert len(clean) == 1 and clean[0]["y0"] == summary["clean_top1"]
    caption = next(c for c in texts(at.caption) if "Mean corruption accuracy (mCA)" in c)
    assert f"(mCA) {summary['mean_corruption_top1']:.1%}" in caption
    assert f"{summary['clean_top1']:.1%} clean" in caption
    assert not any("--only robustness`" in c for c in texts(at.caption))


def test_the_compare_page_overlays_the_runs_curves_and_names_a_run_without_them(run, runs_dir):
    first = robustness_run(run)
    other = Run(runs_dir / f"{run.id}-again")
    shutil.copytree(run.path, other.path)
    second = robustness_run(other, max_test=20)  # other images, other numbers
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.run()
    at.switch_page("app_pages/compare.py")
    at.query_params["runs"] = f"{run.id},{other.id}"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    figure = spec(at, "compare_robustness")
    assert [trace["name"] for trace in figure["data"]] == [run.id, other.id]
    assert [list(trace["y"]) for trace in figure["data"]] == [severity_means(first), severity_means(second)]
    table = next(frame.value for frame in at.dataframe if "corruption" in frame.value.columns)
    assert table["corruption"].tolist()[:2] == ["clean", "mean (mCA)"]
    assert table.set_index("corruption").loc["mean (mCA)", other.id] == second["mean_corruption_top1"]

    (other.analysis_dir / "robustness.json").unlink()
    at.run()
    assert any(f"No robustness for {other.id}: `ssl-explorer analyze {other.id} --only robustness`" in c
               for c in texts(at.caption)), texts(at.caption)
    assert [trace["name"] for trace in spec(at, "compare_robustness")["data"]] == [run.id]
