"""Two 2-D maps of the same points laid onto each other: the Compare page's maps of several runs,
and the map of one run as it learns (map_snapshots.py), each snapshot onto the one before."""

from __future__ import annotations

import numpy as np


def procrustes_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(rotation R (2, 2), scale s, source mean, target mean) minimising
    ||s (source - mean_s) R + mean_t - target||: orthogonal Procrustes (Schönemann 1966) with an
    isotropic scale. R may include a reflection: a map and its mirror image show the same thing."""
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2:
        raise ValueError(f"Procrustes needs two maps of the same shape (N, d); got {source.shape} and {target.shape}")
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    a, b = source - mean_s, target - mean_t
    u, singular, vt = np.linalg.svd(a.T @ b)
    rotation = u @ vt
    norm = float((a ** 2).sum())
    scale = float(singular.sum() / norm) if norm > 0 else 1.0
    return rotation, scale, mean_s, mean_t


def align_map(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`source` (N, 2) rotated, scaled and shifted onto `target` (N, 2), row i onto row i."""
    rotation, scale, mean_s, mean_t = procrustes_fit(source, target)
    return (scale * (np.asarray(source, dtype=np.float64) - mean_s) @ rotation + mean_t).astype(np.float32)
