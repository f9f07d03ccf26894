"""diad.metrics against scikit-learn, brute force, and plain reference implementations of AU-PRO."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure
from sklearn.metrics import auc, average_precision_score, roc_auc_score

import diad.metrics.pixel as pixel_mod
from diad.errors import DiadError
from diad.metrics import (
    PRO_DEFINITION,
    count_regions,
    evaluate_by_category,
    image_metrics,
    pixel_metrics,
)

# ---- plain references ------------------------------------------------------------------------


def brute_f1max(y: np.ndarray, s: np.ndarray) -> float:
    """Max F1 over every distinct score used as threshold (predict positive when score >= t)."""
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        tp = np.sum(pred & y)
        fp = np.sum(pred & ~y)
        fn = np.sum(~pred & y)
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    return best


def reference_aupro(masks: np.ndarray, maps: np.ndarray, limit: float = 0.3) -> float:
    """Every distinct score a threshold; per-region overlaps and global FPR computed directly."""
    masks = masks.astype(bool)
    regions = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == r) for r in range(1, n + 1)]
    normal = ~masks
    xs, ys = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        xs.append((pred & normal).sum() / normal.sum())
        ys.append(np.mean([pred[i][r].mean() for i, r in regions]))
    area = 0.0
    for x0, y0, x1, y1 in zip(xs[:-1], ys[:-1], xs[1:], ys[1:]):
        if x0 >= limit:
            break
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:  # the segment crosses the limit: interpolate linearly and stop
            y_lim = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_lim) / 2
            break
    return area / limit


def authors_legacy_pro(masks: np.ndarray, amaps: np.ndarray, num_th: int = 200) -> float:
    """The DiAD authors' compute_pro, restated without pandas: loops over 200 linear thresholds."""
    fprs, pros = [], []
    min_th, max_th = amaps.min(), amaps.max()
    delta = (max_th - min_th) / num_th
    inverse = 1 - masks
    for th in np.arange(min_th, max_th, delta):
        binary = amaps > th
        overlaps = []
        for b, m in zip(binary, masks):
            for region in measure.regionprops(measure.label(m)):
                rr, cc = region.coords[:, 0], region.coords[:, 1]
                overlaps.append(b[rr, cc].sum() / region.area)
        fprs.append(np.logical_and(inverse, binary).sum() / inverse.sum())
        pros.append(np.mean(overlaps))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs < 0.3
    fprs, pros = fprs[keep], pros[keep]
    return auc(fprs / fprs.max(), pros)


