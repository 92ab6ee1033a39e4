"""Driving the app in tests: open a page through the app's own navigation, read texts, and
simulate a selection on a map (which AppTest has no driver for)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
if str(APP.parent) not in sys.path:  # the app's modules, imported as the app imports them
    sys.path.insert(0, str(APP.parent))

from widgets.scatter_map.payload import encode_value  # noqa: E402  (after the path set-up above)

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


def map_args(at: AppTest, index: int = 0) -> dict:
    """The JSON arguments of the page's map component (widgets/scatter_map; `index`: which of the
    page's maps, in page order)."""
    return json.loads(at.get("component_instance")[index].proto.json_args)


def map_bytes(at: AppTest, name: str, index: int = 0) -> bytes | None:
    """A binary argument of the page's map component; None when the page did not send it."""
    found = [a.bytes for a in at.get("component_instance")[index].proto.special_args if a.key == name]
    return found[0] if found else None


def map_block(at: AppTest, index: int = 0) -> bytes:
    """The binary map block the page sends to its map component."""
    block = map_bytes(at, "payload", index)
    assert block is not None, "the map was sent without its block"
    return block


_sequence = 0  # of the selections sent, as the browser numbers them


def select_on_map(at: AppTest, rows: list[int], *, sheets: list[int] = (), new: bool = True,
                  held: int = 0, index: int = 0) -> AppTest:
    """Run the app as if the user had selected `rows` on the map (a click: one row; a box or a
    lasso: many), sending the binary value the component's browser side sends. `new=False` sends
    the last selection's number again, as the browser does when it only asks for sprite sheets;
    `held`: the block the browser says it holds (MapPayload.digest_word); `index`: which of the
    page's maps.

    AppTest cannot render a custom component, so this adds the component's widget state by hand.
    Relies on AppTest internals (`_tree`, `_run`)."""
    global _sequence
    _sequence += new
    element = at.get("component_instance")[index]
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = element.proto.id
    state.bytes_value = encode_value(map_args(at, index)["map_tag"], _sequence, rows, sheets, held)
    at._run(states)
    assert not at.exception, [e.value for e in at.exception]
    return at
