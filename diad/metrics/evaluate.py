"""Metrics per category plus their mean over categories."""

from __future__ import annotations

import math

import numpy as np

from diad.errors import DiadError
from diad.metrics.image import image_metrics
from diad.metrics.pixel import pixel_metrics
from diad.schema import IMAGE_METRICS, PIXEL_METRICS



def evaluate_by_category(categories, labels, scores, masks=None, maps=None,
                         no_masks=()) -> dict[str, dict[str, float]]:
    """categories (N,) str, labels (N,), scores (N,), masks/maps (N,H,W) or None -> {category: metrics}.

    Adds "mean": the plain mean over categories of each metric (a NaN in any category stays NaN).
    Without masks or maps the pixel metrics are NaN; so are those of the categories named in `no_masks`
    (their masks are incomplete), while every other category keeps the pixel metrics of its own masks.
    """
    no_masks = set(no_masks)
    categories = np.asarray(categories).ravel()
    labels, scores = np.asarray(labels).ravel(), np.asarray(scores).ravel()
    if not (len(categories) == len(labels) == len(scores)):
        raise DiadError(
            f"evaluate_by_category: {len(categories)} categories, {len(labels)} labels and "
            f"{len(scores)} scores; expected one per image"
        )
    have_pixels = masks is not None and maps is not None
    if have_pixels:
        masks, maps = np.asarray(masks), np.asarray(maps)
    if have_pixels and not (len(masks) == len(maps) == len(labels)):
        raise DiadError(
            f"evaluate_by_category: {len(masks)} masks and {len(maps)} maps for {len(labels)} images"
        )
    results: dict[str, dict[str, float]] = {}
    for cat in sorted(set(categories.tolist())):
        idx = np.flatnonzero(categories == cat)
        row = image_metrics(labels[idx], scores[idx])
        if have_pixels and cat not in no_masks:
            row.update(pixel_metrics(masks[idx], maps[idx]))
        else:
            row.update({k: math.nan for k in PIXEL_METRICS})
        results[str(cat)] = row
    if not results:
        raise DiadError("evaluate_by_category: no images; expected at least one")
    if "mean" in results:
        raise DiadError('evaluate_by_category: a category is named "mean"; that name is reserved')
    keys = IMAGE_METRICS + PIXEL_METRICS
    results["mean"] = {k: float(np.mean([r[k] for r in results.values()])) for k in keys}
    return results
