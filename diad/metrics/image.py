"""Image-level metrics: AUROC, AP (step-wise, as scikit-learn), F1-max over every distinct score."""

from __future__ import annotations

import numpy as np

from diad.errors import DiadError
from diad.metrics.curves import CurveAccumulator


def image_metrics(labels, scores) -> dict[str, float]:
    """labels (N,) 0 normal / 1 anomalous, scores (N,) float -> {image_auroc, image_ap, image_f1max,
    image_auroc_flipped_legacy}.

    NaN when one class is missing. An AUROC below 0.5 is reported as it is, never flipped; the authors'
    flipped value is only the separately named legacy column.
    """
    labels, scores = _check(labels, scores)
    order = np.argsort(scores, kind="stable")[::-1]
    pos = labels[order]
    n_pos = int(pos.sum())
    acc = CurveAccumulator(n_pos, len(pos) - n_pos)
    acc.feed(scores[order], pos, None, next_score=None)
    auroc = acc.auroc()
    return {"image_auroc": auroc, "image_ap": acc.ap(), "image_f1max": acc.f1max(),
            "image_auroc_flipped_legacy": flipped_legacy(auroc)}


def flipped_legacy(auroc: float) -> float:
    """max(AUROC, 1 - AUROC): what the DiAD authors' eval_helper reports (it flips an AUROC below 0.5).

    Only for comparing with their published numbers; the exact metric is the unflipped `*_auroc`.
    """
    return auroc if auroc != auroc else max(auroc, 1.0 - auroc)  # NaN stays NaN


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape or labels.size == 0:
        raise DiadError(
            f"image metrics: labels {labels.shape} and scores {scores.shape} must be non-empty and of one length"
        )
    if not np.isin(labels, (0, 1)).all():
        raise DiadError(f"image metrics: labels hold {np.unique(labels)[:5]}; expected only 0 and 1")
    if np.isnan(scores).any():
        raise DiadError("image metrics: scores contain NaN; expected finite scores")
    return labels.astype(bool), scores
