"""Import: a run from embeddings computed elsewhere, or from an encoder of your own, without
training. The same as `ssl-explorer import` and `ssl-explorer encode`: the page gathers paths on
the machine running the app, ssl_core does the work while a progress bar follows it, and the new
run opens in Explore."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ssl_core.data import DATASETS
from ssl_core.data.online import ONLINE_SETS
from ssl_core.store.run_store import RunStore
from widgets.literal import literal, sentence
from widgets.run_picker import select_run

FOLDER = "(a folder of my images)"
FAILURES = (ValueError, KeyError, FileNotFoundError, OSError)


def optional(text: str) -> str | None:
    return text.strip() or None


def show_outcome() -> None:
    """The last import's run, notes and warnings (kept for the reruns after it)."""
    done = st.session_state.get("import_done")
    if not done:
        return
    st.success(f"Made run **{literal(done['run_id'])}**.")
    for note in done["notes"]:  # notes and warnings name the user's files and columns
        st.caption(sentence(note))
    for warning in done["warnings"]:
        st.warning(sentence(warning))
    if st.button("Open in Explore", key="import_open", type="primary"):
        select_run(done["run_id"])
        st.switch_page("app_pages/explore.py", query_params={"run": done["run_id"]})


def run_with_progress(work) -> None:
    """Call work(progress) under a progress bar; keep its outcome or show why it failed."""
    st.session_state.pop("import_done", None)
    bar = st.progress(0.0, text="starting…")
    try:
        run_id, notes, warnings = work(lambda fraction, text: bar.progress(min(max(fraction, 0.0), 1.0),
                                                                           text=sentence(text)))
    except FAILURES as e:
        bar.empty()
        st.error(f"Nothing was imported: {sentence(e.args[0] if isinstance(e, KeyError) else e)}")
        return
    select_run(run_id)
    st.session_state["import_done"] = {"run_id": run_id, "notes": notes, "warnings": warnings}


def import_embeddings_form(store: RunStore) -> None:
    from ssl_core.workflows.importer import MATCHES, import_embeddings

    st.caption("Embeddings from another model and the images they belong to: paths on the machine running "
               "this app. The map, clusters, neighbours and (with labels) scores then work as for a trained run.")
    images = st.text_input("Images (optional)", key="import_images", placeholder="/data/photos or /data/images.parquet",
                           help="a folder of image files, or a .parquet file with a column of encoded image bytes; "
                                "without images the run is its vectors alone: the map and neighbours show ids and "
                                "labels, no pictures")
    embeddings = st.text_input("Embeddings", key="import_embeddings", placeholder="/data/vectors.npy",
                               help=".npy (N x D), or .parquet/.csv with one vector column and an optional id "
                                    "column (id, filename, ...) to match images by file name")
    labels = st.text_input("Labels and metadata (optional)", key="import_labels", placeholder="/data/meta.csv",
                           help=".csv/.parquet: an id column (or rows in the embeddings' order), a `label` column, "
                                "an optional `split` column, and any columns the map can colour by")
    name = st.text_input("Name (optional)", key="import_name", placeholder="e.g. CLIP ViT-B/32 on my photos")
    with st.expander("More settings"):
        match = st.selectbox("Match embeddings to images", MATCHES, key="import_match",
                             help="auto: by file name when the embeddings have ids, else by sorted file order")
        resolution = st.number_input("Stored image size (px)", min_value=8, max_value=512, value=64,
                                     key="import_resolution")
        skip_invalid = st.checkbox("Leave out rows with NaN/infinite vectors or unreadable images",
                                   key="import_skip_invalid", help="each one is named in a warning")
    missing = [what for what, value in (("embeddings", embeddings),) if not value.strip()]
    if st.button("Import", key="import_start", type="primary", disabled=bool(missing),
                 help=f"give the {' and '.join(missing)} first" if missing else None):
        def work(progress):
            result = import_embeddings(store, images=optional(images), embeddings=embeddings.strip(),
                                       labels=optional(labels), name=optional(name), match=match,
                                       resolution=int(resolution), skip_invalid=skip_invalid, progress=progress)
            return result.run.id, result.notes, result.warnings

        run_with_progress(work)


def encoder_form(store: RunStore) -> None:
    from ssl_core.core.config import DataConfig
    from ssl_core.models.encoders import encoder_spec
    from ssl_core.workflows.encode import encode_dataset

    st.caption("A trained encoder of your own embeds a dataset; nothing is downloaded. Its weights are a state "
               "dict (`torch.save(model.state_dict(), PATH)`, loaded with weights_only=True) of a torchvision or "
               "timm architecture, or a TorchScript file.")
    left, right = st.columns(2)
    with left:
        library = st.radio("Kind", ("torchvision", "timm", "torchscript"), horizontal=True, key="import_library")
        architecture = st.text_input("Architecture", key="import_arch", placeholder="resnet18",
                                     disabled=library == "torchscript")
        weights = st.text_input("Weights file" if library != "torchscript" else "TorchScript file",
                                key="import_weights", placeholder="/models/encoder.pt")
        input_size = st.number_input("Input size (px)", min_value=8, max_value=1024, value=None,
                                     key="import_input_size", placeholder="224 (TorchScript: the dataset's)")
    with right:
        choices = [n for n in DATASETS.names() if n not in ONLINE_SETS] + [FOLDER]
        dataset = st.selectbox("Dataset", choices, index=choices.index("shapes"), key="import_dataset")
        if dataset == FOLDER:
            dataset = st.text_input("Folder path", key="import_folder", placeholder="/home/me/photos")
        a, b = st.columns(2)
        train_size = a.number_input("Train size", min_value=1, value=None, key="import_train_size",
                                    placeholder="dataset default")
        test_size = b.number_input("Test size", min_value=1, value=None, key="import_test_size",
                                   placeholder="dataset default")
        resolution = a.number_input("Resolution (px)", min_value=8, max_value=512, value=32, key="import_data_res")
        name = b.text_input("Name (optional)", key="import_encoder_name")
    missing = [what for what, value in (("weights file", weights), ("dataset", dataset),
                                        ("architecture", "x" if library == "torchscript" else architecture))
               if not (value or "").strip()]
    if st.button("Embed the dataset", key="import_encode_start", type="primary", disabled=bool(missing),
                 help=f"give the {' and '.join(missing)} first" if missing else None):
        def work(progress):
            spec = encoder_spec(library=library, weights=Path(weights.strip()),
                                architecture=None if library == "torchscript" else architecture.strip(),
                                input_size=None if input_size is None else int(input_size))
            data = DataConfig(dataset=dataset.strip(), resolution=int(resolution),
                              train_size=None if train_size is None else int(train_size),
                              test_size=None if test_size is None else int(test_size))
            run = encode_dataset(store, data, spec, name=optional(name), progress=progress, log=lambda m: None)
            return run.id, [], []

        run_with_progress(work)


store = RunStore()
st.title("Import")
embeddings_tab, encoder_tab = st.tabs(["Embeddings", "Your encoder"])
with embeddings_tab:
    import_embeddings_form(store)
with encoder_tab:
    encoder_form(store)
show_outcome()
