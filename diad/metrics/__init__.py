"""Anomaly-detection metrics: image and pixel AUROC / AP / F1-max, exact MVTec AU-PRO, legacy PRO."""

from diad.metrics.evaluate import IMAGE_KEYS, PIXEL_KEYS, evaluate_by_category
from diad.metrics.image import image_metrics
from diad.metrics.pixel import LEGACY_PRO_DEFINITION, PRO_DEFINITION, count_regions, pixel_metrics

__all__ = [
    "IMAGE_KEYS",
    "LEGACY_PRO_DEFINITION",
    "PIXEL_KEYS",
    "PRO_DEFINITION",
    "count_regions",
    "evaluate_by_category",
    "image_metrics",
    "pixel_metrics",
]
