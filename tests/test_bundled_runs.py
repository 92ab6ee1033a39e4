"""The bundled runs of pretrained/ tell the demo's story (issue 18): every self-supervised run gets
at least halfway from its random-init floor to its supervised ceiling by kNN top-1 on its dataset,
and every supervised run is a real ceiling: above every other run of its backbone on its dataset,
and above every untrained floor of that dataset (a ceiling under an untrained network's score is
none). The runs are placed as the Overview places them (analyses.standings: floor_of, ceiling_of,
share_of_the_way), from their stored config.json and eval.json; nothing is trained. The untrained
runs ship without embeddings, and the demo's copy of them must give back their stored scores.

One case per bundled run, so that regenerating a run changes its case alone. The runs bundled
before the methods had training recipes miss the goal: they are marked below with their numbers,
strictly, so that a run regenerated with the new recipes that meets the goal fails its case until
its line is removed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssl_core.analyses.standings import SELF_SUPERVISED, SUPERVISED, DatasetStandings, Standing, standings
from ssl_core.models.methods import METHODS
from ssl_core.steps.embed import load_embeddings
from ssl_core.steps.evaluate import weighted_knn
from ssl_core.store.run_store import RunStore

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
HALFWAY = 0.5  # of the way from the floor to the ceiling, by kNN top-1

# The bundled runs that miss the goal today, and by how much. Remove a line when its run is
# regenerated and passes. SimCLR on shapes is the run of 2026-11-22, trained before the recipes:
# on this 2-core CPU the recipe's SimCLR reached 0.316 after 450 of 1,500 steps (0.258, 0.296 at
# 150 and 300), far from the halfway mark (0.451), so it waits for a longer run (a GPU's).
SHORT_TODAY = {
    "demo-simclr-shapes": "kNN 0.290 is 23% of the way from random convnet (0.157) to supervised convnet (0.745)",
}

STORE = RunStore(PRETRAINED)
BOARDS = standings(STORE.get(s.id) for s in STORE.list() if not s.broken)


def cases(role: str) -> list:
    """(board, run) of every bundled run of `role`, one pytest case each, marked when it is short."""
    def marks(run_id: str) -> list:
        return [pytest.mark.xfail(strict=True, reason=SHORT_TODAY[run_id])] if run_id in SHORT_TODAY else []

    return [pytest.param(board, run, id=run.run_id, marks=marks(run.run_id))
            for board in BOARDS for run in board.of_role(role)]


def knn(run: Standing | None) -> str:
    return f"{run.run_id} ({run.knn_top1:.3f})" if run is not None and run.knn_top1 is not None else "none"


@pytest.mark.parametrize("board, run", cases(SELF_SUPERVISED))
def test_a_self_supervised_run_gets_halfway_from_its_floor_to_its_ceiling(board: DatasetStandings, run: Standing):
    share = board.share_of_the_way(run)
    assert share is not None, (f"{run.run_id}: kNN {knn(run)}; no way to measure on {board.dataset}: floor "
                               f"{knn(board.floor_of(run))}, ceiling {knn(board.ceiling_of(run))}")
    assert share >= HALFWAY, (f"{run.run_id}: kNN {run.knn_top1:.3f} is {share:.0%} of the way from "
                              f"{knn(board.floor_of(run))} to {knn(board.ceiling_of(run))}")


@pytest.mark.parametrize("board, run", cases(SUPERVISED))
def test_a_supervised_run_is_above_every_other_run_of_its_backbone_and_every_floor(board: DatasetStandings,
                                                                                   run: Standing):
    assert run.knn_top1 is not None, f"{run.run_id}: no kNN score (eval.json)"
    others = [s for s in board.runs if s is not run and (s.backbone == run.backbone or s in board.floors)]
    above = [s for s in others if s.knn_top1 is not None and s.knn_top1 >= run.knn_top1]
    assert others and not above, f"{run.run_id}: kNN {run.knn_top1:.3f}, not above {', '.join(map(knn, above))}"


def test_the_marked_runs_are_bundled_runs():
    bundled = {run.run_id for board in BOARDS for run in board.runs}
    assert set(SHORT_TODAY) <= bundled, f"marked, but not bundled: {sorted(set(SHORT_TODAY) - bundled)}"
    assert BOARDS and all(b.floors and b.supervised for b in BOARDS), "each dataset has a floor and a ceiling"


def test_the_bundled_runs_stay_under_40_mb():
    """pretrained/ ships in the wheel and every regeneration stays in the history: weights (the
    encoder's alone), embeddings, maps and analyses only."""
    files = [p for p in PRETRAINED.rglob("*")
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(PRETRAINED).parts)]
    size = sum(p.stat().st_size for p in files)
    largest = max(files, key=lambda p: p.stat().st_size)
    assert size < 40e6, f"pretrained/ holds {size / 1e6:.1f} MB; the largest file: {largest} ({largest.stat().st_size:,} B)"


UNTRAINED = sorted(s.id for s in STORE.list() if not METHODS.get(STORE.get(s.id).config.method["name"]).trainable)


@pytest.mark.parametrize("name", UNTRAINED)
def test_an_untrained_run_ships_without_embeddings_and_the_demo_recomputes_its_scores(name, demo_runs):
    """The bundle leaves out what the demo recomputes in seconds: an untrained network's (or the
    pixels') embeddings. Recomputed on this machine, they give the kNN top-1 stored with the run."""
    assert not (PRETRAINED / name / "embeddings").exists(), f"{name} bundles embeddings the demo recomputes"
    run = RunStore(demo_runs).get(name)
    (train_x, train_y, _), (test_x, test_y, _) = load_embeddings(run, "train"), load_embeddings(run, "test")
    knn = weighted_knn(train_x, train_y, test_x, test_y, num_classes=int(train_y.max()) + 1, k=20)
    stored = json.loads((PRETRAINED / name / "eval.json").read_text())["knn_top1"]
    assert abs(knn - stored) <= 0.002, f"{name}: kNN top-1 {knn:.4f} recomputed, {stored} stored"

