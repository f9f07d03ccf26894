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


def pixel_metrics_notes(samples: list[Sample]) -> dict[str, str]:
    """{category: why its pixel metrics are NaN} for each category whose anomalous images lack masks.

    A category keeps its pixel metrics when every one of its anomalous images has a mask; the others are
    named here (with the defect folders that have no masks), so a result never holds an unexplained NaN.
    """
    notes: dict[str, str] = {}
    for cat in sorted({s.category for s in samples}):
        anomalous = [s for s in samples if s.category == cat and s.label == 1]
        if not anomalous:
            notes[cat] = "no anomalous test images, so no pixel metrics"
            continue
        unmasked = sorted({s.defect for s in anomalous if s.mask_path is None})
        if unmasked:
            notes[cat] = f"no ground-truth masks for defect type(s) {', '.join(unmasked)}; pixel metrics need all"
    return notes


def categories_without_good(samples: list[Sample]) -> list[str]:
    """Categories of a test split that hold no normal (good) image: their image AUROC cannot be computed."""
    return sorted({s.category for s in samples} - {s.category for s in samples if s.label == 0})
