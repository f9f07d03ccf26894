"""Figures of a sweep: each function takes the results DataFrame and returns a matplotlib Figure, or None
when the data lacks the axis the figure needs (one T only, no categories, ...).

Figures are built with `matplotlib.figure.Figure` (no pyplot): no global state, no GUI backend, and
notebooks still display the returned object. Other varying config axes are held fixed (analysis.select)
and named in the title.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import matplotlib
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from analysis import paper
from analysis.gallery import gallery  # noqa: F401  (re-exported: every figure is reachable from here)
from analysis.importance import parameter_importance  # noqa: F401
from analysis.results import IS_MEAN, ok_rows
from analysis.select import as_key, describe_fixed, drop_redundant, hold_fixed, seed_columns, varying_columns
from analysis.tables import PERCENT_METRICS

X_LABELS = {"eval.forward_steps": "forward diffusion steps T", "eval.ddim_steps": "DDIM steps"}
CHANCE = 50.0  # AUROC of a random score, in percent
LEGEND_OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": "small", "frameon": False}


def _title(text: str, fixed: dict[str, str], width: int = 70) -> str:
    """Title plus lines (wrapped at `width` characters) naming the axes held fixed."""
    held = describe_fixed(fixed, width)
    return text + (f"\n(held fixed: {held})" if held else "")


def _hue(rows: pd.DataFrame, hue: str | None, x: str) -> str | None:
    """The series column: `hue` if given, else the arm (or the variant) when it varies."""
    if hue is not None:
        return hue
    varying = varying_columns(rows, exclude=(x,))
    if "arm" in rows and as_key(rows["arm"]).nunique() > 1:
        return "arm"
    return "model.variant" if "model.variant" in varying else None


def metric_label(metric: str) -> str:
    """Axis label in the table's unit: '<metric> (%)' for the quality metrics."""
    return f"{metric} (%)" if metric in PERCENT_METRICS else metric


def _percent_axis(ax, metric: str, values: np.ndarray | None = None) -> None:
    """y from 0 to 100 with the chance line at 50 for AUROCs: differences read at their true size."""
    if metric in PERCENT_METRICS:
        ax.set_ylim(0, 100)
        ax.set_yticks(range(0, 101, 20))
        if metric.endswith("auroc"):
            ax.axhline(CHANCE, color="0.35", ls="--", lw=1, zorder=0.5)
            ax.text(1.0, CHANCE, " chance", transform=ax.get_yaxis_transform(), va="center", ha="left",
                    fontsize="small", color="0.35")
    else:
        ax.set_ylim(bottom=0)


def _n_seeds(part: pd.DataFrame) -> int:
    """Distinct seed combinations among these rows."""
    seeds = seed_columns(part)
    return len(part[seeds].astype(str).drop_duplicates()) if seeds else 1


def metric_vs(df: pd.DataFrame, x: str = "eval.forward_steps",
              metrics: tuple[str, ...] = ("image_auroc", "pixel_auroc"), hue: str | None = None,
              category: str = "mean") -> Figure | None:
    """Metric (percent; mean and, with several seeds, std) against a numeric config axis, one line per `hue`
    value (Figure 6). y from 0 with the chance line."""
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
    fig = Figure(figsize=(4.6 * len(metrics) + (1.6 if hue else 0), 4.0), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    series = [(None, rows)] if hue is None else \
        [(v, rows[as_key(rows[hue]) == v]) for v in paper.in_order(as_key(rows[hue]).unique(), paper.VARIANT_ORDER)]
    several = _n_seeds(rows) > 1
    for ax, m in zip(axes, metrics):
        scale = 100.0 if m in PERCENT_METRICS else 1.0
        for label, part in series:
            stats = part.groupby(x)[m].agg(["mean", "std"]).dropna(subset=["mean"]) * scale
            if stats.empty:
                continue
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"] if several else None, marker="o",
                        capsize=3 if several else 0, label=label if label is not None else m)
        ax.set_xlabel(X_LABELS.get(x, x))
        ax.set_ylabel(f"{metric_label(m)}, {category}")
        ax.set_title(m)
        ax.grid(alpha=0.3)
        _percent_axis(ax, m)
    if hue:
        axes[-1].legend(title=hue, **LEGEND_OUTSIDE)
    spread = "mean ± std over seeds" if several else "one seed: no error bars"
    fig.suptitle(_title(f"Metric against {X_LABELS.get(x, x)} ({spread})", fixed))
    return fig


