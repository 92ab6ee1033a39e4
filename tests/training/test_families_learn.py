"""Every family of methods learns: on a tiny CPU budget, one method of each family embeds held-out
images better (weighted kNN top-1) than the untrained network of the same backbone does.

The budgets are the smallest at which each representative clears its floor here by a margin
that seed and CPU noise do not cross; bench/results/recipes_*.md hold the longer runs.
"""

from __future__ import annotations

import pytest

from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.steps.embed import embed_run, load_embeddings
from ssl_core.steps.evaluate import weighted_knn
from ssl_core.training.loop import train

# family -> (method, backbone, data settings, epochs of 16 steps, margin over the floor)
FAMILIES = {
    "contrastive": ("simclr", "convnet", {}, 6, 0.03),
    "redundancy-reduction": ("vicreg", "convnet", {}, 6, 0.03),
    "pretext": ("rotation", "convnet", {"max_rotation": 30}, 6, 0.03),
    "generative": ("autoencoder", "convnet", {}, 6, 0.03),
    "distillation": ("byol", "convnet", {}, 6, 0.01),
    "predictive-coding": ("cpc", "convnet", {}, 6, 0.01),
    "masked-prediction": ("mae", "vit_mini", {}, 6, 0.01),
    "baseline": ("supervised", "convnet", {}, 3, 0.10),
}


def held_out_knn(store, method: str, backbone: str, data: dict, epochs: int) -> float:
    config = RunConfig(data=DataConfig(dataset="shapes", train_size=1024, test_size=512, **data),
                       backbone=BackboneConfig(backbone), method={"name": method},
                       train=TrainConfig(epochs=epochs, batch_size=64, device="cpu", knn_every=0,
                                         checkpoint_every=10_000, log_every=50))
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


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_a_method_of_every_family_beats_its_random_init_floor(family, floors, store):
    method, backbone, data, epochs, margin = FAMILIES[family]
    floor = floors(backbone, data)
    trained = held_out_knn(store, method, backbone, data, epochs)
    assert trained > floor + margin, (f"{family}: {method} on {backbone} reaches kNN top-1 {trained:.3f} after "
                                      f"{epochs * 16} steps; its random init {floor:.3f} (needs +{margin})")
