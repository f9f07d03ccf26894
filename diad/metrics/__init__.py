"""Anomaly-detection metrics: image and pixel AUROC / AP / F1-max, exact MVTec AU-PRO, legacy PRO."""

from diad.lazy import lazy_exports

_EXPORTS = {
    "IMAGE_METRICS": "diad.schema",
    "PIXEL_METRICS": "diad.schema",
    "evaluate_by_category": "diad.metrics.evaluate",
    "image_metrics": "diad.metrics.image",
    "LEGACY_PRO_DEFINITION": "diad.metrics.pixel",
    "PRO_DEFINITION": "diad.metrics.pixel",
    "count_regions": "diad.metrics.pixel",
    "pixel_metrics": "diad.metrics.pixel",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
