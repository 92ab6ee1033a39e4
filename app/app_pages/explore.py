"""Explore: one run's UMAP map (its PCA map until UMAP is ready), the images behind any point or
group, nearest neighbours, and search by an uploaded image. Everything shown was computed by the
run's job and is only read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import loaders
from ssl_core.analyses.clusters import KMEANS_FACTOR, with_cluster_factors
from ssl_core.models.encoders import has_encoder
from ssl_core.steps.browsing import ExploreData, decode_upload, encode_upload
from ssl_core.steps.projection import UMAP_FILE
from ssl_core.steps.readiness import explorable, mapping_now, missing_steps, refuse, searchable, viewable
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run
from widgets.image_grid import enlarge, image_grid
from widgets.literal import literal, sentence
from widgets.map_animation import map_animation
from widgets.map_figure import colour_options
from widgets.run_picker import best_self_supervised_id, pick_run
from widgets.scatter_map import scatter_map
from widgets.scatter_map.payload import cached_payload

MAX_GRID = 60  # images shown for a selection; the label counts cover all of it
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp"]
MAP_POLL_SECONDS = 2  # while the PCA map stands in, how often the page looks for the UMAP map


def caption(data: ExploreData, row: int, distance: float | None = None) -> str:
    """'id · d=0.123 · label': what a browser test and a person both read under an image."""
    parts = [data.ids[row]] + ([f"d={distance:.3f}"] if distance is not None else []) + [data.label_name(row)]
    return " · ".join(parts)


def rows_table(data: ExploreData, rows: np.ndarray, distances: np.ndarray | None = None) -> None:
    """Rows as a table of id, label and split (and distance d): what a run without images shows
    where other runs show pictures."""
    table = {"row": rows, "id": [data.ids[r] for r in rows], "label": [data.label_name(r) for r in rows],
             "split": data.splits[rows]}
    if distances is not None:
        table["d"] = np.round(distances, 3)
    st.dataframe(pd.DataFrame(table), hide_index=True)


def on_map_select(rows: np.ndarray) -> None:
    """A click on one point makes it the image whose neighbours are shown."""
    if len(rows) == 1:
        st.session_state["explore_row"] = int(rows[0])


store = RunStore()
st.title("Explore")
run = pick_run(store, "explore", prefer=lambda s: s.status == "finished"
               and not {"embed", "project"} & set(missing_steps(store.get(s.id))), blocker=explorable,
               default=lambda: best_self_supervised_id(store, explorable))
if run is None:
    st.stop()
try:
    data = loaders.explore_data(run)
    no_images = viewable(run)  # imported from its embeddings alone: ids and labels stand in for pictures
    images = None if no_images else loaders.images(run)
    last_error = run.read_status().get("last_error")  # a step run again that failed (Run.set_failed)
except (OSError, ValueError, KeyError) as e:
    st.error(f"Cannot show run {literal(run.id)}: {sentence(e)}")
    st.stop()
if no_images:
    st.info(f"{sentence(no_images).rstrip('.')}. The map, hover, selection and neighbours show ids and labels.")
if last_error:
    st.warning(f"The last step run again on this run failed, so what you see is from before it: "
               f"{sentence(last_error)}")
cluster_note = None
try:  # stored clusters (`ssl-explorer analyze RUN_ID --only clusters`) become colourings of the map
    clusters = loaders.clusters(run)
    if clusters is not None:
        data = with_cluster_factors(data, *clusters)
except (OSError, ValueError, KeyError) as e:
    cluster_note = f"No colouring by cluster: {sentence(e)}"
n = len(data.ids)

# Widget values belong to the run they were chosen for: start a new run on row 0, colour by label.
if st.session_state.get("explore_for_run") != run.id:
    st.session_state["explore_for_run"] = run.id
    st.session_state["explore_row"] = 0
    st.session_state.pop("explore_colour", None)
if not 0 <= st.session_state.get("explore_row", 0) < n:
    st.session_state["explore_row"] = 0  # the run was embedded again with fewer images


@st.fragment(run_every=MAP_POLL_SECONDS)
def swap_in_umap(run: Run) -> None:
    """Reruns the page once the UMAP map has been written; meanwhile only this empty fragment
    reruns, so the PCA map, its selection and zoom stay as they are."""
    if (run.projection_dir / UMAP_FILE).exists():
        st.rerun()


map_col, side_col = st.columns([5, 3], gap="medium")
with map_col:
    if st.session_state.get("explore_colour") not in colour_options(data):
        st.session_state.pop("explore_colour", None)  # e.g. a cluster colouring whose clusters are gone
    colour_by = st.selectbox("Colour by", colour_options(data), key="explore_colour",
                             help="the label, the split, one of the dataset's known factors, or the run's "
                                  "stored clusters (computed on the Clusters page)")
    if cluster_note:
        st.caption(cluster_note)
    if not data.labelled:
        st.info("No labels: every image of this run is unlabelled, so colouring by label shows one colour. "
                + (f"Colour by '{KMEANS_FACTOR}' instead." if KMEANS_FACTOR in data.factors else
                   "Colour by cluster instead once the Clusters page (or `ssl-explorer analyze "
                   f"{run.id} --only clusters`) has computed them."))
    if data.map_kind == "pca":
        running = mapping_now(run, run.read_status())
        st.info("**PCA map** (the first two principal components of the embeddings), shown until the UMAP "
                "map is ready: " + ("the job is computing it, and it replaces this one when it is done."
                                    if running else f"run `ssl-explorer project {run.id}` to make it."))
        if running:
            swap_in_umap(run)
    selection = np.zeros(0, dtype=np.int64)
    try:  # built once per run version and colouring: the browser receives it once
        payload = cached_payload((*loaders.explore_key(run), loaders.clusters_key(run)), colour_by, data)
    except ValueError as e:
        st.error(f"Cannot draw the map: {sentence(e)}")
    else:
        selection = scatter_map(payload, images, key="explore_map", on_select=on_map_select)
    n_train = int((data.splits == "train").sum())
    st.caption(f"{n:,} images ({n_train:,} train, {n - n_train:,} test). Click a point for its nearest "
               "neighbours; Box or Lasso (above the map) picks a group to see its images. Scroll to zoom: "
               "below about 2,000 points in view, the points show as their images."
               if images is not None else
               f"{n:,} rows ({n_train:,} train, {n - n_train:,} test), no images. Click a point for its nearest "
               "neighbours; Box or Lasso (above the map) picks a group to list its rows.")
    # The HTML map carries every image: a run without them has nothing to put in it.
    st.download_button("Map as HTML (opens offline)", data=lambda: loaders.map_html(run), on_click="ignore",
                       file_name=f"{run.id}-map.html", mime="text/html", key="explore_map_html",
                       disabled=images is None,
                       help=sentence(no_images) if no_images else
                       "this map with every image on hover, in one file; `ssl-explorer export RUN_ID --out map.html`")
    # Off until asked: the animation sends every snapshot's points to the browser.
    if st.toggle("The map as it learns (epoch by epoch, from training)", key="explore_learning",
                 help="the held-out images mapped at each kNN check of training, played as an animation"):
        map_animation(run, data, colour_by)


@st.fragment
def focus_panel() -> None:
    """One image and its neighbours. A fragment: changing the row or k redraws only this panel,
    not the map."""
    row_col, k_col = st.columns(2)
    row = int(row_col.number_input("Image (row)", min_value=0, max_value=n - 1, key="explore_row",
                                   help="rows count train images, then test images; a click on the map sets it"))
    k = int(k_col.slider("k", min_value=1, max_value=min(50, n - 1), value=min(8, n - 1), key="explore_k"))
    picture, facts = st.columns([1, 2])
    if images is not None:
        picture.image(enlarge(images[row], 128))
    else:
        picture.caption("no image (imported without images)")
    facts.markdown(f"**{literal(data.ids[row])}**  \n{literal(data.label_name(row))} · {literal(data.splits[row])}")
    for name, values in data.factors.items():
        levels = data.factor_levels.get(name)
        value = levels[int(values[row])] if levels else f"{values[row]:.3g}"
        facts.caption(f"{literal(name)}: {literal(value)}")

    st.subheader("Nearest neighbours")
    try:
        refuse(searchable(run))
        search = loaders.search(run)
    except (OSError, ValueError) as e:
        st.warning(f"No neighbour search for this run: {sentence(e)}")
        return
    rows, distances = search.of_row(row, k)
    agreement = ""
    if data.labels[row] >= 0:  # an unlabelled image has no label to share
        same = int((data.labels[rows] == data.labels[row]).sum())
        agreement = f": **{same} of {len(rows)} share its label**"
    st.caption(f"of {literal(data.ids[row])} ({literal(data.label_name(row))}), by cosine distance d{agreement}")
    if images is None:
        rows_table(data, rows, distances)
    else:
        image_grid(images[rows], [caption(data, r, d) for r, d in zip(rows, distances)], columns=4)


with side_col:
    focus_panel()

if len(selection) > 1:
    st.subheader(f"Selection: {len(selection):,} images")
    counts_col, grid_col = st.columns([1, 4])
    counts_col.dataframe(pd.DataFrame(data.label_counts(selection), columns=["label", "images"]), hide_index=True)
    with grid_col:
        if len(selection) > MAX_GRID:
            st.caption(f"showing the first {MAX_GRID} of {len(selection):,}")
        shown = selection[:MAX_GRID]
        if images is None:
            rows_table(data, shown)
        else:
            image_grid(images[shown], [caption(data, r) for r in shown], columns=8)


@st.fragment
def upload_search() -> None:
    """Neighbours of an uploaded image, encoded by this run's own model. A fragment: an upload
    does not redraw the map."""
    st.subheader("Search by image")
    if not has_encoder(run):
        st.info(f"Run {literal(run.id)} was imported with its embeddings only, so there is no encoder to embed an "
                "image of yours. Click a point to see its neighbours, or make a run from the encoder's "
                "weights (`ssl-explorer encode`, or the Import page) to search by image.")
        return
    upload = st.file_uploader("An image of your own", type=UPLOAD_TYPES, key="explore_upload",
                              help="decoded safely (size and pixel limits), resized to the run's resolution")
    if upload is None:
        return
    content = upload.getvalue()
    try:
        picture = decode_upload(content, run.config.data.resolution)
    except ValueError as e:
        st.error(f"{literal(upload.name)}: {sentence(e)}")
        return
    try:
        search = loaders.search(run)
        vector = encode_upload(loaders.method(run), content)
    except (OSError, ValueError, KeyError) as e:
        st.error(f"Cannot search this run by image: {sentence(e)}")
        return
    k = int(st.session_state.get("explore_k", 8))
    rows, distances = search.of_vector(vector, k)
    query_col, hits_col = st.columns([1, 5])
    query_col.image(enlarge(picture, 128), caption=f"{literal(upload.name)}, as the model sees it")
    with hits_col:
        st.caption(f"The {len(rows)} images of this run closest to yours (cosine distance d)")
        image_grid(images[rows], [caption(data, r, d) for r, d in zip(rows, distances)], columns=8)


upload_search()
