"""SD-1.5 weights as users have them, offline: a diffusers folder or one original (LDM-layout) checkpoint file.

`model.pretrained_dir` is either
- a folder with `unet/` and `vae/` in diffusers format (save_pretrained output, e.g. stable-diffusion-v1-5), or
- one checkpoint file in the original LDM key layout (`v1-5-pruned.ckpt`, `v1-5-pruned-emaonly.safetensors`: the
  file the authors' code loads): UNet under `model.diffusion_model.*`, autoencoder under `first_stage_model.*`.
  It is converted with diffusers' own single-file conversion functions and the SD-1.5 configs shipped in
  diad/models/sd15/ (the run config's sizes on top), so nothing is ever fetched from the hub.

Either way the result must match the run config exactly: missing, unexpected or differently shaped weights are a
one-line DiadError, never a silent random init or reshape.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

from diad.errors import DiadError

SD15_CONFIG_DIR = Path(__file__).resolve().parent / "sd15"
SINGLE_FILE_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth")
# The LDM layout of SD-1.x checkpoints (also what diffusers' conversion looks for).
LDM_PREFIX = {"unet": "model.diffusion_model.", "vae": "first_stage_model."}
_MODEL_CLASS = {"unet": UNet2DConditionModel, "vae": AutoencoderKL}
_CONVERT = {"unet": convert_ldm_unet_checkpoint, "vae": convert_ldm_vae_checkpoint}
# config keys compared when a diffusers folder is loaded (its own config.json decides the rest)
_CHECKED_KEYS = {"unet": ("block_out_channels", "cross_attention_dim", "in_channels"),
                 "vae": ("block_out_channels", "latent_channels")}


def is_single_file(path: Path) -> bool:
    """True when `path` names one checkpoint file (else it is taken as a diffusers folder)."""
    return path.suffix.lower() in SINGLE_FILE_SUFFIXES and not path.is_dir()


def weights_path(source: Path, name: str) -> Path:
    """What to load `name` ("unet" or "vae") from: the checkpoint file itself, or <source>/<name> of a folder."""
    path = source.expanduser()
    if is_single_file(path):
        return path
    sub = path / name
    if not (sub / "config.json").is_file():
        raise DiadError(
            f"model.pretrained_dir: {sub} has no config.json; expected SD-1.5 {name} weights in diffusers format "
            f"(save_pretrained output) at <pretrained_dir>/{name}/, or pretrained_dir = one SD-1.5 checkpoint file "
            f"({', '.join(SINGLE_FILE_SUFFIXES)}) in the original LDM layout", key="model.pretrained_dir"
        )
    return sub


def load_pretrained(path: Path, name: str, kwargs: dict) -> UNet2DConditionModel | AutoencoderKL:
    """The `name` network ("unet" or "vae") from `path`: a diffusers folder of that network, or an LDM file.

    kwargs: the diffusers constructor arguments the run config asks for (sizes); the loaded network must match.
    """
    if name not in _MODEL_CLASS:
        raise ValueError(f"name must be one of {sorted(_MODEL_CLASS)}, got {name!r}")
    path = Path(path).expanduser()
    if is_single_file(path):
        return _from_single_file(path, name, kwargs)
    return _from_diffusers_dir(path, name, kwargs)


# ---- diffusers folder ---------------------------------------------------------------------------------------

def _as_list(value):
    """Tuples and lists compare equal (diffusers configs hold lists, ours tuples)."""
    return list(value) if isinstance(value, (list, tuple)) else value


def _from_diffusers_dir(path: Path, name: str, kwargs: dict):
    try:
        model = _MODEL_CLASS[name].from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as e:  # no or broken weights file, size mismatch with config.json
        raise DiadError(f"model.pretrained_dir: {path}: cannot load the {name} ({_first_line(e)})") from None
    for key in _CHECKED_KEYS[name]:
        if _as_list(model.config.get(key)) != _as_list(kwargs[key]):
            raise DiadError(f"model.pretrained_dir: {path} has {key}={model.config.get(key)}, "
                            f"the config expects {kwargs[key]}")
    return model


# ---- one LDM-layout checkpoint file -------------------------------------------------------------------------

def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def read_ldm_state_dict(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of an LDM-layout checkpoint whose keys start with `prefix` (keys kept as they are).

    .safetensors: only those tensors are read. .ckpt/.pt/.pth: torch.load with weights_only=True (never arbitrary
    pickled code), memory-mapped when the file is in torch's zip format; a top-level "state_dict" is unwrapped.
    """
    if not path.is_file():
        raise DiadError(f"model.pretrained_dir: {path} does not exist; expected a diffusers folder (unet/, vae/) "
                        f"or an SD-1.5 checkpoint file")
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
        except Exception as e:  # safetensors raises its own SafetensorError for a bad header
            raise DiadError(f"model.pretrained_dir: {path} is not a readable safetensors file ({_first_line(e)})") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise DiadError(f"model.pretrained_dir: {path} cannot be read as a torch checkpoint with weights_only=True "
                        f"({_first_line(e)}); use the .safetensors version of the file") from None
    while isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise DiadError(f"model.pretrained_dir: {path} holds a {type(sd).__name__}, expected a state dict")
    return {k: v for k, v in sd.items() if isinstance(k, str) and k.startswith(prefix) and torch.is_tensor(v)}


def single_file_config(name: str, kwargs: dict) -> dict:
    """The shipped SD-1.5 diffusers config of `name` with the run config's sizes on top."""
    config = dict(_MODEL_CLASS[name].load_config(SD15_CONFIG_DIR / name, local_files_only=True))
    config.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()})
    return config


def _from_single_file(path: Path, name: str, kwargs: dict):
    prefix = LDM_PREFIX[name]
    ldm = read_ldm_state_dict(path, prefix)
    if not ldm:
        raise DiadError(f"model.pretrained_dir: {path} has no '{prefix}*' weights; expected an SD-1.5 checkpoint "
                        f"in the original LDM layout (v1-5-pruned.ckpt / .safetensors)")
    config = single_file_config(name, kwargs)
    try:
        converted = _CONVERT[name](ldm, config)  # diffusers' own LDM -> diffusers key mapping
    except Exception as e:  # the mapping indexes keys it expects; anything else is not an SD-1.x layout
        raise DiadError(f"model.pretrained_dir: {path}: the {name} weights do not convert from the SD-1.x LDM layout "
                        f"({type(e).__name__}: {_first_line(e)})") from None
    model = _MODEL_CLASS[name].from_config(config)
    _load_exact(model, converted, path, name)
    return model.eval()


def _load_exact(model: torch.nn.Module, state: dict, path: Path, name: str) -> None:
    """Load `state` into `model` demanding the same keys and shapes (diffusers' own loader only warns)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = (f"{len(missing)} missing (first: {missing[0]})" if missing else "") + \
               (", " if missing and unexpected else "") + \
               (f"{len(unexpected)} unexpected (first: {unexpected[0]})" if unexpected else "")
        raise DiadError(f"model.pretrained_dir: {path}: the {name} weights do not match the config: {what}")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise DiadError(f"model.pretrained_dir: {path}: {name} weight {key} has shape {tuple(value.shape)}, "
                            f"the config expects {tuple(own[key].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
