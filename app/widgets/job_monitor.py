"""A training job as it runs: progress, speed, loss, kNN and health curves (LiDAR, alpha-ReQ:
label-free, with a warning when the embedding may be collapsing), the newest map snapshot (the
map as it learns), cancel / resume, its log.

Everything is read from the run folder (status.json, metrics.jsonl, train.log), which the job
process writes; the app holds no handle on the process. While the job is active the panel is a
fragment that redraws itself every 2 s, without rerunning the rest of the page.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ssl_core.workflows import jobs
from ssl_core.analyses.compare import knn_skipped
from ssl_core.steps.readiness import explorable, job_at_work, resumable
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run
from widgets.literal import literal, sentence
from widgets.map_animation import newest_snapshot

REFRESH_S = 2
LOG_TAIL_BYTES = 16_000
STAGES = {"load": "loading the data", "train": "training", "embed": "embedding the images",
          "eval": "scoring (kNN, linear probe)", "project": "computing the UMAP map",
          "index": "building the search index", "done": "done"}


def job_monitor(store: RunStore, run: Run) -> None:
    """The live panel of `run`: refreshes itself while the job is active."""
    try:
        was_active = job_at_work(run.read_status())
    except (OSError, ValueError) as e:
        st.error(f"Cannot read the status of {literal(run.id)}: {sentence(e)}")
        return

    @st.fragment(run_every=REFRESH_S if was_active else None)
    def panel() -> None:
        try:
            status = run.read_status()
        except (OSError, ValueError) as e:
            st.error(f"Cannot read the status of {literal(run.id)}: {sentence(e)}")
            return
        if job_at_work(status) != was_active:
            st.rerun()  # the whole page: starts or stops the timer and redraws the buttons
        _progress(run, status)
        _actions(store, run, status)
        _curves(run)
        newest_snapshot(run)
        _log(run)

    panel()


def _progress(run: Run, status: dict) -> None:
    metrics = run.read_metrics()
    steps = [m for m in metrics if "loss" in m]
    step = max([m.get("step", 0) for m in metrics], default=0)
    total = status.get("total_steps")
    stage = STAGES.get(status.get("stage", ""), status.get("stage", ""))
    state = status["status"]
    st.markdown(f"**{literal(run.id)}** · status **{literal(state)}**"
                + (f" · {literal(stage)}" if stage and state != "finished" else ""))
    if total:
        st.progress(min(step / total, 1.0), text=f"step {step} of {total}")
    elif state in ("queued", "running"):
        st.progress(0.0, text="starting…" if state == "queued" else literal(stage))
    speed, loss, knn = st.columns(3)
    speeds = [m["images_per_s"] for m in steps if "images_per_s" in m]
    knns = [m["knn_top1"] for m in metrics if m.get("knn_top1") is not None]
    speed.metric("images/s", f"{speeds[-1]:,.0f}" if speeds else "–")
    loss.metric("loss", f"{steps[-1]['loss']:.4f}" if steps else "–")
    scores = run.read_eval() or {}
    final = scores.get("knn_top1")
    knn.metric("kNN top-1" + (" (final)" if final is not None else ""),
               f"{final:.3f}" if final is not None else f"{knns[-1]:.3f}" if knns
               else "skipped" if knn_skipped(run) else "–")
    if state == "failed":
        st.error(f"The job failed: {sentence(status.get('error', 'no error text was recorded'))}")
    elif state == "interrupted":
        st.info(sentence(status.get("error") or "The job was stopped; resume continues from the last checkpoint."))


def _actions(store: RunStore, run: Run, status: dict) -> None:
    state = status["status"]
    cancel_col, resume_col, explore_col = st.columns(3)
    if cancel_col.button("Cancel", key="train_cancel", disabled=state not in ("queued", "running"),
                         help="stop the job after the current step; it keeps a checkpoint"):
        if jobs.cancel(store, run.id):
            st.toast(f"Stopping {literal(run.id)}: it writes a checkpoint, then shows as interrupted.")
        else:
            st.toast(f"{literal(run.id)} is not running any more.")
    not_resumable = resumable(run)
    if resume_col.button("Resume", key="train_resume", disabled=not_resumable is not None,
                         help=sentence(not_resumable) if not_resumable else "continue from the last checkpoint"):
        try:
            jobs.resume(store, run.id)
        except (KeyError, ValueError) as e:
            st.error(f"Cannot resume {literal(run.id)}: {sentence(e)}")
        else:
            st.rerun()  # the whole page, so the panel starts refreshing
    not_explorable = explorable(run)
    explore_col.page_link("app_pages/explore.py", label="Open in Explore", icon=":material/scatter_plot:",
                          query_params={"run": run.id}, disabled=not_explorable is not None,
                          help=sentence(not_explorable) if not_explorable else None)


def _curves(run: Run) -> None:
    metrics = run.read_metrics()
    losses = [{"step": m["step"], "loss": m["loss"]} for m in metrics if "loss" in m and "step" in m]
    knns = [{"epoch": m.get("epoch", m.get("step")), "kNN top-1": m["knn_top1"]}
            for m in metrics if m.get("knn_top1") is not None]
    loss_col, knn_col = st.columns(2)
    with loss_col:
        st.caption("Training loss")
        if losses:
            st.line_chart(pd.DataFrame(losses), x="step", y="loss", height=260)
        else:
            st.caption("no steps logged yet")
    with knn_col:
        st.caption("kNN top-1 on held-out images, per epoch")
        skipped = knn_skipped(run)
        if knns:
            st.line_chart(pd.DataFrame(knns), x="epoch", y="kNN top-1", height=260)
        elif skipped:
            st.info(f"No kNN check ({sentence(skipped)}).")
        else:
            st.caption("no kNN check yet (one runs at the end of each epoch)")
    _health(metrics)


def _health(metrics: list[dict]) -> None:
    """LiDAR and alpha-ReQ at each check (ssl_core/steps/health.py), and the newest warning."""
    checks = [{"epoch": m.get("epoch", m.get("step")), "LiDAR": m["lidar"], "alpha-ReQ": m.get("alpha_req")}
              for m in metrics if m.get("lidar") is not None]
    if not checks:
        return
    warning = next((m.get("health_warning") for m in reversed(metrics) if "lidar" in m), None)
    if warning:
        st.warning(sentence(warning))
    lidar_col, alpha_col = st.columns(2)
    frame = pd.DataFrame(checks)
    with lidar_col:
        st.caption("LiDAR (label-free: how many directions tell images apart beyond their views; falls "
                   "as a run collapses)")
        st.line_chart(frame, x="epoch", y="LiDAR", height=200)
    with alpha_col:
        st.caption("alpha-ReQ (decay of the embedding's spectrum; near 1 probes well)")
        st.line_chart(frame, x="epoch", y="alpha-ReQ", height=200)


def _log(run: Run) -> None:
    path = run.path / "train.log"
    with st.expander("train.log (last lines)"):
        if not path.exists():
            st.caption("No log: this run was not started from the app (see the terminal that started it).")
            return
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
        st.code("\n".join(tail.splitlines()[-60:]) or "(empty)", language=None)
