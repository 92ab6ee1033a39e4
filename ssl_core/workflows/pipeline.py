"""A run from start to finish: train, then the stored steps the app reads.

    train -> embed -> eval -> project -> index

Each step after training reads what the one before stored, so any of them can be skipped and
run again later on its own (`ssl-explorer embed|eval|project|index RUN_ID`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ssl_core.store.runs import Run
from ssl_core.core.runtime import resolve_device
from ssl_core.models.encoders import check_embeddable, check_trainable
from ssl_core.steps.embed import Shard, embed_run
from ssl_core.steps.evaluate import evaluate_run
from ssl_core.steps.index import index_run
from ssl_core.steps.projection import project_run
from ssl_core.steps.readiness import POST_STEPS
from ssl_core.training.loop import TrainingFailed, TrainingInterrupted, train


def _step_functions() -> dict[str, Callable[..., Any]]:
    return {"embed": embed_run, "eval": evaluate_run, "project": project_run, "index": index_run}


def run_post_steps(run: Run, steps: Iterable[str] = POST_STEPS, *, device: str = "auto",
                   progress: bool = True, log: Callable[[str], None] = print,
                   shard: Shard | None = None) -> dict[str, Any]:
    """Run the named post-training steps in order, holding the run's lock (RunBusy when another
    process trains or post-processes it). `shard`: rank 0 of a torchrun launch embedding with
    the other processes, which call `embed_run` with their own shard."""
    steps = list(steps)
    with run.lock("+".join(steps) or "post-process"):
        return _post_steps(run, steps, device=device, progress=progress, log=log, shard=shard)


def _post_steps(run: Run, steps: list[str], *, device: str, progress: bool,
                log: Callable[[str], None], shard: Shard | None = None) -> dict[str, Any]:
    """Run the named post-training steps in order; status failed (with the step) on an error,
    except on a run that had finished before: it stays finished with the error as a note
    (`Run.set_failed`), so a failed re-embed does not hide the results it left intact."""
    unknown = [s for s in steps if s not in POST_STEPS]
    if unknown:
        raise ValueError(f"unknown step(s) {unknown}; steps: {', '.join(POST_STEPS)}")
    if "embed" in steps:
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
                results[step] = functions[step](run, device=resolve_device(device), progress=progress, shard=shard)
            else:
                results[step] = functions[step](run)
        except BaseException as e:  # a Ctrl-C too: the status must not stay "running"
            why = "was stopped" if isinstance(e, KeyboardInterrupt) else f"failed: {type(e).__name__}: {e}"
            run.set_failed(previous, f"{step} {why}; run `ssl-explorer {step} {run.id}` to try again",
                           stage=step, **kept)
            raise
        log(f"{step}: {results[step]}")
    run.set_status("finished", stage="done", **kept)
    return results


def run_all(run: Run, *, resume: bool = False, skip: Iterable[str] = (), progress: bool = True,
            log: Callable[[str], None] = print) -> Run:
    """Train `run` (or resume it), then run every post-training step not in `skip`, holding the
    run's lock throughout (RunBusy at once when another process has the run)."""
    with run.lock("train"):
        return _train_then_post_steps(run, resume=resume, skip=skip, progress=progress, log=log)


def _train_then_post_steps(run: Run, *, resume: bool, skip: Iterable[str], progress: bool,
                           log: Callable[[str], None]) -> Run:
    check_trainable(run)  # before its status changes: an imported run stays as it is
    if resume:
        run.check_resumable()  # under the lock: nobody else can start it between check and train
    steps = [s for s in POST_STEPS if s not in set(skip)]
    try:
        # Training hands the status over to the first step: no reader sees the run finished between.
        train(run, resume=resume, progress=progress, then=steps[0] if steps else None)
    except (TrainingFailed, TrainingInterrupted):
        raise
    except Exception as e:
        status = run.read_status()
        if status["status"] not in ("failed", "interrupted", "finished"):  # finished: train kept it so
            run.set_status("failed", stage="train", error=f"{type(e).__name__}: {e}")
        raise
    if steps:
        run_post_steps(run, steps, device=run.config.train.device, progress=progress, log=log)
    return run
