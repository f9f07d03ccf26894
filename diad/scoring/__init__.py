"""Anomaly scoring: frozen ImageNet backbones, pixel anomaly maps, image scores (docs/method.md, Anomaly map and Image score)."""

from diad.lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_SIGMA": "diad.scoring.anomaly_map",
    "anomaly_maps": "diad.scoring.anomaly_map",
    "gaussian_blur": "diad.scoring.anomaly_map",
    "BACKBONES": "diad.scoring.backbones",
    "DEFAULT_BACKBONE": "diad.scoring.backbones",
    "DEFAULT_LAYERS": "diad.scoring.backbones",
    "FeatureExtractor": "diad.scoring.backbones",
    "load_backbone": "diad.scoring.backbones",
    "DEFAULT_RULE": "diad.scoring.image_score",
    "DEFAULT_TOPK": "diad.scoring.image_score",
    "SCORE_RULES": "diad.scoring.image_score",
    "image_scores": "diad.scoring.image_score",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
