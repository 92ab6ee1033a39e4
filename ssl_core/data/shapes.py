"""`shapes`: a procedurally generated dataset whose every generative factor is known.

Each image holds one of 12 shapes, drawn with a random colour, scale, rotation and position
over one of 5 background textures. The label is the shape; the other draws are stored as
factors, so the app can show which of them a representation keeps (colour, position...) and
which it discards. Nothing is downloaded: the whole set is a function of `DataConfig.seed`.

Rendering is vectorised with numpy: every shape is a signed-distance function (negative inside)
evaluated on each image's own rotated, scaled and shifted pixel grid, and turned into an
anti-aliased coverage with clip(0.5 - distance / pixel, 0, 1). 20,000 images at 32 px take
about 2 s on one core (see bench/data_shapes.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ssl_core.core.config import DataConfig
from ssl_core.data import DATASETS
from ssl_core.data.imageset import ImageSet

DEFAULT_TRAIN_SIZE = 20_000
DEFAULT_TEST_SIZE = 5_000
MIN_RESOLUTION = 16  # below this the smaller shapes are a few pixels and blur into each other
SCALE_RANGE = (0.18, 0.40)  # shape radius as a fraction of the image side
BATCH = 512  # images rendered at once: big enough for numpy, small enough to stay in cache

# --- Signed distance functions --------------------------------------------------------------
# Coordinates are the shape's own frame, y pointing down as in the image. Every shape fits the
# unit disc and reaches close to its rim, so `scale` means the same size for all of them.
# After Inigo Quilez's 2D distance functions (https://iquilezles.org/articles/distfunctions2d/);
# some are exact only near the edge, which is all the anti-aliasing needs.
Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _box(x: np.ndarray, y: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    dx, dy = np.abs(x) - half_w, np.abs(y) - half_h
    outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
    return outside + np.minimum(np.maximum(dx, dy), 0)


def _edge(
    x: np.ndarray, y: np.ndarray, a: tuple[float, float], b: tuple[float, float]
) -> np.ndarray:
    """Distance to the segment a-b, negative on the side of its line that holds the origin."""
    ex, ey = b[0] - a[0], b[1] - a[1]
    px, py = x - a[0], y - a[1]
    t = np.clip((px * ex + py * ey) / (ex * ex + ey * ey), 0, 1)
    dist = np.hypot(px - t * ex, py - t * ey)
    # A point is on the origin's side when cross(edge, point - a) has the origin's sign.
    origin_side = ey * a[0] - ex * a[1] > 0
    return np.where((ex * py - ey * px > 0) == origin_side, -dist, dist)


def _fold(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Use n-fold mirror symmetry: map a point to the wedge of angles [0, pi / n]."""
    wedge = 2 * np.pi / n
    angle = np.mod(np.arctan2(y, x), wedge)
    angle = np.minimum(angle, wedge - angle)
    radius = np.hypot(x, y)
    return radius * np.cos(angle), radius * np.sin(angle)


def _polygon(n: int) -> Sdf:
    """Regular n-gon with circumradius 1: in the folded wedge one edge decides the distance."""
    corner = (float(np.cos(2 * np.pi / n)), float(np.sin(2 * np.pi / n)))
    return lambda x, y: _edge(*_fold(x, y, n), (1.0, 0.0), corner)


