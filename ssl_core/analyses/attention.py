"""Where an encoder looks: ViT attention maps, and a label-free saliency for CNNs.

    maps = run_attention(run, rows=[0, 17])       # the run's own images, by row (train then test)
    maps.technique                                  # "attention" (a ViT) or "embedding-similarity saliency"
    maps.heads, maps.mean, maps.rollout             # (B, H, R, R), (B, R, R), (B, R, R) over the image

For a ViT (`vit_tiny`, `vit_mini`) the maps are as in the DINO paper (Caron et al. 2021, fig. 1
and 3): the last block's attention of the CLS token to each patch, per head, shown over the
image (nearest-neighbour upsampling, one value per patch), and their mean over heads.
`keep_top_mass` is DINO's thresholding: the smallest set of patches that holds a given share of
the attention mass. `attention_rollout` follows the CLS token's attention through every block
(Abnar & Zuidema 2020): each block's head-averaged attention plus the identity of the residual
connection, rows renormalised, multiplied from the first block to the last.

A CNN (`convnet`, `resnet18`) has no attention. Its map here is an *embedding-similarity
saliency*: the cosine similarity between the image's pooled embedding and the feature vector at
each position of the last feature map, upsampled bilinearly. It needs no labels, and it shows
which regions look like the whole image to the encoder; it is a different technique and is
always labelled as such.

The encoder is the run's trained method (`ssl_core.models.encoders.load_run_encoder`); the module whose
features make the run's embeddings is the one the method names (`Method.representation_module`:
its backbone, I-JEPA's target encoder). A method whose embeddings no map would describe says why
(`Method.no_maps`: the `pixels` and `ddpm` methods, user encoders); that reason, or that an
imported run has no encoder, is the ValueError. A few images take well under a second on a CPU,
so maps are computed on request and not stored.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor, nn

from ssl_core.data.shapes import shape_masks
from ssl_core.models import augment
from ssl_core.models.backbones.convnet import ConvNet
from ssl_core.models.backbones.resnet import ResNet18
from ssl_core.models.encoders import (
    check_embeddable,
    encoder_class,
    has_encoder,
    load_run_encoder,
)
from ssl_core.steps.browsing import run_dataset, run_images

ATTENTION = "attention"
SALIENCY = "embedding-similarity saliency"
TECHNIQUE_NOTES = {
    ATTENTION: "ViT attention: the last block's CLS-to-patch attention per head, their mean, and the "
               "rollout through all blocks (Abnar & Zuidema 2020)",
    SALIENCY: "embedding-similarity saliency (not attention; the backbone is a CNN): the cosine similarity "
              "between the pooled image embedding and each position of the last feature map",
}


@dataclass
class AttentionMaps:
    """Maps of B images at resolution R. `heads` and `rollout` exist only for a ViT."""

    technique: str  # ATTENTION or SALIENCY
    images: np.ndarray  # (B, R, R, 3) uint8
    mean: np.ndarray  # (B, R, R): mean over heads of the CLS attention (ViT), or the saliency (CNN)
    heads: np.ndarray | None = None  # (B, H, R, R) each head's CLS attention (ViT)
    rollout: np.ndarray | None = None  # (B, R, R) attention rollout's CLS row (ViT)
    patch_mean: np.ndarray | None = None  # (B, g, g) `mean` at patch level (ViT), for thresholding
    backbone: str = ""

    @property
    def note(self) -> str:
        return TECHNIQUE_NOTES[self.technique]


# -- the math ---------------------------------------------------------------------------------
def cls_attention(attn: Tensor) -> Tensor:
    """(B, H, 1 + T, 1 + T) attention weights -> (B, H, T): the CLS token's attention to each
    patch, renormalised over the patches (the CLS token's attention to itself is left out)."""
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attention must be (B, heads, N, N); got {tuple(attn.shape)}")
    row = attn[:, :, 0, 1:]
    return row / row.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def attention_rollout(attentions: list[Tensor]) -> Tensor:
    """Per-block attentions [(B, H, N, N), first block first] -> (B, N, N) rollout.

    Abnar & Zuidema 2020: each block's heads are averaged, the identity of the residual
    connection is added (A + I), rows are renormalised to sum to one, and the blocks are
    multiplied, last block on the left: R = Â_L ... Â_1. Row 0 says how much each input token
    reaches the CLS token's output through all the blocks.
    """
    if not attentions:
        raise ValueError("attention rollout needs the attention of at least one block")
    rollout = None
    for attn in attentions:
        a = attn.mean(dim=1)
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


def keep_top_mass(weights: np.ndarray | Tensor, fraction: float) -> np.ndarray:
    """DINO's thresholding: a boolean mask of the smallest set of entries (along the last axis)
    whose weights hold at least `fraction` of the total, e.g. 0.6 for DINO's figures.

    weights: (..., T) non-negative. Entries are taken largest first, so no smaller set reaches
    the fraction; ties are broken by position.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"the fraction of attention mass to keep must be in (0, 1]; got {fraction}")
    w = weights.detach().cpu().numpy() if isinstance(weights, Tensor) else np.asarray(weights)
    if (w < 0).any():
        raise ValueError("attention weights must be non-negative")
    w = w.astype(np.float64)
    order = np.argsort(-w, axis=-1, kind="stable")
    sorted_w = np.take_along_axis(w, order, axis=-1)
    total = sorted_w.sum(axis=-1, keepdims=True)
    cumulative = np.cumsum(sorted_w, axis=-1) / np.where(total > 0, total, 1)
    # Keep entry i when the mass before it is still short of the fraction (with a tolerance for
    # rounding, so 0.6 of a mass that sums to exactly 0.6 stops there).
    before = cumulative - sorted_w / np.where(total > 0, total, 1)
    keep_sorted = before < fraction - 1e-9
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return keep


def to_grid(patch_values: Tensor | np.ndarray) -> np.ndarray:
    """(..., T) per-patch values -> (..., g, g) with g = sqrt(T), rows of patches top to bottom."""
    v = patch_values.detach().cpu().numpy() if isinstance(patch_values, Tensor) else np.asarray(patch_values)
    side = int(round(np.sqrt(v.shape[-1])))
    if side * side != v.shape[-1]:
        raise ValueError(f"{v.shape[-1]} patches do not make a square grid")
    return v.reshape(*v.shape[:-1], side, side)


def upsample(grid: np.ndarray, resolution: int, mode: str = "nearest") -> np.ndarray:
    """(..., g, g) -> (..., R, R): each patch's value over its pixels (nearest, as DINO shows
    them) or interpolated (bilinear, for CNN feature maps whose cells overlap)."""
    t = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))
    lead = t.shape[:-2]
    t = t.reshape(-1, 1, *t.shape[-2:])
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(t, size=(resolution, resolution), mode=mode, **kwargs)
    return out.reshape(*lead, resolution, resolution).numpy()


def mask_share(patch_attention: np.ndarray | Tensor, masks: np.ndarray) -> np.ndarray:
    """Share of each image's patch attention that falls inside its object.

    patch_attention: (B, T) non-negative, per patch (e.g. the mean over heads of `cls_attention`);
    masks: (B, R, R) coverage in [0, 1] (e.g. `ssl_core.data.shapes.shape_masks`). Each patch
    counts by the fraction of its pixels the mask covers. Returns (B,) values in [0, 1].
    """
    a = patch_attention.detach().cpu().numpy() if isinstance(patch_attention, Tensor) else np.asarray(patch_attention)
    grid = to_grid(a).astype(np.float64)
    side, resolution = grid.shape[-1], masks.shape[-1]
    if resolution % side:
        raise ValueError(f"masks of {resolution} px do not divide into a {side}x{side} patch grid")
    p = resolution // side
    coverage = masks.reshape(len(masks), side, p, side, p).mean(axis=(2, 4))
    return (grid * coverage).sum(axis=(1, 2)) / grid.sum(axis=(1, 2)).clip(1e-12)


# -- the models -------------------------------------------------------------------------------
def is_vit(module: nn.Module) -> bool:
    return hasattr(module, "get_all_selfattentions")


def feature_map(backbone: nn.Module, x: Tensor) -> Tensor:
    """(B, 3, R, R) normalized images -> (B, C, h, w): the CNN's last feature map, the one its
    global average pooling turns into the embedding."""
    if isinstance(backbone, ConvNet):
        return backbone.features(x.contiguous(memory_format=torch.channels_last))
    if isinstance(backbone, ResNet18):
        return backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(backbone.stem(x)))))
    raise ValueError(f"no feature map for a {type(backbone).__name__}; saliency needs a convnet or resnet18 backbone")


def embedding_backbone(method: nn.Module, run_id: str = "this run") -> nn.Module:
    """The ViT or CNN whose features make the run's embeddings (`Method.representation_module`);
    ValueError with the model's reason (`no_maps`) when no map would describe them."""
    reason = getattr(method, "no_maps", None)
    if reason:
        raise ValueError(f"run {run_id} has no attention or saliency map: {reason}")
    return method.representation_module()


