"""Encoders of the user's own: a torchvision or timm architecture with a local weights file, or
a TorchScript file. Such a run (method `encoder`) embeds a dataset like any trained run, and its
encoder also embeds uploaded images for search.

    ssl-explorer encode --arch resnet18 --weights ~/models/resnet18.pt --dataset shapes
    ssl-explorer encode --arch convnext_tiny --library timm --weights convnext.pt --dataset ~/photos
    ssl-explorer encode --torchscript ~/models/encoder.pt --dataset ~/photos

Nothing is downloaded: the architecture is built without weights and the weights come from the
file, a state dict loaded with `weights_only=True` (data, never code). The classification head
(`fc`, `classifier`, `head` or `heads`) is removed, so an embedding is the pooled feature
vector the head would have read. Images are resized to `input_size` and normalized with the
ImageNet statistics the architectures are trained with (`normalize="none"` for a TorchScript
model that normalizes inside).

`load_run_encoder(run)` is the one way to get the model that embeds a run's images: the trained
method of a trained run, the user's encoder of an `encoder` run; an `imported` run has none.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from ssl_core.data.online import import_torchvision
from ssl_core.models.checkpoint import load_method
from ssl_core.models.methods import METHODS, Method
from ssl_core.store.runs import ENCODER_METHOD

METHOD = ENCODER_METHOD  # the `method` name in an encoder run's config.json
LIBRARIES = ("torchvision", "timm", "torchscript")
NORMALIZATIONS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "none": ((0.0,) * 3, (1.0,) * 3)}
HEADS = ("fc", "classifier", "head", "heads")  # torchvision's names for the classification head


class Encoder(nn.Module):
    """uint8 images (B, H, W, 3) -> (B, D) float32 features of a user's network, with the
    interface `embed_images` and the Explore page use (`embed`, `resolution`, `embedding_dim`)."""

    # What the analyses may read, as a method says it (`Method.no_layers`, `Method.no_maps`).
    no_layers = "the run's encoder is the user's own network, whose layers are not declared"
    no_maps = ("its embeddings come from a user's encoder (torchvision, timm or TorchScript); attention maps "
               "and saliency are drawn for this project's ViT and CNN backbones only")

    def __init__(self, network: nn.Module, *, resolution: int, input_size: int, normalize: str = "imagenet"):
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalize '{normalize}'; known: {', '.join(NORMALIZATIONS)}")
        self.network = network.eval()
        self.resolution = resolution  # of the dataset's images (and of uploads)
        self.input_size = input_size  # what the network is fed
        mean, std = NORMALIZATIONS[normalize]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.embedding_dim = int(self.embed(torch.zeros(1, resolution, resolution, 3, dtype=torch.uint8)).shape[1])

    @torch.no_grad()
    def embed(self, images_u8: torch.Tensor) -> torch.Tensor:
        x = images_u8.permute(0, 3, 1, 2).float().div_(255)
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.input_size)
        out = self.network((x - self.mean) / self.std)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim == 4:  # a feature map (B, C, H, W): global average pooling
            out = out.mean(dim=(2, 3))
        if out.ndim != 2:
            raise ValueError(f"the encoder returns shape {tuple(out.shape)}; it must return (B, D) features "
                             "or a (B, C, H, W) feature map")
        return out.float()


def _missing_file(path: Path, what: str, example: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} {path} does not exist. ssl-explorer never downloads weights: save them on this machine "
        f"at {path} ({example}), or pass the path where they are.")


def check_spec(spec: dict[str, Any]) -> None:
    """Refuse a bad encoder description (unknown library, missing file) before anything is built."""
    library = spec.get("library")
    if library not in LIBRARIES:
        raise ValueError(f"unknown encoder library '{library}'; known: {', '.join(LIBRARIES)}")
    path = Path(spec.get("weights") or "")
    if library == "torchscript":
        if not path.is_file():
            raise _missing_file(path, "TorchScript file", "torch.jit.save(torch.jit.script(model), PATH)")
    else:
        if not spec.get("architecture"):
            raise ValueError(f"a {library} encoder needs an architecture name (--arch), e.g. resnet18")
        if not spec.get("weights"):
            raise ValueError(f"a {library} encoder needs a weights file (--weights): its state dict, saved "
                             "with torch.save(model.state_dict(), PATH); nothing is downloaded")
        if not path.is_file():
            raise _missing_file(path, "weights file", "torch.save(model.state_dict(), PATH)")
    if spec.get("normalize", "imagenet") not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize '{spec.get('normalize')}'; known: {', '.join(NORMALIZATIONS)}")


def _architecture(library: str, name: str) -> nn.Module:
    """The network, randomly initialized (no download), its head replaced by nn.Identity."""
    if library == "timm":
        try:
            import timm  # optional: only `--library timm` needs it
        except ImportError:
            raise ValueError("timm is not installed: `pip install timm` (only the architecture code is used; "
                             "the weights come from your file)") from None
        if name not in timm.list_models():
            raise KeyError(f"unknown timm architecture '{name}'; see timm.list_models()")
        return timm.create_model(name, pretrained=False, num_classes=0)

    models = import_torchvision().models
    known = models.list_models(module=models)  # the classification architectures
    if name not in known:
        raise KeyError(f"unknown torchvision architecture '{name}'; known: {', '.join(sorted(known))}")
    network = models.get_model(name, weights=None)
    for head in HEADS:
        if isinstance(getattr(network, head, None), nn.Module):
            setattr(network, head, nn.Identity())
            break
    return network


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own hint about TorchScript archives: ours follows
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickled whole model, a TorchScript archive, not a torch file
        if "TorchScript" in str(e):
            raise ValueError(f"{path} is a TorchScript file: pass it with --torchscript") from None
        raise ValueError(f"{path} cannot be loaded as a state dict with weights_only=True ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]}); save torch.save(model.state_dict(), PATH), or pass a "
                         "TorchScript file with --torchscript") from None
    for key in ("state_dict", "model", "module"):  # common wrappers of training scripts
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def build_network(spec: dict[str, Any]) -> nn.Module:
    """The user's network with its weights loaded, on the CPU, in eval mode."""
    check_spec(spec)
    path = Path(spec["weights"])
    if spec["library"] == "torchscript":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.export is its successor
                return torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as e:
            raise ValueError(f"{path} is not a TorchScript file ({type(e).__name__}); a state dict needs "
                             "--arch NAME --weights PATH instead") from None
    network = _architecture(spec["library"], spec["architecture"])
    state = _state_dict(path)
    own = network.state_dict()
    # The head's weights have no place once the head is gone (a fine-tuned head may even have
    # another number of classes): drop them; every other key must fit exactly.
    state = {k: v for k, v in state.items() if k in own or k.split(".")[0] not in HEADS}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    mismatched = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                  if k in own and own[k].shape != v.shape]
    if missing or unexpected or mismatched:
        raise ValueError(f"{path} does not fit {spec['library']} {spec['architecture']}: "
                         f"{len(missing)} missing keys ({', '.join(missing[:3])}), {len(unexpected)} unexpected "
                         f"({', '.join(unexpected[:3])}), {len(mismatched)} of another shape "
                         f"({', '.join(mismatched[:3])}); is it the state dict of a {spec['architecture']}?")
    network.load_state_dict(state)
    return network.eval()


