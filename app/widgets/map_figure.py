"""How a run's map is coloured (by label, split, factor or cluster: the map component of Explore,
Compare and Clusters and the Overview's thumbnails share the palette).
"""

from __future__ import annotations

import numpy as np
from plotly.colors import qualitative

from ssl_core.steps.browsing import ExploreData

MAX_LEGEND_CATEGORIES = 40  # more classes than this (cifar100): a colour scale, no legend entries
# 24 distinct colours: the default palette repeats after 10, so 12 shapes would share colours.
PALETTE = qualitative.Dark24
SPLIT = "split"
LABEL = "label"


def colour_options(data: ExploreData) -> list[str]:
    """What the map can be coloured by: the label, the split, then the dataset's known factors."""
    return [LABEL, SPLIT, *data.factors]


def categories(data: ExploreData, colour_by: str) -> tuple[np.ndarray, list[str]] | None:
    """(per-row category names, their order) for categorical colourings; None for continuous.
    Vectorised: a million-point map is coloured in a fraction of a second."""
    if colour_by == LABEL:
        return _named(data.labels, data.class_names, "unlabelled")
    if colour_by == SPLIT:
        return data.splits.astype(object), [s for s in ("train", "test") if s in set(data.splits)]
    if colour_by in data.factor_levels:
        return _named(data.factors[colour_by], data.factor_levels[colour_by], "?")
    return None


def _named(codes: np.ndarray, levels, other: str) -> tuple[np.ndarray, list[str]]:
    """Per-row names of integer `codes` (`other` where a code has no level), and the names present
    in the order of `levels`, then `other`."""
    codes = np.asarray(codes).astype(np.int64)
    known = (codes >= 0) & (codes < len(levels))
    lookup = np.array([*levels, other], dtype=object)
    names = lookup[np.where(known, codes, len(levels))]
    present = np.unique(np.where(known, codes, len(levels)))
    return names, [str(lookup[i]) for i in present]