@torch.no_grad()
def vit_maps(vit: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """{"heads": (B, H, T) last block's CLS attention, "mean": (B, T), "rollout": (B, T)},
    each row renormalised over the T patches."""
    attentions = vit.get_all_selfattentions(x)
    heads = cls_attention(attentions[-1])
    rollout = attention_rollout(attentions)[:, 0, 1:]
    rollout = rollout / rollout.sum(dim=-1, keepdim=True)
    return {"heads": heads.float(), "mean": heads.mean(dim=1).float(), "rollout": rollout.float()}


@torch.no_grad()
def cnn_saliency(backbone: nn.Module, x: Tensor) -> Tensor:
    """(B, 3, R, R) -> (B, h, w): cosine similarity between the pooled embedding and the feature
    vector at each position of the last feature map, in [-1, 1]."""
    fmap = feature_map(backbone, x).float()
    pooled = fmap.mean(dim=(2, 3), keepdim=True)
    return F.cosine_similarity(fmap, pooled.expand_as(fmap), dim=1)


def _normalized(method: nn.Module, images_u8: np.ndarray) -> Tensor:
    device = next((p.device for p in method.parameters()), torch.device("cpu"))
    x = torch.from_numpy(np.array(images_u8)).to(device)  # a writable copy
    return method.normalize(augment.to_float(x))


def compute_maps(method: nn.Module, images_u8: np.ndarray, run_id: str = "this run") -> AttentionMaps:
    """Maps of uint8 images (B, R, R, 3) under a loaded method (`load_run_encoder`)."""
    images_u8 = np.asarray(images_u8)
    if images_u8.ndim != 4 or images_u8.shape[-1] != 3 or images_u8.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (B, R, R, 3); got {images_u8.dtype} {images_u8.shape}")
    resolution = getattr(method, "resolution", images_u8.shape[1])
    if images_u8.shape[1:3] != (resolution, resolution):
        raise ValueError(f"this run's encoder takes {resolution}x{resolution} images; "
                         f"got {images_u8.shape[1]}x{images_u8.shape[2]}")
    backbone = embedding_backbone(method, run_id)
    x = _normalized(method, images_u8)
    name = type(backbone).__name__
    if is_vit(backbone):
        maps = vit_maps(backbone, x)
        return AttentionMaps(
            technique=ATTENTION, images=images_u8, backbone=name,
            heads=upsample(to_grid(maps["heads"]), resolution),
            mean=upsample(to_grid(maps["mean"]), resolution),
            rollout=upsample(to_grid(maps["rollout"]), resolution),
            patch_mean=to_grid(maps["mean"]))
    saliency = cnn_saliency(backbone, x).cpu().numpy()
    return AttentionMaps(technique=SALIENCY, images=images_u8, backbone=name,
                         mean=upsample(saliency, resolution, mode="bilinear"))


def check_rows(rows: list[int] | np.ndarray, n: int) -> list[int]:
    rows = [int(r) for r in rows]
    bad = [r for r in rows if not 0 <= r < n]
    if bad:
        raise IndexError(f"row(s) {bad} out of range: the run has {n} images (rows 0..{n - 1}, train then test)")
    return rows


def why_no_maps(run) -> str | None:
    """What stops maps of `run` from being drawn, as a sentence for the page; None when nothing
    does (the checks that need no model: the weights are loaded only when maps are asked for)."""
    try:
        run.config  # raises when config.json is missing or describes no run
    except (OSError, ValueError) as e:
        return f"Run {run.id} cannot be read: {e}"
    if not has_encoder(run):
        return (f"Run {run.id} was imported with its embeddings and has no encoder, so there is no attention "
                "or saliency to draw. Maps need a run trained here (a ViT or CNN backbone).")
    try:
        reason = encoder_class(run).no_maps  # the method knows whether a map describes its embeddings
    except KeyError as e:  # a method no longer registered
        return f"Run {run.id} cannot be drawn: {e.args[0]}."
    if reason:
        return f"Run {run.id} has no attention or saliency map: {reason}."
    if not run.checkpoint_path.exists():
        state = run.read_status().get("status", "unknown")
        return (f"Run {run.id} has no checkpoint yet (it is {state}): maps are drawn from the trained weights, "
                "which appear with its first checkpoint.")
    return None


def run_attention(run, rows: list[int], *, device: str = "cpu", method: nn.Module | None = None) -> AttentionMaps:
    """Maps of the run's own images at `rows` (train rows, then test rows). `method` is the run's
    loaded encoder when the caller already holds it (the app's cached loader). ValueError with
    `why_no_maps`'s reason (the Attention page's) when the run has no maps to draw."""
    why = why_no_maps(run)
    if why is not None:
        raise ValueError(why)
    check_embeddable(run)
    if method is None:
        method = load_run_encoder(run, device)
    embedding_backbone(method, run.id)  # refuse before loading the images
    images = run_images(run)
    return compute_maps(method, images[check_rows(rows, len(images))], run.id)


def in_mask_attention(run, *, split: str = "test", limit: int | None = None, batch_size: int = 250,
                      device: str = "cpu", progress=None) -> dict:
    """How much of a ViT's mean-over-heads CLS attention (and of its rollout) falls on the
    object, averaged over the images of `split` of a `shapes` run (its masks are known)."""
    if run.config.data.dataset != "shapes":
        raise ValueError(f"run {run.id} is on '{run.config.data.dataset}'; the in-mask share needs the "
                         "shapes dataset, whose object masks are known")
    method = load_run_encoder(run, device)
    backbone = embedding_backbone(method, run.id)
    if not is_vit(backbone):
        raise ValueError(f"run {run.id} has a {type(backbone).__name__} backbone: the in-mask share measures "
                         "ViT attention")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split '{split}'; known: train, test")
    data = run_dataset(run)
    is_train = data.is_train.numpy()
    chosen = np.flatnonzero(is_train if split == "train" else ~is_train)
    chosen = chosen[:limit] if limit else chosen
    masks = shape_masks(run.config.data)[chosen]
    images = data.images.numpy()[chosen]
    mean_share, rollout_share = [], []
    for start in range(0, len(chosen), batch_size):
        maps = vit_maps(backbone, _normalized(method, images[start:start + batch_size]))
        mean_share.append(mask_share(maps["mean"], masks[start:start + batch_size]))
        rollout_share.append(mask_share(maps["rollout"], masks[start:start + batch_size]))
        if progress:
            progress(min(1.0, (start + batch_size) / len(chosen)), f"{min(start + batch_size, len(chosen))} images")
    uniform = mask_share(np.ones((len(chosen), backbone.num_patches)), masks)
    return {"run_id": run.id, "split": split, "images": int(len(chosen)),
            "in_mask_mean_attention": float(np.concatenate(mean_share).mean()),
            "in_mask_rollout": float(np.concatenate(rollout_share).mean()),
            "mask_area": float(uniform.mean())}


# -- pictures ---------------------------------------------------------------------------------
def overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.55, cmap: str = "inferno") -> np.ndarray:
    """A uint8 (R, R, 3) image with a (R, R) map blended over it, the map scaled to its own
    min..max (colour map `cmap`)."""
    from matplotlib import colormaps  # heavy: matplotlib only for drawing the pictures

    lo, hi = float(heat.min()), float(heat.max())
    scaled = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    colours = colormaps[cmap](scaled)[..., :3]
    blended = (image / 255.0 * (1 - alpha) + colours * alpha).clip(0, 1)
    return (blended * 255).round().astype(np.uint8)


