"""Figures of a sweep: each function takes the results DataFrame and returns a matplotlib Figure, or None
when the data lacks the axis the figure needs (one T only, no categories, ...).

Figures are built with `matplotlib.figure.Figure` (no pyplot): no global state, no GUI backend, and
notebooks still display the returned object. Other varying config axes are held fixed (analysis.select)
and named in the title.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from analysis import paper
from analysis.gallery import gallery  # noqa: F401  (re-exported: every figure is reachable from here)
from analysis.importance import parameter_importance  # noqa: F401
from analysis.results import ok_rows
from analysis.select import as_key, describe_fixed, drop_redundant, hold_fixed, varying_columns

X_LABELS = {"eval.forward_steps": "forward diffusion steps T", "eval.ddim_steps": "DDIM steps"}


def _title(text: str, fixed: dict[str, str], width: int = 70) -> str:
    """Title plus lines (wrapped at `width` characters) naming the axes held fixed."""
    held = describe_fixed(fixed, width)
    return text + (f"\n(held fixed: {held})" if held else "")


def _hue(rows: pd.DataFrame, hue: str | None, x: str) -> str | None:
    """The series column: `hue` if given, else the variant when it varies."""
    if hue is not None:
        return hue
    return "model.variant" if "model.variant" in varying_columns(rows, exclude=(x,)) else None


def metric_vs(df: pd.DataFrame, x: str = "eval.forward_steps",
              metrics: tuple[str, ...] = ("image_auroc", "pixel_auroc"), hue: str | None = None,
              category: str = "mean") -> Figure | None:
    """Metric (mean +- std over seeds) against a numeric config axis, one line per `hue` value (Figure 6)."""
    rows = ok_rows(df, category)
    if x not in rows:
        return None
    rows = rows.assign(**{x: pd.to_numeric(rows[x], errors="coerce")}).dropna(subset=[x])
    if rows[x].nunique() < 2:
        return None
    hue = _hue(rows, hue, x)
    rows, fixed = hold_fixed(rows, (x,) + ((hue,) if hue else ()))
    metrics = [m for m in metrics if m in rows and rows[m].notna().any()]
    if rows[x].nunique() < 2 or not metrics:
        return None
    fig = Figure(figsize=(5.0 * len(metrics), 4.0), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    series = [(None, rows)] if hue is None else \
        [(v, rows[as_key(rows[hue]) == v]) for v in paper.in_order(as_key(rows[hue]).unique(), paper.VARIANT_ORDER)]
    for ax, m in zip(axes, metrics):
        for label, part in series:
            stats = part.groupby(x)[m].agg(["mean", "std"]).dropna(subset=["mean"])
            if stats.empty:
                continue
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0.0), marker="o", capsize=3,
                        label=label if label is not None else m)
        ax.set_xlabel(X_LABELS.get(x, x))
        ax.set_ylabel(f"{m} ({category})")
        ax.set_title(m)
        ax.grid(alpha=0.3)
        if hue:
            ax.legend(title=hue, fontsize="small")
    fig.suptitle(_title(f"Metric against {X_LABELS.get(x, x)} (mean ± std over seeds)", fixed))
    return fig


def per_category_bars(df: pd.DataFrame, metric: str = "image_auroc", by: str = "model.variant") -> Figure | None:
    """Grouped bars: one group per category (and the mean), one bar per value of `by`."""
    rows = ok_rows(df, category=None)
    if by not in rows or metric not in rows or "category" not in rows:
        return None
    rows = rows[rows[metric].notna() & rows[by].notna()]
    categories = sorted(c for c in rows["category"].dropna().unique() if c != "mean")
    if not categories:
        return None
    rows, fixed = hold_fixed(rows, (by, "category"))
    categories = [c for c in categories if c in set(rows["category"])] + ["mean"]
    groups = paper.in_order(as_key(rows[by]).unique(), paper.VARIANT_ORDER + paper.BACKBONE_ORDER)
    width = 0.8 / len(groups)
    fig = Figure(figsize=(max(6.0, 1.0 + 0.6 * len(categories) * max(1, len(groups) / 2)), 4.0),
                 layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(categories))
    for i, g in enumerate(groups):
        part = rows[as_key(rows[by]) == g]
        stats = part.groupby("category")[metric].agg(["mean", "std"]).reindex(categories)
        ax.bar(pos + (i - (len(groups) - 1) / 2) * width, stats["mean"], width,
               yerr=stats["std"].fillna(0.0), capsize=2, label=g)
    ax.set_xticks(pos, categories, rotation=30, ha="right")
    ax.set_xlabel("category")
    ax.set_ylabel(metric)
    low = np.nanmin(rows[metric].to_numpy(dtype=float))
    ax.set_ylim(max(0.0, low - 0.1), None)  # metrics sit near 1: a zero baseline hides differences
    ax.legend(title=by, fontsize="small", ncols=min(4, len(groups)))
    ax.set_title(_title(f"{metric} per category by {by}", fixed))
    return fig


def backbone_layer_heatmap(df: pd.DataFrame, metric: str = "pixel_auroc", category: str = "mean") -> Figure | None:
    """Heatmap of the metric (mean over seeds): anomaly-map backbone x feature layers."""
    rows = ok_rows(df, category)
    axes_cols = ("eval.backbone", "eval.layers")
    if any(c not in rows for c in axes_cols) or metric not in rows:
        return None
    rows, fixed = hold_fixed(rows[rows[metric].notna()], axes_cols)
    if rows.empty:
        return None
    grid = rows.groupby([as_key(rows[axes_cols[0]]), as_key(rows[axes_cols[1]])])[metric].mean().unstack()
    if grid.size < 2:
        return None
    grid = grid.reindex(paper.in_order(grid.index, paper.BACKBONE_ORDER))
    fig = Figure(figsize=(max(5.0, 2.5 + 1.1 * grid.shape[1]), 2.0 + 0.5 * grid.shape[0]), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
        if not np.isnan(v):
            ax.text(j, i, f"{100 * v:.1f}", ha="center", va="center", color="w", fontsize="small")
    ax.set_xticks(range(grid.shape[1]), grid.columns)
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set_xlabel("feature layers (eval.layers)")
    ax.set_ylabel("backbone (eval.backbone)")
    fig.colorbar(image, ax=ax, label=f"{metric} ({category})")
    ax.set_title(_title(f"{metric}: backbone x feature layers", fixed, width=40), fontsize="medium")
    return fig


def _axis_values(values: pd.Series) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Values scaled to [0, 1] for a parallel-coordinates axis, plus (position, label) ticks."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        lo, hi = float(numeric.min()), float(numeric.max())
        scaled = (numeric - lo) / (hi - lo) if hi > lo else numeric * 0 + 0.5
        uniq, fmt = sorted(numeric.unique()), "g"
        if len(uniq) > 8:  # a metric axis: a few ticks, no overlap
            uniq, fmt = list(np.linspace(lo, hi, 5)), ".3g"
        ticks = [(float((u - lo) / (hi - lo)) if hi > lo else 0.5, f"{u:{fmt}}") for u in uniq]
        return scaled.to_numpy(dtype=float), ticks
    levels = paper.in_order(as_key(values).unique(), paper.VARIANT_ORDER + paper.BACKBONE_ORDER)
    step = 1.0 / max(1, len(levels) - 1)
    where = {v: (i * step if len(levels) > 1 else 0.5) for i, v in enumerate(levels)}
    return as_key(values).map(where).to_numpy(dtype=float), [(where[v], v) for v in levels]


def parallel_coordinates(df: pd.DataFrame, metric: str = "image_auroc", category: str = "mean",
                         max_axes: int = 8) -> Figure | None:
    """One line per configuration (mean over seeds) across the varying config axes, coloured by the metric."""
    rows = ok_rows(df, category)
    if metric not in rows:
        return None
    rows = rows[rows[metric].notna()]
    cols = drop_redundant(rows, varying_columns(rows))[:max_axes]
    if not cols or rows.empty:
        return None
    configs = rows.groupby([as_key(rows[c]) for c in cols])[metric].mean().reset_index()
    configs = configs.sort_values(metric)  # the best lines drawn last, on top
    axes_names = cols + [metric]
    fig = Figure(figsize=(1.0 + 1.6 * len(axes_names), 4.5), layout="constrained")
    ax = fig.add_subplot()
    norm = Normalize(float(configs[metric].min()), float(configs[metric].max()) + 1e-12)
    scaled = [_axis_values(configs[c]) for c in axes_names]
    data = np.stack([s[0] for s in scaled], axis=1)
    cmap = ScalarMappable(norm=norm, cmap="viridis")
    for line, value in zip(data, configs[metric]):
        ax.plot(range(len(axes_names)), line, color=cmap.to_rgba(value), alpha=0.8)
    for i, (_, ticks) in enumerate(scaled):
        ax.axvline(i, color="0.6", lw=0.8)
        for pos, label in ticks[:12]:
            ax.text(i + 0.03, pos, label, fontsize="x-small", va="center")
    ax.set_xticks(range(len(axes_names)), axes_names, rotation=20, ha="right")
    ax.set_yticks([])
    ax.set_xlabel("config axis")
    ax.set_ylabel("value (scaled per axis)")
    fig.colorbar(cmap, ax=ax, label=f"{metric} ({category})")
    ax.set_title(f"Parallel coordinates of {len(configs)} configurations (mean over seeds)")
    return fig

