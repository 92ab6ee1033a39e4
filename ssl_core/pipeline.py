"""A run from start to finish: train, then the stored steps the app reads.

    train -> embed -> eval -> project -> index

Each step after training reads what the one before stored, so any of them can be skipped and
run again later on its own (`ssl-explorer embed|eval|project|index RUN_ID`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ssl_core.runs import Run

POST_STEPS = ("embed", "eval", "project", "index")


def _step_functions() -> dict[str, Callable[..., Any]]:
    from ssl_core.embed import embed_run
    from ssl_core.evaluate import evaluate_run
    from ssl_core.index import index_run
    from ssl_core.project import project_run

    return {"embed": embed_run, "eval": evaluate_run, "project": project_run, "index": index_run}


def run_post_steps(run: Run, steps: Iterable[str] = POST_STEPS, *, device: str = "auto",
                   progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the named post-training steps in order; status failed (with the step) on an error."""
    from ssl_core.train import resolve_device

    steps = list(steps)
    unknown = [s for s in steps if s not in POST_STEPS]
    if unknown:
        raise ValueError(f"unknown step(s) {unknown}; steps: {', '.join(POST_STEPS)}")
    if "embed" in steps:
        from ssl_core.encoders import check_embeddable

        check_embeddable(run)  # an imported run has no encoder: refuse before its status changes
    functions = _step_functions()
    previous = run.read_status()
    # What training recorded of itself stays: its step counts, and where its images came from.
    kept = {key: previous[key] for key in ("total_steps", "step", "data") if key in previous}
    results: dict[str, Any] = {}
    for step in steps:
        run.set_status("running", stage=step, **kept)
        try:
            if step == "embed":
                results[step] = functions[step](run, device=resolve_device(device), progress=progress)
            else:
                results[step] = functions[step](run)
        except Exception as e:
            run.set_status("failed", stage=step, **kept,
                           error=f"{step} failed: {type(e).__name__}: {e}; "
                                 f"run `ssl-explorer {step} {run.id}` to try again")
            raise
        log(f"{step}: {results[step]}")
    run.set_status("finished", stage="done", **kept)
    return results


def run_all(run: Run, *, resume: bool = False, skip: Iterable[str] = (), progress: bool = True,
            log: Callable[[str], None] = print) -> Run:
    """Train `run` (or resume it), then run every post-training step not in `skip`."""
    from ssl_core.encoders import check_trainable
    from ssl_core.train import TrainingFailed, TrainingInterrupted, train

    check_trainable(run)  # before its status changes: an imported run stays as it is
    try:
        train(run, resume=resume, progress=progress)
    except (TrainingFailed, TrainingInterrupted):
        raise
    except Exception as e:
        status = run.read_status()
        if status["status"] not in ("failed", "interrupted"):
            run.set_status("failed", stage="train", error=f"{type(e).__name__}: {e}")
        raise
    steps = [s for s in POST_STEPS if s not in set(skip)]
    if steps:
        run_post_steps(run, steps, device=run.config.train.device, progress=progress, log=log)
    return run
