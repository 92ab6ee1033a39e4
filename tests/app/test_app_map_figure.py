"""The map figure and the selection -> rows step, without Streamlit: synthetic data, no run."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_core.steps.browsing import ExploreData
from widgets.map_figure import display_rows, map_figure, selected_rows


def fake_data(n: int = 30) -> ExploreData:
    rng = np.random.default_rng(1)
    return ExploreData(
        run_id="fake", coords=rng.normal(size=(n, 2)).astype(np.float32), labels=np.arange(n) % 3,
        ids=[f"img/{i}" for i in range(n)], splits=np.array(["train"] * (n - 10) + ["test"] * 10),
        class_names=["cat", "dog", "owl"],
        factors={"size": rng.uniform(size=n), "background": np.arange(n) % 2},
        factor_levels={"background": ("plain", "stripes")})


def rows_of(figure) -> list[int]:
    return sorted(int(r) for trace in figure.data for r in trace.customdata)


def test_categorical_colourings_make_one_named_trace_per_category():
    data = fake_data()
    assert [t.name for t in map_figure(data, "label").data] == ["cat", "dog", "owl"]
    assert [t.name for t in map_figure(data, "split").data] == ["train", "test"]
    assert [t.name for t in map_figure(data, "background").data] == ["plain", "stripes"]
    for colouring in ("label", "split", "background", "size"):
        figure = map_figure(data, colouring)
        assert {t.type for t in figure.data} == {"scattergl"}
        assert rows_of(figure) == list(range(30))  # every row exactly once


def test_a_continuous_factor_is_one_trace_with_a_colour_scale_and_the_value_in_the_hover():
    (trace,) = map_figure(fake_data(), "size").data
    assert trace.marker.showscale and trace.marker.colorbar.title.text == "size"
    assert trace.hovertext[0].startswith("img/0<br>cat<br>size ")


def test_an_unknown_colouring_names_the_choices():
    with pytest.raises(ValueError, match="label, split, size, background"):
        map_figure(fake_data(), "colour")


def test_large_maps_are_thinned_to_a_fixed_sample_for_display_only():
    assert np.array_equal(display_rows(1_000, max_points=1_000), np.arange(1_000))
    sample = display_rows(60_000, max_points=50_000)
    assert len(sample) == len(np.unique(sample)) == 50_000 and np.all(np.diff(sample) > 0)
    assert np.array_equal(sample, display_rows(60_000, max_points=50_000))  # same every rerun


def test_a_thinned_figure_carries_the_true_row_numbers():
    rows = np.array([3, 7, 29])
    assert rows_of(map_figure(fake_data(), "label", rows=rows)) == [3, 7, 29]


@pytest.mark.parametrize("state, rows", [
    (None, []),
    ({"selection": {"points": [], "box": [], "lasso": []}}, []),
    ({"selection": {"points": [{"customdata": [5]}, {"customdata": [2]}]}}, [5, 2]),
    ({"selection": {"points": [{"customdata": 5}, {"customdata": 5.0}]}}, [5]),  # scalar, repeated
    ({"selection": {"points": [{"point_index": 1}]}}, []),  # a point of a trace without rows
])
def test_selected_rows_reads_rows_from_customdata(state, rows):
    assert selected_rows(state).tolist() == rows
