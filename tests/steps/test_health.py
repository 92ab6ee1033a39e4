"""Label-free health during training: alpha-ReQ and LiDAR, right on made-up spectra and views,
and falling on a run that collapses while its loss looks fine."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F

from ssl_core.models import augment
from ssl_core.models.methods import METHODS
from ssl_core.models.methods.base import Method, register_method
from ssl_core.steps.health import alpha_req, collapse_warning, lidar
from ssl_core.store.run_store import RunStore
from ssl_core.training.loop import train
from tiny_runs import tiny_config


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_reads_the_power_law_of_the_spectrum(alpha):
    rng = np.random.default_rng(0)
    d = 64
    scales = np.arange(1, d + 1) ** (-alpha / 2)  # standard deviations: variances i^-alpha
    vectors = rng.standard_normal((20_000, d)) * scales @ np.linalg.qr(rng.standard_normal((d, d)))[0]
    assert alpha_req(vectors) == pytest.approx(alpha, abs=0.1)


def test_alpha_req_of_a_collapsed_embedding_is_undefined_not_a_number_that_looks_fine():
    assert np.isnan(alpha_req(np.ones((100, 8))))


def test_lidar_counts_the_directions_that_tell_images_apart_beyond_their_views():
    rng = np.random.default_rng(0)
    noise = 0.3 * rng.standard_normal((200, 8, 16))  # how each image's views differ, in every direction
    spread = rng.standard_normal((200, 1, 16))  # images differ in all 16 directions
    flat = spread * (np.arange(16) < 2)  # ... in only 2 of them
    assert lidar(spread + noise) > 12
    assert 1 <= lidar(flat + noise) < 3
    with pytest.raises(ValueError, match="LiDAR needs"):
        lidar(np.zeros((10, 1, 4)))


def test_the_warning_fires_only_below_half_the_peak():
    assert collapse_warning(40.0, 50.0, 1.0) is None
    assert "may be collapsing" in collapse_warning(20.0, 50.0, 3.0)


class NoStopGradient(Method):
    """Pull two views' representations together with nothing against collapse: SimSiam without
    its stop-gradient and predictor (which the SimSiam paper shows collapses), with an MSE loss
    that is happiest when every output is the same."""

    name = "test-no-stop-gradient"
    family = "distillation"
    description = "two views pulled together, no stop-gradient (a test's collapsing method)"

    def training_step(self, images_u8, labels):
        views = [augment.make_views(images_u8, augment.ViewConfig(), self.resolution) for _ in range(2)]
        z1, z2 = (self.encode(self.normalize(v)) for v in views)
        return {"loss": F.mse_loss(z1, z2)}


def test_a_collapsing_run_shows_it_in_lidar_before_its_loss_says_anything(tmp_path):
    register_method(NoStopGradient)
    try:
        run = RunStore(tmp_path).create(tiny_config(NoStopGradient.name, train_size=96, test_size=128, epochs=10,
                                                    knn_every=1, lr=5e-2))
        train(run, progress=False)
    finally:
        METHODS.unregister(NoStopGradient.name)
    metrics = run.read_metrics()
    checks = [m for m in metrics if "lidar" in m]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(checks) == 10 and all("alpha_req" in m for m in checks)
    curve = [m["lidar"] for m in checks]
    # The loss only improves (towards 0, every view the same) while the embedding loses its
    # directions (measured: loss 0.07 -> 0.0004, LiDAR 63 -> 31 of 128 images).
    assert losses[-1] < 0.1 * losses[0], losses
    assert curve[-1] < 0.5 * max(curve), curve
    warned = [m["step"] for m in checks if "health_warning" in m]
    assert warned and warned[-1] == checks[-1]["step"], (curve, warned)
    assert "may be collapsing" in checks[-1]["health_warning"]
