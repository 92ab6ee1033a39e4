"""Where each run stands on its dataset (analyses.standings): roles asked of the methods, the
floor and the ceiling, the sentence of a tile, and the runs each page opens on. Runs here are
folders holding only what the rules read (config, status, eval.json, embeddings ids, a map, a
factor probe), written in milliseconds; nothing is trained."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_core.analyses.standings import (FLOOR, OTHER, SELF_SUPERVISED, SUPERVISED, attends, attention_pair,
                                         attention_partner, best_self_supervised, comparison, place, role_of,
                                         standings)
from ssl_core.analyses.stored import store_result
from ssl_core.core.config import BackboneConfig
from ssl_core.store.atomic import atomic_write_json
from ssl_core.store.run_store import RunStore
from tiny_runs import embedded_run, tiny_config


def make(store: RunStore, method: str, knn: float | None, *, backbone: str = "convnet", dataset: str = "shapes",
         train_size: int = 40, mapped: bool = True, factors: dict[str, float] | None = None):
    """A finished run of `method` with synthetic embeddings over `train_size` + 20 images, a map
    when `mapped`, eval.json's kNN top-1 when `knn` is given and a factor probe when `factors`."""
    config = tiny_config(method, train_size=train_size, test_size=20)
    config.backbone = BackboneConfig(backbone)
    config.data.dataset = dataset
    run = embedded_run(store, train_size=train_size, test_size=20, dim=8, classes=4, config=config)
    run.set_status("finished")
    if knn is not None:
        atomic_write_json(run.eval_path, {"knn_top1": knn})
    if mapped:
        run.projection_dir.mkdir(parents=True, exist_ok=True)
        np.save(run.projection_dir / "umap_2d.npy", np.zeros((train_size + 20, 2), dtype=np.float32))
    if factors is not None:
        store_result(run, "factors", {"factors": [{"name": n, "score": s} for n, s in factors.items()]})
    return run


def board_of(boards, dataset="shapes"):
    return next(b for b in boards if b.dataset == dataset)


@pytest.fixture
def shapes(store):
    """A floor, three self-supervised runs, two supervised runs on one dataset, as ids by name."""
    runs = {
        "random": make(store, "random", 0.2, factors={"scale": 0.5, "pos_x": 0.9}),
        "pixels": make(store, "pixels", 0.3),
        "simclr": make(store, "simclr", 0.5, factors={"scale": 0.7, "pos_x": 0.2}),
        "byol": make(store, "byol", 0.44),
        "simclr_short": make(store, "simclr", 0.35),
        "supervised": make(store, "supervised", 0.8),
        "supervised_vit": make(store, "supervised", 0.6, backbone="vit_mini"),
    }
    return store, {name: run.id for name, run in runs.items()}


def test_roles_are_asked_of_the_methods():
    assert role_of("random", "baseline") == (FLOOR, "baseline")
    assert role_of("pixels", "baseline")[0] == FLOOR
    assert role_of("supervised", "trained")[0] == SUPERVISED
    assert role_of("simclr", "trained") == (SELF_SUPERVISED, "contrastive")
    assert role_of("dino", "trained") == (SELF_SUPERVISED, "distillation")
    assert role_of("imported", "imported") == (OTHER, None)
    assert role_of("no_such_method", "trained") == (OTHER, None)


def test_attention_is_asked_of_the_backbone_class():
    assert attends("vit_mini") and attends("vit_tiny")
    assert not attends("convnet") and not attends("resnet18") and not attends("no_such_backbone")


def test_runs_are_ordered_floors_then_self_supervised_then_supervised_best_first(shapes):
    store, ids = shapes
    [board] = standings(store.get(s.id) for s in store.list())
    assert [s.run_id for s in board.runs] == [ids[n] for n in ("random", "pixels", "simclr", "byol", "simclr_short",
                                                               "supervised", "supervised_vit")]
    assert board.ceiling.run_id == ids["supervised"]
    assert [s.run_id for s in board.tiles()] == [ids[n] for n in ("simclr", "byol", "simclr_short", "supervised",
                                                                  "supervised_vit")]


