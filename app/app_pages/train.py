"""Train: choose a method, dataset and settings; the job runs in its own process."""

from __future__ import annotations

import streamlit as st

import train_form
from ssl_core.workflows import jobs
from ssl_core.models.backbones import BACKBONES
from ssl_core.data import DATASETS
from ssl_core.data.online import ONLINE_SETS
from ssl_core.models.methods import METHODS
from ssl_core.workflows.pipeline import POST_STEPS
from ssl_core.store.reading import os_error_message
from ssl_core.store.run_store import RunStore
from widgets.job_monitor import job_monitor
from widgets.literal import literal, sentence
from widgets.run_picker import pick_run, select_run

store = RunStore()
defaults = train_form.TrainChoices()
st.title("Train")

FOLDER = "(a folder of my images)"
builtins = [n for n in DATASETS.names() if n not in ONLINE_SETS]
online = [n for n in DATASETS.names() if n in ONLINE_SETS]


def dataset_label(name: str) -> str:
    if name in ONLINE_SETS:
        return f"{name} (online: needs a download of ~{ONLINE_SETS[name].download_mb} MB)"
    return name


with st.container(border=True):
    left, right = st.columns(2)
    with left:
        methods = METHODS.names()
        method = st.selectbox("Method", methods, index=methods.index(defaults.method), key="train_method",
                              format_func=lambda n: f"{n} ({METHODS.get(n).family})")
        method_cls = METHODS.get(method)
        st.caption(method_cls.description + (" Needs labelled data." if method_cls.uses_labels else ""))
        backbones = BACKBONES.names()
        backbone = st.selectbox("Backbone", backbones, index=backbones.index(defaults.backbone),
                                key="train_backbone", help=f"{method} trains: {', '.join(method_cls.backbones)}")
        choice = st.selectbox("Dataset", [*builtins, *online, FOLDER], index=builtins.index(defaults.dataset),
                              key="train_dataset", format_func=dataset_label)
        dataset, download, load = choice, False, "auto"
        if choice in ONLINE_SETS:
            download = st.checkbox(f"Download {choice} if it is not in the data cache yet", key="train_download",
                                   help="without this the job fails at once when the files are missing")
        elif choice == FOLDER:
            dataset = st.text_input("Folder path", key="train_folder", placeholder="/home/me/photos",
                                    help="class subfolders (photos/cat/1.jpg), or a flat folder with an "
                                         "optional labels.csv; the path is read on the machine running the app")
            load = st.radio("Images", ("auto", "memory", "stream"), horizontal=True, key="train_load",
                            captions=["stream if over ¼ of RAM", "decode all once", "decode each batch"],
                            help="in memory is fastest per epoch; streaming keeps the images in their files "
                                 "and decodes each batch in worker processes, for folders larger than RAM. "
                                 "Both train on the same pixels.")
        else:
            doc = (DATASETS.get(choice).__doc__ or "").strip().splitlines()
            st.caption(doc[0] if doc else "")
        max_rotation = 360.0
        if choice == "shapes":
            max_rotation = st.slider("Shape rotation (degrees)", 0, 360, 360, step=10, key="train_max_rotation",
                                     help="360: shapes turn to any angle; less keeps them within half of it "
                                          "either side of upright (rotation prediction needs an up: 30)")
    with right:
        a, b = st.columns(2)
        epochs = a.number_input("Epochs", min_value=1, value=defaults.epochs, key="train_epochs")
        batch_size = b.number_input("Batch size", min_value=1, value=defaults.batch_size, key="train_batch_size")
        recipe = train_form.recipe_lr(method)
        lr = a.number_input("Learning rate", min_value=1e-6, max_value=10.0, value=None, step=1e-4,
                            format="%.1e", key="train_lr", placeholder=f"{recipe:.1e} ({method}'s recipe)",
                            help="peak rate after warm-up (AdamW, cosine decay); empty: the method's recipe")
        seed = b.number_input("Seed", min_value=0, value=defaults.seed, key="train_seed")
        train_size = a.number_input("Train size", min_value=1, value=None, key="train_train_size",
                                    placeholder="dataset default", help="number of train images; empty: all")
        test_size = b.number_input("Test size", min_value=1, value=None, key="train_test_size",
                                   placeholder="dataset default", help="number of test images; empty: all")
        gpu = train_form.cuda_available()
        device = st.radio("Device", train_form.DEVICES, horizontal=True, key="train_device",
                          captions=["GPU if there is one", "", "GPU" if gpu else "no GPU on this machine"])
    with st.expander("More settings"):
        resolution = st.number_input("Resolution (px)", min_value=8, max_value=512, value=defaults.resolution,
                                     key="train_resolution")
        after = st.multiselect("After training", POST_STEPS, default=list(POST_STEPS), key="train_after",
                               help="embed the images, score them (kNN, linear probe), compute the map, "
                                    "build the search index: the Explore page needs all but the scores")

    choices = train_form.TrainChoices(
        method=method, backbone=backbone, dataset=dataset or "", download=download, load=load, epochs=int(epochs),
        batch_size=int(batch_size), lr=None if lr is None else float(lr), seed=int(seed), device=device, resolution=int(resolution),
        train_size=None if train_size is None else int(train_size),
        test_size=None if test_size is None else int(test_size), max_rotation=float(max_rotation),
        after_training=tuple(after))
    request = choices.request()
    problems = request.problems()  # the check `ssl-explorer train` makes, with the same sentences
    for problem in problems:
        st.error(f"Cannot start: {sentence(problem)}")
    # Checked again on the click itself, with the values that came with it.
    if st.button("Start training", key="train_start", type="primary", disabled=bool(problems)) and not problems:
        try:
            run = jobs.start(store, request)
        except OSError as e:
            st.error(f"Cannot start: {sentence(os_error_message(e, 'write'))}.")
        except ValueError as e:
            st.error(f"Cannot start: {sentence(e)}")
        else:
            select_run(run.id)
            st.query_params["run"] = run.id
            st.success(f"Started run {literal(run.id)}. It trains in its own process: closing this tab does not "
                       "stop it.")

st.subheader("Follow a run")
run = pick_run(store, "train", prefer=lambda s: s.status in ("queued", "running"))
if run is not None:
    job_monitor(store, run)
