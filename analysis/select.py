"""Choose comparable rows: let a few config axes vary, hold every other varying axis at one value.

A sweep often crosses several axes (variant x T x backbone). A table over variants must not average over
T or backbones, so every other axis that varies *within* a group is held at the value that keeps the most
groups (then the most rows). Axes that only change together with the free ones (a variant's switches)
are left alone.
"""

from __future__ import annotations

import textwrap

import pandas as pd

from analysis.results import config_columns

SEED_SUFFIX = "seed"
_NA = "None"

# Only to break ties (a full factorial sweep covers every value equally): the paper's setting first, then
# the project's defaults. Earlier in a tuple wins.
PREFERRED = {
    "eval.forward_steps": ("1000",), "eval.ddim_steps": ("10",), "eval.backbone": ("resnet50", "efficientnet_lite0"),
    "eval.layers": ("2,3,4", "1,2,3"), "eval.score_rule": ("authors_pool",), "eval.sigma": ("4.0", "5.0"),
    "model.variant": ("diad",), "model.sg.sff": ("in_silu",),
}


def seed_columns(df: pd.DataFrame) -> list[str]:
    """Config columns that are seeds (`train.seed`, `eval.seed`, `data.split_seed`): averaged over."""
    return [c for c in config_columns(df) if c.rsplit(".", 1)[-1].endswith(SEED_SUFFIX)]


def as_key(series: pd.Series) -> pd.Series:
    """Values as text (lists as "1,2,3"), missing as "None", so NaN/None and lists group and compare."""
    def text(v) -> str:
        if isinstance(v, (list, tuple)):
            return ",".join(map(str, v))
        return _NA if v is None or pd.isna(v) else str(v)

    return pd.Series([text(v) for v in series.astype(object)], index=series.index, dtype=object, name=series.name)


def varying_columns(df: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """Non-seed config columns with more than one distinct value in `df`."""
    skip = set(seed_columns(df)) | set(exclude)
    return [c for c in config_columns(df) if c not in skip and as_key(df[c]).nunique() > 1]


def drop_redundant(df: pd.DataFrame, cols: list[str]) -> list[str]:
    """`cols` less those that are a function of an earlier kept one (a variant's preset switches)."""
    kept: list[str] = []
    for col in cols:
        if not any(_determined_by(df, col, (k,)) for k in kept):
            kept.append(col)
    return kept


def hold_fixed(df: pd.DataFrame, free: tuple[str, ...]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows of `df` with every varying non-free axis held at one value; also returns {column: value held}."""
    free = tuple(c for c in free if c in df)
    fixed: dict[str, str] = {}
    for col in varying_columns(df, exclude=free):
        if as_key(df[col]).nunique() <= 1:  # an earlier hold already fixed it
            continue
        if free and _determined_by(df, col, free):
            continue
        value = _best_value(df, col, free)
        df = df[as_key(df[col]) == value]
        fixed[col] = value
    return df, fixed


def _determined_by(df: pd.DataFrame, col: str, free: tuple[str, ...]) -> bool:
    """True when `col` has one value inside every group of the free columns."""
    keys = [as_key(df[c]) for c in free]
    return bool((as_key(df[col]).groupby(keys).nunique() <= 1).all())


def _best_value(df: pd.DataFrame, col: str, free: tuple[str, ...]) -> str:
    """The value of `col` present in the most free-column groups, then in the most rows, then PREFERRED."""
    key = as_key(df[col])
    scores = []
    for value in sorted(key.unique()):
        rows = df[key == value]
        groups = len(pd.concat([as_key(rows[c]) for c in free], axis=1).drop_duplicates()) if free else 0
        scores.append((groups, len(rows), -_preference(col, value), value))
    return max(scores, key=lambda s: s[:3])[3]


def _preference(col: str, value: str) -> int:
    """Rank of `value` in PREFERRED[col] (numbers compared as numbers); unlisted values rank last."""
    for rank, wanted in enumerate(PREFERRED.get(col, ())):
        if value == wanted or _same_number(value, wanted):
            return rank
    return len(PREFERRED.get(col, ()))


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def describe_fixed(fixed: dict[str, str], width: int | None = None) -> str:
    """'eval.forward_steps=1000, eval.backbone=resnet50' or '' (for captions), wrapped to `width` if given."""
    text = ", ".join(f"{k}={v}" for k, v in fixed.items())
    return textwrap.fill(text, width) if width else text
