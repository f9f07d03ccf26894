"""Image-level anomaly score from a pixel anomaly map."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from diad.errors import DiadError

SCORE_RULES = ("authors_pool", "max", "topk_mean")
DEFAULT_RULE = "authors_pool"
DEFAULT_TOPK = 0.01  # topk_mean default: the top 1 % of pixels
POOL_SIZE = 8  # authors' eval_helper: avg_pool2d(kernel 8, stride 1, no padding), applied 8 times
POOL_ROUNDS = 8
MIN_POOL_SIZE = POOL_ROUNDS * (POOL_SIZE - 1) + 1  # each round shrinks a side by 7: 57 px at least


def image_scores(maps: torch.Tensor, rule: str = DEFAULT_RULE, k: float | int = DEFAULT_TOPK) -> torch.Tensor:
    """(N,H,W) anomaly maps -> (N,) image scores (float32, on the maps' device).

    authors_pool: max of the map after 8 rounds of 8x8 average pooling, stride 1, no padding
      (256 -> 200 px), as the authors' EvalImageMax; the paper calls it "8 rounds of 8x8 average pooling".
    max: the largest pixel.
    topk_mean: mean of the k largest pixels; a float k in (0, 1] is a fraction of the H*W pixels
      (ceil(k*H*W), at least 1), an int k >= 1 is a pixel count. k is ignored by the other rules.
    """
    maps = torch.as_tensor(maps)
    if maps.ndim != 3 or maps.shape[0] == 0:
        raise DiadError(f"image_scores expects maps (N,H,W) with N >= 1, got {tuple(maps.shape)}")
    maps = maps.float()
    if rule == "authors_pool":
        return _authors_pool(maps)
    if rule == "max":
        return maps.flatten(1).amax(dim=1)
    if rule == "topk_mean":
        count = topk_count(k, maps.shape[1] * maps.shape[2])
        return maps.flatten(1).topk(count, dim=1).values.mean(dim=1)
    raise DiadError(f"unknown score rule '{rule}': expected one of {', '.join(SCORE_RULES)}")


def topk_count(k: float | int, num_pixels: int) -> int:
    """How many pixels topk_mean averages: a fraction (float in (0,1]) or a count (int >= 1)."""
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise DiadError(f"topk_mean k={k!r}: expected a fraction in (0, 1] or a pixel count >= 1")
    if isinstance(k, float):
        if not 0.0 < k <= 1.0:
            raise DiadError(f"topk_mean k={k!r}: a float k is a fraction of the pixels, expected 0 < k <= 1")
        return max(1, math.ceil(k * num_pixels))
    if not 1 <= k <= num_pixels:
        raise DiadError(f"topk_mean k={k}: an int k is a pixel count, expected 1 <= k <= {num_pixels}")
    return k


def _authors_pool(maps: torch.Tensor) -> torch.Tensor:
    """(N,H,W) -> (N,): max after POOL_ROUNDS rounds of POOL_SIZE x POOL_SIZE average pooling, stride 1."""
    if min(maps.shape[1:]) < MIN_POOL_SIZE:
        raise DiadError(f"score rule 'authors_pool' needs maps of at least {MIN_POOL_SIZE}x{MIN_POOL_SIZE} "
                        f"pixels, got {tuple(maps.shape[1:])}; use rule 'max' or 'topk_mean'")
    x = maps[:, None]
    for _ in range(POOL_ROUNDS):
        x = F.avg_pool2d(x, POOL_SIZE, stride=1)
    return x.flatten(1).amax(dim=1)