def test_the_floor_is_the_lowest_untrained_run_of_the_same_backbone(shapes):
    store, ids = shapes
    make(store, "random", 0.1, backbone="vit_mini")
    [board] = standings(store.get(s.id) for s in store.list())
    by_id = {s.run_id: s for s in board.runs}
    assert board.floor_of(by_id[ids["simclr"]]).run_id == ids["random"]  # not the pixels (0.3)
    assert board.floor_of(by_id[ids["supervised_vit"]]).knn_top1 == 0.1
    assert board.share_of_the_way(by_id[ids["simclr"]]) == pytest.approx(0.5)


def test_the_sentence_places_the_score_between_floor_and_ceiling(shapes):
    store, ids = shapes
    [board] = standings(store.get(s.id) for s in store.list())
    by_id = {s.run_id: s for s in board.runs}
    assert board.sentence(by_id[ids["simclr"]]) == "kNN 0.500: 50% of the way from random (0.200) to supervised (0.800)."
    assert board.sentence(by_id[ids["simclr_short"]]) == ("kNN 0.350: 25% of the way from random (0.200) to "
                                                          "supervised (0.800).")
    assert board.sentence(by_id[ids["supervised"]]) == "kNN 0.800: the supervised ceiling of shapes, 0.600 above random (0.200)."
    # Another floor above the run is named; the run of another backbone names its own.
    byol = by_id[ids["byol"]]
    assert "below" not in board.sentence(byol)
    weak = make(store, "byol", 0.25)
    [board] = standings(store.get(s.id) for s in store.list())
    assert board.sentence(next(s for s in board.runs if s.run_id == weak.id)).endswith(", below pixels (0.300).")
    assert board.sentence(next(s for s in board.runs if s.run_id == ids["supervised_vit"])) == (
        "kNN 0.600: the supervised ceiling of vit_mini on shapes, 0.400 above random (0.200).")


def test_a_method_with_a_network_of_its_own_is_not_measured_from_the_backbones_random_init(shapes):
    store, ids = shapes
    ddpm = make(store, "ddpm", 0.3)  # DDPM trains its UNet; the run's backbone (convnet) is unused
    [board] = standings(store.get(s.id) for s in store.list())
    standing = next(s for s in board.runs if s.run_id == ddpm.id)
    assert standing.own_network and board.floor_of(standing) is None and board.share_of_the_way(standing) is None
    assert board.sentence(standing) == ("kNN 0.300; ddpm trains a network of its own, whose untrained floor is not "
                                        "among these runs, so the random convnet is no floor for it.")
    assert board.floor_of(next(s for s in board.runs if s.run_id == ids["simclr"])).run_id == ids["random"]


def test_a_run_is_measured_against_the_ceiling_of_its_own_backbone(shapes):
    store, ids = shapes
    make(store, "random", 0.1, backbone="vit_mini")
    dino = make(store, "dino", 0.35, backbone="vit_mini")
    [board] = standings(store.get(s.id) for s in store.list())
    standing = next(s for s in board.runs if s.run_id == dino.id)
    assert board.ceiling_of(standing).run_id == ids["supervised_vit"]  # not the convnet's 0.8
    assert board.share_of_the_way(standing) == pytest.approx(0.5)
    assert board.sentence(standing) == "kNN 0.350: 50% of the way from random (0.100) to supervised (0.600)."


def test_a_run_lacking_files_says_what_and_which_command(store):
    make(store, "random", 0.2)
    make(store, "supervised", 0.8)
    unscored = make(store, "simclr", None, mapped=False)
    [board] = standings(store.get(s.id) for s in store.list())
    standing = next(s for s in board.runs if s.run_id == unscored.id)
    assert standing.lacking == ("eval", "project") and not standing.has_map
    assert board.sentence(standing) == (f"no scores or map yet: run `ssl-explorer eval {unscored.id}` then "
                                        f"`ssl-explorer project {unscored.id}`.")
    alone = make(store, "simclr", 0.4, dataset="digits")
    lone_board = board_of(standings([alone]), "digits")
    assert lone_board.sentence(lone_board.runs[0]) == ("kNN 0.400; digits has no untrained floor and no supervised "
                                                       "ceiling to measure it against.")


