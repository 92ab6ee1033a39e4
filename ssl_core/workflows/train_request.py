"""A request to train a new run: what the CLI's `train` and the app's Train page ask for, and the
one check both make before a run folder exists.

    request = TrainRequest(method="byol", dataset="shapes", train={"epochs": 2, "device": "cpu"})
    request.problems()  # [] or every reason it cannot start, one sentence each
    request.config()    # the RunConfig to create; ValueError with the problems

The page lists `problems()` under its form and disables its button; the command refuses with the
same sentences; `jobs.start` asks again, so a request is refused the same way wherever it comes
from. Fields a request leaves out keep the method's recipe (`Method.train_recipe`), else the
defaults of `core.config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.core.runtime import resolve_device, versions
from ssl_core.data import DATASETS, dataset_reference
from ssl_core.models.methods import METHODS, check_compatible
from ssl_core.models.methods.base import method_config, run_kind, train_settings
from ssl_core.steps.readiness import POST_STEPS
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run


@dataclass
class TrainRequest:
    method: str = "simclr"  # a name from `ssl-explorer methods`
    backbone: str = "convnet"  # a name the method trains (`ssl-explorer methods`)
    dataset: str = "shapes"  # a registered name, or a folder path as the person typed it
    method_settings: dict[str, Any] = field(default_factory=dict)  # the method's Config fields (--set)
    data: dict[str, Any] = field(default_factory=dict)  # DataConfig fields to override: resolution, ...
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields to override: epochs, lr, ...
    skip: tuple[str, ...] = ()  # post-training steps not to run (embed, eval, project, index)

    def problems(self) -> list[str]:
        """Why this request cannot start a run, one sentence each; empty when it can."""
        found = _method_problems(self.method, self.backbone, self.method_settings)
        dataset = dataset_problem(self.dataset)
        if dataset is not None:
            found.append(dataset)
        data = _overridden(DataConfig, self.data, found)
        if data is not None:
            found += _data_problems(data)
            if self.method in METHODS and dataset is None:
                reason = METHODS.get(self.method).cannot_learn(dataclasses.replace(data, dataset=self.dataset))
                found += [reason] if reason else []
        train = _overridden(TrainConfig, self.train_fields(), found)
        if train is not None:
            found += _train_problems(train)
        return found + _skip_problems(self.skip)

    def config(self) -> RunConfig:
        """The RunConfig of this request (a folder dataset as its absolute path: later commands
        start elsewhere); ValueError listing `problems()` when there are any."""
        found = self.problems()
        if found:
            raise ValueError(found[0] if len(found) == 1 else "the run cannot start:\n  " + "\n  ".join(found))
        return RunConfig(data=DataConfig(**{**self.data, "dataset": dataset_reference(self.dataset)}),
                         backbone=BackboneConfig(name=self.backbone),
                         method={"name": self.method, **self.method_settings},
                         train=TrainConfig(**self.train_fields()))

    def train_fields(self) -> dict[str, Any]:
        """TrainConfig fields of the run: the method's recipe (`Method.train_recipe`) under what the
        request sets; the rest keep core.config's defaults."""
        return train_settings(self.method, self.train) if self.method in METHODS else dict(self.train)


def dataset_problem(name: str) -> str | None:
    """Why `name` is neither a registered dataset nor a folder on this machine; None when it is one."""
    if not name.strip():
        return "no dataset was given: choose a dataset, or give the path of a folder of images"
    if name in DATASETS or Path(name).expanduser().is_dir():
        return None
    return (f"{DATASETS.unknown_message(name)}; and there is no folder at '{name}' on the machine that "
            "trains: give a dataset's name or the path of a folder of images")


def _method_problems(method: str, backbone: str, settings: dict[str, Any]) -> list[str]:
    try:
        check_compatible(method, backbone)
    except KeyError as e:  # an unknown name: the message lists the known ones
        return [str(e.args[0])]
    except ValueError as e:
        return [str(e)]
    try:
        method_config(method, settings)
    except (TypeError, ValueError) as e:
        return [str(e)]
    return []


def _overridden(kind: type, overrides: dict[str, Any], found: list[str]):
    """`kind` with `overrides` applied, or None (with the reason added to `found`)."""
    known = {f.name for f in dataclasses.fields(kind)} - {"dataset"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        found.append(f"unknown {kind.__name__} setting(s) {unknown}; known: {sorted(known)}")
        return None
    try:
        return kind(**overrides)
    except (TypeError, ValueError) as e:
        found.append(str(e))
        return None


def _device_problem(name: str) -> str | None:
    try:
        resolve_device(name)
    except ValueError as e:
        return str(e)
    except RuntimeError:
        return f"unknown device '{name}'; use auto, cpu, cuda or cuda:N"
    return None


def _train_problems(train: TrainConfig) -> list[str]:
    device = _device_problem(train.device)
    found = [device] if device is not None else []
    found += [f"{name} must be at least 1; got {value}"
             for value, name in ((train.epochs, "epochs"), (train.batch_size, "batch size"),
                                 (train.checkpoint_every, "checkpoint every"))
             if value < 1]
    if not train.lr > 0:
        found.append(f"learning rate must be positive; got {train.lr}")
    found += [f"{name} must be 0 or more; got {value}"
              for value, name in ((train.weight_decay, "weight decay"), (train.warmup_epochs, "warm-up epochs"),
                                  (train.knn_every, "knn every"))
              if value < 0]
    return found


def _data_problems(data: DataConfig) -> list[str]:
    found = [f"resolution must be at least 1; got {data.resolution}"] if data.resolution < 1 else []
    for value, name in ((data.train_size, "train size"), (data.test_size, "test size")):
        if value is not None and value < 1:
            found.append(f"{name} must be at least 1 (or left out for the dataset's default); got {value}")
    return found


def _skip_problems(skip: tuple[str, ...]) -> list[str]:
    unknown = [step for step in skip if step not in POST_STEPS]
    if unknown:
        return [f"unknown step(s) to skip {unknown}; steps after training: {', '.join(POST_STEPS)}"]
    if "embed" in skip and set(skip) != set(POST_STEPS):
        return ["the steps after training read the embeddings: keep 'embed' or skip them all"]
    return []


def create_training_run(store: RunStore, config: RunConfig, command: list[str], **extra: Any) -> Run:
    """The folder of a new training run, the one place that records with its config the library
    versions, the command that made it and the run's kind (trained, or a baseline that never
    trains); `extra` adds more (the device, the number of processes)."""
    return store.create(config, extra={"versions": versions(), "command": list(command),
                                       "kind": run_kind(config.method["name"]), **extra})
