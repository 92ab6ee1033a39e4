"""Every file of a run folder, named once: what it holds and which step writes it.

Readers and writers take the names from here (through `Run`'s properties or these constants),
and docs/architecture.md's run-folder table is generated from `RUN_FILES`, so the list cannot
drift from the code.
"""

from __future__ import annotations

CONFIG = "config.json"
STATUS = "status.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
TRAIN_LOG = "train.log"
NAME = "label.txt"
LOCK = ".lock"
EMBEDDINGS_DIR = "embeddings"
CLASS_NAMES = "class_names.json"  # inside embeddings/
SPLITS = ("train", "test")  # every run stores its rows train first, then test
EVAL = "eval.json"
PROJECTION_DIR = "projection"
PARAMS = "params.json"  # inside projection/ and index/: how the map or the index was made
PCA_MAP = "pca_2d.npy"  # inside projection/
UMAP_MAP = "umap_2d.npy"  # inside projection/
INDEX_DIR = "index"
INDEX = "faiss.index"  # inside index/
ANALYSIS_DIR = "analysis"
DATASET_DIR = "dataset"
DATASET_IMAGES = "images.npy"  # inside dataset/
DATASET_FACTORS = "factors.npz"  # inside dataset/
DATASET_LEVELS = "factor_levels.json"  # inside dataset/
MAP_SNAPSHOTS_DIR = "map_snapshots"
SNAPSHOTS_INDEX = "snapshots.json"  # inside map_snapshots/: step, epoch and file of each snapshot
SNAPSHOT_IDS = "ids.json"  # inside map_snapshots/: the held-out images mapped, in row order
SNAPSHOT_LABELS = "labels.npy"  # inside map_snapshots/: their labels (int64, -1 where unknown)


def vectors(split: str) -> str:
    """embeddings/<split>.npy: the split's vectors (float16; float32 when float16 would lose them)."""
    return f"{split}.npy"


def labels(split: str) -> str:
    """embeddings/<split>_labels.npy: the split's labels (int64, -1 where unknown)."""
    return f"{split}_labels.npy"


def snapshot(step: int) -> str:
    """map_snapshots/step_<step>.npy: the held-out images' 2-D map at that training step (float32)."""
    return f"step_{step:08d}.npy"


def ids(split: str) -> str:
    """embeddings/<split>_ids.json: the split's image ids, in row order."""
    return f"{split}_ids.json"

# (path inside the run folder, written by, what it holds)
RUN_FILES: tuple[tuple[str, str, str], ...] = (
    (CONFIG, "train / import / encode", "the whole RunConfig (every method setting, stored as training starts), library versions and device"),
    (STATUS, "every step", "queued | running | finished | failed | interrupted, pid, stage, error"),
    (LOCK, "the process that has the run", "held (flock) while it trains, post-processes or analyses"),
    (METRICS, "train", "one JSON object per logged step or check"),
    (CHECKPOINT, "train", "the latest training state (atomic; loaded with weights_only=True); in a bundled run, "
                          "the encoder's weights alone (`encoder_checkpoint`: embeds and analyses, cannot resume)"),
    (TRAIN_LOG, "background jobs", "the output of a job started by the app"),
    (NAME, "rename", "the display name a person gave the run"),
    (f"{EMBEDDINGS_DIR}/", "embed", f"{vectors('SPLIT')} (float16), {labels('SPLIT')}, {ids('SPLIT')} (SPLIT: train, test), "
                                     f"{CLASS_NAMES}"),
    (EVAL, "eval", "kNN and linear-probe scores, or label-free scores when there are no labels"),
    (f"{PROJECTION_DIR}/", "project", f"{PCA_MAP} (written first), {UMAP_MAP}, {PARAMS}"),
    (f"{INDEX_DIR}/", "index", f"{INDEX} and {PARAMS} (exact or IVF)"),
    (f"{ANALYSIS_DIR}/", "analyze", "NAME.json (+ NAME.npz) per analysis, job.json, job.log"),
    (f"{MAP_SNAPSHOTS_DIR}/", "train", f"the map as it learns: {snapshot(0).replace('00000000', 'STEP')} per kNN "
                                       f"check, {SNAPSHOTS_INDEX}, {SNAPSHOT_IDS}, {SNAPSHOT_LABELS}"),
    (f"{DATASET_DIR}/", "import", f"imported runs only: {DATASET_IMAGES}, {DATASET_FACTORS}, {DATASET_LEVELS}"),
)


def markdown_table() -> str:
    """RUN_FILES as the Markdown table that docs/architecture.md carries (tests keep them equal)."""
    rows = ["| file | written by | what it holds |", "|---|---|---|"]
    rows += [f"| `{path}` | {writer} | {what} |" for path, writer, what in RUN_FILES]
    return "\n".join(rows)
