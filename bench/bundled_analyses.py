"""Robustness, label issues and subgroup gaps of the bundled runs, as a user gets them from
`ssl-explorer analyze RUN --only robustness,label_issues`, and how well the label-issue list
finds labels that were made wrong on purpose.

Each bundled run is copied into a temporary runs folder (pretrained/ is never written) and
analysed there: robustness (kNN top-1 of the test images clean and under 7 corruptions x 5
severities), label issues (the neighbours' votes against each image's label) and the subgroup
gaps (kNN top-1 per factor level against the rest). Then `--flip` of the copy's stored labels,
train and test, are changed to another class (seeded) and label issues run again: precision at
the number flipped is the share of the top of the list, that many rows long, that was flipped.
A random ranking gets the flipped share itself.

    python bench/bundled_analyses.py
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssl_core.analyses.runner import not_applicable, run_analyses  # noqa: E402
from ssl_core.store.run_store import RunStore  # noqa: E402


def flip_labels(run, share: float, seed: int) -> np.ndarray:
    """Changes `share` of the run's labelled rows (train then test) to another class; returns
    those rows."""
    folder = run.embeddings_dir
    parts = [np.load(folder / f"{split}_labels.npy") for split in ("train", "test")]
    labels = np.concatenate(parts)
    classes = int(labels.max()) + 1
    rng = np.random.default_rng(seed)
    labelled = np.flatnonzero(labels >= 0)
    flipped = np.sort(rng.choice(labelled, round(share * len(labelled)), replace=False))
    labels[flipped] = (labels[flipped] + rng.integers(1, classes, size=len(flipped))) % classes
    np.save(folder / "train_labels.npy", labels[:len(parts[0])])
    np.save(folder / "test_labels.npy", labels[len(parts[0]):])
    return flipped


def largest_gap(subgroups: dict) -> str:
    levels = subgroups.get("levels") or []
    if not levels:
        return subgroups.get("note", "none")
    worst = levels[0]  # sorted worst gap first
    flag = ", flagged" if worst["flagged"] else ""
    return (f"{worst['factor']} = {worst['level']}: {worst['top1']:.3f} vs {worst['rest_top1']:.3f} "
            f"({worst['gap']:+.3f}{flag}; {subgroups['flagged']} of {subgroups['levels_tested']} levels flagged)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "pretrained")
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bundled_analyses_cpu.md")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs")
        store.root.mkdir(parents=True)
        for source in sorted(p for p in args.runs.iterdir() if (p / "config.json").is_file()):
            shutil.copytree(source, store.root / source.name, ignore=shutil.ignore_patterns("analysis"))
            run = store.get(source.name)
            skipped = not_applicable(run)
            names = [n for n in ("robustness", "label_issues") if n not in skipped]
            started = time.perf_counter()
            results = run_analyses(run, names, device="cpu")["results"]
            seconds = time.perf_counter() - started
            robust = results.get("robustness")
            issues = results.get("label_issues")
            precision = None
            if issues is not None:
                flipped = flip_labels(run, args.flip, args.seed)
                again = run_analyses(run, ["label_issues"], recompute=True, device="cpu")["results"]["label_issues"]
                top = {entry["row"] for entry in again["top_issues"][:len(flipped)]}
                precision = (len(top & set(flipped.tolist())) / len(flipped), len(flipped))
            rows.append((run.id, run.config.method["name"], run.config.backbone.name, robust, issues, precision, seconds,
                         skipped))
            print(f"{source.name}: {seconds:.1f} s", flush=True)

    lines = [
        "# The bundled runs' robustness, label issues and subgroup gaps (CPU)",
        "",
        f"`python bench/bundled_analyses.py` (flip {args.flip:.0%}, seed {args.seed}): {os.cpu_count()} CPU cores "
        f"({platform.machine()}), Python {platform.python_version()}, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after.",
        "",
        "| run | method | backbone | clean kNN top-1 | mean corrupted (mCA) | mCA / clean | label-issue precision at the number flipped | rows flagged as issues (unflipped labels) | largest subgroup gap | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for run_id, method, backbone, robust, issues, precision, seconds, skipped in rows:
        if robust is None:
            clean = mca = ratio = f"n/a ({skipped.get('robustness', '')})"
        else:
            clean, mca = f"{robust['clean_top1']:.3f}", f"{robust['mean_corruption_top1']:.3f}"
            ratio = f"{robust['mean_corruption_top1'] / robust['clean_top1']:.2f}" if robust["clean_top1"] else "-"
        if issues is None:
            found = flagged = gap = f"n/a ({skipped.get('label_issues', '')})"
        else:
            found = f"{precision[0]:.2f} ({round(precision[0] * precision[1])} of {precision[1]})"
            flagged = f"{issues['issues']['flagged']} ({issues['issues']['flagged_share']:.1%})"
            gap = largest_gap(issues["subgroups"])
        lines.append(f"| {run_id} | {method} | {backbone} | {clean} | {mca} | {ratio} | "
                     f"{found} | {flagged} | {gap} | {seconds:.1f} |")
    lines += [
        "",
        f"Precision: {args.flip:.0%} of each run's labelled rows (train and test) given another class at random, "
        "then the share of the list's top rows, as many as were flipped, that were flipped; a random ranking "
        f"scores {args.flip:.2f}. Rows flagged: confident learning's count on the labels as shipped. The gap: "
        "the factor level whose kNN top-1 is furthest below the test rows at the factor's other levels. "
        "Seconds: both analyses on the labels as shipped.",
        "",
        "The list is only as good as the embedding whose neighbours vote: its precision follows the run's kNN "
        "top-1, and on a weak embedding confident learning flags most rows (its neighbours disagree with the "
        "labels everywhere), which the Clusters page says under a kNN top-1 of 0.9. The clean top-1 here is "
        "the robustness analysis's, on its seeded sample of test images.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
