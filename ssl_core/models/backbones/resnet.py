"""`resnet18`: ResNet-18 (He et al. 2016) with the CIFAR stem, in plain PyTorch.

The CIFAR stem (one 3x3 conv at stride 1, no max-pool) keeps the full resolution of small
images into the first stage, as in SimCLR's CIFAR-10 experiments and solo-learn's CIFAR models;
the ImageNet stem (7x7 stride 2 + max-pool) would leave 8x8 maps at 32 px. At larger images the
stem stays the same, so compute grows with the pixel count.
"""

from __future__ import annotations

from torch import Tensor, nn

from ssl_core.models.backbones import BACKBONES, Backbone


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; a 1x1 projection on the skip when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(Backbone):
    """(B, 3, H, W) normalized images -> (B, 512) globally average-pooled features."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        stages = []
        in_ch = 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(in_ch, width, stride), BasicBlock(width, width, 1)))
            in_ch = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 512
        # torchvision's initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.pool(x).flatten(1)

    layer_pooling = "global average pool of the feature map after the stem and after each stage"

    def forward_layers(self, x: Tensor) -> dict[str, Tensor]:
        """{"stem", "layer1".."layer4": (B, channels)}, each globally average-pooled."""
        out: dict[str, Tensor] = {}
        for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            out[name] = x.mean(dim=(2, 3))
        return out

    def last_block(self) -> list[nn.Module]:
        return [self.layer4]  # the last stage (two basic blocks)


@BACKBONES.register("resnet18")
def resnet18(resolution: int = 32) -> ResNet18:
    if resolution < 8:
        raise ValueError(f"resnet18 needs images of at least 8 px (3 halvings); got {resolution}")
    return ResNet18()
