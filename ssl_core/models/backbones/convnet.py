"""`convnet`: a small CNN for runs on the CPU, where a ResNet-18 would be far too slow.

Four conv3x3-BN-ReLU blocks, each but the last followed by a 2x2 max-pool, then global average
pooling; widths double from 32 to 256 (out_dim 256). At 32 px one image costs 15M
multiply-adds (ResNet-18 with the CIFAR stem: 556M). Forward+backward of 256 images at 32 px
takes ~0.22-0.29 s on 2 CPU cores (bench/augment.py prints it), so a SimCLR step over two views
of a batch of 256 takes about half a second. Widths 16-32-64-128 run ~3x faster, at a quarter
of the capacity and a 128-d representation; `ConvNet(widths=...)` builds either.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ssl_core.models.backbones import BACKBONES, Backbone


class ConvNet(Backbone):
    """(B, 3, H, W) normalized images, H and W >= 16 -> (B, widths[-1]) features."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(in_ch, width, 3, padding=1, bias=False),  # BN supplies the bias
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        # oneDNN's convolutions run ~1.5x faster on channels_last input on the CPU (and cuDNN
        # prefers it too under mixed precision); a no-op when the caller already converted.
        x = x.contiguous(memory_format=torch.channels_last)
        return self.pool(self.features(x)).flatten(1)

    layer_pooling = "global average pool of each conv block's feature map (after its ReLU, before the max-pool)"

    def forward_layers(self, x: Tensor) -> dict[str, Tensor]:
        """{"block1".."block4": (B, width)}: each conv block's output, globally average-pooled."""
        x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, Tensor] = {}
        for module in self.features:
            x = module(x)
            if isinstance(module, nn.ReLU):  # the end of a conv-BN-ReLU block
                out[f"block{len(out) + 1}"] = x.mean(dim=(2, 3))
        return out

    def last_block(self) -> list[nn.Module]:
        modules = list(self.features)
        last_conv = max(i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d))
        return modules[last_conv:]


@BACKBONES.register("convnet")
def convnet(resolution: int = 32) -> ConvNet:
    if resolution < 16:
        raise ValueError(f"convnet needs images of at least 16 px (3 halvings); got {resolution}")
    return ConvNet()
