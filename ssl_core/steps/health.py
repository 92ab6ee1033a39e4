"""Label-free health of an embedding while it trains, beside effective rank (steps/evaluate.py):

- alpha-ReQ (Agrawal et al., "α-ReQ: Assessing Representation Quality in Self-Supervised
  Learning by measuring eigenspectrum decay", NeurIPS 2022): the slope alpha of the power law
  lambda_i ~ i^-alpha that the covariance eigenvalues follow. The paper finds embeddings that
  probe well near 1, steeper spectra (a few directions hold everything) and flatter ones (noise)
  worse; a change along a run says its spectrum is changing shape.
- LiDAR (Thilak et al., "LiDAR: Sensing Linear Probing Performance in Joint Embedding SSL
  Architectures", ICLR 2024): the effective rank of the linear discriminant matrix of the SSL
  surrogate task, each image a class and its augmented views the samples. It needs views of each
  image, so training computes it at its checks. It falls as a run collapses: views of one image
  stay apart no better than views of different images.

Both take the embeddings as given; training/knn.py embeds the images and views.
"""

from __future__ import annotations

import numpy as np

LIDAR_DELTA = 1e-4  # the paper's regulariser of the within-class scatter (its eq. 2)
LIDAR_EPS = 1e-7  # added to each normalized eigenvalue before the entropy, as in the paper
# Warn when LiDAR falls below this share of the highest value the run has shown. SimCLR on 512
# shapes images keeps 93% of its first check's over 64 steps (100 -> 93); the deliberately
# collapsing run of tests/steps/test_health.py falls to 48% within 30 steps (63 -> 31) while its
# loss falls 170-fold.
COLLAPSE_LIDAR_SHARE = 0.5


def alpha_req(vectors: np.ndarray, min_eigenvalue: float = 1e-12) -> float:
    """alpha of the least-squares fit of log lambda_i = -alpha log i + c over the eigenvalues of
    the (N, D) embeddings' covariance that are above `min_eigenvalue` x the largest (at least
    two are needed; NaN otherwise)."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    eigenvalues = np.linalg.svd(x, compute_uv=False) ** 2 / max(len(x) - 1, 1)
    kept = eigenvalues[eigenvalues > min_eigenvalue * max(eigenvalues.max(initial=0.0), 1e-300)]
    if len(kept) < 2:
        return float("nan")
    ranks = np.arange(1, len(kept) + 1, dtype=np.float64)
    slope = np.polyfit(np.log(ranks), np.log(kept), 1)[0]
    return float(-slope)


def lidar(views: np.ndarray, delta: float = LIDAR_DELTA) -> float:
    """LiDAR of (n images, q views, D) embeddings: exp of the entropy of the normalized
    eigenvalues of Sigma_w^-1/2 Sigma_b Sigma_w^-1/2, with Sigma_b the covariance of the images'
    mean embeddings and Sigma_w the mean covariance of each image's views plus delta I.
    Between 1 and D; higher is better."""
    x = np.asarray(views, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"LiDAR needs (images >= 2, views >= 2, D) embeddings; got {x.shape}")
    n, q, d = x.shape
    means = x.mean(axis=1)
    between = np.cov(means, rowvar=False, bias=False).reshape(d, d)
    centred = (x - means[:, None, :]).reshape(n * q, d)
    within = centred.T @ centred / (n * (q - 1)) + delta * np.eye(d)
    values, vectors = np.linalg.eigh(within)
    inv_sqrt = (vectors / np.sqrt(np.clip(values, delta, None))) @ vectors.T
    discriminant = np.linalg.eigvalsh(inv_sqrt @ between @ inv_sqrt)
    p = np.clip(discriminant, 0, None)
    p = p / max(p.sum(), 1e-300) + LIDAR_EPS
    return float(np.exp(-(p * np.log(p)).sum()))


def collapse_warning(lidar_now: float, lidar_peak: float, alpha_now: float) -> str | None:
    """A sentence when LiDAR has fallen below COLLAPSE_LIDAR_SHARE of the run's highest value,
    else None."""
    if not (np.isfinite(lidar_now) and np.isfinite(lidar_peak)) or lidar_now >= COLLAPSE_LIDAR_SHARE * lidar_peak:
        return None
    return (f"LiDAR fell to {lidar_now:.1f} from {lidar_peak:.1f} (alpha-ReQ {alpha_now:.2f}): the embedding may be "
            "collapsing, whatever the loss says; check the learning rate and the method's settings")