def per_category_bars(df: pd.DataFrame, metric: str = "image_auroc", by: str | None = None) -> Figure | None:
    """Grouped bars in percent from 0: one group per category (and the mean), one bar per value of `by`
    (default: the arm); error bars only from several seeds; the chance line for AUROCs."""
    rows = ok_rows(df, category=None)
    by = by or ("arm" if "arm" in rows and rows["arm"].notna().any() else "model.variant")
    if by not in rows or metric not in rows or "category" not in rows:
        return None
    rows = rows[rows[metric].notna() & rows[by].notna()]
    if rows.empty or not rows["category"].notna().any():
        return None
    mean_flag = rows[IS_MEAN].fillna(False).astype(bool) if IS_MEAN in rows else rows["category"].eq("mean")
    group = rows["category"].astype(object).where(~mean_flag, "mean (all categories)")
    rows = rows.assign(_group=group)
    rows, fixed = hold_fixed(rows, (by,))
    categories = sorted(c for c in rows["_group"].unique() if not str(c).startswith("mean")) + ["mean (all categories)"]
    categories = [c for c in categories if c in set(rows["_group"])]
    groups = paper.in_order(as_key(rows[by]).unique(), paper.VARIANT_ORDER + paper.BACKBONE_ORDER)
    several = _n_seeds(rows) > 1
    width = 0.8 / len(groups)
    fig = Figure(figsize=(min(16.0, max(7.0, 2.0 + 0.28 * len(categories) * len(groups))), 4.4),
                 layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(categories))
    cmap = matplotlib.colormaps["tab10" if len(groups) <= 10 else "tab20"]
    for i, g in enumerate(groups):
        part = rows[as_key(rows[by]) == g]
        stats = part.groupby("_group")[metric].agg(["mean", "std"]).reindex(categories) * 100.0
        ax.bar(pos + (i - (len(groups) - 1) / 2) * width, stats["mean"], width * 0.95, color=cmap(i % cmap.N),
               yerr=stats["std"] if several else None, capsize=2 if several else 0, label=g)
    many = len(categories) > 5  # MVTec's 15 names side by side would overprint: slant them
    ax.set_xticks(pos, categories, rotation=30 if many else 0, ha="right" if many else "center")
    ax.set_xlabel("category")
    ax.set_ylabel(metric_label(metric))
    _percent_axis(ax, metric)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title=by, **LEGEND_OUTSIDE)
    spread = "mean ± std over seeds" if several else "one seed: no error bars"
    absent = _failed_keys(df, by, set(groups))
    if absent:
        ax.text(1.01, 0.0, "no bar (failed):\n" + "\n".join(absent), transform=ax.transAxes, fontsize="small",
                va="bottom", color="#a00")
    ax.set_title(_title(f"{metric} per category by {by} ({spread})", fixed))
    return fig


def _failed_keys(df: pd.DataFrame, by: str, shown: set[str]) -> list[str]:
    """Values of `by` with failed trials and no bar: named in the figure, so they do not silently vanish."""
    if "status" not in df or by not in df:
        return []
    failed = df[df["status"].eq("failed").fillna(False).astype(bool) & df[by].notna()]
    return [k for k in dict.fromkeys(as_key(failed[by])) if k not in shown]


def cost_bars(df: pd.DataFrame, by: str | None = None) -> Figure | None:
    """Time (training and evaluation wall seconds, stacked) and peak memory per arm, both from 0."""
    rows = ok_rows(df)
    by = by or ("arm" if "arm" in rows and rows["arm"].notna().any() else "model.variant")
    cols = [c for c in ("train_wall_s", "eval_wall_s", "peak_mem_mb") if c in rows]
    if by not in rows or not cols or rows.empty or rows[cols].isna().all().all():
        return None
    rows = rows[rows[by].notna()]
    keys = as_key(rows[by])
    stats = rows[cols].groupby(keys).mean()
    stats = stats.reindex(paper.in_order(stats.index, paper.VARIANT_ORDER + paper.BACKBONE_ORDER))[::-1]
    fig = Figure(figsize=(10.0, 1.4 + 0.32 * len(stats)), layout="constrained")
    t_ax, m_ax = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(stats))
    left = np.zeros(len(stats))
    for col, name, color in (("train_wall_s", "training", "tab:blue"), ("eval_wall_s", "evaluation", "tab:orange")):
        if col in stats:
            values = stats[col].fillna(0.0).to_numpy()
            t_ax.barh(y, values, left=left, color=color, label=name)
            left += values
    t_ax.set_yticks(y, stats.index)
    t_ax.set_xlabel("wall time per trial (s), mean over seeds")
    t_ax.set_ylabel(by)
    t_ax.set_xlim(left=0)
    t_ax.legend(fontsize="small", loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False)
    if "peak_mem_mb" in stats:
        m_ax.barh(y, stats["peak_mem_mb"].fillna(0.0).to_numpy(), color="tab:green")
    m_ax.set_xlabel("peak memory per trial (MB)")
    m_ax.set_xlim(left=0)
    for ax in (t_ax, m_ax):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Time and memory per {by} (training reused from cache counts its original time)")
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
    grid = grid.reindex(paper.in_order(grid.index, paper.BACKBONE_ORDER)) * 100.0
    fig = Figure(figsize=(max(5.0, 2.5 + 1.1 * grid.shape[1]), 2.0 + 0.5 * grid.shape[0]), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
        if not np.isnan(v):  # dark text on the light (yellow) end of viridis, white on the dark end
            light = image.norm(v) > 0.6
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="k" if light else "w", fontsize="small")
    ax.set_xticks(range(grid.shape[1]), grid.columns)
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set_xlabel("feature layers (eval.layers)")
    ax.set_ylabel("backbone (eval.backbone)")
    fig.colorbar(image, ax=ax, label=f"{metric_label(metric)}, {category}")
    ax.set_title(_title(f"{metric} (%): backbone x feature layers", fixed, width=40), fontsize="medium")
    return fig


