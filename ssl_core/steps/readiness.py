"""What a run can be used for yet: one answer per question, with the reason.

Each question returns None when the run can be used for it, else one sentence that says why not
and what would make it possible (commands between backticks). The CLI refuses with that sentence
and the app's pages show it, so both sides answer the same question the same way.

    explorable(run)  its map can be browsed: the Explore page, `ssl-explorer export RUN --out map.html`
    searchable(run)  its images' neighbours can be searched: `ssl-explorer neighbors`, Explore's panel
    comparable(run)  it can join a comparison: the Compare page, `ssl-explorer export A B --out x.html`
    embedded(run)    its embeddings can be analysed: the Clusters page, `ssl-explorer compare`
    resumable(run)   training may continue it: `Run.check_resumable`, as a reason
    viewable(run)    it has images to show: image grids, thumbnails on the map, attention, export

The files decide, and the status explains a lack: a failed or interrupted run says why, and how
to resume it. While a job writes the run (status running, or queued by a live process) the answer
is yes only once the job has moved past the steps that store what the question reads.
"""

from __future__ import annotations

from typing import Any

from ssl_core.store import files
from ssl_core.store.runs import IMPORTED_METHOD, Run

POST_STEPS = ("embed", "eval", "project", "index")  # the pipeline's order (workflows.pipeline runs them)
# What a question reads: (the post-training step that stores it, what it is called).
EMBEDDINGS = ("embed", "embeddings")
MAP = ("project", "map")
INDEX = ("index", "search index")


def missing_steps(run: Run) -> list[str]:
    """The post-training steps (pipeline order) whose stored output `run` lacks; each one is made
    by `ssl-explorer <step> RUN_ID` (`eval` by `ssl-explorer eval RUN_ID`)."""
    outputs = {
        "embed": [run.embeddings_dir / name(split) for split in files.SPLITS
                  for name in (files.vectors, files.labels, files.ids)],
        "eval": [run.eval_path],
        "project": [run.projection_dir / files.UMAP_MAP],
        "index": [run.index_path],
    }
    return [step for step, paths in outputs.items() if not all(p.exists() for p in paths)]


def has_map(run: Run) -> bool:
    """A 2-D map to draw: the UMAP map, or the PCA map the project step writes first."""
    return any((run.projection_dir / name).exists() for name in (files.UMAP_MAP, files.PCA_MAP))


def job_at_work(status: dict[str, Any]) -> bool:
    """A live process is writing the run: training it or running its steps (`Run.read_status`
    reports one whose process is gone as interrupted)."""
    return status["status"] == "running" or (status["status"] == "queued" and "pid" in status)


def mapping_now(run: Run, status: dict[str, Any]) -> bool:
    """The job is computing the run's UMAP map (or has, and is indexing): the embeddings are
    stored and the PCA map it wrote first can be shown meanwhile."""
    return (status["status"] == "running" and status.get("stage") in ("project", "index")
            and "embed" not in missing_steps(run) and (run.projection_dir / files.PCA_MAP).exists())


def explorable(run: Run) -> str | None:
    """Why the run's map cannot be browsed yet (it needs its embeddings and a map); None when it
    can, including while its job computes the UMAP map over the PCA map it wrote first."""
    return _refusal(run, [EMBEDDINGS, MAP])


def searchable(run: Run) -> str | None:
    """Why the neighbours of the run's images cannot be searched yet (embeddings and index)."""
    return _refusal(run, [EMBEDDINGS, INDEX])


def comparable(run: Run) -> str | None:
    """Why the run cannot join a comparison yet (embeddings and a map); whether runs hold the
    same images is `analyses.compare.check_comparable`."""
    return _refusal(run, [EMBEDDINGS, MAP])


def embedded(run: Run) -> str | None:
    """Why the run's embeddings cannot be read yet (clusters, outliers, CKA read them)."""
    return _refusal(run, [EMBEDDINGS])


def resumable(run: Run) -> str | None:
    """Why training cannot continue the run (`Run.check_resumable`); None when it can."""
    try:
        run.check_resumable()
    except (OSError, ValueError) as e:
        return str(e)
    return None


def viewable(run: Run) -> str | None:
    """Why the run has no images to show: it was imported from its embeddings alone (no
    dataset/images.npy). Its map, neighbours and scores work all the same, by id and label."""
    try:
        imported = run.kind == IMPORTED_METHOD
    except (OSError, ValueError) as e:
        return f"run {run.id} cannot be read: {e}"
    if imported and not (run.dataset_dir / files.DATASET_IMAGES).exists():
        return (f"run {run.id} was imported without images (its embeddings only), so it has no images to show; "
                "import the embeddings again with `--images` to see them")
    return None


def refuse(reason: str | None) -> None:
    """ValueError(reason) when there is one: for library calls that need the answer to be None."""
    if reason is not None:
        raise ValueError(reason)


def _refusal(run: Run, needs: list[tuple[str, str]]) -> str | None:
    try:
        status = run.read_status()
    except (OSError, ValueError) as e:
        return f"run {run.id} cannot be read: {e}"
    lacking = set(missing_steps(run))
    missing = [(step, what) for step, what in needs
               if (step == "project" and not has_map(run)) or (step != "project" and step in lacking)]
    state = status["status"]
    if job_at_work(status):
        if not missing and _past(status, needs):
            return None
        return (f"run {run.id} is still {state} ({status.get('stage') or 'starting'}): its "
                f"{' and '.join(what for _, what in needs)} appear once its job has made them")
    if not missing:
        return None
    whats = " or ".join(what for _, what in missing)
    if state in ("failed", "interrupted"):
        why = status.get("error") or "no reason was recorded"
        return (f"run {run.id} {'failed' if state == 'failed' else 'was interrupted'} before it had its {whats} "
                f"({why}); resume it with `ssl-explorer train --resume {run.id}`")
    commands = " then ".join(f"`ssl-explorer {step} {run.id}`" for step, _ in missing)
    return f"run {run.id} has no {whats} yet: run {commands}"


def _past(status: dict[str, Any], needs: list[tuple[str, str]]) -> bool:
    """The job is running a later post-training step than those that store `needs`, so what
    they stored stays as it is while it works. The project step counts as past the map once its
    PCA map is written (its first act): the UMAP map replaces it when ready."""
    stage = status.get("stage")
    if status["status"] != "running" or stage not in POST_STEPS:
        return False
    return all(POST_STEPS.index(step) < POST_STEPS.index(stage) or step == stage == "project" for step, _ in needs)
