"""Time generating the `shapes` dataset: 20,000 train images at 32 px (the default size).

Run: python bench/data_shapes.py [--resolution 32] [--n 20000]
The target is under 10 s on one CPU core; rendering is single-threaded numpy.
"""

import argparse
import time

from ssl_core.core.config import DataConfig
from ssl_core.data import load_dataset

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--resolution", type=int, default=32)
parser.add_argument("--n", type=int, default=20_000, help="train images to generate")
parser.add_argument("--repeats", type=int, default=3, help="the best of this many runs is reported")
args = parser.parse_args()

cfg = DataConfig(dataset="shapes", resolution=args.resolution, train_size=args.n, test_size=0)
times = []
for _ in range(args.repeats):
    start = time.perf_counter()
    images = load_dataset(cfg)
    times.append(time.perf_counter() - start)
best = min(times)
print(
    f"shapes: {len(images)} images at {args.resolution}px in {best:.2f} s "
    f"(best of {args.repeats}), {len(images) / best:,.0f} images/s"
)
