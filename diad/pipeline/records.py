"""What training and evaluation return: plain frozen records (torch-free, so the sweep layer and its test
stand-ins can build and read them without loading a model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# evaluate()'s progress callback: (stage, done, total), stage one of EVAL_STAGES; e.g. ("reconstruct", 16, 80)
EvalProgress = Callable[[str, int, int], None]
EVAL_STAGES = ("reconstruct", "score", "metrics", "diagnostics")


@dataclass(frozen=True)
class TrainResult:
    checkpoint_dir: Path
    steps: int
    wall_s: float
    images_per_s: float
    peak_mem_mb: float
    final_loss: float
    val_loss: float | None
    ae_cached: bool


@dataclass(frozen=True)
class EvalResult:
    per_category: dict[str, dict[str, float]]  # metric name (diad.schema.METRICS) -> value, per category and "mean"
    n_images: dict[str, int]  # test images per category (and "mean": all of them)
    wall_s: float
    images_per_s: float
    recon_cached: bool
    backbone_weights: str  # "packaged", a path, or "random"
    protocol: dict  # diad.schema.PROTOCOL_KEYS -> value: what makes two numbers comparable
    pixel_notes: dict[str, str] = field(default_factory=dict)  # category -> why its pixel metrics are NaN
    diagnostics: dict[str, float] = field(default_factory=dict)  # diad.schema.DIAGNOSTICS; {} when switched off
