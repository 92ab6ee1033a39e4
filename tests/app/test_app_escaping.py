"""User values are text, never Markdown, in the app's messages and captions.

AppTest gives the Markdown that Streamlit would render: the tests check that a reader sees each
payload as its characters (app_driver.rendered) and that no markup is left in it (`inert`). One
test renders them in Chromium, which is what a user's browser does with that Markdown.
"""

from __future__ import annotations

import os
import re

import pytest

from app_driver import open_page, rendered
from app_server import CHROMIUM, CHROMIUM_ARGS, drawn_map
from hostile_runs import CLASS_NAMES, IDS, LABELS, NAME, hostile_run
from ssl_core.steps.index import index_run
from ssl_core.store.run_store import RunStore
from widgets.literal import literal, sentence

LINK_PAYLOADS = ["[x](http://evil.example/a)", "![i](http://evil.example/x.png)", "www.evil.example"]


def inert(markdown: str) -> bool:
    """No character that starts Markdown, HTML, LaTeX or a directive is left unescaped (the
    page's own bold marks aside), and no autolink or icon is left whole."""
    unmarked = markdown.replace("**", "")
    return (re.search(r"(?<!\\)[\[\]<>!*_`$|~&]", unmarked) is None
            and not re.search(r"://|www\.|\w@|:material", markdown))


def caption_parts(caption: str) -> tuple[str, str]:
    """(id, label name) of a neighbour's caption 'id · d=0.123 · label', as rendered."""
    image_id, _, label = rendered(caption).split(" · ")
    return image_id, label


def test_literal_reads_back_as_the_value_and_sentence_keeps_commands():
    for value in [*LINK_PAYLOADS, *IDS[:5], *CLASS_NAMES, NAME, "a\n- b\n# c\n1. d", "back\\slash", "a@b.example"]:
        assert rendered(literal(value)) == value and inert(literal(value)), value
    assert sentence("run `ssl-explorer index x` [y](z)") == "run `ssl-explorer index x` \\[y\\](z)"


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    run = hostile_run(store)
    index_run(run)
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(store.root))
    return run


@pytest.mark.parametrize("requested", LINK_PAYLOADS)
def test_a_link_in_the_address_is_shown_as_text(hostile, requested):
    at = open_page("explore", {"run": requested})
    [error] = [e.value for e in at.error]
    assert requested in rendered(error) and inert(error), error


def test_ids_labels_and_names_are_shown_as_text(hostile):
    at = open_page("explore", {"run": hostile.id})
    facts = [m.value for m in at.markdown if IDS[0] in rendered(m.value)]
    assert facts and all(inert(f) and CLASS_NAMES[LABELS[0]] in rendered(f) for f in facts), facts
    captions = [c for image in at.get("image") for c in image.captions if " · d=" in rendered(c)]
    assert len(captions) >= 5 and all(inert(c) for c in captions), captions
    for image_id, label in map(caption_parts, captions):
        assert label == CLASS_NAMES[LABELS[IDS.index(image_id)]]

    at = open_page("runs")
    at.text_input(key=f"runs_name_{hostile.id}").input(NAME + " 2")
    at.button(key="runs_rename").click().run()
    [success] = [s.value for s in at.success]
    assert f"is now called “{NAME} 2”" in rendered(success) and inert(success), success
    assert at.dataframe[0].value.iloc[0]["name"] == NAME + " 2"  # a table cell: plain text


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
def test_in_a_browser_nothing_runs_and_nothing_links_out(hostile_app):
    playwright = pytest.importorskip("playwright.sync_api")
    port, hostile = hostile_app
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/explore?run={hostile.id}")
        iframe, frame = drawn_map(page, timeout=60_000)
        page.wait_for_function("() => document.querySelectorAll('[data-testid=stImageCaption]').length >= 8",
                               timeout=60_000)
        legend = frame.evaluate("() => Array.from(document.querySelectorAll('#legend .entry'), e => e.textContent)")
        assert legend == CLASS_NAMES
        point = frame.evaluate("() => window.scatterMap.screenOf(0)")
        page.mouse.move(iframe.bounding_box()["x"] + point[0], iframe.bounding_box()["y"] + point[1])
        frame.wait_for_function("() => document.getElementById('frame').dataset.hovered", timeout=10_000)
        assert frame.locator("#tip .label").text_content() in CLASS_NAMES  # the hover box's label: text
        captions = page.evaluate("() => Array.from(document.querySelectorAll('[data-testid=stImageCaption]'),"
                                 " c => c.innerText.replaceAll('\u2060', ''))")
        for image_id, label in map(caption_parts, captions):  # each caption shows its id and label as text
            assert label == CLASS_NAMES[LABELS[IDS.index(image_id)]], captions
        # What only a payload could make: its links and images, HTML tags, Markdown emphasis, LaTeX.
        markup = "a[href*='evil'], img[src*='evil'], img[src='x'], svg a, b, i, em, del, .katex"
        page.wait_for_timeout(300)  # an <img onerror> would have fired once its load failed
        for where in (page, frame):  # the page, and the map's frame
            assert where.evaluate("() => window.pwned") is None
            assert where.locator(markup).count() == 0, where.locator(markup).evaluate_all("l => l.map(e => e.outerHTML)")

        page.goto(f"http://127.0.0.1:{port}/explore?run={LINK_PAYLOADS[0]}")
        page.wait_for_function("text => Array.from(document.querySelectorAll('[data-testid=stAlert]'))"
                               ".some(a => a.innerText.replaceAll('\u2060', '').includes(text))",
                               arg=f"invalid run id '{LINK_PAYLOADS[0]}'", timeout=30_000)
        assert page.locator(markup).count() == 0
        browser.close()