def masked(image: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The image with the pixels outside `keep` (R, R bool) darkened to a fifth."""
    return np.where(keep[..., None], image, (image * 0.2).astype(np.uint8))


def top_mass_pixels(maps: AttentionMaps, index: int, fraction: float) -> np.ndarray:
    """(R, R) bool: the pixels of the patches that hold `fraction` of image `index`'s mean attention."""
    keep = keep_top_mass(maps.patch_mean[index].reshape(-1), fraction).reshape(maps.patch_mean.shape[1:])
    return upsample(keep.astype(np.float32), maps.images.shape[1]) > 0.5


def panels(maps: AttentionMaps, index: int, threshold: float | None = None) -> list[tuple[str, np.ndarray]]:
    """(title, uint8 RGB picture) for image `index`: the image, each head, the mean, the rollout
    and the top-mass mask (ViT); the image and the saliency (CNN)."""
    image = maps.images[index]
    out = [("image", image)]
    if maps.technique == ATTENTION:
        out += [(f"head {h + 1}", overlay(image, maps.heads[index, h])) for h in range(maps.heads.shape[1])]
        out += [("mean of heads", overlay(image, maps.mean[index])), ("rollout", overlay(image, maps.rollout[index]))]
        if threshold is not None:
            out.append((f"top {threshold:.0%} of mass", masked(image, top_mass_pixels(maps, index, threshold))))
    else:
        out.append(("saliency", overlay(image, maps.mean[index])))
    return out


def picture(rows: list[tuple[str, list[tuple[str, np.ndarray]]]], cell: int = 128) -> bytes:
    """PNG bytes of a grid: one row per (label, panels), each panel `cell` px with its title."""
    columns = max(len(p) for _, p in rows)
    label_h, title_h, pad = 16, 14, 4
    row_h = label_h + title_h + cell + pad
    canvas = Image.new("RGB", (pad + columns * (cell + pad), len(rows) * row_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, cells) in enumerate(rows):
        top = pad + r * row_h
        draw.text((pad, top), label, fill="black")
        for c, (title, image) in enumerate(cells):
            left = pad + c * (cell + pad)
            draw.text((left, top + label_h), title, fill="black")
            canvas.paste(Image.fromarray(image).resize((cell, cell), Image.Resampling.NEAREST),
                         (left, top + label_h + title_h))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def row_label(run, maps: AttentionMaps, row: int | None = None) -> str:
    where = f"row {row}" if row is not None else "uploaded image"
    return f"{run.id} · {run.config.method.get('name')} · {run.config.backbone.name} · {maps.technique} · {where}"