def random_case(seed: int, n: int = 8, h: int = 12, w: int = 14, levels: int = 12):
    """Random blob masks (some images defect-free) and tied maps correlated with the masks."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), dtype=np.uint8)
    for i in range(n):
        if i % 3 == 0:
            continue  # defect-free image
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
            masks[i, y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = 1
    raw = rng.random((n, h, w)) + 0.6 * masks
    maps = (np.round(raw * levels) / levels).astype(np.float32)  # few levels -> many ties
    return masks, maps


# ---- image level -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_image_metrics_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.4
    s = np.round(rng.random(300) + 0.3 * y, 1)  # ~14 levels: many ties
    got = image_metrics(y.astype(int), s)
    assert got["image_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert got["image_ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert got["image_f1max"] == pytest.approx(brute_f1max(y, s), abs=1e-12)


def test_image_auroc_below_half_is_not_flipped():
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.5
    s = rng.random(200) - 0.5 * y  # anomalies score LOWER
    got = image_metrics(y, s)["image_auroc"]
    assert got < 0.5
    assert got == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_image_metrics_single_class_is_nan():
    got = image_metrics([0, 0, 0], [0.1, 0.5, 0.2])
    assert all(math.isnan(v) for v in got.values())


def test_image_metrics_rejects_bad_labels():
    with pytest.raises(DiadError, match="labels"):
        image_metrics([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DiadError, match="one length"):
        image_metrics([0, 1], [0.1, 0.2, 0.3])


# ---- pixel level -----------------------------------------------------------------------------


def test_pixel_hand_built_case():
    """One 3x4 image: a 2-pixel defect scored 1.0 and 0.5, one normal pixel 0.75, the rest 0.

    ROC: 1.0 beats all 10 normals, 0.5 beats 9 -> 19/20. AP: 1/2 * 1 + 1/2 * 2/3. F1 at t=0.5: 4/5.
    PRO curve (0,0) (0,.5) (.1,.5) (.1,1) (1,1): area to 0.3 = .05 + .2 -> /0.3 = 5/6.
    """
    masks = np.zeros((1, 3, 4), dtype=bool)
    masks[0, 0, :2] = True
    maps = np.zeros((1, 3, 4), dtype=np.float32)
    maps[0, 0, 0], maps[0, 0, 1], maps[0, 2, 3] = 1.0, 0.5, 0.75
    got = pixel_metrics(masks, maps)
    assert got["pixel_auroc"] == pytest.approx(0.95, abs=1e-12)
    assert got["pixel_ap"] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)
    assert got["pixel_f1max"] == pytest.approx(0.8, abs=1e-12)
    assert got["pixel_aupro"] == pytest.approx(0.25 / 0.3, abs=1e-12)
    # Legacy: every kept FPR is 0 or 0.1 -> rescaled to {0, 1}; PRO is 0.5 where FPR is 0.
    assert got["pixel_pro_legacy"] == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_pixel_metrics_match_references(seed):
    masks, maps = random_case(seed)
    y, s = masks.ravel().astype(bool), maps.ravel()
    got = pixel_metrics(masks, maps)
    assert got["pixel_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert got["pixel_ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert got["pixel_f1max"] == pytest.approx(brute_f1max(y, s), abs=1e-12)
    assert got["pixel_aupro"] == pytest.approx(reference_aupro(masks, maps), abs=1e-12)
    legacy = authors_legacy_pro(masks, maps.astype(np.float64))
    assert got["pixel_pro_legacy"] == pytest.approx(legacy, abs=1e-12)


def test_pixel_metrics_continuous_scores_and_float64_input():
    """No ties at all, float64 maps (compared as float32), bool masks."""
    masks, _ = random_case(7)
    rng = np.random.default_rng(7)
    maps64 = rng.random(masks.shape) + 0.5 * masks
    maps32 = maps64.astype(np.float32)
    got = pixel_metrics(masks.astype(bool), maps64)
    assert got["pixel_aupro"] == pytest.approx(reference_aupro(masks, maps32), abs=1e-12)
    assert got["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps32.ravel()), abs=1e-12)


def test_streaming_chunks_and_blocks_do_not_change_results(monkeypatch):
    """Tiny chunks make tie groups straddle chunk boundaries; the numbers must not move."""
    masks, maps = random_case(3, n=9, levels=5)
    whole = pixel_metrics(masks, maps)
    monkeypatch.setattr(pixel_mod, "_CHUNK", 7)
    monkeypatch.setattr(pixel_mod, "_IMAGES_PER_BLOCK", 2)
    chunked = pixel_metrics(masks, maps)
    for k, v in whole.items():
        assert chunked[k] == pytest.approx(v, abs=1e-12), k


def test_diagonal_defects_are_one_region():
    masks = np.zeros((3, 6, 6), dtype=np.uint8)
    masks[1, 1, 1] = masks[1, 2, 2] = 1  # touch only at a corner: one 8-connected region
    masks[2, 4, 0] = 1  # a second region, in another image
    assert count_regions(masks) == 2
    maps = np.random.default_rng(0).integers(0, 6, masks.shape).astype(np.float32)
    maps[1, 1, 1], maps[1, 2, 2] = 9.0, 0.0  # half the merged region found at the top threshold
    got = pixel_metrics(masks, maps)["pixel_aupro"]
    assert got == pytest.approx(reference_aupro(masks, maps), abs=1e-12)
    # Counting the diagonal pair as two regions (4-connectivity) would give a different number.
    masks4 = masks.copy()
    masks4[1, 2, 2] = 0
    assert got != pytest.approx(pixel_metrics(masks4, maps)["pixel_aupro"], abs=1e-6)


def test_pixel_auroc_below_half_is_not_flipped():
    masks, maps = random_case(1)
    inverted = -maps
    got = pixel_metrics(masks, inverted)["pixel_auroc"]
    assert got < 0.5
    assert got == pytest.approx(roc_auc_score(masks.ravel(), inverted.ravel()), abs=1e-12)


def test_pixel_metrics_without_defects_is_nan():
    maps = np.random.default_rng(0).random((2, 5, 5))
    got = pixel_metrics(np.zeros((2, 5, 5), dtype=bool), maps)
    assert all(math.isnan(v) for v in got.values())


def test_pixel_metrics_rejects_bad_input():
    with pytest.raises(DiadError, match="one shape"):
        pixel_metrics(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    bad = np.zeros((1, 4, 4), dtype=np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(DiadError, match="NaN"):
        pixel_metrics(np.ones((1, 4, 4)), bad)


def test_pixel_metrics_accepts_channel_axis():
    masks, maps = random_case(2)
    a = pixel_metrics(masks[:, None], maps[:, None])
    b = pixel_metrics(masks, maps)
    assert a == b


# ---- per category ----------------------------------------------------------------------------


def test_evaluate_by_category_mean_row():
    masks, maps = random_case(5, n=12)
    labels = (masks.reshape(12, -1).max(axis=1) > 0).astype(int)
    scores = np.random.default_rng(5).random(12) + 0.4 * labels  # imperfect, differs per category
    cats = np.array(["bottle", "cable"] * 6)
    res = evaluate_by_category(cats, labels, scores, masks, maps)
    assert set(res) == {"bottle", "cable", "mean"}
    sel = cats == "cable"
    assert res["cable"]["image_auroc"] == image_metrics(labels[sel], scores[sel])["image_auroc"]
    assert res["cable"]["pixel_aupro"] == pixel_metrics(masks[sel], maps[sel])["pixel_aupro"]
    for k, v in res["mean"].items():
        assert v == pytest.approx((res["bottle"][k] + res["cable"][k]) / 2, abs=1e-12), k
    assert res["bottle"]["image_auroc"] != res["cable"]["image_auroc"]  # the mean is a real mean

    no_pixels = evaluate_by_category(cats, labels, scores)
    assert math.isnan(no_pixels["mean"]["pixel_auroc"])
    assert no_pixels["mean"]["image_ap"] == pytest.approx(res["mean"]["image_ap"])


def test_pro_definition_names_the_protocol():
    for word in ("every distinct score", "8-connected", "0.3", "interpolated"):
        assert word in PRO_DEFINITION


def test_signed_zeros_are_one_tie_group():
    masks, maps = random_case(4, levels=3)
    zero = np.random.default_rng(4).random(maps.shape) < 0.4  # zeros among defect and normal pixels
    maps = np.where(zero, np.float32(0.0), maps)
    maps[::2] = -maps[::2]  # -0.0 on even images, +0.0 on odd: equal scores, different bits
    y, s = masks.ravel(), maps.ravel()
    got = pixel_metrics(masks, maps)
    assert got["pixel_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert got["pixel_aupro"] == pytest.approx(reference_aupro(masks, maps), abs=1e-12)
