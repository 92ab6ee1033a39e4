"""An encoder of the user's own: a torchvision architecture with a local state dict, or a
TorchScript file, embeds a dataset into a run like any other; nothing is downloaded, and a
missing or wrong file is refused with a message that says what to do."""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from ssl_core.core.config import DataConfig
from ssl_core.data.online import import_torchvision
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.models.encoders import build_encoder, encoder_spec, load_run_encoder
from ssl_core.workflows.encode import encode_dataset
from ssl_core.steps.browsing import encode_upload, image_data_uri, load_explore_data, run_images

# torch.jit is deprecated in favour of torch.export, but TorchScript files are what users have.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
SMALL_SHAPES = DataConfig(dataset="shapes", train_size=48, test_size=24)


class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2)

    def forward(self, x):
        return torch.relu(self.conv(x))  # a feature map: the encoder pools it


@pytest.fixture
def resnet_weights(tmp_path):
    """A resnet18 state dict with a 10-class head, as a fine-tuning script would save it."""
    torch.manual_seed(0)
    model = import_torchvision().models.resnet18(num_classes=10)
    torch.save(model.state_dict(), tmp_path / "resnet18.pt")
    return model.eval(), tmp_path / "resnet18.pt"


def test_a_torchvision_state_dict_is_loaded_and_its_head_removed(resnet_weights):
    model, path = resnet_weights
    encoder = build_encoder(encoder_spec(library="torchvision", architecture="resnet18", weights=path, input_size=32), 32)
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    model.fc = nn.Identity()
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model((images.permute(0, 3, 1, 2).float() / 255 - mean) / std)
    assert encoder.embedding_dim == 512
    torch.testing.assert_close(encoder.embed(images), expected)


def test_a_torchscript_encoder_makes_a_run_like_any_other(tmp_path, store):
    torch.jit.save(torch.jit.script(TinyEncoder()), tmp_path / "encoder.pt")
    spec = encoder_spec(library="torchscript", weights=tmp_path / "encoder.pt")
    run = encode_dataset(store, SMALL_SHAPES, spec, name="tiny", device="cpu", log=lambda m: None)
    [summary] = store.list()
    assert (summary.status, summary.method, summary.backbone) == ("finished", "encoder", "torchscript")
    vectors, _, ids, _ = load_all_embeddings(run)
    assert vectors.shape == (72, 6) and run.read_eval()["knn_top1"] is not None
    assert len(load_explore_data(run).ids) == 72
    # The run's encoder also embeds an uploaded image, as the Explore page does.
    image = run_images(run)[5]
    upload = base64.b64decode(image_data_uri(image, size=32).split(",")[1])
    vector = encode_upload(load_run_encoder(run), upload)
    np.testing.assert_allclose(vector, vectors[5], atol=2e-3)
    # Other weights at the same path would no longer match the stored embeddings: refused.
    torch.jit.save(torch.jit.script(TinyEncoder()), tmp_path / "encoder.pt")
    with pytest.raises(ValueError, match="has changed since run .* was made"):
        load_run_encoder(run)


def test_a_missing_weights_file_says_where_to_put_it_and_makes_no_run(tmp_path, store):
    missing = tmp_path / "models" / "resnet18.pt"
    with pytest.raises(FileNotFoundError, match=r"never downloads weights: save them on this machine at .*models/resnet18.pt"):
        encoder_spec(library="torchvision", architecture="resnet18", weights=missing)
    assert not store.root.exists()


def test_weights_of_another_architecture_are_refused(resnet_weights):
    _, path = resnet_weights
    with pytest.raises(ValueError, match="does not fit torchvision resnet34: .* missing keys"):
        build_encoder(encoder_spec(library="torchvision", architecture="resnet34", weights=path), 32)
    with pytest.raises(KeyError, match="unknown torchvision architecture 'resnet1800'; known: .*resnet18"):
        build_encoder(encoder_spec(library="torchvision", architecture="resnet1800", weights=path), 32)


def test_a_pickled_whole_model_is_refused_with_weights_only(tmp_path):
    torch.save(TinyEncoder(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="cannot be loaded as a state dict with weights_only=True"):
        build_encoder(encoder_spec(library="torchvision", architecture="resnet18", weights=tmp_path / "model.pt"), 32)
    torch.jit.save(torch.jit.script(TinyEncoder()), tmp_path / "scripted.pt")
    with pytest.raises(ValueError, match="is a TorchScript file: pass it with --torchscript"):
        build_encoder(encoder_spec(library="torchvision", architecture="resnet18", weights=tmp_path / "scripted.pt"), 32)


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed")
def test_timm_missing_says_how_to_install_it(resnet_weights):
    with pytest.raises(ValueError, match="timm is not installed: `pip install timm`"):
        build_encoder(encoder_spec(library="timm", architecture="resnet18", weights=resnet_weights[1]), 32)


def test_cli_encode_with_a_missing_file_exits_2_and_makes_no_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ssl_core.cli", "encode", "--arch", "resnet18", "--weights",
                             str(tmp_path / "resnet18.pt"), "--runs-dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "never downloads weights" in result.stderr
    assert not (tmp_path / "runs").exists()
