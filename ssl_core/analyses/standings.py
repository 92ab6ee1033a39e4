"""Where each run stands on its dataset, from its stored results alone, and which runs the pages
open on.

On each dataset the runs of methods that never train (the random init, the pixels) are its
floors, the supervised runs reach for its ceiling (the best of them is the ceiling) and the
self-supervised runs sit between, by kNN top-1 of eval.json. The roles come from the methods
themselves (`trainable`, `uses_labels`, `family`), never from a table of names, so a new method
or a new bundled run needs nothing here. Nothing is trained, embedded or scored: a run lacking a
file is placed with what it has, and `missing` says what it lacks and which command makes it.

    standings(runs)              one DatasetStandings per dataset, from config.json, eval.json,
                                 the map's presence and analysis/factors.json
    DatasetStandings.sentence    "kNN 0.290: 23% of the way from random (0.157) to supervised (0.745)."
                                 (the floor and ceiling of the run's own backbone when there are)
    best_self_supervised         the run Explore, Evaluate and Clusters open on
    comparison                   the runs Compare opens on: a floor, the best methods, the ceiling
    attention_pair               the runs Attention opens on: a self-supervised ViT (a distillation
                                 method such as DINO first) beside the supervised ViT

The Overview reads these through the app's cached loader; `place` costs a few file reads per run.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Callable, Iterable

from ssl_core.analyses.attention import is_vit
from ssl_core.analyses.compare import ids_signature
from ssl_core.analyses.stored import read_result
from ssl_core.models.backbones import BACKBONES
from ssl_core.models.methods import METHODS
from ssl_core.steps.readiness import has_map, job_at_work, missing_steps
from ssl_core.store.reading import is_number
from ssl_core.store.runs import Run, get_display_name

# A run's role on its dataset, asked of its method.
FLOOR = "floor"  # never trains: the random init, the pixels
SELF_SUPERVISED = "self-supervised"  # trains without labels
SUPERVISED = "supervised"  # trains on the labels: the best such run is the dataset's ceiling
OTHER = "other"  # imported embeddings, a user's own encoder, a method no longer registered
# Attention opens on a self-supervised ViT of this family when there is one: the CLS attention
# of self-distilled ViTs (DINO) outlines objects without labels (Caron et al. 2021, Fig. 1),
# the picture this field shows first; other ViTs follow by kNN.
ATTENTION_FAMILY = "distillation"
# What the Overview reads of a run, by the post-training step that makes it (`ssl-explorer STEP`).
SHOWN_STEPS = {"embed": "embeddings", "eval": "scores", "project": "map"}
FACTORS = "factors"  # the stored analysis read: analysis/factors.json (analyses.probes)

Usable = Callable[["Standing"], bool]


@dataclass(frozen=True)
class Standing:
    """One run as the Overview and the pages' defaults see it."""

    run_id: str
    name: str | None  # the display name a person gave it (label.txt)
    role: str  # FLOOR | SELF_SUPERVISED | SUPERVISED | OTHER
    method: str
    family: str | None  # the method's family (contrastive, distillation, ...); None for OTHER
    backbone: str
    dataset: str
    resolution: int
    status: str
    running: bool  # a live job is writing it (training or its steps)
    knn_top1: float | None  # eval.json's; None while it has no scores (or no labels)
    has_map: bool  # a UMAP map, or the PCA map written first
    lacking: tuple[str, ...]  # of SHOWN_STEPS, the steps whose output it lacks, pipeline order
    images: str | None  # compare.ids_signature: equal for runs over the same images; None unembedded
    attends: bool  # its backbone is a ViT: Attention draws attention maps, not a saliency
    factors: tuple[tuple[str, float], ...] | None  # analysis/factors.json's (name, score); None: not stored
    # Its method trains a network of its own and ignores the backbone (`Method.own_network`, DDPM's
    # UNet): the backbone's random init is no floor for it.
    own_network: bool = False

    def missing(self) -> str | None:
        """What the Overview cannot show of this run and what makes it, as a sentence; None when
        its map and scores are stored."""
        if not self.lacking:
            return None
        whats = " or ".join(SHOWN_STEPS[step] for step in self.lacking)
        if self.running:
            return f"still {self.status}: its {whats.replace(' or ', ' and ')} appear when its job has made them"
        commands = " then ".join(f"`ssl-explorer {step} {self.run_id}`" for step in self.lacking)
        return f"no {whats} yet: run {commands}"


