"""The fitted noise model matches the data's per-pixel statistics; data is labelled 1, noise 0."""

from __future__ import annotations

import pytest
import torch

from ssl_core.models.methods.nce import data_and_noise, fit_noise_model, sample_noise


def _correlated_batch(b: int = 24, p: int = 40) -> torch.Tensor:
    """Images with per-pixel means and variances that differ, and pixels that co-vary."""
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(6, p, generator=g)
    return torch.randn(b, 6, generator=g) @ mixing + torch.linspace(-2, 3, p) + 0.3 * torch.randn(b, p, generator=g)


@pytest.mark.parametrize("rank", [None, 3])
def test_noise_has_the_data_per_pixel_mean_and_variance(rank):
    x = _correlated_batch()
    torch.manual_seed(1)
    noise = sample_noise(*fit_noise_model(x, rank), 40_000)
    var = x.var(0)
    assert torch.allclose(noise.mean(0), x.mean(0), atol=0.02 * var.sqrt().max())
    assert torch.allclose(noise.var(0), var, rtol=0.03)  # a biased (B) variance would be 4% low


def test_full_rank_noise_has_the_batch_covariance():
    x = _correlated_batch()
    torch.manual_seed(2)
    noise = sample_noise(*fit_noise_model(x), 40_000)
    cov_x, cov_noise = torch.cov(x.T), torch.cov(noise.T)
    assert (cov_noise - cov_x).abs().max() < 0.04 * cov_x.diagonal().max()


def test_low_rank_model_restores_each_pixel_variance_exactly():
    x = _correlated_batch()
    mean, basis, residual_std = fit_noise_model(x, rank=2)
    assert basis.shape == (2, x.shape[1])
    assert torch.allclose(basis.pow(2).sum(0) + residual_std.pow(2), x.var(0), rtol=1e-4)
    assert residual_std.min() > 0  # 2 components do not explain this data: a white residual remains


def test_labels_are_one_for_data_and_zero_for_noise():
    images = torch.randint(0, 256, (5, 4, 4, 3), dtype=torch.uint8)
    torch.manual_seed(0)
    both, labels = data_and_noise(images)
    assert both.shape == (10, 4, 4, 3) and both.dtype == torch.uint8
    assert labels.tolist() == [1.0] * 5 + [0.0] * 5
    assert torch.equal(both[:5], images)
    assert not any(torch.equal(n, d) for n in both[5:] for d in images)  # fresh samples, not copies


def test_clipped_8_bit_noise_still_matches_data_away_from_the_range_ends():
    g = torch.Generator().manual_seed(3)
    images = (60 + 140 * torch.rand(2000, 1, 1, 1, generator=g) * torch.rand(1, 6, 6, 3, generator=g)
              + 10 * torch.randn(2000, 6, 6, 3, generator=g)).round().to(torch.uint8)
    torch.manual_seed(4)
    both, _ = data_and_noise(images)
    data, noise = both[:2000].flatten(1).float(), both[2000:].flatten(1).float()
    assert torch.allclose(noise.mean(0), data.mean(0), atol=2.0)  # levels 0..255
    assert torch.allclose(noise.var(0), data.var(0), rtol=0.2)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="B >= 2"):
        fit_noise_model(torch.rand(1, 10))
    with pytest.raises(ValueError, match="rank"):
        fit_noise_model(torch.rand(4, 10), rank=0)
    with pytest.raises(ValueError, match="uint8"):
        data_and_noise(torch.rand(4, 4, 4, 3))