def _star(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Five points at radius 1, inner corners at radius 0.45."""
    inner = (0.45 * float(np.cos(np.pi / 5)), 0.45 * float(np.sin(np.pi / 5)))
    return _edge(*_fold(x, y, 5), (1.0, 0.0), inner)


def _circle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.hypot(x, y) - 1.0


def _ring(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(np.hypot(x, y) - 0.72) - 0.28


def _cross(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.minimum(_box(x, y, 0.95, 0.3), _box(x, y, 0.3, 0.95))


def _diamond(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Elongated: a square already covers the 45-degree-turned square under random rotation.
    return _edge(np.abs(x), np.abs(y), (1.0, 0.0), (0.0, 0.55))


def _crescent(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum(np.hypot(x, y) - 1.0, 0.85 - np.hypot(x - 0.45, y))


def _heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Quilez's heart has its tip at (0, 0) and lobes up to y = 1.1 (y up); shift and scale it
    # so it is centred on the unit disc (its lobes reach 0.674 from (0, 0.55)), tip down.
    k = 0.68
    hx, hy = np.abs(x) * k, 0.55 - y * k
    lobe = np.hypot(hx - 0.25, hy - 0.75) - np.sqrt(2) / 4
    s = np.maximum(hx + hy, 0) * 0.5
    nearest = np.minimum(hx**2 + (hy - 1) ** 2, (hx - s) ** 2 + (hy - s) ** 2)
    body = np.sqrt(nearest) * np.sign(hx - hy)
    return np.where(hx + hy > 1, lobe, body) / k


def _arrow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shaft = _box(x + 0.35, y, 0.55, 0.2)
    # Head: the triangle (1, 0), (0.15, +-0.55), as the intersection of the half-planes
    # inside its two slanted edges (one after folding y) and its flat base.
    nx, ny = 0.55 / np.hypot(0.55, 0.85), 0.85 / np.hypot(0.55, 0.85)
    head = np.maximum((x - 1.0) * nx + np.abs(y) * ny, 0.15 - x)
    return np.minimum(shaft, head)


SHAPES: dict[str, Sdf] = {
    "circle": _circle,
    "square": _polygon(4),
    "triangle": _polygon(3),
    "pentagon": _polygon(5),
    "hexagon": _polygon(6),
    "star": _star,
    "cross": _cross,
    "ring": _ring,
    "heart": _heart,
    "crescent": _crescent,
    "diamond": _diamond,
    "arrow": _arrow,
}
CLASS_NAMES = tuple(SHAPES)
BACKGROUNDS = ("plain", "stripes", "checker", "noise", "gradient")


# --- Random draws ---------------------------------------------------------------------------


def draw_scenes(n: int, seed_seq: np.random.SeedSequence, max_rotation: float = 360.0) -> dict[str, np.ndarray]:
    """Draw every random choice for n images: labels and factors, arrays of length n.

    Shapes turn uniformly all the way round; with `max_rotation` under 360 degrees they turn
    within +-max_rotation / 2 of upright instead (rotation prediction needs an "up").

    Both draws fill arrays row by row, so the first k images are the same whatever n is.
    """
    label_seq, param_seq = seed_seq.spawn(2)
    n_classes = len(CLASS_NAMES)
    # Each block of 12 images holds every shape once, in random order: classes stay balanced.
    blocks = np.random.default_rng(label_seq).random((-(-n // n_classes), n_classes))
    labels = np.argsort(blocks, axis=1).ravel()[:n]

    u = np.random.default_rng(param_seq).random((n, 14)).T
    scale = SCALE_RANGE[0] + (SCALE_RANGE[1] - SCALE_RANGE[0]) * u[0]
    margin = 0.9 * scale  # the centre stays this far from the border: a shape may clip by 10%
    hue = u[1]
    return {
        "label": labels,
        "color_hue": hue,
        "scale": scale,
        "rotation": 360.0 * u[2] if max_rotation >= 360 else np.mod(max_rotation * (u[2] - 0.5), 360.0),
        "pos_x": margin + (1 - 2 * margin) * u[3],
        "pos_y": margin + (1 - 2 * margin) * u[4],
        "background": np.minimum((u[5] * len(BACKGROUNDS)).astype(np.int64), len(BACKGROUNDS) - 1),
        # The shape is vivid and bright; the background takes a hue at least 0.25 away and is
        # darker, so the shape always stands out in both hue and brightness.
        "saturation": 0.65 + 0.35 * u[6],
        "value": 0.75 + 0.25 * u[7],
        "bg_hue": np.mod(hue + 0.25 + 0.5 * u[8], 1.0),
        "bg_saturation": 0.6 * u[9],
        "bg_value": 0.08 + 0.3 * u[10],
        "bg_contrast": 0.12 + 0.18 * u[11],  # brightness step between the two texture colours
        "texture_angle": 2 * np.pi * u[12],
        "texture_freq": 2.0 + 3.0 * u[13],  # stripe or checker periods across the image
    }


# --- Rendering ------------------------------------------------------------------------------


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB: arrays (N,) in [0, 1] -> (N, 3) in [0, 1]."""
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h[:, None] * 6, 6)
    return v[:, None] - (v * s)[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def _texture(scenes: dict[str, np.ndarray], gx: np.ndarray, gy: np.ndarray, rng) -> np.ndarray:
    """Per-pixel mix between the two background colours, (B, R, R) in [0, 1]."""
    b, r = len(scenes["background"]), gx.shape[-1]
    mix = np.zeros((b, r, r), np.float32)
    angle, freq = scenes["texture_angle"][:, None, None], scenes["texture_freq"][:, None, None]
    along = (gx - 0.5) * np.cos(angle) + (gy - 0.5) * np.sin(angle)
    across = -(gx - 0.5) * np.sin(angle) + (gy - 0.5) * np.cos(angle)
    kind = scenes["background"]
    for code, name in enumerate(BACKGROUNDS):
        at = kind == code
        if name == "stripes":
            mix[at] = 0.5 + 0.5 * np.sin(2 * np.pi * freq[at] * along[at])
        elif name == "checker":
            mix[at] = np.mod(np.floor(freq[at] * along[at]) + np.floor(freq[at] * across[at]), 2)
        elif name == "noise":
            mix[at] = rng.random((int(at.sum()), r, r), dtype=np.float32)
        elif name == "gradient":
            mix[at] = np.clip(0.5 + along[at], 0, 1)
    return mix


def _pixel_grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in [0, 1] image coordinates, shaped to broadcast as (1, 1, R) and (1, R, 1)."""
    grid = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution
    return grid[None, None, :], grid[None, :, None]


def _coverage(batch: dict[str, np.ndarray], resolution: int, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """How much of each pixel the shape covers, (B, R, R) float32 in [0, 1] (anti-aliased)."""
    # Each image's grid in its shape's frame: shifted to the centre, turned by -rotation
    # (so the shape turns by +rotation) and divided by the radius.
    theta = np.deg2rad(batch["rotation"]).astype(np.float32)[:, None, None]
    inv_scale = (1 / batch["scale"]).astype(np.float32)[:, None, None]
    dx = gx - batch["pos_x"].astype(np.float32)[:, None, None]
    dy = gy - batch["pos_y"].astype(np.float32)[:, None, None]
    cos, sin = np.cos(theta) * inv_scale, np.sin(theta) * inv_scale
    local_x = dx * cos + dy * sin
    local_y = dy * cos - dx * sin

    coverage = np.empty((len(batch["label"]), resolution, resolution), np.float32)
    for label, sdf in enumerate(SHAPES.values()):
        at = batch["label"] == label
        if at.any():
            # Distance in pixels = shape-frame distance * radius * resolution.
            pixels = sdf(local_x[at], local_y[at]) / inv_scale[at] * resolution
            coverage[at] = np.clip(0.5 - pixels, 0, 1)
    return coverage


def render(
    scenes: dict[str, np.ndarray], resolution: int, noise_seq: np.random.SeedSequence
) -> np.ndarray:
    """Draw the scenes from `draw_scenes` as uint8 images (N, R, R, 3)."""
    n = len(scenes["label"])
    out = np.empty((n, resolution, resolution, 3), np.uint8)
    noise_rng = np.random.default_rng(noise_seq)
    gx, gy = _pixel_grid(resolution)
    for start in range(0, n, BATCH):
        batch = {k: v[start : start + BATCH] for k, v in scenes.items()}
        b = len(batch["label"])
        coverage = _coverage(batch, resolution, gx, gy)

        fg = _hsv_to_rgb(batch["color_hue"], batch["saturation"], batch["value"])
        bg1 = _hsv_to_rgb(batch["bg_hue"], batch["bg_saturation"], batch["bg_value"])
        bg2 = _hsv_to_rgb(
            batch["bg_hue"], batch["bg_saturation"], batch["bg_value"] + batch["bg_contrast"]
        )
        mix = _texture(batch, gx, gy, noise_rng)[..., None]
        fg, bg1, bg2 = (c.astype(np.float32)[:, None, None, :] for c in (fg, bg1, bg2))
        background = bg1 + (bg2 - bg1) * mix
        image = background + (fg - background) * coverage[..., None]
        out[start : start + b] = (image * 255 + 0.5).astype(np.uint8)
    return out


def scene_masks(scenes: dict[str, np.ndarray], resolution: int) -> np.ndarray:
    """The shape's coverage of every pixel of the scenes from `draw_scenes`, (N, R, R) float32
    in [0, 1]: exactly the mask `render` blends the shape's colour with (1 inside, 0 outside,
    fractional on the anti-aliased edge)."""
    n = len(scenes["label"])
    out = np.empty((n, resolution, resolution), np.float32)
    gx, gy = _pixel_grid(resolution)
    for start in range(0, n, BATCH):
        batch = {k: v[start : start + BATCH] for k, v in scenes.items()}
        out[start : start + len(batch["label"])] = _coverage(batch, resolution, gx, gy)
    return out


# --- The dataset ----------------------------------------------------------------------------

FACTORS = ("color_hue", "scale", "rotation", "pos_x", "pos_y", "background")


def _split_sizes(cfg: DataConfig) -> dict[str, int]:
    sizes = {
        "train": DEFAULT_TRAIN_SIZE if cfg.train_size is None else cfg.train_size,
        "test": DEFAULT_TEST_SIZE if cfg.test_size is None else cfg.test_size,
    }
    for split, size in sizes.items():
        if size < 0:
            raise ValueError(f"shapes {split}_size must be >= 0; got {size}")
    return sizes


def shape_masks(cfg: DataConfig) -> np.ndarray:
    """Each image's shape mask, (N, R, R) float32 coverage in [0, 1], in the dataset's order
    (train then test) as `load_shapes(cfg)` renders the images: the ground truth of where the
    object is, for measuring where an encoder looks."""
    if cfg.dataset != "shapes":
        raise ValueError(f"shape masks exist only for the shapes dataset; got '{cfg.dataset}'")
    if cfg.resolution < MIN_RESOLUTION:
        raise ValueError(f"shapes needs resolution >= {MIN_RESOLUTION}; got {cfg.resolution}")
    masks = []
    for split_seq, size in zip(np.random.SeedSequence(cfg.seed).spawn(2), _split_sizes(cfg).values()):
        scene_seq, _ = split_seq.spawn(2)
        masks.append(scene_masks(draw_scenes(size, scene_seq, cfg.max_rotation), cfg.resolution))
    return np.concatenate(masks)


@DATASETS.register("shapes")
def load_shapes(cfg: DataConfig) -> ImageSet:
    """12 shape classes; factors color_hue, scale, rotation, pos_x, pos_y and background.

    Train and test come from separate random streams of `cfg.seed`, so the test size never
    changes the train images (and the first k images of a split never depend on its size).
    """
    if cfg.resolution < MIN_RESOLUTION:
        raise ValueError(f"shapes needs resolution >= {MIN_RESOLUTION}; got {cfg.resolution}")
    sizes = _split_sizes(cfg)
    images, scenes = [], []
    for split_seq, size in zip(np.random.SeedSequence(cfg.seed).spawn(2), sizes.values()):
        scene_seq, noise_seq = split_seq.spawn(2)
        scenes.append(draw_scenes(size, scene_seq, cfg.max_rotation))
        images.append(render(scenes[-1], cfg.resolution, noise_seq))

    n_train, n_test = sizes["train"], sizes["test"]
    return ImageSet(
        name="shapes",
        images=torch.from_numpy(np.concatenate(images)),
        labels=torch.from_numpy(np.concatenate([s["label"] for s in scenes]).astype(np.int64)),
        is_train=torch.cat(
            [torch.ones(n_train, dtype=torch.bool), torch.zeros(n_test, dtype=torch.bool)]
        ),
        ids=tuple(f"train/{i}" for i in range(n_train)) + tuple(f"test/{i}" for i in range(n_test)),
        class_names=CLASS_NAMES,
        factors={k: np.concatenate([s[k] for s in scenes]) for k in FACTORS},
        factor_levels={"background": BACKGROUNDS},
    )
