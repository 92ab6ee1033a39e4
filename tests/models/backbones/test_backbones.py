"""Registry-driven: every registered backbone is built and checked, so a new one needs no test
of its own to be covered."""

import pytest
import torch

from ssl_core.models.backbones import BACKBONES, Backbone, build_backbone


@pytest.fixture(scope="module", params=BACKBONES.names())
def built(request):
    torch.manual_seed(0)
    return request.param, build_backbone(request.param, resolution=32)


def test_forward_shape_and_finite(built):
    name, model = built
    assert isinstance(model, Backbone)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, model.out_dim), name
    assert torch.isfinite(out).all(), name


def test_backward_reaches_every_parameter(built):
    name, model = built
    model.zero_grad()
    model(torch.randn(2, 3, 32, 32)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(KeyError) as err:
        build_backbone("resnet19")
    message = str(err.value)
    assert "resnet19" in message
    for name in BACKBONES.names():
        assert name in message


def test_vit_attention_rows_sum_to_one():
    model = build_backbone("vit_tiny", resolution=32).eval()
    attn = model.get_last_selfattention(torch.randn(2, 3, 32, 32))
    assert attn.shape == (2, 3, 65, 65)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 3, 65))


def test_vit_tokens_and_explicit_attention_match_fused_path():
    model = build_backbone("vit_tiny", resolution=32).eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = model.forward_tokens(x)
    assert tokens.shape == (2, 65, 192)
    torch.testing.assert_close(tokens[:, 0], model(x))
    block = model.blocks[0]
    h = block.norm1(model._tokens(x))
    torch.testing.assert_close(block.attn(h)[0], block.attn(h, return_attention=True)[0], atol=1e-5, rtol=1e-4)


def test_vit_at_64px_uses_8px_patches():
    model = build_backbone("vit_tiny", resolution=64)
    assert model.patch_size == 8
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 192)
    assert model.get_last_selfattention(torch.randn(1, 3, 64, 64)).shape == (1, 3, 65, 65)


def test_vit_rejects_bad_resolutions():
    with pytest.raises(ValueError, match="multiple of 8"):
        build_backbone("vit_tiny", resolution=36)
    model = build_backbone("vit_tiny", resolution=32)
    with pytest.raises(ValueError, match="32x32"):
        model(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("resolution", [16, 48])
def test_convnet_other_resolutions(resolution):
    model = build_backbone("convnet", resolution=resolution)
    assert model(torch.randn(2, 3, resolution, resolution)).shape == (2, model.out_dim)