def role_of(method: str, kind: str) -> tuple[str, str | None]:
    """(role, family) of a run of `method`, as the method says of itself; a run that no
    registered method made (`Run.kind` imported or encoder, or a method since removed) is OTHER."""
    if kind in ("imported", "encoder") or method not in METHODS:
        return OTHER, None
    cls = METHODS.get(method)
    if not cls.trainable:
        return FLOOR, cls.family
    return (SUPERVISED if cls.uses_labels else SELF_SUPERVISED), cls.family


def attends(backbone: str) -> bool:
    """Whether the backbone is a ViT, whose maps are attention maps. Asked of the class its factory
    returns (its annotation), without building one: a ViT-Tiny takes about a second to initialise."""
    if backbone not in BACKBONES:
        return False
    try:
        built = typing.get_type_hints(BACKBONES.get(backbone)).get("return")
    except (NameError, TypeError):  # an unannotated or unresolvable factory: no claim of attention
        return False
    return isinstance(built, type) and is_vit(built)


def place(run: Run) -> Standing | None:
    """The run's Standing from its stored files; None when its config or status cannot be read
    (the Runs page lists it as broken with the reason)."""
    try:
        config = run.config
        kind = run.kind
        status = run.read_status()
    except (OSError, ValueError):
        return None
    method = str(config.method.get("name", "?"))
    role, family = role_of(method, kind)
    lacking = missing_steps(run)
    try:
        scores = run.read_eval() or {}
    except (OSError, ValueError):  # an unusable eval.json counts as none: the tile names the command
        scores, lacking = {}, [*lacking, "eval"]
    knn = scores.get("knn_top1")
    shown_map = has_map(run)
    try:
        images = ids_signature(run) if "embed" not in lacking else None
    except (OSError, ValueError):
        images = None
    result = read_result(run, FACTORS)
    entries = (result or {}).get("factors")
    factors = (tuple((str(e["name"]), float(e["score"])) for e in entries
                     if isinstance(e, dict) and "name" in e and is_number(e.get("score")))
               if isinstance(entries, list) else None)
    return Standing(
        run_id=run.id, name=get_display_name(run), role=role, method=method, family=family,
        backbone=config.backbone.name, dataset=config.data.dataset, resolution=config.data.resolution,
        status=status["status"], running=job_at_work(status),
        knn_top1=float(knn) if is_number(knn) else None, has_map=shown_map,
        lacking=tuple(step for step in SHOWN_STEPS if step in lacking and not (step == "project" and shown_map)),
        images=images, attends=attends(config.backbone.name), factors=factors or None,
        own_network=method in METHODS and METHODS.get(method).own_network)


def _by_knn(runs: Iterable[Standing]) -> list[Standing]:
    """Best kNN first; runs without scores last (in the order given)."""
    return sorted(runs, key=lambda s: -s.knn_top1 if s.knn_top1 is not None else float("inf"))


def _knn(value: float) -> str:
    return f"{value:.3f}"


