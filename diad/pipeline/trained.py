"""A trained model back from its checkpoint directory."""

from __future__ import annotations

from pathlib import Path

import torch

from diad import checkpoint as ckpt
from diad.config import RunConfig
from diad.errors import DiadError
from diad.models import build_model


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir, or a training out dir (then its latest checkpoint)."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    latest = ckpt.latest_checkpoint(path / "checkpoints")
    if latest is None:
        raise DiadError(f"{path}: neither a checkpoint (state.json) nor a training dir with checkpoints/")
    return latest


def load_run_config_of(checkpoint_dir: Path) -> RunConfig:
    """The RunConfig saved with a checkpoint."""
    return RunConfig.model_validate(ckpt.read_config(checkpoint_dir))


def load_trained(checkpoint_dir: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, RunConfig]:
    """(model in eval mode on `device`, its RunConfig) from a checkpoint directory (safetensors only)."""
    path = Path(checkpoint_dir)
    if not path.is_dir():
        raise DiadError(f"checkpoint directory {path} does not exist")
    run_cfg = load_run_config_of(path)
    model = build_model(run_cfg.model, load_pretrained=False)
    ckpt.load_weights(path, model)
    return model.to(device).eval(), run_cfg
