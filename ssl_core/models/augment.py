"""Batched image augmentations that run on whatever device the images are on.

Every op takes a float batch (B, 3, H, W) in [0, 1] and returns one of the same kind, drawing
its own random parameters for each image from the global torch RNG (so `torch.manual_seed`
makes views reproducible). Nothing loops over images in Python and nothing reads a tensor back
to the host, so the same code serves the CPU and a GPU without synchronising: at batch 256 and
32 px, `make_views` takes a few milliseconds on two CPU cores (see bench/augment.py).

How each op stays batched:
- crops and flips are one `grid_sample` over per-image sampling grids (the crop is axis-aligned,
  so the grid is an outer product of a row and a column of coordinates);
- brightness, contrast, saturation, hue and grayscale are 3x3 colour matrices (plus an offset
  for contrast), applied to all pixels of an image by one batched matrix product; hue turns
  the chroma plane of YIQ space, a linear stand-in for the HSV hue shift of torchvision;
- blur is a separable convolution with one kernel per image, as a grouped convolution.

The semantics follow torchvision's RandomResizedCrop, ColorJitter, RandomGrayscale,
GaussianBlur and RandomSolarize, which the SimCLR/BYOL/DINO recipes are written against.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R 601 luma weights, as in torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)
# RGB -> YIQ (rows: Y, I, Q) and back; inverted once here so no op calls a linalg routine.
_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.59590059, -0.27455667, -0.32134392),
    (0.21153661, -0.52273617, 0.31119955),
)
_YIQ_TO_RGB = tuple(
    map(tuple, torch.linalg.inv(torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)).tolist())
)


@functools.lru_cache(maxsize=32)
def _constant(values: tuple, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A small constant tensor, made once per device and dtype (never modify it in place).

    `torch.tensor(..., device="cuda")` on every call would be a blocking host-to-device copy,
    which makes the host wait for the GPU's queue to drain.
    """
    return torch.tensor(values, device=device, dtype=dtype)


def to_float(images_u8: Tensor) -> Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [0, 1], in channels_last memory format."""
    if images_u8.dtype != torch.uint8 or images_u8.ndim != 4 or images_u8.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 images (B, H, W, 3); got {images_u8.dtype} {tuple(images_u8.shape)}"
        )
    # The permuted view is channels_last already; .float() keeps those strides, so no copy.
    return images_u8.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """(x - mean) / std per channel; mean and std hold 3 values (sequences or tensors)."""
    mean_t = _as_channel_values(mean, x).reshape(1, -1, 1, 1)
    std_t = _as_channel_values(std, x).reshape(1, -1, 1, 1)
    if mean_t.shape[1] != x.shape[1] or std_t.shape[1] != x.shape[1]:
        raise ValueError(
            f"mean and std need {x.shape[1]} values (one per channel); "
            f"got {mean_t.shape[1]} and {std_t.shape[1]}"
        )
    return (x - mean_t) / std_t


def _as_channel_values(values: Sequence[float] | Tensor, x: Tensor) -> Tensor:
    if isinstance(values, Tensor):
        return values.to(device=x.device, dtype=x.dtype)
    return _constant(tuple(float(v) for v in values), x.device, x.dtype)


# --------------------------------------------------------------------------- geometry


def random_resized_crop(
    x: Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.0,
) -> Tensor:
    """Crop a random box from each image and resize it to (size, size), bilinearly.

    As torchvision's RandomResizedCrop: the box covers a fraction of the image area drawn from
    `scale` and has a width/height ratio drawn log-uniformly from `ratio`; of 10 tries per image
    the first that fits is used, else the centred box of the clamped ratio. Boxes are placed at
    continuous (sub-pixel) positions. `flip_p` mirrors each output horizontally with that
    probability at no extra cost (the flip is folded into the sampling grid).

    Bilinear sampling does not low-pass filter, so shrinking a box by much more than 2x (a large
    image to a small `size`) aliases; at equal image and view sizes the crop only enlarges.
    """
    _check_images(x)
    _check_p(flip_p, "flip_p")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must satisfy 0 < min <= max; got {scale}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < min <= max; got {ratio}")
    batch, _, height, width = x.shape
    dev = x.device
    tries = 10

    area = torch.empty(batch, tries, device=dev).uniform_(scale[0], scale[1])
    log_r = torch.empty(batch, tries, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r)
    # Box sides as fractions of the image sides: w*h = area*H*W and w/h = aspect in pixels.
    w_frac = torch.sqrt(area * aspect * (height / width))
    h_frac = torch.sqrt(area / aspect * (width / height))
    fits = (w_frac <= 1) & (h_frac <= 1)
    first = fits.int().argmax(dim=1, keepdim=True)  # first fitting try (0 if none fits)
    w_frac = w_frac.gather(1, first).squeeze(1)
    h_frac = h_frac.gather(1, first).squeeze(1)
    fallback_w, fallback_h = _fallback_box(height, width, ratio)
    any_fit = fits.any(dim=1)
    w_frac = torch.where(any_fit, w_frac, torch.full_like(w_frac, fallback_w))
    h_frac = torch.where(any_fit, h_frac, torch.full_like(h_frac, fallback_h))

    # Box centres in [-1, 1] grid coordinates, uniform over the positions that keep it inside.
    cx = (torch.rand(batch, device=dev) * 2 - 1) * (1 - w_frac)
    cy = (torch.rand(batch, device=dev) * 2 - 1) * (1 - h_frac)
    flip = torch.rand(batch, device=dev) < flip_p
    sx = torch.where(flip, -w_frac, w_frac)
    return _sample_boxes(x, size, cx, cy, sx, h_frac)


def random_flip(x: Tensor, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability p."""
    _check_images(x)
    _check_p(p, "p")
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
    return torch.where(flip, x.flip(-1), x)