def _axis_values(values: pd.Series, percent: bool = False) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Values scaled to [0, 1] for a parallel-coordinates axis, plus at most 6 (position, label) ticks."""
    numeric = pd.to_numeric(values, errors="coerce").astype(float)
    if numeric.notna().all():
        if percent:
            numeric = numeric * 100.0
        lo, hi = float(numeric.min()), float(numeric.max())
        scaled = (numeric - lo) / (hi - lo) if hi > lo else numeric * 0 + 0.5
        uniq = sorted(numeric.unique())
        if len(uniq) > 6:  # a continuous axis: a few evenly spaced ticks, no overlap
            uniq = list(np.linspace(lo, hi, 5))
        fmt = ".1f" if percent else "g"
        ticks = [(float((u - lo) / (hi - lo)) if hi > lo else 0.5, f"{u:{fmt}}") for u in uniq]
        return scaled.to_numpy(dtype=float), ticks
    levels = paper.in_order(as_key(values).unique(), paper.VARIANT_ORDER + paper.BACKBONE_ORDER)
    step = 1.0 / max(1, len(levels) - 1)
    where = {v: (i * step if len(levels) > 1 else 0.5) for i, v in enumerate(levels)}
    return as_key(values).map(where).to_numpy(dtype=float), [(where[v], v) for v in levels]


def parallel_coordinates(df: pd.DataFrame, metric: str = "image_auroc", category: str = "mean",
                         max_axes: int = 8) -> Figure | None:
    """One line per configuration (mean over seeds) across the varying config axes, coloured by the metric.

    Only when at least two config axes vary: with one, the table says it all.
    """
    rows = ok_rows(df, category)
    if metric not in rows:
        return None
    rows = rows[rows[metric].notna()]
    cols = drop_redundant(rows, varying_columns(rows))[:max_axes]
    if len(cols) < 2 or rows.empty:
        return None
    configs = rows.groupby([as_key(rows[c]) for c in cols])[metric].mean().reset_index()
    configs = configs.sort_values(metric)  # the best lines drawn last, on top
    axes_names = cols + [metric]
    fig = Figure(figsize=(2.0 + 2.0 * len(axes_names), 4.8), layout="constrained")
    ax = fig.add_subplot()
    values = configs[metric] * 100.0 if metric in PERCENT_METRICS else configs[metric]
    norm = Normalize(float(values.min()), float(values.max()) + 1e-9)
    scaled = [_axis_values(configs[c], percent=(c == metric and metric in PERCENT_METRICS)) for c in axes_names]
    data = np.stack([s[0] for s in scaled], axis=1)
    cmap = ScalarMappable(norm=norm, cmap="viridis")
    for line, value in zip(data, values):
        ax.plot(range(len(axes_names)), line, color=cmap.to_rgba(value), alpha=0.8)
    for i, (_, ticks) in enumerate(scaled):
        ax.axvline(i, color="0.6", lw=0.8)
        for pos, label in ticks[:12]:
            ax.text(i + 0.04, pos, label, fontsize="small", va="center",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5})
    ax.set_xticks(range(len(axes_names)), [metric_label(metric) if n == metric else n for n in axes_names])
    ax.set_xlim(-0.1, len(axes_names) - 0.4)
    ax.set_ylim(-0.08, 1.08)
    ax.set_yticks([])
    ax.set_xlabel("config axis")
    ax.set_ylabel("value (scaled per axis)")
    fig.colorbar(cmap, ax=ax, label=f"{metric_label(metric)}, {category}")
    fig.suptitle(f"Parallel coordinates: {len(configs)} configurations (mean over seeds)")
    return fig
