"""Every family of methods learns: on a tiny CPU budget, one method of each family embeds held-out
images better (weighted kNN top-1) than the untrained network of the same backbone does.

The budgets are the smallest at which each representative clears its floor here by a margin
that seed and CPU noise do not cross; bench/results/recipes_*.md hold the longer runs.
"""

from __future__ import annotations

import pytest

from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.models.methods import METHODS
from ssl_core.models.methods.base import train_settings
from ssl_core.steps.embed import embed_run, load_embeddings
from ssl_core.steps.evaluate import weighted_knn
from ssl_core.training.loop import train

# shapes is generated: 2,048 held-out images cost nothing to make and halve the noise of a kNN score
# of about 0.2 (standard error 0.017 with 512, 0.009 with 2,048), which the margins below are close to.
SHAPES = {"dataset": "shapes", "test_size": 2048}
UPRIGHT, DIGITS = {**SHAPES, "max_rotation": 30}, {"dataset": "mnist5k"}
TRAIN_SIZE = 1024
# family -> (method, backbone, data, epochs of the TRAIN_SIZE images, batch, margin over the floor).
# Batch 32 where it keeps a margin of 2 points or more over the goal at half the compute (one
# thread: SimCLR +5.0, rotation +6.2, DINO +4.9); VICReg (+2.6), the autoencoder (+2.0), CPC (+1.1)
# and the supervised ceiling (+11.0 of its 10) need batch 64, and their epochs. Two threads: the
# autoencoder reaches +1.0 at 4 epochs and +5.1 at 6; CPC +2.2 at 6 and +3.5 at 8 (its margin is 2).
FAMILIES = {
    "contrastive": ("simclr", "convnet", SHAPES, 4, 32, 0.03),
    "redundancy-reduction": ("vicreg", "convnet", SHAPES, 6, 64, 0.03),
    "pretext": ("rotation", "convnet", UPRIGHT, 3, 32, 0.03),
    "generative": ("autoencoder", "convnet", DIGITS, 6, 64, 0.03),
    # DINO with its recipe (lr 5e-4); BYOL (lr 5e-4, predictor at 10x) clears its floor on mnist5k
    # at 600 steps by 3.7 points only.
    "distillation": ("dino", "convnet", DIGITS, 4, 32, 0.03),
    "predictive-coding": ("cpc", "convnet", SHAPES, 8, 64, 0.02),
    "baseline": ("supervised", "convnet", SHAPES, 6, 64, 0.10),
}


def held_out_knn(store, method: str, backbone: str, data: dict, epochs: int, batch_size: int = 64) -> float:
    config = RunConfig(data=DataConfig(**{"train_size": TRAIN_SIZE, "test_size": 512, **data}),
                       backbone=BackboneConfig(backbone), method={"name": method},
                       train=TrainConfig(**train_settings(method, dict(  # the method's recipe, as `train` has it
                           epochs=epochs, batch_size=batch_size, device="cpu", knn_every=0, checkpoint_every=10_000,
                           log_every=50, map_snapshots=0))))  # no map per check: suite time
    run = store.create(config)
    train(run, progress=False)
    embed_run(run, device="cpu", progress=False)
    (train_x, train_y, _), (test_x, test_y, _) = load_embeddings(run, "train"), load_embeddings(run, "test")
    return weighted_knn(train_x, train_y, test_x, test_y, num_classes=int(train_y.max()) + 1, k=20)


@pytest.fixture(scope="module")
def floors(tmp_path_factory):
    """The random-init kNN of each (backbone, data) the families train, computed once."""
    from ssl_core.store.run_store import RunStore

    store, found = RunStore(tmp_path_factory.mktemp("floors")), {}

    def floor(backbone: str, data: dict) -> float:
        key = (backbone, tuple(sorted(data.items())))
        if key not in found:
            found[key] = held_out_knn(store, "random", backbone, data, 1)
        return found[key]
    return floor


# Families none of whose methods clears its floor on a CI budget yet (issue 17), with the evidence.
# Not trained here: a run that is known to fall short would cost a minute of every CI run to say so.
NOT_YET = {
    "masked-prediction": "MAE on vit_mini learns mnist5k here, but not at a CI budget: with these TRAIN_SIZE "
                         "images at batch 64 it reaches 0.377 against its random ViT's 0.315 after 512 steps "
                         "(+6.3; 502 s on one thread beside two other jobs), +3.1 after 256 (no margin for "
                         "noise), +1.7 to +2.1 after 96 at lr 5e-4 to 2e-3, and at batch 32 0.283 after 512",
}


def test_every_family_has_a_method_that_learns_here_or_says_why_not():
    families = {METHODS.get(name).family for name in METHODS.names()}
    assert families == set(FAMILIES) | set(NOT_YET), "a family of methods without a learning test"
    assert not set(FAMILIES) & set(NOT_YET)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_a_method_of_every_family_beats_its_random_init_floor(family, floors, store):
    method, backbone, data, epochs, batch_size, margin = FAMILIES[family]
    floor = floors(backbone, data)
    trained = held_out_knn(store, method, backbone, data, epochs, batch_size)
    assert trained > floor + margin, (f"{family}: {method} on {backbone} reaches kNN top-1 {trained:.3f} after "
                                      f"{epochs * TRAIN_SIZE // batch_size} steps of {batch_size}; its random init "
                                      f"{floor:.3f} (needs +{margin})")