def _fallback_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[float, float]:
    """torchvision's box when no try fits: the whole image, its ratio clamped to `ratio`."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return 1.0, in_ratio / ratio[0]
    if in_ratio > ratio[1]:
        return ratio[1] / in_ratio, 1.0
    return 1.0, 1.0


def _sample_boxes(x: Tensor, size: int, cx: Tensor, cy: Tensor, sx: Tensor, sy: Tensor) -> Tensor:
    """Bilinearly resample the box centred at (cx, cy) with half-sides (sx, sy), all in grid
    coordinates ([-1, 1] spans the image), to (size, size). A negative sx mirrors the box."""
    batch = x.shape[0]
    # Output pixel centres in [-1, 1] (align_corners=False convention), shared by rows/columns.
    base = (torch.arange(size, device=x.device, dtype=x.dtype) * 2 + 1) / size - 1
    gx = cx[:, None] + sx[:, None] * base  # (B, size): x coordinate of each output column
    gy = cy[:, None] + sy[:, None] * base  # (B, size): y coordinate of each output row
    # Building the grid by hand is ~10x cheaper on the CPU than F.affine_grid for this shape.
    grid = torch.stack(
        (gx[:, None, :].expand(batch, size, size), gy[:, :, None].expand(batch, size, size)), dim=-1
    )
    # "border" keeps samples between the last pixel centre and the image edge from mixing in
    # the zeros of the default padding.
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --------------------------------------------------------------------------- colour


def color_jitter(
    x: Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 0.8,
) -> Tensor:
    """With probability p per image, jitter brightness, contrast, saturation and hue.

    As torchvision's ColorJitter: factors are drawn uniformly from [max(0, 1 - b), 1 + b] (and
    likewise for contrast and saturation), the hue shift from [-hue, hue] of a full turn, the
    four adjustments are applied in a random order (here one order per image) and the result is
    clamped to [0, 1] after each. The hue shift turns colours in YIQ space instead of HSV: it is
    linear, so all four adjustments are 3x3 colour matrices applied with batched matmuls.
    """
    _check_images(x)
    _check_p(p, "p")
    for name, value in {"brightness": brightness, "contrast": contrast, "saturation": saturation}.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0; got {value}")
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5]; got {hue}")
    batch = x.shape[0]
    dev, dtype = x.device, x.dtype
    apply = torch.rand(batch, device=dev) < p

    def factor(strength: float) -> Tensor:
        drawn = torch.empty(batch, device=dev, dtype=dtype)
        drawn.uniform_(max(0.0, 1 - strength), 1 + strength)
        return torch.where(apply, drawn, torch.ones_like(drawn))

    b, c, s = factor(brightness), factor(contrast), factor(saturation)
    h = torch.empty(batch, device=dev, dtype=dtype).uniform_(-hue, hue)
    h = torch.where(apply, h, torch.zeros_like(h))

    eye = torch.eye(3, device=dev, dtype=dtype)
    luma = _constant(_LUMA, dev, dtype)
    gray = torch.ones(3, 1, device=dev, dtype=dtype) * luma  # rows all equal to the luma weights
    mats = torch.stack(
        (
            b[:, None, None] * eye,  # brightness: scale
            c[:, None, None] * eye,  # contrast: scale, plus an offset toward the mean gray below
            s[:, None, None] * eye + (1 - s)[:, None, None] * gray,  # saturation: blend with gray
            _hue_matrices(h),
        ),
        dim=1,
    )  # (B, 4, 3, 3)
    order = torch.rand(batch, 4, device=dev).argsort(dim=1)  # per-image order of the 4 ops
    rows = torch.arange(batch, device=dev)
    flat = x.reshape(batch, 3, -1)  # copies if channels_last; bmm wants (B, 3, HW) contiguous
    for step in range(4):
        op = order[:, step]
        # Contrast blends with the mean gray of the image as it is at this step.
        mean_gray = flat.mean(dim=2) @ luma  # (B,)
        offset = torch.where(op == 1, (1 - c) * mean_gray, torch.zeros_like(mean_gray))
        # bmm then an in-place add: baddbmm would first copy the broadcast offset to a full image.
        flat = torch.bmm(mats[rows, op], flat).add_(offset[:, None, None]).clamp_(0, 1)
    return flat.view(x.shape)


def random_grayscale(x: Tensor, p: float = 0.2) -> Tensor:
    """Replace each image, with probability p, by its luma repeated on the 3 channels."""
    _check_images(x)
    _check_p(p, "p")
    batch = x.shape[0]
    luma = _constant(_LUMA, x.device, x.dtype)
    to_gray = torch.ones(3, 1, device=x.device, dtype=x.dtype) * luma  # every row: the luma weights
    eye = torch.eye(3, device=x.device, dtype=x.dtype)
    apply = torch.rand(batch, 1, 1, device=x.device) < p
    # One colour matrix per image (gray or identity) is cheaper than a full-size torch.where.
    mats = torch.where(apply, to_gray, eye)
    return torch.bmm(mats, x.reshape(batch, 3, -1)).clamp_(0, 1).view(x.shape)


def solarize(x: Tensor, p: float = 0.0, threshold: float = 0.5) -> Tensor:
    """With probability p per image, invert the values at or above `threshold` (v -> 1 - v)."""
    _check_images(x)
    _check_p(p, "p")
    apply = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
    # Images left alone get a threshold no value reaches, so one comparison covers both cases.
    cut = torch.where(apply, threshold, 2.0).to(x.dtype)
    return torch.where(x >= cut, 1 - x, x)


def _hue_matrices(h: Tensor) -> Tensor:
    """(B,) hue shifts in turns -> (B, 3, 3) RGB matrices that turn the YIQ chroma plane."""
    to_yiq = _constant(_RGB_TO_YIQ, h.device, h.dtype)
    from_yiq = _constant(_YIQ_TO_RGB, h.device, h.dtype)
    # Negative angle: turns the same way as an HSV hue increase (red -> yellow -> green).
    angle = h * (-2 * math.pi)
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(h), torch.zeros_like(h)
    rot = torch.stack((one, zero, zero, zero, cos, -sin, zero, sin, cos), dim=1).view(-1, 3, 3)
    return from_yiq @ rot @ to_yiq


# --------------------------------------------------------------------------- filters


def gaussian_blur(
    x: Tensor,
    p: float = 0.5,
    sigma: tuple[float, float] = (0.1, 2.0),
    kernel_size: int | None = None,
) -> Tensor:
    """With probability p per image, blur with a Gaussian whose sigma (in pixels) is drawn
    uniformly from `sigma`.

    The kernel spans 3 sigma of the largest sigma each side unless `kernel_size` (odd) is given,
    capped by the image size; edges are reflected, as in torchvision's GaussianBlur. One
    separable pass per axis, all images at once, as a grouped convolution with a kernel per
    image (images that are not blurred get a unit impulse).
    """
    _check_images(x)
    _check_p(p, "p")
    if not 0 < sigma[0] <= sigma[1]:
        raise ValueError(f"sigma must satisfy 0 < min <= max; got {sigma}")
    if kernel_size is not None and (kernel_size < 1 or kernel_size % 2 == 0):
        raise ValueError(f"kernel_size must be a positive odd number; got {kernel_size}")
    batch, channels, height, width = x.shape
    dev, dtype = x.device, x.dtype
    radius = kernel_size // 2 if kernel_size is not None else math.ceil(3 * sigma[1])
    radius = min(radius, height - 1, width - 1)  # reflect padding needs radius < side
    if radius == 0:
        return x

    sig = torch.empty(batch, device=dev, dtype=dtype).uniform_(sigma[0], sigma[1])
    taps = torch.arange(-radius, radius + 1, device=dev, dtype=dtype)
    # Far taps of a narrow kernel would be denormal floats, which slow the CPU ~10x: clamp the
    # exponent and zero what is negligible.
    kernel = torch.exp((-(taps[None, :] ** 2) / (2 * sig[:, None] ** 2)).clamp_(min=-30))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = torch.where(kernel > 1e-7, kernel, torch.zeros_like(kernel))
    impulse = (taps == 0).to(dtype).expand_as(kernel)
    apply = torch.rand(batch, 1, device=dev) < p
    kernel = torch.where(apply, kernel, impulse)
    kernel = kernel.repeat_interleave(channels, dim=0)  # (B*C, K): one kernel per image channel

    groups = batch * channels
    y = x.reshape(1, groups, height, width)
    y = F.pad(y, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, kernel.view(groups, 1, 1, -1), groups=groups)  # along rows
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(groups, 1, -1, 1), groups=groups)  # along columns
    return y.view(batch, channels, height, width).clamp_(0, 1)


# --------------------------------------------------------------------------- pipeline


@dataclass
class ViewConfig:
    """One view's augmentation recipe. Defaults: SimCLR's CIFAR-10 recipe (Chen et al. 2020,
    appendix B.9: colour strength 0.5, no blur) with the crop scale of solo-learn's and
    lightly's CIFAR setups (0.2 rather than 0.08)."""

    # Box area fraction: 0.08 on ImageNet; at 32 px, 0.2 keeps enough of the object.
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # box width/height, drawn log-uniformly
    flip_p: float = 0.5  # probability of a horizontal flip
    jitter_p: float = 0.8  # probability that colour jitter is applied to an image at all
    brightness: float = 0.4  # factor range [1-b, 1+b]; SimCLR: 0.8 x colour strength (0.5)
    contrast: float = 0.4  # factor range [1-c, 1+c]
    saturation: float = 0.4  # factor range [1-s, 1+s]
    hue: float = 0.1  # shift range [-hue, hue] of a full turn; SimCLR: 0.2 x colour strength
    grayscale_p: float = 0.2  # probability of dropping colour; forces shape over colour cues
    # SimCLR blurs ImageNet views (p=0.5) but not CIFAR's: 32 px has little detail to spare.
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # in pixels; ImageNet's range, scale it at 32 px
    solarize_p: float = 0.0  # BYOL solarizes its second view with p=0.2
    solarize_threshold: float = 0.5  # values at or above this are inverted


def make_views(images_u8: Tensor, cfg: ViewConfig, size: int) -> Tensor:
    """uint8 (B, H, W, 3) -> one augmented view per image, float (B, 3, size, size) in [0, 1].

    Call it once per view: each call draws new parameters for every image.
    """
    x = to_float(images_u8)
    x = random_resized_crop(x, size, tuple(cfg.crop_scale), tuple(cfg.crop_ratio), flip_p=cfg.flip_p)
    if cfg.jitter_p > 0:
        x = color_jitter(x, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.jitter_p)
    if cfg.grayscale_p > 0:
        x = random_grayscale(x, cfg.grayscale_p)
    if cfg.blur_p > 0:
        x = gaussian_blur(x, cfg.blur_p, tuple(cfg.blur_sigma))
    if cfg.solarize_p > 0:
        x = solarize(x, cfg.solarize_p, cfg.solarize_threshold)
    return x


def _check_images(x: Tensor) -> None:
    if not x.is_floating_point() or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected float images (B, 3, H, W); got {x.dtype} {tuple(x.shape)}")


def _check_p(p: float, name: str) -> None:
    if not 0 <= p <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1]; got {p}")
