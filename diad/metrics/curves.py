"""Threshold curves read off one descending sort: AUROC, AP, F1-max, AU-PRO and legacy-PRO points.

The caller feeds elements in descending score order, in chunks. Every distinct score is a threshold
(a tie group is one point, read at the end of the group), so nothing is ever copied per threshold.
Memory is O(chunk); the curves themselves are never stored.
"""

from __future__ import annotations

import math

import numpy as np


class CurveAccumulator:
    """Streams (score, is_positive, pro_weight) in descending score order; yields all curve metrics.

    n_pos / n_neg: totals of defect and normal elements; n_regions: ground-truth regions (0 = no PRO).
    legacy_thresholds: ascending thresholds (same domain as the scores) at which to record
    (FPR, PRO) for "score > threshold", as the authors' 200-threshold PRO does.
    """

    def __init__(
        self,
        n_pos: int,
        n_neg: int,
        n_regions: int = 0,
        fpr_limit: float = 0.3,
        legacy_thresholds: np.ndarray | None = None,
    ):
        self.n_pos, self.n_neg, self.n_regions, self.fpr_limit = n_pos, n_neg, n_regions, fpr_limit
        # Running totals over every element seen so far (may end inside a tie group).
        self.run_tp, self.run_fp, self.run_pro = 0, 0, 0.0
        # The last curve point (end of the last closed tie group); starts at the origin.
        self.pt_tp, self.pt_fp, self.pt_fpr, self.pt_pro = 0, 0, 0.0, 0.0
        self.auc2 = 0  # exact: 2 * P * N * AUROC, accumulated in Python ints
        self.ap_sum = 0.0  # sum over thresholds of dTP * precision
        self.f1_max = 0.0
        self.pro_area = 0.0
        self.pro_done = n_regions == 0 or n_neg == 0
        self.legacy_thresholds = legacy_thresholds
        n_th = 0 if legacy_thresholds is None else len(legacy_thresholds)
        self.legacy_fp = np.zeros(n_th, dtype=np.int64)
        self.legacy_pro = np.zeros(n_th, dtype=np.float64)
        self.legacy_done = np.zeros(n_th, dtype=bool)

    def feed(self, scores: np.ndarray, pos: np.ndarray, weight: np.ndarray | None, next_score) -> None:
        """Consume one chunk: scores (n,) descending, pos (n,) bool, weight (n,) float64 or None.

        next_score: the score right after this chunk (None at the very end), so that a tie group
        running across the chunk boundary is closed only once. `weight` is modified in place.
        """
        n = len(scores)
        if n == 0:
            return
        is_end = np.empty(n, dtype=bool)
        np.not_equal(scores[1:], scores[:-1], out=is_end[:-1])
        is_end[-1] = next_score is None or next_score != scores[-1]

        tp_cum = np.cumsum(pos, dtype=np.int64)
        tp_cum += self.run_tp
        fp_cum = np.arange(self.run_fp + 1, self.run_fp + n + 1, dtype=np.int64)
        fp_cum -= tp_cum - self.run_tp
        pro_cum = None
        if weight is not None:
            weight[0] += self.run_pro  # continue one long cumsum, as the reference does
            pro_cum = np.cumsum(weight)

        if pro_cum is not None and self.legacy_thresholds is not None:
            self._legacy(scores, fp_cum, pro_cum)

        tp = np.concatenate(([self.pt_tp], tp_cum[is_end]))
        fp = np.concatenate(([self.pt_fp], fp_cum[is_end]))
        self._roc_pr(tp, fp)
        if not self.pro_done:
            self._pro(fp, pro_cum[is_end])

        self.run_tp, self.run_fp = int(tp_cum[-1]), int(fp_cum[-1])
        if pro_cum is not None:
            self.run_pro = float(pro_cum[-1])
        self.pt_tp, self.pt_fp = int(tp[-1]), int(fp[-1])

    def needs_weights(self) -> bool:
        """False once the PRO curve has passed fpr_limit: the rest of the curve only needs TP/FP.

        Legacy thresholds not closed by then have FPR >= fpr_limit and are dropped by its filter.
        """
        if not self.pro_done:
            return True
        if self.legacy_thresholds is None or self.legacy_done.all():
            return False
        return self.run_fp < self.fpr_limit * self.n_neg

    def _roc_pr(self, tp: np.ndarray, fp: np.ndarray) -> None:
        """tp, fp (k+1,): previous point then this chunk's points; updates AUROC, AP, F1."""
        if len(tp) < 2:
            return
        # Trapezoid in counts, exact in int64: sum dFP * (TP_prev + TP_cur) = 2 * area * P * N.
        self.auc2 += int(np.sum(np.diff(fp) * (tp[1:] + tp[:-1])))
        if self.n_pos == 0:
            return
        tp1, fp1 = tp[1:], fp[1:]
        precision = tp1 / (tp1 + fp1)
        self.ap_sum += float(np.sum(np.diff(tp) * precision))
        f1 = 2.0 * tp1 / (tp1 + fp1 + self.n_pos)  # = 2PR/(P+R) with P=tp/(tp+fp), R=tp/n_pos
        self.f1_max = max(self.f1_max, float(f1.max()))

    def _pro(self, fp: np.ndarray, pro_cum: np.ndarray) -> None:
        """Trapezoid of the (FPR, PRO) curve up to fpr_limit, interpolated at the limit (MVTec)."""
        x = np.concatenate(([self.pt_fpr], fp[1:] / self.n_neg))
        y = np.concatenate(([self.pt_pro], np.minimum(pro_cum / self.n_regions, 1.0)))
        # Points with x <= limit form a prefix (x is non-decreasing); k counts them after x[0].
        k = int(np.searchsorted(x[1:], self.fpr_limit, side="right"))
        xs, ys = x[: k + 1], y[: k + 1]
        self.pro_area += float(np.sum(0.5 * (ys[1:] + ys[:-1]) * np.diff(xs)))
        if k < len(x) - 1:
            x0, y0, x1, y1 = x[k], y[k], x[k + 1], y[k + 1]
            if x0 != self.fpr_limit:
                y_lim = y0 + (y1 - y0) * (self.fpr_limit - x0) / (x1 - x0)
                self.pro_area += 0.5 * (y_lim + y0) * (self.fpr_limit - x0)
            self.pro_done = True
        else:
            self.pt_fpr, self.pt_pro = float(x[-1]), float(y[-1])

    def _legacy(self, scores: np.ndarray, fp_cum: np.ndarray, pro_cum: np.ndarray | None) -> None:
        """Record FP and PRO totals for "score > th" at each legacy threshold that falls in this chunk."""
        todo = ~self.legacy_done
        if not todo.any():
            return
        th = self.legacy_thresholds[todo]
        n = len(scores)
        n_above = n - np.searchsorted(scores[::-1], th, side="right")  # elements > th in the chunk
        closes = n_above < n  # the prefix "> th" ends inside this chunk
        idx = np.flatnonzero(todo)[closes]
        m = n_above[closes]
        last = m - 1
        self.legacy_fp[idx] = np.where(m > 0, fp_cum[np.maximum(last, 0)], self.run_fp)
        if pro_cum is not None:
            self.legacy_pro[idx] = np.where(m > 0, pro_cum[np.maximum(last, 0)], self.run_pro)
        self.legacy_done[idx] = True

    # ---- results ---------------------------------------------------------------------------

    def auroc(self) -> float:
        if self.n_pos == 0 or self.n_neg == 0:
            return math.nan
        return self.auc2 / (2.0 * self.n_pos * self.n_neg)

    def ap(self) -> float:
        if self.n_pos == 0 or self.n_neg == 0:
            return math.nan
        return self.ap_sum / self.n_pos

    def f1max(self) -> float:
        if self.n_pos == 0 or self.n_neg == 0:
            return math.nan
        return self.f1_max

    def aupro(self) -> float:
        if self.n_regions == 0 or self.n_neg == 0:
            return math.nan
        return float(self.pro_area / self.fpr_limit)

    def legacy_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(FPR, PRO) at each legacy threshold (ascending); thresholds not closed report FPR 1."""
        fp = np.where(self.legacy_done, self.legacy_fp, self.n_neg)
        pro = np.where(self.legacy_done, self.legacy_pro, 1.0)
        return fp / max(self.n_neg, 1), pro / max(self.n_regions, 1)