def build_encoder(spec: dict[str, Any], resolution: int) -> Encoder:
    default_size = resolution if spec["library"] == "torchscript" else 224
    return Encoder(build_network(spec), resolution=resolution, input_size=int(spec.get("input_size") or default_size),
                   normalize=spec.get("normalize", "imagenet"))


def encoder_spec(*, library: str, weights: str | Path, architecture: str | None = None,
                 input_size: int | None = None, normalize: str = "imagenet") -> dict[str, Any]:
    """The `method` entry of an encoder run's config.json: what rebuilds the encoder."""
    path = Path(weights).expanduser().resolve()
    spec = {"name": METHOD, "library": library, "architecture": architecture, "weights": str(path),
            "input_size": input_size, "normalize": normalize}
    check_spec(spec)
    spec["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return spec


def has_encoder(run) -> bool:
    """Whether `run` has a model that can embed new images (an imported run has not)."""
    return run.kind != "imported"


def encoder_class(run) -> type[Method] | type[Encoder]:
    """The class of the model that embeds `run`'s images, to ask what it can do (`no_layers`,
    `no_maps`) without loading weights: the run's registered method, or `Encoder`."""
    check_embeddable(run)
    return Encoder if run.kind == "encoder" else METHODS.get(run.config.method.get("name"))


def check_embeddable(run) -> None:
    if not has_encoder(run):
        source = run.config.method.get("embeddings", "a file")
        raise ValueError(f"run {run.id} was imported with its embeddings ({source}) and has no encoder to "
                         "embed images with; import new embeddings, or make a run from the encoder's weights "
                         "with `ssl-explorer encode`")


def check_trainable(run) -> None:
    """Imported and encoder runs were never trained: refuse to train or resume them."""
    kind = run.kind
    if kind in ("imported", "encoder"):
        command = "import" if kind == "imported" else "encode"
        raise ValueError(f"run {run.id} was made by `ssl-explorer {command}`, not by training: there is "
                         f"nothing to train or resume (`ssl-explorer project {run.id}` remakes its map)")


def load_run_encoder(run, device: torch.device | str = "cpu"):
    """The model that embeds `run`'s images: its trained method, or the user's encoder."""
    check_embeddable(run)
    config = run.config
    if run.kind == "encoder":
        spec = config.method
        check_spec(spec)
        digest = hashlib.sha256(Path(spec["weights"]).read_bytes()).hexdigest()
        if spec.get("sha256") not in (None, digest):
            raise ValueError(f"{spec['weights']} has changed since run {run.id} was made (its sha256 differs): "
                             "its stored embeddings came from other weights; put the original file back, or "
                             "make a new run with `ssl-explorer encode`")
        return build_encoder(spec, config.data.resolution).to(device).eval()

    return load_method(run, device)
