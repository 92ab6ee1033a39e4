"""A run as a hostile but fair user could bring one: its image ids (file names), label names
(folder names), display name and dataset name carry script, HTML, Plotly-markup and Markdown
payloads. Each payload that runs sets `window.pwned` to where it came from."""

from __future__ import annotations

import numpy as np

from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.workflows.importer import write_rows
from ssl_core.steps.projection import PCA_FILE, project_pca
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run, set_display_name

ID_PAYLOADS = ["<img src=x onerror=\"window.pwned='id img'\">.png",
               "<script>window.pwned='id script'</script>",
               "</script><script>window.pwned='id breakout'</script>",
               "<a href=\"http://evil.example/id\">a</a> [md](http://evil.example/m) ![i](http://evil.example/i.png)",
               "<b>bold</b> &amp; <i>it</i> **md** `code` :material/home: www.evil.example"]
CLASS_NAMES = ["<img src=x onerror=\"window.pwned='label'\">", "<a href=\"http://evil.example/l\">a</a> & <b>b</b>",
               "_plain_"]
NAME = "<img src=x onerror=window.pwned='name'><a href=\"//evil.x\">a</a> [m](//evil.x)"  # 80 at most
DATASET = "<svg onload=\"window.pwned='dataset'\"></svg>"
N_TRAIN, N_TEST = 30, 15
# Rows 0-14 hold every pair of id payload (row % 5) and label (row % 3).
IDS = [f"{ID_PAYLOADS[i % len(ID_PAYLOADS)]} #{i}" for i in range(N_TRAIN + N_TEST)]
LABELS = np.arange(N_TRAIN + N_TEST) % len(CLASS_NAMES)


def hostile_run(store: RunStore, seed: int = 0) -> Run:
    """A finished run in the form an import leaves (its 8 px images stored in its folder) over
    IDS and CLASS_NAMES, named NAME, with a PCA map; no index."""
    config = RunConfig(data=DataConfig(dataset=DATASET, resolution=8), backbone=BackboneConfig(name="none"),
                       method={"name": "imported"}, train=TrainConfig(epochs=0, device="cpu"))
    run = store.create(config)
    vectors = np.random.default_rng(seed).normal(size=(len(IDS), 8)).astype(np.float32)
    images = np.random.default_rng(0).integers(0, 256, size=(len(IDS), 8, 8, 3), dtype=np.uint8)
    write_rows(run, vectors, IDS, LABELS, CLASS_NAMES, N_TRAIN, images, {}, {})
    run.projection_dir.mkdir()
    np.save(run.projection_dir / PCA_FILE, project_pca(vectors))
    set_display_name(run, NAME)
    run.set_status("finished", stage="done")
    return run
