"""Benchmark diad.metrics.pixel_metrics on an MVTec-sized test set (1,725 maps of 256x256 by default).

Compares wall time and traced peak memory against scikit-learn (roc_auc_score + average_precision_score
on the same pixels) and against a straightforward implementation of the MVTec AU-PRO algorithm
(argsort of all scores, float64 per-pixel change arrays, as the reference evaluation script does).

    .venv/bin/python bench/bench_metrics.py                 # full size
    .venv/bin/python bench/bench_metrics.py --n-images 200  # quick
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc
from bisect import bisect_right

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from diad.metrics import pixel_metrics


def make_data(n_images: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """-> masks (N,H,W) bool with elliptic blobs on about half the images, maps (N,H,W) float32."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_images, size, size), dtype=bool)
    maps = np.empty((n_images, size, size), dtype=np.float32)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n_images):
        if rng.random() < 0.5:
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.integers(0, size, 2)
                ry, rx = np.exp(rng.uniform(np.log(2), np.log(size / 5), 2))  # 2 px to 1/5 image
                masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), 4) * 4
        signal = ndimage.gaussian_filter(masks[i].astype(np.float64), 3) * rng.uniform(0.5, 3)
        maps[i] = noise + signal
    return masks, maps


def mvtec_straightforward(masks: np.ndarray, maps: np.ndarray, limit: float = 0.3) -> float:
    """AU-PRO the way the MVTec reference script computes it: full-size change arrays, argsort."""
    fp_change = np.zeros(maps.shape, dtype=np.uint32)
    pro_change = np.zeros(maps.shape, dtype=np.float64)
    n_ok, n_regions = 0, 0
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3), dtype=int))
        n_regions += n
        ok = lab == 0
        n_ok += int(ok.sum())
        fp_change[i][ok] = 1
        sizes = np.bincount(lab.ravel())
        pro_change[i] = np.where(ok, 0.0, 1.0 / sizes[lab])
    scores = maps.astype(np.float64).ravel()
    order = np.argsort(scores)[::-1]
    scores = scores[order]
    fpr = np.cumsum(fp_change.ravel()[order]) / n_ok
    pro = np.cumsum(pro_change.ravel()[order]) / n_regions
    del order
    keep = np.append(np.diff(scores) != 0, True)
    x = np.concatenate(([0.0], fpr[keep], [1.0]))
    y = np.concatenate(([0.0], np.minimum(pro[keep], 1.0), [1.0]))
    ins = bisect_right(x, limit)
    area = np.sum(0.5 * (y[1:ins] + y[: ins - 1]) * np.diff(x[:ins]))
    if x[ins - 1] != limit:
        y_lim = y[ins - 1] + (y[ins] - y[ins - 1]) * (limit - x[ins - 1]) / (x[ins] - x[ins - 1])
        area += 0.5 * (y_lim + y[ins - 1]) * (limit - x[ins - 1])
    return float(area / limit)


def sklearn_pair(masks: np.ndarray, maps: np.ndarray) -> tuple[float, float]:
    y, s = masks.ravel(), maps.ravel()
    return roc_auc_score(y, s), average_precision_score(y, s)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(fn, *args):
    """-> (result, wall s, CPU s, traced peak MiB allocated during the call)."""
    tracemalloc.start()
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn(*args)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, wall, cpu, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=1725)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--baseline-images", type=int, default=None,
                    help="run the sklearn / MVTec baselines on the first N images only (default: all)")
    ap.add_argument("--skip-baselines", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    masks, maps = make_data(args.n_images, args.size)
    print(f"data: {args.n_images} maps of {args.size}x{args.size} = {maps.size / 1e6:.1f} M pixels, "
          f"{masks.any(axis=(1, 2)).sum()} anomalous images, built in {time.perf_counter() - t0:.1f} s")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    load = os.getloadavg()[0]
    ours, t_ours, c_ours, mem_ours = measure(pixel_metrics, masks, maps)
    rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [("diad pixel_metrics (all 5 metrics)", args.n_images, t_ours, c_ours, mem_ours, 1.0)]
    notes = [f"peak RSS: {rss_before:.0f} MiB before (inputs), {rss_ours:.0f} MiB after pixel_metrics",
             "ours: " + ", ".join(f"{k}={v:.6f}" for k, v in ours.items())]

    if not args.skip_baselines:
        nb = args.baseline_images or args.n_images
        sub = (masks[:nb], maps[:nb])
        ours_sub = ours if nb == args.n_images else pixel_metrics(*sub)
        scale = args.n_images / nb
        (auroc, apv), t_sk, c_sk, mem_sk = measure(sklearn_pair, *sub)
        rows.append(("sklearn roc_auc_score + average_precision_score", nb, t_sk, c_sk, mem_sk,
                     c_sk * scale / c_ours))
        notes.append(f"|AUROC - sklearn| = {abs(auroc - ours_sub['pixel_auroc']):.2e}, "
                     f"|AP - sklearn| = {abs(apv - ours_sub['pixel_ap']):.2e}")
        aupro, t_mv, c_mv, mem_mv = measure(mvtec_straightforward, *sub)
        rows.append(("straightforward MVTec AU-PRO", nb, t_mv, c_mv, mem_mv, c_mv * scale / c_ours))
        notes.append(f"|AU-PRO - straightforward MVTec| = {abs(aupro - ours_sub['pixel_aupro']):.2e}")
        if nb != args.n_images:
            notes.append(f"baselines ran on {nb} of {args.n_images} images; ratios scale their CPU time linearly")
    notes.append(f"1-min load average: {load:.1f} before ours, {os.getloadavg()[0]:.1f} at the end "
                 f"({os.cpu_count()} CPUs); wall times inflate under load, CPU times much less")

    print("\n| implementation | images | wall s | CPU s | traced peak MiB | CPU time / ours |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, t, c, mem, ratio in rows:
        print(f"| {name} | {n} | {t:.1f} | {c:.1f} | {mem:.0f} | {ratio:.2f} |")
    print()
    for note in notes:
        print("- " + note)


if __name__ == "__main__":
    main()
