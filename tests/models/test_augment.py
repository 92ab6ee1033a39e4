import pytest
import torch

from ssl_core.models import augment as A

B, H = 8, 32


def images_u8(batch: int = B, size: int = H) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=gen)


def same_image_batch(batch: int = B) -> torch.Tensor:
    """A batch of copies of one image: per-image randomness must still tell them apart."""
    return A.to_float(images_u8(1)).expand(batch, -1, -1, -1).contiguous()


OPS = {
    "crop": lambda x: A.random_resized_crop(x, 24, scale=(0.2, 1.0)),
    "flip": lambda x: A.random_flip(x, p=0.5),
    "jitter": lambda x: A.color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=1.0),
    "grayscale": lambda x: A.random_grayscale(x, p=0.5),
    "blur": lambda x: A.gaussian_blur(x, p=1.0, sigma=(0.1, 2.0)),
    "solarize": lambda x: A.solarize(x, p=0.5, threshold=0.5),
    "views": lambda x: A.make_views((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1), A.ViewConfig(), 32),
}


def test_to_float():
    u8 = images_u8()
    x = A.to_float(u8)
    assert x.shape == (B, 3, H, H) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 1], u8[..., 1].float() / 255)
    with pytest.raises(ValueError, match="uint8"):
        A.to_float(u8.float())


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("channels_last", [False, True])
def test_op_keeps_kind_and_range(name, channels_last):
    x = A.to_float(images_u8())
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
    out = OPS[name](x)
    size = 24 if name == "crop" else H
    assert out.shape == (B, 3, size, size)
    assert out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", sorted(OPS))
def test_each_image_gets_its_own_parameters(name):
    torch.manual_seed(0)
    out = OPS[name](same_image_batch(16))
    distinct = {tuple(img.flatten()[:: 97].tolist()) for img in out}
    assert len(distinct) > 1


@pytest.mark.parametrize("name", sorted(OPS))
def test_reproducible_under_manual_seed(name):
    x = A.to_float(images_u8())
    torch.manual_seed(123)
    first = OPS[name](x)
    torch.manual_seed(123)
    torch.testing.assert_close(OPS[name](x), first, rtol=0, atol=0)


def test_full_crop_is_identity():
    x = A.to_float(images_u8())
    out = A.random_resized_crop(x, H, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(out, x.contiguous(), atol=1e-5, rtol=0)


def test_crop_with_flip_one_mirrors():
    x = A.to_float(images_u8())
    out = A.random_resized_crop(x, H, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)
    torch.testing.assert_close(out, x.flip(-1), atol=1e-5, rtol=0)


def test_crop_of_non_square_images():
    x = torch.rand(4, 3, 20, 48)
    out = A.random_resized_crop(x, 16, scale=(0.5, 1.0))
    assert out.shape == (4, 3, 16, 16) and out.min() >= 0 and out.max() <= 1


def test_flip_all_and_none():
    x = A.to_float(images_u8())
    torch.testing.assert_close(A.random_flip(x, p=1.0), x.flip(-1))
    torch.testing.assert_close(A.random_flip(x, p=0.0), x)


def test_solarize_inverts_values_above_threshold():
    x = A.to_float(images_u8())
    out = A.solarize(x, p=1.0, threshold=0.3)
    expected = torch.where(x >= 0.3, 1 - x, x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(A.solarize(x, p=0.0), x)


def test_grayscale_gives_equal_channels():
    x = A.to_float(images_u8())
    out = A.random_grayscale(x, p=1.0)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 1], out[:, 2])
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(out[:, 0], luma)


def test_jitter_without_strength_or_probability_is_identity():
    x = A.to_float(images_u8())
    torch.testing.assert_close(A.color_jitter(x, 0, 0, 0, 0, p=1.0), x.contiguous(), atol=1e-5, rtol=0)
    torch.testing.assert_close(A.color_jitter(x, p=0.0), x.contiguous(), atol=1e-5, rtol=0)


def test_hue_shift_keeps_gray_and_moves_colour():
    gray = torch.full((4, 3, 8, 8), 0.5)
    torch.testing.assert_close(A.color_jitter(gray, 0, 0, 0, 0.5, p=1.0), gray, atol=1e-5, rtol=0)
    red = torch.zeros(4, 3, 8, 8)
    red[:, 0] = 0.8
    torch.manual_seed(0)
    shifted = A.color_jitter(red, 0, 0, 0, 0.5, p=1.0)
    assert (shifted - red).abs().amax() > 0.05


def test_blur_smooths_and_keeps_constant_images():
    flat = torch.full((4, 3, 16, 16), 0.7)
    torch.testing.assert_close(A.gaussian_blur(flat, p=1.0), flat)
    x = A.to_float(images_u8())
    out = A.gaussian_blur(x, p=1.0, sigma=(1.5, 2.0))
    assert out.diff(dim=-1).abs().mean() < 0.5 * x.diff(dim=-1).abs().mean()
    torch.testing.assert_close(A.gaussian_blur(x, p=0.0), x.contiguous())


def test_normalize():
    x = torch.rand(2, 3, 4, 4)
    out = A.normalize(x, (0.5, 0.4, 0.3), torch.tensor([0.2, 0.2, 0.1]))
    torch.testing.assert_close(out[:, 2], (x[:, 2] - 0.3) / 0.1)
    with pytest.raises(ValueError, match="3 values"):
        A.normalize(x, (0.5,), (0.2,))


def test_bad_arguments_name_the_value():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="1.5"):
        A.random_flip(x, p=1.5)
    with pytest.raises(ValueError, match="hue"):
        A.color_jitter(x, hue=0.7)
    with pytest.raises(ValueError, match="float images"):
        A.solarize(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), p=1.0)
