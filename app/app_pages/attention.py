"""Attention: where a run's encoder looks in an image. A ViT shows its last block's CLS attention
per head, their mean, the rollout through all blocks and (optionally) the fewest patches holding a
share of the attention mass, as in the DINO paper; a CNN shows an embedding-similarity saliency,
labelled as such. Two runs can be shown side by side on the same images. Maps of a handful of
images take a fraction of a second, so they are computed here, once per run version and set of
images (st.cache_data), with the encoder from the cached loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

import loaders
from ssl_core.analyses.attention import AttentionMaps, check_rows, compute_maps, panels, why_no_maps
from ssl_core.analyses.standings import attention_pair, attention_partner
from ssl_core.steps.browsing import decode_upload
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run
from widgets.image_grid import enlarge
from widgets.literal import literal, sentence
from widgets.run_picker import describe, pick_run

MAX_IMAGES = 8
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp"]
CELL = 112  # px per panel on screen
FAILURES = (ValueError, KeyError, IndexError, FileNotFoundError, OSError, RuntimeError)


def model_key(run: Run) -> tuple[str, str, loaders.Fingerprint]:
    """One version of a run's weights: the cache key of its maps."""
    return str(run.path.parent), run.id, loaders.fingerprint(run, run.checkpoint_path, run.config_path)


@st.cache_data(max_entries=32, show_spinner="Computing the maps…")
def _row_maps(root: str, run_id: str, stamp: loaders.Fingerprint, rows: tuple[int, ...]) -> AttentionMaps:
    run = Run(Path(root) / run_id)
    images = loaders.images(run)
    return compute_maps(loaders.method(run), images[check_rows(list(rows), len(images))], run_id)


@st.cache_data(max_entries=8, show_spinner="Computing the maps…")
def _upload_maps(root: str, run_id: str, stamp: loaders.Fingerprint, data: bytes) -> AttentionMaps:
    run = Run(Path(root) / run_id)
    method = loaders.method(run)
    return compute_maps(method, decode_upload(data, method.resolution)[None], run_id)


def parse_rows(text: str) -> list[int]:
    """'3, 17 40' -> [3, 17, 40]; ValueError names what is not a row."""
    rows = []
    for part in text.replace(",", " ").split():
        if not part.lstrip("-").isdigit():
            raise ValueError(f"'{part}' is not a row number; give rows like 0, 17, 42")
        rows.append(int(part))
    if not rows:
        raise ValueError("give at least one row, e.g. 0, 17, 42")
    if len(rows) > MAX_IMAGES:
        raise ValueError(f"at most {MAX_IMAGES} images at a time; got {len(rows)}")
    return rows


def image_count(run: Run) -> int:
    return len(loaders.images(run))


def drawable(standing) -> bool:
    """A finished run whose maps can be drawn (for the runs the page opens on)."""
    return standing.status == "finished" and why_no_maps(store.get(standing.run_id)) is None


def opening_run() -> str | None:
    """A self-supervised ViT (DINO first) when there is one: analyses.standings.attention_pair."""
    pair = attention_pair(loaders.standings(store), drawable)
    return pair[0] if pair else None


def show_maps(run: Run, maps: AttentionMaps, index: int, where: str, threshold: float | None) -> None:
    cells = panels(maps, index, threshold)
    config = run.config
    st.markdown(f"**{literal(run.id)}** · {literal(config.method.get('name'))} · {literal(config.backbone.name)} · "
                f"*{maps.technique}* · {where}")
    for column, (title, picture) in zip(st.columns(len(cells)), cells):
        column.image(enlarge(picture, CELL), caption=title)


store = RunStore()
st.title("Attention")
run = pick_run(store, "attention", blocker=why_no_maps, default=opening_run)
if run is None:
    st.stop()

others = {s.id: describe(s, store.get(s.id)) for s in reversed(store.list())
          if not s.broken and s.id != run.id and why_no_maps(store.get(s.id)) is None}
# A run opens beside its supervised counterpart (a self-supervised ViT beside the supervised ViT);
# a second run chosen for it, or "(no second run)", stays while the page shows that run.
if st.session_state.get("attention_for_run") != run.id or "attention_run_b" not in st.session_state:
    st.session_state["attention_for_run"] = run.id
    partner = attention_partner(loaders.standings(store), run.id, drawable)
    st.session_state["attention_run_b"] = partner if partner in others else None
other_id = st.selectbox("Compare with", list(others), index=None, format_func=others.get, key="attention_run_b",
                        placeholder="(no second run)",
                        help="a second run drawn under each image, e.g. a trained ViT against a random-init one")
run_b = store.get(other_id) if other_id else None
source = st.radio("Images", ["rows", "random sample", "upload"], horizontal=True, key="attention_source",
                  help="rows count train images, then test images")
if run_b is not None and source != "upload" and run_b.config.data != run.config.data:
    st.warning(f"Run {literal(run_b.id)} was trained on other data ({literal(run_b.config.data.dataset)}) than run "
               f"{literal(run.id)} ({literal(run.config.data.dataset)}), so the same rows are different images: "
               "compare on an upload, or choose a run on the same dataset.")
    run_b = None
elif run_b is not None and run_b.config.data.resolution != run.config.data.resolution:
    st.warning(f"Run {literal(run_b.id)} works on {run_b.config.data.resolution} px images and run "
               f"{literal(run.id)} on {run.config.data.resolution} px: choose a run on images of the same size "
               "to compare.")
    run_b = None
threshold = None
if st.toggle("Show the top share of the attention mass (ViT)", key="attention_top"):
    threshold = st.slider("Share of the attention mass to keep", 0.1, 1.0, 0.6, 0.05, key="attention_threshold",
                          help="the fewest patches that hold this share of the mean attention (DINO's thresholding)")

try:
    n = image_count(run)
except FAILURES as e:
    st.error(f"Cannot read the images of run {literal(run.id)}: {sentence(e)}")
    st.stop()

rows: list[int] | None = None
upload = None
if source == "rows":
    text = st.text_input("Rows", value="0, 1, 2", key="attention_rows", help=f"up to {MAX_IMAGES}, of 0..{n - 1}")
    try:
        rows = check_rows(parse_rows(text), n)
    except (ValueError, IndexError) as e:
        st.error(sentence(e))
        st.stop()
elif source == "random sample":
    count_col, seed_col = st.columns(2)
    count = int(count_col.number_input("Images", 1, MAX_IMAGES, 4, key="attention_count"))
    seed = int(seed_col.number_input("Seed", 0, 2**31 - 1, 0, key="attention_seed"))
    rows = sorted(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False).tolist())
else:
    upload = st.file_uploader("An image", type=UPLOAD_TYPES, key="attention_upload")
    if upload is None:
        st.info("Upload an image to see where the encoder looks in it.")
        st.stop()

shown = [run] + ([run_b] if run_b is not None else [])
results: dict[str, AttentionMaps] = {}
for each in shown:
    try:
        if rows is not None:
            results[each.id] = _row_maps(*model_key(each), tuple(rows))
        else:
            results[each.id] = _upload_maps(*model_key(each), upload.getvalue())
    except FAILURES as e:
        st.error(f"Cannot draw maps of run {literal(each.id)}: {sentence(e)}")
        st.stop()

for each in shown:
    st.caption(f"{literal(each.id)}: {results[each.id].note}. Each map is scaled to its own range.")
for i in range(len(rows) if rows is not None else 1):
    where = f"row {rows[i]}" if rows is not None else "uploaded image"
    for each in shown:
        show_maps(each, results[each.id], i, where, threshold)
    st.divider()