@dataclass(frozen=True)
class DatasetStandings:
    """The runs of one dataset, floors first (lowest kNN first), then the self-supervised and the
    supervised runs (each best first): the order of the Overview's bar chart from the bottom up."""

    dataset: str
    runs: tuple[Standing, ...]

    def of_role(self, role: str) -> list[Standing]:
        return [s for s in self.runs if s.role == role]

    @property
    def floors(self) -> list[Standing]:
        return self.of_role(FLOOR)

    @property
    def self_supervised(self) -> list[Standing]:
        return self.of_role(SELF_SUPERVISED)

    @property
    def supervised(self) -> list[Standing]:
        return self.of_role(SUPERVISED)

    @property
    def ceiling(self) -> Standing | None:
        """The supervised run with the best kNN top-1: what labels reach on these images."""
        scored = [s for s in self.supervised if s.knn_top1 is not None]
        return scored[0] if scored else None

    def tiles(self) -> list[Standing]:
        """The runs trained here, self-supervised (best first) then supervised (ceiling first)."""
        return [*self.self_supervised, *self.supervised]

    def ceiling_of(self, run: Standing) -> Standing | None:
        """The ceiling `run` is measured against: the best supervised run of its backbone (what
        labels reach with the same network), else the dataset's ceiling."""
        same = [s for s in self.supervised if s.knn_top1 is not None and s.backbone == run.backbone]
        return same[0] if same else self.ceiling

    def floor_of(self, run: Standing) -> Standing | None:
        """The floor `run` is measured from: the untrained run of its backbone with the lowest kNN
        (the random init; the pixels ignore the backbone and score above it on digits), else the
        dataset's lowest floor. None for a method that trains a network of its own: its floor is
        that network untrained, which no floor run holds (bench/recipes.py measures it)."""
        if run.own_network:
            return None
        scored = [s for s in self.floors if s.knn_top1 is not None]
        same = [s for s in scored if s.backbone == run.backbone]
        return min(same or scored, key=lambda s: s.knn_top1, default=None)

    def best_self_supervised(self, usable: Usable | None = None) -> Standing | None:
        """The self-supervised run with the best kNN top-1 that `usable` accepts."""
        runs = [s for s in self.self_supervised if usable is None or usable(s)]
        return runs[0] if runs else None

    def share_of_the_way(self, run: Standing) -> float | None:
        """(kNN - floor) / (ceiling - floor): 0 at the floor, 1 at the ceiling; None when a score
        is missing or the ceiling is not above the floor."""
        floor, ceiling = self.floor_of(run), self.ceiling_of(run)
        if run.knn_top1 is None or floor is None or ceiling is None or ceiling.knn_top1 <= floor.knn_top1:
            return None
        return (run.knn_top1 - floor.knn_top1) / (ceiling.knn_top1 - floor.knn_top1)

    def label(self, run: Standing) -> str:
        """A short name in this dataset's charts: the method, with the backbone when another run
        of the method uses another one, with the run's name (or id) when that is not enough."""
        same_method = [s for s in self.runs if s.method == run.method]
        label = run.method
        if len({s.backbone for s in same_method}) > 1:
            label += f" · {run.backbone}"
        if sum(s.backbone == run.backbone for s in same_method) > 1:
            label += f" ({run.name or run.run_id})"
        return label

    def _beside(self, other: Standing, run: Standing) -> str:
        """`other`'s name in a sentence about `run`: the method alone when it shares run's backbone
        and no other run of the method does, else its `label`."""
        twins = [s for s in self.runs if s.method == other.method and s.backbone == other.backbone]
        return other.method if other.backbone == run.backbone and len(twins) == 1 else self.label(other)

    def sentence(self, run: Standing) -> str:
        """What the run's score says against this dataset's floor and ceiling, in one sentence."""
        if run.knn_top1 is None:
            return f"{run.missing() or 'no kNN score: its images have no labels'}."
        head = f"kNN {_knn(run.knn_top1)}"
        floor, ceiling = self.floor_of(run), self.ceiling_of(run)
        if ceiling is not None and run.run_id == ceiling.run_id:
            whose = self.dataset if ceiling is self.ceiling else f"{run.backbone} on {self.dataset}"
            if floor is None:
                return f"{head}: the supervised ceiling of {whose} (no untrained floor to measure it from)."
            return (f"{head}: the supervised ceiling of {whose}, {_knn(run.knn_top1 - floor.knn_top1)} "
                    f"above {self._beside(floor, run)} ({_knn(floor.knn_top1)}).")
        if floor is None and run.own_network:
            return (f"{head}; {run.method} trains a network of its own, whose untrained floor is not among these "
                    f"runs, so the random {run.backbone} is no floor for it.")
        if floor is None or ceiling is None:
            lacking = " and no ".join(w for w, s in (("untrained floor", floor), ("supervised ceiling", ceiling))
                                      if s is None)
            return f"{head}; {self.dataset} has no {lacking} to measure it against."
        share = self.share_of_the_way(run)
        if share is None:
            return (f"{head}; the ceiling {self._beside(ceiling, run)} ({_knn(ceiling.knn_top1)}) is not above the "
                    f"floor {self._beside(floor, run)} ({_knn(floor.knn_top1)}), so there is no way between them to measure.")
        if share < 0:
            where = f"below {self._beside(floor, run)} ({_knn(floor.knn_top1)}), the untrained floor"
        else:
            where = (f"{share:.0%} of the way from {self._beside(floor, run)} ({_knn(floor.knn_top1)}) to "
                     f"{self._beside(ceiling, run)} ({_knn(ceiling.knn_top1)})")
        higher = [s for s in self.floors if s is not floor and s.knn_top1 is not None and s.knn_top1 > run.knn_top1]
        if higher and share >= 0:
            best = max(higher, key=lambda s: s.knn_top1)
            where += f", below {self._beside(best, run)} ({_knn(best.knn_top1)})"
        return f"{head}: {where}."

    def factor_table(self) -> tuple[list[str], list[str], list[list[float | None]]]:
        """(run labels, factor names, scores[run][factor]) of the runs with a stored factor probe,
        in the order of `runs`: what each representation keeps of the dataset's known factors."""
        probed = [s for s in self.runs if s.factors]
        names = list(dict.fromkeys(name for s in probed for name, _ in s.factors))
        rows = [[dict(s.factors).get(name) for name in names] for s in probed]
        return [self.label(s) for s in probed], names, rows


