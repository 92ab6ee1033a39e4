"""What the map as it learns costs a CPU run, and how well its snapshots stay aligned.

Trains the default config (SimCLR, convnet, `shapes`, kNN check every epoch) four times in this
process, alternating `map_snapshots` 0 and the default (off, on, on, off: drift in the machine's
load hits both alike), and reports the wall-time ratio on / off. On a shared machine that ratio is
noisy, so the runs with snapshots also report the snapshots' own share of their wall time, timed
inside the run (`map_snapshot_s` in metrics.jsonl: the images embedded anew, the layout, the
files). The first `import umap` and the first full UMAP fall inside each run with snapshots, so
fewer epochs than the default 10 overstate the share (an upper bound); the second run with
snapshots finds umap imported already.

Alignment: at each snapshot after the first, the vectors mapped are also laid out by an
independent UMAP (500 epochs, same seed), raw and after Procrustes onto the previous snapshot;
each map's displacement from the previous snapshot is the mean distance a point moved, over the
RMS spread of the previous snapshot.

    python bench/map_snapshots.py --epochs 3
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssl_core.core.config import RunConfig, TrainConfig  # noqa: E402
from ssl_core.steps import map_snapshots  # noqa: E402
from ssl_core.steps.alignment import align_map  # noqa: E402
from ssl_core.steps.projection import project_umap  # noqa: E402
from ssl_core.store.run_store import RunStore  # noqa: E402
from ssl_core.training import knn  # noqa: E402
from ssl_core.training.loop import train  # noqa: E402


def displacement(coords: np.ndarray, previous: np.ndarray) -> float:
    spread = np.sqrt(((previous - previous.mean(axis=0)) ** 2).sum(axis=1).mean())
    return float(np.linalg.norm(coords - previous, axis=1).mean() / spread)


def timed_run(store: RunStore, epochs: int, snapshots: int, seed: int) -> tuple[float, object]:
    config = RunConfig(train=TrainConfig(epochs=epochs, device="cpu", seed=seed, map_snapshots=snapshots))
    run = store.create(config)
    started = time.perf_counter()
    train(run, progress=False)
    return time.perf_counter() - started, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench/results/map_snapshots_cpu.md"))
    parser.add_argument("--png", default=str(ROOT / "bench/results/map_snapshots_three_epochs.png"))
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())

    vectors_seen: list[np.ndarray] = []
    real_take = knn.take_snapshot

    def recording(run, vectors, **kwargs):  # keeps what was mapped, for the alignment comparison
        vectors_seen.append(np.array(vectors))
        return real_take(run, vectors, **kwargs)

    knn.take_snapshot = recording
    default = TrainConfig().map_snapshots
    walls: dict[int, list[float]] = {0: [], default: []}
    shares = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs")
        for snapshots in (0, default, default, 0):
            vectors_seen.clear()
            seconds, run = timed_run(store, args.epochs, snapshots, args.seed)
            walls[snapshots].append(seconds)
            if snapshots:
                spent = [m["map_snapshot_s"] for m in run.read_metrics() if "map_snapshot_s" in m]
                shares.append((sum(spent) / seconds, spent))
                if len(walls[snapshots]) == 1:  # the alignment comparison, from the first run with snapshots
                    snaps, seen = map_snapshots.read_snapshots(run), list(vectors_seen)
        rows = []
        for t in range(1, len(snaps.coords)):
            previous, stored, vectors = snaps.coords[t - 1], snaps.coords[t], seen[t]
            started = time.perf_counter()
            fresh = project_umap(vectors, seed=args.seed)
            fresh_s = time.perf_counter() - started
            rows.append((snaps.epochs[t], displacement(stored, previous), snaps.seconds[t],
                         displacement(fresh, previous), displacement(align_map(fresh, previous), previous), fresh_s))
        labels, names = snaps.labels, snaps.class_names
        picks = sorted({0, len(snaps.coords) // 2, len(snaps.coords) - 1})
        _png(args.png, [snaps.coords[i] for i in picks], [snaps.epochs[i] for i in picks], labels, names)

    off, on = sum(walls[0]), sum(walls[default])
    ratio = on / off
    lines = [
        "# The map as it learns: cost and alignment on a CPU",
        "",
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch "
        f"{torch.__version__}, {time.strftime('%Y-%m-%d')}; the machine was shared with other work.",
        "",
        f"    python bench/map_snapshots.py --epochs {args.epochs}",
        "",
        f"The default config (SimCLR, convnet, `shapes` 20,000 train / 5,000 test, kNN check every epoch), "
        f"{args.epochs} epochs, {default:,} held-out images per snapshot; runs in the order off, on, on, off.",
        "",
        "| run | seconds (in order) |",
        "|---|---|",
        f"| map_snapshots 0 | {walls[0][0]:.1f}, {walls[0][1]:.1f} |",
        f"| map_snapshots {default} | {walls[default][0]:.1f}, {walls[default][1]:.1f} |",
        "",
        f"with / without = **{ratio:.3f}** ({100 * (ratio - 1):+.1f}%). Timed inside the runs with snapshots, "
        f"the snapshots took **{100 * shares[0][0]:.1f}%** and **{100 * shares[1][0]:.1f}%** of their wall time "
        f"(seconds per check: {'; '.join(', '.join(f'{x:.2f}' for x in spent) for _, spent in shares)}; each run's "
        "first is a full 500-epoch UMAP, and the first run's first also `import umap`, once per process).",
        "",
        "## Alignment: how far points move from the previous snapshot (mean move / RMS spread)",
        "",
        "| epoch | stored (warm start + Procrustes) | its seconds | independent UMAP | independent + Procrustes "
        "| independent seconds |",
        "|---|---|---|---|---|---|",
        *[f"| {e:g} | {a:.3f} | {s:.2f} | {b:.3f} | {c:.3f} | {f:.2f} |" for e, a, s, b, c, f in rows],
        "",
        f"Map at three epochs: `{Path(args.png).name}`.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _png(path: str, maps: list[np.ndarray], epochs: list[float], labels: np.ndarray, names: list[str]) -> None:
    import matplotlib  # only for the picture

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # only for the picture

    fig, axes = plt.subplots(1, len(maps), figsize=(4 * len(maps), 4), dpi=80)
    for ax, coords, epoch in zip(np.atleast_1d(axes), maps, epochs):
        # One colour per class (tab20: shapes has 12 classes, which tab10 would repeat).
        ax.scatter(coords[:, 0], coords[:, 1], c=plt.get_cmap("tab20")(labels % 20), s=3, linewidths=0)
        ax.set_title(f"epoch {epoch:g}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{len(labels):,} held-out shapes, coloured by class ({', '.join(names)})", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    from PIL import Image  # only for the picture

    # 64 colours: a small file for the repository (the classes use 12 of them).
    Image.open(buffer).convert("RGB").quantize(colors=64).save(path, optimize=True)


if __name__ == "__main__":
    main()
