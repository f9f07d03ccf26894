"""Anomaly scoring: frozen ImageNet backbones, pixel anomaly maps, image scores (spec section 1.8-1.9)."""

from diad.scoring.anomaly_map import DEFAULT_SIGMA, anomaly_maps, gaussian_blur
from diad.scoring.backbones import BACKBONES, DEFAULT_BACKBONE, DEFAULT_LAYERS, FeatureExtractor, load_backbone
from diad.scoring.image_score import DEFAULT_RULE, DEFAULT_TOPK, SCORE_RULES, image_scores

__all__ = [
    "BACKBONES", "DEFAULT_BACKBONE", "DEFAULT_LAYERS", "DEFAULT_RULE", "DEFAULT_SIGMA", "DEFAULT_TOPK",
    "FeatureExtractor", "SCORE_RULES", "anomaly_maps", "gaussian_blur", "image_scores", "load_backbone",
]
