"""RotNet's pretext batch: labels 0..3 in blocks, and each block really turned by k * 90 degrees."""

from __future__ import annotations

import pytest
import torch

from ssl_core.models.methods import build_method
from ssl_core.models.methods.rotation import rotate_four_ways


def naive_rotate_ccw(image: torch.Tensor, quarter_turns: int) -> torch.Tensor:
    """Pixel by pixel: a counter-clockwise quarter turn sends pixel (r, c) of an S x S image to (S-1-c, r)."""
    out = image.clone()
    for _ in range(quarter_turns):
        s = out.shape[-1]
        turned = torch.empty_like(out)
        for r in range(s):
            for c in range(s):
                turned[:, s - 1 - c, r] = out[:, r, c]
        out = turned
    return out


def test_labels_are_zero_to_three_in_blocks():
    x = torch.rand(5, 3, 6, 6)
    rotated, labels = rotate_four_ways(x)
    assert rotated.shape == (20, 3, 6, 6)
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5


def test_each_block_is_the_image_turned_by_its_label():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 5, 5, generator=g)
    rotated, labels = rotate_four_ways(x)
    for row, k in enumerate(labels.tolist()):
        assert torch.equal(rotated[row], naive_rotate_ccw(x[row % 3], k)), (row, k)
    # An asymmetric image makes all four versions different, so no label is ambiguous.
    assert len({tuple(rotated[k * 3].flatten().tolist()) for k in range(4)}) == 4


def test_rejects_non_square_images():
    with pytest.raises(ValueError, match="square"):
        rotate_four_ways(torch.rand(2, 3, 4, 5))


def test_training_step_classifies_all_four_rotations_of_every_image():
    torch.manual_seed(0)
    model = build_method({"name": "rotation"}, "convnet", resolution=32, num_classes=2)
    seen = []
    model.backbone.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    out = model.training_step(torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8), None)
    assert seen == [24]
    assert 0 <= out["rotation_acc"].item() <= 1
    assert out["loss"].item() == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=0.5)  # near chance at init
