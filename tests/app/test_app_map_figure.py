"""The map's colourings, without Streamlit: synthetic data, no run."""

from __future__ import annotations

import numpy as np

from ssl_core.steps.browsing import ExploreData
from widgets.map_figure import categories, colour_options


def fake_data(n: int = 30) -> ExploreData:
    rng = np.random.default_rng(1)
    return ExploreData(
        run_id="fake", coords=rng.normal(size=(n, 2)).astype(np.float32), labels=np.arange(n) % 3,
        ids=[f"img/{i}" for i in range(n)], splits=np.array(["train"] * (n - 10) + ["test"] * 10),
        class_names=["cat", "dog", "owl"],
        factors={"size": rng.uniform(size=n), "background": np.arange(n) % 2},
        factor_levels={"background": ("plain", "stripes")})


def test_categorical_colourings_name_each_row_and_list_the_names_present_in_order():
    data = fake_data()
    names, order = categories(data, "label")
    assert order == ["cat", "dog", "owl"] and names.tolist() == [["cat", "dog", "owl"][i % 3] for i in range(30)]
    assert categories(data, "split")[1] == ["train", "test"]
    assert categories(data, "background")[1] == ["plain", "stripes"]
    assert categories(data, "size") is None  # continuous: a colour scale
    assert colour_options(data) == ["label", "split", "size", "background"]


def test_rows_without_a_known_level_are_named_last():
    data = fake_data()
    data.labels = np.array([2, -1, 7, 0] + [0] * 26)  # -1: unlabelled; 7: no such class
    names, order = categories(data, "label")
    assert names[:4].tolist() == ["owl", "unlabelled", "unlabelled", "cat"]
    assert order == ["cat", "owl", "unlabelled"]
    data.factors["background"] = np.array([1, 5] + [0] * 28)
    assert categories(data, "background")[1] == ["plain", "stripes", "?"]
