"""The checks during training: at the end of every `knn_every`-th epoch and at the last step,
the weighted kNN top-1 of held-out images against a sample of the train split, embedded and
scored by the same functions the stored steps use (`steps.embed`, `steps.evaluate`), and the
label-free health of the same held-out embeddings (`steps.health`: alpha-ReQ, and LiDAR over
augmented views of a few of them), with a warning when LiDAR falls as a run collapses. Where the
kNN check cannot run (a folder of unlabelled images), the reason why, said once per run in
metrics.jsonl; the health is still measured. At each check the first `map_snapshots` held-out
images are also mapped, aligned with the check before (`steps.map_snapshots`): the map as it
learns. The queries the kNN check embedded are reused; only the rows past them are embedded anew,
and the snapshots keep to MAP_SHARE of the run's time.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ssl_core.core.config import RunConfig
from ssl_core.data import ImageSet
from ssl_core.data.files import FileImages, UnreadableImage, head, iter_batches
from ssl_core.models import augment
from ssl_core.models.methods import Method
from ssl_core.steps.embed import embed_images
from ssl_core.steps.evaluate import weighted_knn
from ssl_core.steps.health import alpha_req, collapse_warning, lidar
from ssl_core.steps.map_snapshots import MIN_POINTS, start_snapshots, take_snapshot
from ssl_core.store.runs import Run

# LiDAR's surrogate task: this many held-out images, this many augmented views each (the paper
# uses 1,000 x 50 on ImageNet). 2,048 forward passes: 0.6-1.0 s for the convnet on 2 CPU cores,
# 0.4-0.6x the kNN check beside it (1,000 queries against 4,000 train images; `view_embeddings`
# with the two scores and `knn_score` timed on the same random convnet, twice each).
HEALTH_IMAGES = 256
HEALTH_VIEWS = 8
HEALTH_SEED = 0  # the same views at every check, so that the curve follows the network alone
# The map snapshots may take at most this share of the training's wall time: a check skips its
# snapshot while they have taken more (the first and the last are always taken). A default CPU run
# stays under it (bench/results/map_snapshots_cpu.md); on a GPU, where an epoch of CIFAR-10 takes
# ~2 s, the ~0.4 s a snapshot takes on the CPU (measured on 2 cores) would add ~20% at each check.
MAP_SHARE = 0.10


class KnnCheck:
    """The check as the training loop runs it, writing into the run's metrics.jsonl (on the
    process that writes the run folder, `is_main`)."""

    def __init__(self, run: Run, config: RunConfig, data: ImageSet, device: torch.device,
                 is_main: bool, steps_per_epoch: int):
        self.run, self.config, self.data, self.device = run, config, data, device
        self.steps_per_epoch = steps_per_epoch
        self.skipped = knn_unavailable(data, config)  # why no kNN check can run (no labels), or None
        # Said once per run: a resumed run whose metrics already hold the reason does not repeat it.
        self.noted = self.skipped is None or not is_main or any("knn_skipped" in m for m in run.read_metrics())
        self.map_rows = min(config.train.map_snapshots, len(data.test))  # images in each map snapshot
        self.map_started = False
        self.map_spent, self.since = 0.0, time.perf_counter()  # seconds the snapshots took, since when

    def at_epoch_end(self, step: int, method: Method, record: dict[str, Any]) -> dict[str, Any]:
        """`record` (the step's line of metrics.jsonl, or {}) with the check's score, or the
        reason there is none, when a check is due at `step`."""
        every = self.config.train.knn_every
        if not (step % self.steps_per_epoch == 0 and every and (step // self.steps_per_epoch) % every == 0):
            return record
        at = {"step": step, "epoch": step / self.steps_per_epoch}
        note = {}
        if self.skipped is not None and not self.noted:
            self.noted = True  # said once, where the first check would have stood
            note = {"knn_skipped": self.skipped}
        try:
            scores = self.scores(method, step)
        except UnreadableImage:
            if record:  # the step itself is done: keep its line
                self.run.append_metrics(record)
            raise
        method.train()
        return {**at, **record, **note, **scores}

    def scores(self, method: Method, step: int) -> dict[str, Any]:
        """kNN top-1 (when the data has labels) and health of the network as it is now; the map
        snapshot at `step` is stored beside them (its seconds in the record)."""
        queries = embed_images(method, head(self.data.test.images, self.config.train.knn_max_queries),
                               device=self.device)
        out: dict[str, Any] = {}
        if self.skipped is None:
            out["knn_top1"] = knn_score(method, self.data, self.config, self.device, queries)
        out.update(self.health(method, queries.numpy()))
        out.update(self.map_snapshot(method, step, queries))
        return out

    def map_snapshot(self, method: Method, step: int, queries: torch.Tensor) -> dict[str, Any]:
        """Map the first `map_rows` held-out images (reusing the embedded `queries`) and store the
        snapshot; {"map_snapshot_s": seconds it all took}, or {} when snapshots are off. A map that cannot be
        made is said in the record, never an end to the run."""
        if self.map_rows < MIN_POINTS:
            return {}
        started = time.perf_counter()
        last = step >= self.config.train.epochs * self.steps_per_epoch
        if self.map_spent and self.map_spent > MAP_SHARE * (started - self.since) and not last:
            return {}  # over its share of the run's time (MAP_SHARE): the next check may take one
        test = self.data.test
        try:
            if not self.map_started:  # once per process: which images, their labels and class names
                start_snapshots(self.run, list(test.ids[: self.map_rows]), test.labels[: self.map_rows].numpy(),
                                list(self.data.class_names))
                self.map_started = True
        except OSError as e:  # a full disk, say: the training goes on without its map
            return {"map_snapshot_error": str(e)}
        vectors = queries[: self.map_rows]
        if len(vectors) < self.map_rows:  # embed only the rows the kNN check did not
            more = test.images.subset(slice(len(vectors), self.map_rows)) if isinstance(test.images, FileImages) \
                else test.images[len(vectors): self.map_rows]
            vectors = torch.cat([vectors, embed_images(method, more, device=self.device)])
        project = self.config.project
        try:
            take_snapshot(self.run, vectors.numpy(), step=step, epoch=step / max(1, self.steps_per_epoch),
                          seed=self.config.train.seed, n_neighbors=project.n_neighbors, min_dist=project.min_dist)
        except (OSError, ValueError) as e:  # too few distinct points for UMAP, a full disk: training goes on
            return {"map_snapshot_error": str(e)}
        seconds = time.perf_counter() - started  # the rows embedded anew included
        self.map_spent += seconds
        return {"map_snapshot_s": round(seconds, 3)}

    def health(self, method: Method, queries: np.ndarray) -> dict[str, Any]:
        """alpha-ReQ of the held-out embeddings, LiDAR of views of the first HEALTH_IMAGES, and a
        warning when LiDAR has fallen below its share of the run's highest (metrics.jsonl)."""
        if len(queries) < 2:
            return {}
        views = view_embeddings(method, self.data, self.device)
        out: dict[str, Any] = {"alpha_req": round(alpha_req(queries), 4), "lidar": round(lidar(views), 3)}
        peak = max([m["lidar"] for m in self.run.read_metrics() if m.get("lidar") is not None] + [out["lidar"]])
        warning = collapse_warning(out["lidar"], peak, out["alpha_req"])
        if warning:
            out["health_warning"] = warning
        return out

    def at_end(self, step: int, method: Method) -> None:
        """The check at the last step unless an epoch's end just wrote it; or the reason there is
        none, unless said before."""
        at = {"step": step, "epoch": step / max(1, self.steps_per_epoch)}
        metrics = self.run.read_metrics()
        if any(m.get("step") == step and ("knn_top1" in m or "lidar" in m) for m in metrics):
            return
        note = {}
        if self.skipped is not None and not any("knn_skipped" in m for m in metrics):
            note = {"knn_skipped": self.skipped}
        self.run.append_metrics({**at, **note, **self.scores(method, step)})


def knn_unavailable(data: ImageSet, config: RunConfig) -> str | None:
    """Why `knn_check` cannot score this run, or None when it can. A folder of unlabelled images
    (labels -1) is what self-supervised training is for: the check is skipped with this reason
    (a `knn_skipped` line in metrics.jsonl), never an error that ends the run."""
    tc = config.train
    if tc.knn_max_bank < 1 or tc.knn_max_queries < 1:
        return (f"no kNN check: knn_max_bank ({tc.knn_max_bank}) and knn_max_queries "
                f"({tc.knn_max_queries}) must both be at least 1")
    bank_labelled = bool((data.train.labels[: tc.knn_max_bank] >= 0).any())
    queries_labelled = bool((data.test.labels[: tc.knn_max_queries] >= 0).any())
    if not (bank_labelled and queries_labelled):
        where = ("train and test images" if not (bank_labelled or queries_labelled)
                 else "train images" if not bank_labelled else "test images")
        return (f"no labels: dataset '{config.data.dataset}' has no labelled {where} to score a kNN "
                "check against; eval.json gives label-free scores (effective rank, uniformity) instead")
    return None


def knn_score(method: Method, data: ImageSet, config: RunConfig, device: torch.device,
              queries: torch.Tensor) -> float:
    """Weighted kNN top-1 (k=20) of the embedded held-out `queries` (the first of the test split)
    against a sample of the train split (see `knn_unavailable` for when it cannot run)."""
    train, test = data.train, data.test
    bank = embed_images(method, head(train.images, config.train.knn_max_bank), device=device)
    return weighted_knn(bank, train.labels[: len(bank)], queries, test.labels[: len(queries)],
                        num_classes=data.num_classes, k=20)


@torch.no_grad()
def view_embeddings(method: Method, data: ImageSet, device: torch.device) -> np.ndarray:
    """(images, HEALTH_VIEWS, D) representations of augmented views (SimCLR-style crops and
    colour, the same for every method so that runs compare) of the first HEALTH_IMAGES held-out
    images, drawn from HEALTH_SEED without touching the training's random state."""
    images = torch.cat(list(iter_batches(head(data.test.images, HEALTH_IMAGES), HEALTH_IMAGES)))
    was_training = method.training
    method.eval()
    views = []
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(HEALTH_SEED)
        for _ in range(HEALTH_VIEWS):
            x = augment.make_views(images.to(device), augment.ViewConfig(), method.resolution)
            views.append(method.encode(method.normalize(x)).float().cpu())
    method.train(was_training)
    return torch.stack(views, dim=1).numpy()