def test_unreadable_and_imported_runs_are_left_out(store):
    kept = make(store, "simclr", 0.4)
    broken = make(store, "simclr", 0.5)
    broken.config_path.write_text("{not json")
    imported = make(store, "simclr", 0.6)
    raw = imported.read_config_dict()
    atomic_write_json(imported.config_path, {**raw, "method": {"name": "imported"}})
    assert place(broken) is None
    assert [s.run_id for b in standings([kept, broken, imported]) for s in b.runs] == [kept.id]


def test_the_best_self_supervised_run_is_by_knn_across_datasets_among_usable_runs(shapes):
    store, ids = shapes
    digits = make(store, "vicreg", 0.9, dataset="digits")
    boards = standings(store.get(s.id) for s in store.list())
    assert [b.dataset for b in boards] == ["shapes", "digits"]
    assert best_self_supervised(boards).run_id == digits.id
    assert best_self_supervised(boards, lambda s: s.dataset == "shapes").run_id == ids["simclr"]
    assert best_self_supervised(boards, lambda s: False) is None


def test_the_comparison_is_a_floor_the_best_of_each_method_and_the_ceiling(shapes):
    store, ids = shapes
    other_images = make(store, "vicreg", 0.7, train_size=60)  # same dataset, other images: never compared
    boards = standings(store.get(s.id) for s in store.list())
    # The best self-supervised run has no company on its images: the next best anchors the comparison.
    assert comparison(boards, 4) == [ids["random"], ids["simclr"], ids["byol"], ids["supervised"]]
    assert comparison(boards, 3) == [ids["random"], ids["simclr"], ids["supervised"]]
    # Around the session's chosen run: it comes first of the self-supervised ones.
    assert comparison(boards, 4, around=ids["simclr_short"]) == [ids["random"], ids["simclr_short"], ids["byol"],
                                                                 ids["supervised"]]
    assert other_images.id not in comparison(boards, 4, around=ids["byol"])
    assert comparison(boards, 4, around=other_images.id) == comparison(boards, 4)  # none shares its images
    assert comparison(boards, 4, usable=lambda s: s.role == SELF_SUPERVISED and s.method == "vicreg") == []
    assert comparison(boards, 4, usable=lambda s: s.role != FLOOR) == [ids["simclr"], ids["byol"], ids["supervised"]]


def test_attention_opens_on_a_distillation_vit_beside_the_supervised_vit(shapes):
    store, ids = shapes
    simclr_vit = make(store, "simclr", 0.6, backbone="vit_mini")  # a better kNN, not of the distillation family
    dino = make(store, "dino", 0.4, backbone="vit_mini")
    boards = standings(store.get(s.id) for s in store.list())
    assert attention_pair(boards) == (dino.id, ids["supervised_vit"])
    assert attention_partner(boards, ids["simclr"]) == ids["supervised"]  # a CNN beside its own backbone
    assert attention_partner(boards, ids["supervised"]) is None
    # Without a self-supervised ViT: the best self-supervised run beside the supervised run of its backbone.
    boards = standings(store.get(s.id) for s in store.list() if s.id not in (dino.id, simclr_vit.id))
    assert attention_pair(boards) == (ids["simclr"], ids["supervised"])
    assert attention_pair(boards, lambda s: s.role != SELF_SUPERVISED) is None


def test_the_factor_table_holds_the_probed_runs_in_board_order(shapes):
    store, ids = shapes
    [board] = standings(store.get(s.id) for s in store.list())
    labels, names, rows = board.factor_table()
    assert names == ["scale", "pos_x"]
    assert labels == ["random", "simclr (" + ids["simclr"] + ")"]
    assert rows == [[0.5, 0.9], [0.7, 0.2]]
