"""Checks of a loaded split that must fail loudly rather than turn into a NaN metric."""

from __future__ import annotations

from diad.data.config import DataConfig
from diad.data.sample import Sample, categories_without_good
from diad.errors import DiadError


def check_test_split(samples: list[Sample], cfg: DataConfig) -> None:
    """Every category of the test split needs normal and anomalous images: image AUROC compares the two."""
    where = f"{cfg.format} at {cfg.root or '(embedded default)'}"
    if not samples:
        raise DiadError(f"data: no test images found for {where}")
    no_good = categories_without_good(samples)
    if no_good:
        raise DiadError(f"data: test split of category {', '.join(no_good)} ({where}) has no normal (good) images; "
                        f"image AUROC/AP need normal and anomalous test images (add test/good/)")
    no_bad = sorted({s.category for s in samples} - {s.category for s in samples if s.label == 1})
    if no_bad:
        raise DiadError(f"data: test split of category {', '.join(no_bad)} ({where}) has no anomalous images; "
                        f"image AUROC/AP need normal and anomalous test images")
