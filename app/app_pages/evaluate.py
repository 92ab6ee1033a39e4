"""Evaluate: the full report of one run. The scores of eval.json (kNN, linear and few-shot
probes, effective rank, uniformity, the collapse warning), the confusion matrix and per-class
accuracy, and the deeper evaluations stored under analysis/: the layer-wise probe, the factor
probe, fine-tuning and robustness to corruptions. Those run on request as a background job
(`ssl-explorer analyze`), whose progress this page follows; the page itself computes nothing."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import loaders
from ssl_core.workflows import jobs
from ssl_core.analyses.runner import missing_analyses, not_applicable, read_job
from ssl_core.analyses.export import plotly_text
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run
from widgets.literal import literal, sentence
from widgets.run_picker import best_self_supervised_id, pick_run

EVALUATIONS = ("layers", "factors", "finetune", "robustness")  # the analyses this page shows and starts
POLL_SECONDS = 1.0
TITLES = {"layers": "layer-wise probe", "factors": "factor probe", "finetune": "fine-tuning",
          "robustness": "robustness to corruptions"}


def _pct(value) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "–"


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def scores_panel(run: Run, scores: dict) -> None:
    if scores.get("collapse_warning"):
        st.error(f"**Collapse warning.** {sentence(scores['collapse_warning'])}", icon=":material/warning:")
    if scores.get("knn_top1") is None:
        st.info(sentence(scores.get("note") or "This run has no classification scores (no labels)."))
    else:
        cols = st.columns(5)
        cols[0].metric("kNN top-1 (k=20)", _pct(scores.get("knn_top1_k20", scores.get("knn_top1"))))
        cols[1].metric("kNN top-1 (k=200)", _pct(scores.get("knn_top1_k200")))
        cols[2].metric("linear top-1", _pct(scores.get("linear_top1")))
        cols[3].metric("linear, 1% labels", _pct(scores.get("linear_top1_1pct")))
        cols[4].metric("linear, 10% labels", _pct(scores.get("linear_top1_10pct")))
    rank, uniform, dims = st.columns(3)
    dim = scores.get("embedding_dim")
    rank.metric("effective rank", f"{scores['effective_rank']:.1f}" + (f" of {dim}" if dim else "")
                if scores.get("effective_rank") is not None else "–",
                help="RankMe: how many directions the test embeddings really use")
    uniform.metric("uniformity", f"{scores['uniformity']:.3f}" if scores.get("uniformity") is not None else "–",
                   help="log E exp(-2|u-v|²) over pairs: lower is more evenly spread on the sphere")
    dims.metric("images", f"{scores.get('num_train', 0):,} train · {scores.get('num_test', 0):,} test")
    if "scored_test" in scores:  # a large run: steps.evaluate scores a seeded sample of its splits
        st.caption(f"Scored on a seeded sample: {scores['scored_train']:,} train and {scores['scored_test']:,} "
                   "test rows (kNN, linear probes and the confusion matrix).")


def confusion_panel(run: Run, scores: dict, names: list[str]) -> None:
    matrix = scores.get("confusion_knn")
    per_class = scores.get("per_class_knn_top1")
    if not matrix or not per_class:
        if scores.get("knn_top1") is not None:  # scored before eval.json held them
            st.caption(f"eval.json has no confusion matrix or per-class accuracy: `ssl-explorer eval {run.id} "
                       "--recompute` adds them.")
        return
    # Class names are users' folder names; Plotly would read them as HTML.
    labels = [plotly_text(n) for n in names] if len(names) == len(matrix) else [str(c) for c in range(len(matrix))]
    left, right = st.columns(2)
    with left:
        st.subheader("Confusion matrix (kNN, k=20)")
        figure = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale="Blues",
                                      hovertemplate="true %{y}<br>predicted %{x}<br>%{z} images<extra></extra>"))
        figure.update_layout(xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                             height=460, margin=dict(l=10, r=10, t=10, b=10))
        st.plotly_chart(figure, key="evaluate_confusion")
    with right:
        st.subheader("Accuracy per class")
        frame = pd.DataFrame({"class": labels, "kNN top-1": per_class}).dropna()
        figure = go.Figure(go.Bar(x=frame["kNN top-1"], y=frame["class"], orientation="h"))
        figure.update_layout(xaxis_range=[0, 1], xaxis_title="kNN top-1", height=460,
                             yaxis_autorange="reversed", margin=dict(l=10, r=10, t=10, b=10))
        st.plotly_chart(figure, key="evaluate_per_class")


def layers_panel(result: dict) -> None:
    st.subheader("Layer-wise linear probe")
    frame = pd.DataFrame(result["layers"])
    figure = go.Figure(go.Scatter(x=frame["name"], y=frame["linear_top1"], mode="lines+markers",
                                  customdata=frame["dim"], hovertemplate="%{x} (%{customdata} dims): %{y:.1%}"
                                                                         "<extra></extra>"))
    figure.update_layout(yaxis_title="linear top-1", xaxis_title="layer (shallow → deep)", height=320,
                         margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(figure, key="evaluate_layers")
    settings = result.get("settings", {})
    st.caption(f"Layers of the {literal(settings.get('network') or 'backbone')} the embedding comes from. "
               f"Pooling: {settings.get('pooling', '?')}. Probe fitted on {settings.get('train_rows', '?'):,} "
               f"train images (of {settings.get('train_rows_available', '?'):,}), scored on "
               f"{settings.get('test_rows', '?'):,} test images.")


def factors_panel(result: dict) -> None:
    st.subheader("What the embedding keeps: known factors")
    entries = [f for f in result.get("factors", []) if f.get("score") is not None]
    if not entries:
        st.info(sentence(result.get("note") or "No factor could be probed."))
        return
    frame = pd.DataFrame(entries)
    names = [plotly_text(name) for name in frame["name"]]  # factor names come from users' metadata
    figure = go.Figure(go.Bar(x=names, y=frame["score"], name="probe",
                              hovertext=frame["metric"], hovertemplate="%{x}: %{y:.3f} (%{hovertext})<extra></extra>"))
    if "chance" in frame:
        figure.add_trace(go.Scatter(x=names, y=frame["chance"], mode="markers", name="chance",
                                    marker=dict(symbol="line-ew-open", size=28, line=dict(width=3))))
    figure.update_layout(yaxis_title="R² (continuous, angles) or accuracy (categorical)", height=320,
                         margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(figure, key="evaluate_factors")
    table = frame[[c for c in ("name", "kind", "metric", "score", "chance") if c in frame]]
    st.dataframe(table.astype(object).where(table.notna(), ""), hide_index=True)  # no chance level: blank
    for entry in result.get("factors", []):
        if entry.get("note"):
            st.caption(f"{literal(entry['name'])}: {sentence(entry['note'])}")


def finetune_panel(result: dict) -> None:
    st.subheader("Fine-tuning for a fixed budget")
    frame = pd.DataFrame(result["modes"])
    frame = frame[[c for c in ("mode", "top1", "epochs", "steps", "seconds", "trainable_params") if c in frame]]
    st.dataframe(frame, hide_index=True)
    settings = result.get("settings", {})
    st.caption(f"Linear head on the {literal(settings.get('network') or 'backbone')}'s embedding; "
               f"{settings.get('optimizer', 'AdamW')}, batch "
               f"{settings.get('batch_size', '?')}, head lr {settings.get('head_lr', '?')}, backbone lr "
               f"{settings.get('backbone_lr', '?')}, {settings.get('augmentation', '')}, on {settings.get('device', '?')}.")


def robustness_panel(result: dict) -> None:
    st.subheader("Robustness to corruptions")
    figure = go.Figure()
    severities = list(range(1, 6))
    for entry in result.get("corruptions") or []:
        figure.add_trace(go.Scatter(
            x=severities, y=entry["top1"], mode="lines+markers", name=entry["title"],
            customdata=[f"{entry['parameter']} {value:g}" for value in entry["values"]],
            hovertemplate=f"{entry['title']}, severity %{{x}} (%{{customdata}}): %{{y:.1%}}<extra></extra>"))
    clean = result.get("clean_top1")
    if clean is not None:
        figure.add_hline(y=clean, line_dash="dash", line_color="grey", annotation_text=f"clean {clean:.1%}",
                         annotation_position="top left")
    figure.update_layout(xaxis={"title": {"text": "severity"}, "tickvals": severities},
                         yaxis={"title": {"text": "kNN top-1"}, "tickformat": ".0%", "rangemode": "tozero"},
                         height=360, margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(figure, key="evaluate_robustness")
    settings = result.get("settings", {})
    used, available = settings.get("test_rows"), settings.get("test_rows_available")
    capped = (f" (a seeded {_count(used)} of {_count(available)}, at most {_count(settings.get('max_test_rows'))})"
              if isinstance(used, int) and isinstance(available, int) and available > used else "")
    st.caption(f"Mean corruption accuracy (mCA) {_pct(result.get('mean_corruption_top1'))} over "
               f"{len(result.get('corruptions') or [])} corruptions × 5 severities, against {_pct(clean)} clean: "
               f"weighted kNN (k={settings.get('k', '?')}) of {_count(used)} test images"
               f"{capped} against the stored train embeddings. Corruptions and severities as in CIFAR-10-C "
               "(Hendrycks & Dietterich 2019); occlusion is a black square, as in Cutout.")


def job_panel(store: RunStore, run: Run) -> None:
    """Progress of the analysis job, or the button that starts it; redraws itself while it runs."""
    job = read_job(run)
    was_running = bool(job and job.get("status") in ("queued", "running"))

    @st.fragment(run_every=POLL_SECONDS if was_running else None)
    def panel() -> None:
        job = read_job(run)
        running = bool(job and job.get("status") in ("queued", "running"))
        if running != was_running:
            st.rerun()  # the whole page: the results appear, the timer stops
        state = missing_analyses(run, list(EVALUATIONS))
        if running:
            current = job.get("current")
            text = (f"running {TITLES.get(current, literal(current))}: {sentence(job.get('message', ''))}" if current
                    else "starting the analysis job…")
            st.progress(min(max(float(job.get("fraction") or 0.0), 0.0), 1.0), text=text)
        elif job and job.get("status") == "failed":
            st.error(sentence(job.get("error") or "The analysis job failed."))
        missing = state["missing"]
        label = "Run missing evaluations" if missing else "All evaluations are stored"
        if st.button(label, key="evaluate_run_missing", disabled=running or not missing, type="primary",
                     help=("starts `ssl-explorer analyze` in the background for: " + ", ".join(missing))
                     if missing else None):
            try:
                jobs.start_analysis(store, run.id, missing)
            except (KeyError, ValueError) as e:
                st.error(f"Cannot start the evaluations: {sentence(e)}")
            else:
                st.rerun()
        if missing and not running:
            st.caption("Not computed yet: " + ", ".join(TITLES[n] for n in missing) + f" (or run "
                       f"`ssl-explorer analyze {run.id} --only {','.join(missing)}`).")
        for name, reason in state["not_applicable"].items():
            st.caption(f"No {TITLES[name]}: {sentence(reason)}.")

    panel()


store = RunStore()
st.title("Evaluate")
run = pick_run(store, "evaluate", prefer=lambda s: s.status == "finished",
               default=lambda: best_self_supervised_id(store))
if run is None:
    st.stop()

scores = loaders.eval_scores(run)
if scores is None:
    st.info(f"Run {literal(run.id)} has no scores yet: they appear when its job has embedded and scored the images, "
            f"or run `ssl-explorer eval {run.id}`.")
else:
    scores_panel(run, scores)
    confusion_panel(run, scores, loaders.class_names(run))

st.header("Deeper evaluations")
job_panel(store, run)
for name, panel in (("layers", layers_panel), ("factors", factors_panel), ("finetune", finetune_panel),
                    ("robustness", robustness_panel)):
    result = loaders.evaluation(run, name)
    if result is not None:
        panel(result)
if loaders.evaluation(run, "robustness") is None and "robustness" not in not_applicable(run):
    st.subheader("Robustness to corruptions")
    st.caption(f"Not computed yet: `ssl-explorer analyze {run.id} --only robustness` scores the test images under "
               "noise, blur, contrast, brightness, JPEG, pixelation and occlusion (seconds on a CPU), or the button "
               "above.")
