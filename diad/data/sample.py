"""One image of a dataset: where it is, its label, and where its pixel mask is (if any)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Split = Literal["train", "test"]


@dataclass(frozen=True)
class Sample:
    """An image path with its labels; `mask_path` is None for normals and for image-level-only datasets."""

    image_path: Path
    mask_path: Path | None
    label: int  # 0 normal, 1 anomalous
    category: str
    defect: str  # "good" for normals
    split: Split


def has_pixel_masks(samples: list[Sample]) -> bool:
    """True when every anomalous sample has a mask, so pixel metrics mean something."""
    anomalous = [s for s in samples if s.label == 1]
    return bool(anomalous) and all(s.mask_path is not None for s in anomalous)
