"""The kNN check during training: at the end of every `knn_every`-th epoch and at the last step,
the weighted kNN top-1 of held-out images against a sample of the train split, embedded and
scored by the same functions the stored steps use (`steps.embed`, `steps.evaluate`). Where it
cannot run (a folder of unlabelled images), the reason why, said once per run in metrics.jsonl.
"""

from __future__ import annotations

from typing import Any

import torch

from ssl_core.core.config import RunConfig
from ssl_core.data import ImageSet
from ssl_core.data.files import UnreadableImage, head
from ssl_core.models.methods import Method
from ssl_core.steps.embed import embed_images
from ssl_core.steps.evaluate import weighted_knn
from ssl_core.store.runs import Run


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

    def at_epoch_end(self, step: int, method: Method, record: dict[str, Any]) -> dict[str, Any]:
        """`record` (the step's line of metrics.jsonl, or {}) with the check's score, or the
        reason there is none, when a check is due at `step`."""
        every = self.config.train.knn_every
        if not (step % self.steps_per_epoch == 0 and every and (step // self.steps_per_epoch) % every == 0):
            return record
        at = {"step": step, "epoch": step / self.steps_per_epoch}
        if self.skipped is not None:
            if self.noted:
                return record
            self.noted = True  # said once, where the first check would have stood
            return {**at, **record, "knn_skipped": self.skipped}
        try:
            knn = knn_check(method, self.data, self.config, self.device)
        except UnreadableImage:
            if record:  # the step itself is done: keep its line
                self.run.append_metrics(record)
            raise
        method.train()
        return {**at, **record, "knn_top1": knn}

    def at_end(self, step: int, method: Method) -> None:
        """The check at the last step unless an epoch's end just wrote it; or the reason there is
        none, unless said before."""
        at = {"step": step, "epoch": step / max(1, self.steps_per_epoch)}
        if self.skipped is not None:
            if not any("knn_skipped" in m for m in self.run.read_metrics()):
                self.run.append_metrics({**at, "knn_skipped": self.skipped})
        elif not any("knn_top1" in m for m in self.run.read_metrics() if m.get("step") == step):
            self.run.append_metrics({**at, "knn_top1": knn_check(method, self.data, self.config, self.device)})


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


def knn_check(method: Method, data: ImageSet, config: RunConfig, device: torch.device) -> float:
    """Weighted kNN top-1 (k=20) of held-out images against a sample of the train split
    (see `knn_unavailable` for when it cannot run)."""
    train, test = data.train, data.test
    bank = embed_images(method, head(train.images, config.train.knn_max_bank), device=device)
    queries = embed_images(method, head(test.images, config.train.knn_max_queries), device=device)
    return weighted_knn(bank, train.labels[: len(bank)], queries, test.labels[: len(queries)],
                        num_classes=data.num_classes, k=20)