def standings(runs: Iterable[Run]) -> list[DatasetStandings]:
    """The runs that can be read, by dataset (in the order of their first run), each ordered as
    DatasetStandings says; runs that no registered method made are left out."""
    placed = [s for s in (place(run) for run in runs) if s is not None and s.role != OTHER]
    datasets = list(dict.fromkeys(s.dataset for s in placed))
    boards = []
    for dataset in datasets:
        mine = [s for s in placed if s.dataset == dataset]
        floors = sorted((s for s in mine if s.role == FLOOR),
                        key=lambda s: s.knn_top1 if s.knn_top1 is not None else float("inf"))
        boards.append(DatasetStandings(dataset, (*floors, *_by_knn(s for s in mine if s.role == SELF_SUPERVISED),
                                                 *_by_knn(s for s in mine if s.role == SUPERVISED))))
    return boards


def find(boards: list[DatasetStandings], run_id: str | None) -> tuple[DatasetStandings, Standing] | None:
    for board in boards:
        for run in board.runs:
            if run.run_id == run_id:
                return board, run
    return None


def best_self_supervised(boards: list[DatasetStandings], usable: Usable | None = None) -> Standing | None:
    """The self-supervised run with the best kNN top-1 on any dataset that `usable` accepts (a
    map that separates its labels best): where Explore, Evaluate and Clusters open."""
    best = [b.best_self_supervised(usable) for b in boards]
    return next(iter(_by_knn(s for s in best if s is not None)), None)


def comparison(boards: list[DatasetStandings], limit: int, *, around: str | None = None,
               usable: Usable | None = None) -> list[str]:
    """The runs Compare opens on, at most `limit`, all over the images of one self-supervised
    anchor run: the floor it is measured from, the best run of each self-supervised method (the
    anchor first) and the ceiling, in that order. The anchor is `around` (the session's chosen
    run) when it is a self-supervised run, else the best self-supervised run that has company;
    [] when no anchor has."""
    ok = (lambda s: usable is None or usable(s))
    found = find(boards, around)
    anchors = [found[1]] if found is not None and found[1].role == SELF_SUPERVISED and ok(found[1]) else []
    anchors += _by_knn(s for b in boards for s in b.self_supervised if ok(s))
    for anchor in anchors:
        picked = _compared_with(find(boards, anchor.run_id)[0], anchor, limit, ok)
        if len(picked) >= 2:
            return picked
    return []


def _compared_with(board: DatasetStandings, anchor: Standing, limit: int, ok: Usable) -> list[str]:
    same = (lambda s: s.images is not None and s.images == anchor.images and ok(s))
    floor = board.floor_of(anchor)
    floor = floor if floor is not None and same(floor) else None
    ceiling = next((s for s in board.supervised if same(s)), None)
    methods, best_of_each = {anchor.method}, [anchor]
    for run in board.self_supervised:
        if run.method not in methods and same(run):
            methods.add(run.method)
            best_of_each.append(run)
    room = max(limit - (floor is not None) - (ceiling is not None), 1)
    picked = ([floor] if floor else []) + best_of_each[:room] + ([ceiling] if ceiling else [])
    return [s.run_id for s in picked[:limit]]


def attention_pair(boards: list[DatasetStandings], usable: Usable | None = None) -> tuple[str, str | None] | None:
    """(run, the run beside it) that Attention opens on: a self-supervised ViT, one of
    ATTENTION_FAMILY first, then by kNN, beside its `attention_partner`. Without a self-supervised
    ViT: the best self-supervised run beside its partner. None when no self-supervised run
    qualifies."""
    ok = (lambda s: usable is None or usable(s))
    vits = [s for b in boards for s in b.self_supervised if s.attends and ok(s)]
    ranked = sorted(_by_knn(vits), key=lambda s: s.family != ATTENTION_FAMILY)  # stable: by kNN within
    first = ranked[0] if ranked else best_self_supervised(boards, ok)
    if first is None:
        return None
    return first.run_id, attention_partner(boards, first.run_id, usable)


def attention_partner(boards: list[DatasetStandings], run_id: str, usable: Usable | None = None) -> str | None:
    """The supervised run to draw beside a self-supervised run: over the same images at the same
    resolution, a ViT beside a ViT (the same backbone first), the same backbone beside a CNN, the
    best kNN first. None for a run that is not self-supervised, or without such a run."""
    found = find(boards, run_id)
    if found is None or found[1].role != SELF_SUPERVISED:
        return None
    board, run = found
    partners = [s for s in board.supervised if (usable is None or usable(s)) and s.resolution == run.resolution
                and (s.images == run.images or run.images is None or s.images is None)
                and (s.attends if run.attends else s.backbone == run.backbone)]
    partners.sort(key=lambda s: s.backbone != run.backbone)  # stable: best kNN first within each
    return partners[0].run_id if partners else None
