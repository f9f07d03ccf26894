"""Pixel-level metrics (AUROC, AP, F1-max, exact MVTec AU-PRO, authors' legacy PRO) from ONE sort.

Each pixel becomes one uint64 key: the order-preserving bits of its float32 score (high 32 bits)
and its ground-truth region id (low 32 bits, 0 = normal). One in-place sort of the keys serves
every metric; the sorted keys are then read in chunks, from the highest score down.
Peak memory is about 8 bytes per pixel plus the inputs (113 M pixels -> ~0.9 GB of keys).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from diad.errors import DiadError
from diad.metrics.curves import CurveAccumulator
from diad.metrics.image import flipped_legacy

PRO_DEFINITION = (
    "AU-PRO (MVTec AD reference): every distinct score a threshold (ties collapsed); ground-truth "
    "regions = 8-connected components, counted over all images; FPR over all normal pixels of all "
    "images; PRO = mean over regions of the overlap fraction; (FPR, PRO) curve from (0, 0) integrated "
    "by the trapezoid rule up to FPR 0.3, linearly interpolated at 0.3, divided by 0.3"
)
LEGACY_PRO_DEFINITION = (
    "pixel_pro_legacy (DiAD authors' code): 200 thresholds np.arange(min, max, (max-min)/200), "
    "binary = score > t; keep FPR < 0.3, divide FPR by the largest kept FPR, sklearn auc"
)

# 3x3 connectivity inside each image, none across images: (N,H,W) stacks label in one call.
_STRUCTURE_8 = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE_8[1] = True
_IMAGES_PER_BLOCK = 16
_CHUNK = 1 << 20
_LEGACY_THRESHOLDS = 200


def pixel_metrics(masks, maps, *, fpr_limit: float = 0.3) -> dict[str, float]:
    """masks (N,H,W) bool/uint8 (nonzero = defect), maps (N,H,W) float -> pixel metrics dict.

    Scores are compared as float32. Keys: pixel_auroc, pixel_ap, pixel_f1max, pixel_aupro,
    pixel_pro_legacy, pixel_auroc_flipped_legacy (the authors' flip of an AUROC below 0.5; comparison only). A metric whose classes are missing (no defect or no normal pixel) is NaN.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise DiadError(f"pixel metrics: fpr_limit={fpr_limit}; expected a value in (0, 1]")
    masks, maps = _check_inputs(masks, maps)
    keys, region_sizes = _sorted_keys(masks, maps)
    n_pos = int(region_sizes.sum())
    n_neg = keys.size - n_pos
    # Region r's pixels each add 1/|r| to the PRO sum; the accumulator divides by the region count.
    weight_table = np.concatenate(([0.0], 1.0 / np.maximum(region_sizes, 1)))
    legacy_th = _legacy_thresholds(keys)
    acc = CurveAccumulator(
        n_pos, n_neg, len(region_sizes), fpr_limit,
        legacy_thresholds=None if legacy_th is None else legacy_th[1],
    )
    _stream(keys, weight_table, acc)
    return {
        "pixel_auroc": acc.auroc(),
        "pixel_ap": acc.ap(),
        "pixel_f1max": acc.f1max(),
        "pixel_aupro": acc.aupro(),
        "pixel_pro_legacy": _legacy_auc(acc, legacy_th, fpr_limit),
        "pixel_auroc_flipped_legacy": flipped_legacy(acc.auroc()),
    }


def count_regions(masks) -> int:
    """Number of 8-connected ground-truth regions in masks (N,H,W), counted over all images."""
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    return int(ndimage.label(masks != 0, structure=_STRUCTURE_8)[1])


def _check_inputs(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    masks, maps = np.asarray(masks), np.asarray(maps)
    # Accept the core's (N,1,H,W) layout too.
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3 or masks.shape != maps.shape:
        raise DiadError(
            f"pixel metrics: masks {masks.shape} and maps {maps.shape} must both be (N,H,W) of one shape"
        )
    if maps.size == 0:
        raise DiadError("pixel metrics: maps are empty; expected at least one pixel")
    if maps.size >= 1 << 40:
        raise DiadError(f"pixel metrics: {maps.size} pixels is too many; expected fewer than 2**40")
    if not np.issubdtype(maps.dtype, np.floating) and not np.issubdtype(maps.dtype, np.integer):
        raise DiadError(f"pixel metrics: maps dtype {maps.dtype} is not numeric")
    return masks, maps


def _ordered_bits(scores: np.ndarray) -> np.ndarray:
    """float32 array -> uint32 array with the same order (and ties) as the floats."""
    s = scores + np.float32(0.0)  # -0.0 -> +0.0, so the two zeros stay one tie group
    bits = s.view(np.uint32)
    neg = (bits >> np.uint32(31)).astype(bool)
    return np.where(neg, ~bits, bits | np.uint32(0x80000000))


def _float_from_bits(ordered: np.ndarray) -> np.ndarray:
    """Inverse of _ordered_bits."""
    ordered = np.asarray(ordered, dtype=np.uint32)
    pos = (ordered >> np.uint32(31)).astype(bool)
    bits = np.where(pos, ordered & np.uint32(0x7FFFFFFF), ~ordered)
    return bits.view(np.float32)


def _sorted_keys(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> keys (N*H*W,) uint64 sorted ascending, region sizes (R,) int64 (region id r+1)."""
    n = maps.shape[0]
    per_image = maps.shape[1] * maps.shape[2]
    keys = np.empty(maps.size, dtype=np.uint64)
    sizes, offset = [], 0
    for lo in range(0, n, _IMAGES_PER_BLOCK):
        hi = min(n, lo + _IMAGES_PER_BLOCK)
        scores = np.ascontiguousarray(maps[lo:hi], dtype=np.float32)
        if np.isnan(scores).any():
            raise DiadError(f"pixel metrics: maps[{lo}:{hi}] contain NaN; expected finite scores")
        labels, n_reg = ndimage.label(masks[lo:hi] != 0, structure=_STRUCTURE_8)
        labels = labels.astype(np.uint64, copy=False)
        sizes.append(np.bincount(labels.ravel(), minlength=n_reg + 1)[1:])
        labels[labels > 0] += np.uint64(offset)  # region ids are global over all images
        offset += n_reg
        block = keys[lo * per_image : hi * per_image]
        np.left_shift(_ordered_bits(scores).ravel().astype(np.uint64), np.uint64(32), out=block)
        block |= labels.ravel()
    keys.sort()  # the one sort shared by every metric
    return keys, np.concatenate(sizes).astype(np.int64)


def _stream(keys: np.ndarray, weight_table: np.ndarray, acc: CurveAccumulator) -> None:
    """Feed the sorted keys to `acc` from the highest score down, in chunks."""
    low = np.uint64(0xFFFFFFFF)
    shift = np.uint64(32)
    hi = keys.size
    while hi > 0:
        lo = max(0, hi - _CHUNK)
        chunk = keys[lo:hi][::-1]
        scores = chunk >> shift
        region = chunk & low
        next_score = None if lo == 0 else keys[lo - 1] >> shift
        weight = weight_table[region.astype(np.intp)] if acc.needs_weights() else None
        acc.feed(scores, region != 0, weight, next_score)
        hi = lo


def _legacy_thresholds(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The authors' thresholds np.arange(min, max, (max-min)/200) -> (float values, uint64 ordered bits).

    A pixel is positive when score > t; for float32 scores that equals score > t32, where t32 is
    the largest float32 <= t, so the comparison can run on the ordered bits.
    """
    lo, hi = _float_from_bits(keys[[0, -1]] >> np.uint64(32)).astype(np.float64)
    delta = (hi - lo) / _LEGACY_THRESHOLDS
    if not np.isfinite(delta) or delta <= 0:
        return None
    th = np.arange(lo, hi, delta)
    th32 = th.astype(np.float32)
    above = th32.astype(np.float64) > th
    th32[above] = np.nextafter(th32[above], np.float32(-np.inf))
    return th, _ordered_bits(th32).astype(np.uint64)


def _legacy_auc(acc: CurveAccumulator, legacy_th, fpr_limit: float) -> float:
    """Authors' PRO: keep FPR < limit, rescale FPR by its largest kept value, trapezoid (sklearn auc)."""
    if legacy_th is None or acc.n_regions == 0 or acc.n_neg == 0:
        return math.nan
    fpr, pro = acc.legacy_points()
    keep = fpr < fpr_limit
    fpr, pro = fpr[keep], pro[keep]
    if len(fpr) < 2 or fpr.max() <= 0:
        return math.nan
    fpr = fpr / fpr.max()
    # Thresholds ascend, so FPR descends; integrate in ascending order.
    return float(np.trapezoid(pro[::-1], fpr[::-1]))
