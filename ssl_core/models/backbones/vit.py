"""`vit_tiny`: ViT-Tiny (Dosovitskiy et al. 2021; Touvron et al. 2021) for small images.

dim 192, depth 12, 3 heads, MLP ratio 4, pre-norm blocks, a CLS token and learned position
embeddings. The patch size is resolution // 8, so every resolution gives an 8x8 grid of 64
patch tokens (4 px patches at 32 px, 8 px at 64 px).

`vit_mini` is the same model at dim 96, depth 4 and 3 heads, small enough to train on a CPU.

As in facebookresearch/dino's vision_transformer.py, attention computes its softmax explicitly
when asked, so `get_last_selfattention` (and `get_all_selfattentions`, for attention rollout)
return the maps without hooks; otherwise it takes the fused `F.scaled_dot_product_attention`
path, which returns no weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.models.backbones import BACKBONES, Backbone

GRID = 8  # patches per side at every resolution


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """(B, N, dim) -> ((B, N, dim), attention weights (B, heads, N, N) or None)."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
        if return_attention:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            out = attn @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out), attn


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        y, attn = self.attn(self.norm1(x), return_attention)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, attn


class VisionTransformer(Backbone):
    """(B, 3, R, R) normalized images -> (B, dim): the CLS token after the final norm."""

    def __init__(
        self,
        resolution: int,
        patch_size: int,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        if resolution % patch_size != 0:
            raise ValueError(f"resolution {resolution} is not a multiple of the patch size {patch_size}")
        self.resolution = resolution
        self.patch_size = patch_size
        self.num_patches = (resolution // patch_size) ** 2
        self.heads = heads
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out_dim = dim
        # timm / DINO initialisation.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)

    def _tokens(self, x: Tensor) -> Tensor:
        """Images -> (B, 1 + T, dim): CLS token and patch embeddings, plus positions."""
        if x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(
                f"this ViT was built for {self.resolution}x{self.resolution} images; "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, T, dim)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat((cls, patches), dim=1) + self.pos_embed

    def forward_tokens(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """(B, 3, R, R) -> (B, 1 + T, dim): all tokens after the final norm, CLS first.

        keep: optional patch indices (B, K) in [0, T): only those patches (with their position
        embeddings) enter the blocks, as in MAE's and I-JEPA's encoders; returns (B, 1 + K, dim),
        the CLS token first, then the kept patches in the order of `keep`.
        """
        x = self._tokens(x)
        if keep is not None:
            if keep.ndim != 2 or keep.shape[0] != x.shape[0]:
                raise ValueError(f"keep must be (B, K) patch indices with B={x.shape[0]}; got {tuple(keep.shape)}")
            patches = x[:, 1:].gather(1, keep[:, :, None].expand(-1, -1, x.shape[-1]))
            x = torch.cat((x[:, :1], patches), dim=1)
        for block in self.blocks:
            x, _ = block(x)
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_tokens(x)[:, 0]

    def get_last_selfattention(self, x: Tensor) -> Tensor:
        """(B, 3, R, R) -> (B, heads, 1 + T, 1 + T): the last block's attention weights."""
        x = self._tokens(x)
        for block in self.blocks[:-1]:
            x, _ = block(x)
        _, attn = self.blocks[-1](x, return_attention=True)
        return attn

    def get_all_selfattentions(self, x: Tensor) -> list[Tensor]:
        """(B, 3, R, R) -> one (B, heads, 1 + T, 1 + T) attention tensor per block, first block
        first: what attention rollout (Abnar & Zuidema 2020) multiplies through the layers."""
        x = self._tokens(x)
        maps = []
        for block in self.blocks:
            x, attn = block(x, return_attention=True)
            maps.append(attn)
        return maps

    layer_pooling = "CLS token of each block's output, after the final LayerNorm (as DINO's get_intermediate_layers)"
    mean_layer_pooling = "mean of the patch tokens of each block's output, after the final LayerNorm"

    def forward_layers(self, x: Tensor, pool: str = "cls") -> dict[str, Tensor]:
        """{"block1".."block<depth>": (B, dim)}: after each block, normalized by the final norm,
        the CLS token (pool="cls"; the last one is `forward`'s output) or the mean of the patch
        tokens (pool="mean", for methods that embed so: MAE, I-JEPA)."""
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean'; got {pool!r}")
        x = self._tokens(x)
        out: dict[str, Tensor] = {}
        for i, block in enumerate(self.blocks):
            x, _ = block(x)
            out[f"block{i + 1}"] = self.norm(x[:, 0]) if pool == "cls" else self.norm(x[:, 1:]).mean(dim=1)
        return out

    def last_block(self) -> list[nn.Module]:
        return [self.blocks[-1], self.norm]

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The embeddings (patches, CLS token, positions), each block, the final norm: depth + 2
        groups, as BEiT and MAE number a ViT's layers for layer-wise rate decay."""
        embeddings = [*self.patch_embed.parameters(), self.cls_token, self.pos_embed]
        return [embeddings, *(list(block.parameters()) for block in self.blocks), list(self.norm.parameters())]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _patch_size(name: str, resolution: int) -> int:
    if resolution % GRID != 0:
        raise ValueError(
            f"{name} uses a {GRID}x{GRID} patch grid, so the resolution must be a multiple "
            f"of {GRID}; got {resolution} (try {resolution - resolution % GRID or GRID})"
        )
    return resolution // GRID


@BACKBONES.register("vit_tiny")
def vit_tiny(resolution: int = 32) -> VisionTransformer:
    return VisionTransformer(resolution, patch_size=_patch_size("vit_tiny", resolution))


@BACKBONES.register("vit_mini")
def vit_mini(resolution: int = 32) -> VisionTransformer:
    """A ViT small enough to train on a CPU: dim 96, depth 4, 3 heads (head dim 32), MLP ratio 4,
    the same 8x8 patch grid as vit_tiny; 0.46M parameters against vit_tiny's 5.4M. A training
    step of 256 images at 32 px (forward, backward, AdamW) costs ~10x less than vit_tiny's and
    ~2x a convnet's on the same CPU."""
    return VisionTransformer(resolution, patch_size=_patch_size("vit_mini", resolution), dim=96, depth=4, heads=3)
