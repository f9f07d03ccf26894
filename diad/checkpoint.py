"""Checkpoints as plain files: safetensors for tensors, JSON for everything else; never pickle.

Layout of one checkpoint directory (written under a temp name, renamed when complete):

    model.safetensors      full model state dict
    optimizer.safetensors  optimizer state tensors, keys "state.<param index>.<name>"
    optimizer.json         optimizer param_groups and non-tensor state
    rng.safetensors        torch RNG states (uint8)
    config.json            the RunConfig as JSON
    state.json             step, metrics, sha256 of model.safetensors
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from diad.errors import DiadError
from diad.integrity import check_finite, read_json, safetensors_error, verified_sha256
from diad.io import atomic_dir, atomic_write_text

FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d+)$")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state dict -> (tensors, JSON-able rest)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_states() -> dict[str, torch.Tensor]:
    states = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"torch_cuda_{i}"] = s
    return states


def save_checkpoint(path: str | Path, model: torch.nn.Module, config: dict, step: int,
                    optimizer: torch.optim.Optimizer | None = None, metrics: dict | None = None) -> Path:
    """Write a complete checkpoint directory atomically; returns its path."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        if optimizer is not None:
            tensors, meta = _flatten_optimizer(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            (tmp / "optimizer.json").write_text(json.dumps(meta))
        save_file(_rng_states(), str(tmp / "rng.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
        state = {"format": FORMAT_VERSION, "step": int(step), "metrics": metrics or {},
                 "weights_sha256": file_sha256(tmp / "model.safetensors")}
        (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
        _readable(tmp)
    return path


def _readable(directory: Path) -> None:
    """mkdtemp and safetensors create owner-only modes; a checkpoint is shared like any output file."""
    os.chmod(directory, 0o755)
    for f in directory.iterdir():
        os.chmod(f, 0o644)


def _require(path: Path, name: str) -> Path:
    f = path / name
    if not f.is_file():
        raise DiadError(f"{path}: not a diad checkpoint ({name} missing)")
    return f


def recover_hint(path: str | Path) -> str:
    """How to get past a damaged checkpoint or cache entry (part of every integrity error)."""
    return f"delete {path} (a cache entry is rebuilt; a training checkpoint: resume from an older step-* or retrain)"


def read_state(path: str | Path) -> dict:
    """state.json of a checkpoint: step, metrics, weights_sha256."""
    state = read_json(_require(Path(path), "state.json"), "checkpoint state", recover_hint(path))
    if not isinstance(state, dict):
        raise DiadError(f"{Path(path) / 'state.json'}: expected a JSON object; {recover_hint(path)}")
    return state


def read_config(path: str | Path) -> dict:
    """config.json of a checkpoint (the RunConfig as a dict)."""
    cfg = read_json(_require(Path(path), "config.json"), "checkpoint config", recover_hint(path))
    if not isinstance(cfg, dict):
        raise DiadError(f"{Path(path) / 'config.json'}: expected a JSON object; {recover_hint(path)}")
    return cfg


def weights_sha256(path: str | Path) -> str:
    """sha256 of model.safetensors, verified against the one state.json recorded (hashed once per file version)."""
    path = Path(path)
    return verified_sha256(_require(path, "model.safetensors"), read_state(path).get("weights_sha256"),
                           recover_hint(path))


def load_weights(path: str | Path, model: torch.nn.Module, strict: bool = True) -> None:
    """Load model.safetensors into `model` after checking its hash; shapes must match, values must be finite."""
    path = Path(path)
    weights_sha256(path)
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
    except Exception as e:
        if not _is_file_error(e):
            raise
        raise safetensors_error(path / "model.safetensors", e, recover_hint(path)) from None
    if strict and (missing or unexpected):
        raise DiadError(f"{path}: weights do not match the model (missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]})")
    check_finite(model, path / "model.safetensors", recover_hint(path))


def _is_file_error(e: BaseException) -> bool:
    """A damaged safetensors file (SafetensorError: truncated, bad header) or an unreadable one."""
    return isinstance(e, OSError) or type(e).__name__ == "SafetensorError"


def _load_tensors(path: Path, name: str) -> dict[str, torch.Tensor]:
    f = _require(path, name)
    try:
        return load_file(str(f))
    except Exception as e:
        if not _is_file_error(e):
            raise
        raise safetensors_error(f, e, recover_hint(path)) from None


def load_optimizer(path: str | Path, optimizer: torch.optim.Optimizer) -> None:
    """Restore optimizer state saved by save_checkpoint."""
    path = Path(path)
    tensors = _load_tensors(path, "optimizer.safetensors")
    meta = read_json(_require(path, "optimizer.json"), "optimizer state", recover_hint(path))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta))


def restore_rng(path: str | Path) -> None:
    """Restore the torch RNG states saved with a checkpoint."""
    states = _load_tensors(Path(path), "rng.safetensors")
    torch.set_rng_state(states["torch_cpu"])
    cuda = [states[k] for k in sorted(states) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def checkpoint_key(path: str | Path, length: int = 16) -> str:
    """Hash of the verified weights (plus config) of a checkpoint: the key of anything derived from it.

    The file is hashed and checked against state.json, so a damaged file never matches an old cache entry.
    """
    path = Path(path)
    weights = weights_sha256(path)
    config = _require(path, "config.json").read_bytes()
    return hashlib.sha256(weights.encode() + config).hexdigest()[:length]


def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (temp dirs of interrupted writes are skipped)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / "state.json").is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomic pretty JSON (metrics files next to checkpoints)."""
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str))
