"""Driving the app in tests: open a page through the app's own navigation, read texts, and
simulate a selection on the map (which AppTest has no driver for)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
PAGES = {"overview": "app_pages/overview.py", "runs": "app_pages/runs.py", "train": "app_pages/train.py", "explore": "app_pages/explore.py",
         "import": "app_pages/import_page.py", "evaluate": "app_pages/evaluate.py",
         "compare": "app_pages/compare.py", "clusters": "app_pages/clusters.py",
         "attention": "app_pages/attention.py"}


def open_page(page: str, query_params: dict[str, str] | None = None) -> AppTest:
    """The whole app (streamlit_app.py, with its navigation) showing `page`, run once."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if page != "overview":  # the default page
        at.switch_page(PAGES[page])
    if query_params:
        at.query_params.update(query_params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rendered(markdown: str) -> str:
    """A Markdown text as a reader sees it: without the backslash escapes and word joiners that
    widgets.literal puts around user values (AppTest gives the Markdown, not what it renders)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u2060", "")


def texts(elements) -> list[str]:
    """The texts of st.error, st.caption, ... elements, as rendered."""
    return [rendered(str(e.value)) for e in elements]


def select_on_map(at: AppTest, rows: list[int]) -> AppTest:
    """Run the app as if the user had selected `rows` on the map (a click: one row).

    AppTest has no driver for st.plotly_chart selections, so this sends the widget state the
    browser would send: the chart's id with the selection JSON, whose points carry their row in
    `customdata` as the map figure puts it there. Relies on AppTest internals (`_tree`, `_run`)."""
    chart = at.get("plotly_chart")[0]
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = chart.proto.id
    state.string_value = json.dumps({"selection": {
        "points": [{"customdata": [r], "point_index": i, "curve_number": 0} for i, r in enumerate(rows)],
        "point_indices": list(range(len(rows))), "box": [], "lasso": []}})
    at._run(states)
    assert not at.exception, [e.value for e in at.exception]
    return at
