"""Normalisation applied by consumers of [0, 1] images (the dataset itself never normalises)."""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(x01: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) in [0,1] -> (N,3,H,W) standardised with the ImageNet mean/std (for backbones)."""
    if x01.ndim != 4 or x01.shape[1] != 3:
        raise ValueError(f"imagenet_normalize expects (N,3,H,W), got {tuple(x01.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    return (x01 - mean) / std
