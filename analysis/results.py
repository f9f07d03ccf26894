"""Load sweep results (Parquet, one file per trial, hive-partitioned by sweep) into one tidy DataFrame.

The schema is docs/results-schema.md. Reading is per file, so a sweep that is still running (new files
appearing, older files with slightly different columns) loads fine.

Dtypes, one per kind of column (documented in docs/results-schema.md):
text `string`, integers `Int64`, flags `boolean`, real numbers `float64` (missing = NaN), times
`datetime64[us, UTC]`, list-valued config (`eval.layers`, `model.sg.levels`, ...) Python lists in an
`object` column. Missing text, integers, flags and lists are `pd.NA`.
Per-category rows and the mean over categories are apart: `is_mean` is True on the mean rows, whose
`category` is <NA> (so a groupby on `category` counts real categories only).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from diad.errors import DiadError
from diad.schema import COLUMNS, CONFIG_SECTIONS, MEAN_CATEGORY, METRICS

SWEEP_KEY = "sweep_id"
MEAN = MEAN_CATEGORY  # the `category` value of the mean row in the files
IS_MEAN = "is_mean"


def _named(kind: str) -> tuple[str, ...]:
    return tuple(c.name for c in COLUMNS if c.kind == kind)


STRING_COLUMNS = _named("string") + (SWEEP_KEY,)
METRIC_COLUMNS = METRICS
COST_COLUMNS = ("train_wall_s", "eval_wall_s", "train_images_per_s", "eval_images_per_s", "peak_mem_mb")
FLOAT_COLUMNS = _named("float")
INT_COLUMNS = _named("int")
BOOL_COLUMNS = _named("bool") + (IS_MEAN,)
TIME_COLUMNS = _named("timestamp")
CONFIG_PREFIXES = tuple(f"{s}." for s in CONFIG_SECTIONS)
# List-valued config fields. Files written before lists were Parquet lists hold them as "1,2,3" text.
LIST_COLUMNS = ("data.categories", "model.sg_levels", "model.sg.levels", "model.ae_block_out_channels",
                "model.unet_block_out_channels", "model.hint_channels", "model.pixel_block_out_channels",
                "eval.layers")

# Arrow -> pandas: nullable dtypes, so an integer or flag column with a null stays integer or flag.
_NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(),
             pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}
_HIVE = re.compile(rf"^{SWEEP_KEY}=(.+)$")


def load_results(sources: str | Path | Iterable[str | Path], storage: str | Path = "runs") -> pd.DataFrame:
    """Rows of every result file under `sources` (files, directories or sweep ids under the sweep storage
    root `storage`, as `diad-sweep --storage` names it), tidy and typed per the schema (diad/schema.py)."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files: list[Path] = []
    searched: list[str] = []
    for source in sources:
        found, where = _resolve(source, Path(storage))
        files += found
        searched.append(where)
    frames = [f for f in (_read_one(p) for p in dict.fromkeys(files)) if f is not None]
    frames = [f for f in frames if len(f)]
    if not frames:
        raise DiadError(f"no result rows found in {', '.join(searched)}: expected *.parquet files "
                        f"(a parquet file, a results directory, or a sweep id under {storage}/results)")
    with warnings.catch_warnings():
        # Concatenating frames with all-NA columns (a running sweep's older files) warns; the union is intended.
        warnings.simplefilter("ignore", FutureWarning)
        df = pd.concat(frames, ignore_index=True, sort=False)
    return cast_columns(df)


def _resolve(source: str | Path, storage: Path) -> tuple[list[Path], str]:
    """Result files for one source and a description of where they were searched.

    A bare name that is a sweep id under `storage` means that sweep, even if a same-named path exists here.
    """
    path = Path(source)
    by_id = storage / "results" / f"{SWEEP_KEY}={source}"
    bare = len(path.parts) == 1 and path.suffix != ".parquet"
    if bare and by_id.is_dir():
        return _parquet_files(by_id), f"{by_id} (sweep id {str(source)!r})"
    if path.is_file():
        return [path], str(path)
    if path.is_dir():
        return _parquet_files(path), f"{path} (*.parquet below it)"
    if not bare:
        raise DiadError(f"results source {str(source)!r}: no such file or directory")
    raise DiadError(f"results source {str(source)!r} is neither a file, a directory, "
                    f"nor a sweep id with results at {by_id}")


def _parquet_files(directory: Path) -> list[Path]:
    """*.parquet below `directory`, skipping temporary files and directories (names starting with '.')."""
    out = []
    for p in sorted(directory.rglob("*.parquet")):
        rel = p.relative_to(directory).parts
        if not any(part.startswith(".") for part in rel):
            out.append(p)
    return out


def _read_one(path: Path) -> pd.DataFrame | None:
    """One file as a DataFrame with `sweep_id` from its hive directory; unreadable files warn and are skipped."""
    try:
        df = pq.read_table(path, partitioning=None).to_pandas(types_mapper=_NULLABLE.get)
    except Exception as e:  # a foreign or damaged file must not hide the rest of a sweep
        warnings.warn(f"skipping unreadable result file {path}: {e}", stacklevel=3)
        return None
    if SWEEP_KEY not in df.columns:
        sweep = next((m.group(1) for part in reversed(path.parent.parts) if (m := _HIVE.match(part))), None)
        df[SWEEP_KEY] = sweep
    return df


def cast_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The tidy form of raw result rows: one dtype per kind, lists as lists, missing as NA, mean rows apart.

    Idempotent: a frame already tidy comes back equal.
    """
    df = df.copy()
    if IS_MEAN not in df and "category" in df:
        df[IS_MEAN] = df["category"].astype(object).eq(MEAN)
        df["category"] = df["category"].astype(object).where(~df[IS_MEAN], None)
    for col in df.columns:
        if col.startswith(CONFIG_PREFIXES):
            df[col] = _config_column(df[col], col in LIST_COLUMNS)
    for col in STRING_COLUMNS:
        if col in df:
            df[col] = _text(df[col])
    for col in FLOAT_COLUMNS:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in INT_COLUMNS:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in BOOL_COLUMNS:
        if col in df:
            df[col] = df[col].astype("boolean")
    for col in TIME_COLUMNS:
        if col in df:
            df[col] = pd.to_datetime(df[col], utc=True, errors="coerce")
    return df


def _missing(value) -> bool:
    return value is None or (not isinstance(value, (list, tuple, np.ndarray)) and bool(pd.isna(value)))


def _text(series: pd.Series) -> pd.Series:
    return series.astype(object).map(lambda v: pd.NA if _missing(v) else str(v)).astype("string")


def _as_list(value):
    """A list cell: arrays and tuples as lists, legacy "1,2,3" text split (numbers as int), '' as []."""
    if _missing(value):
        return pd.NA
    if isinstance(value, (list, tuple, np.ndarray)):
        return [v.item() if isinstance(v, np.generic) else v for v in value]
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
        return [int(v) if re.fullmatch(r"-?\d+", v) else v for v in items]
    return [value]


def _config_column(series: pd.Series, is_list: bool) -> pd.Series:
    """A config column in its kind's dtype: lists, Int64, boolean, float64 or string."""
    values = series.astype(object)
    if is_list or values.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
        return pd.Series([_as_list(v) for v in values], index=series.index, dtype=object, name=series.name)
    if isinstance(series.dtype, (pd.Int64Dtype, pd.BooleanDtype, pd.StringDtype)) or series.dtype == "float64":
        return series
    present = values[~values.map(_missing)]
    is_bool = present.map(lambda v: isinstance(v, (bool, np.bool_)))
    is_int = present.map(lambda v: isinstance(v, (int, np.integer))) & ~is_bool
    is_float = present.map(lambda v: isinstance(v, (float, np.floating)))
    if present.empty:
        return _text(values)
    if is_bool.all():
        return values.where(~values.map(_missing), None).astype("boolean")
    if is_int.all():
        return pd.to_numeric(values.where(~values.map(_missing), None)).astype("Int64")
    if (is_int | is_float).all():
        return pd.to_numeric(values, errors="coerce").astype("float64")
    return _text(values)


def config_columns(df: pd.DataFrame) -> list[str]:
    """The `data.*`, `model.*`, `train.*`, `eval.*` columns of `df`, in order."""
    return [c for c in df.columns if c.startswith(CONFIG_PREFIXES)]


def mean_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows holding the mean over categories (one per trial and evaluation config)."""
    return df[_flag(df)]


def category_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The per-category rows (no means)."""
    return df[~_flag(df)]


def _flag(df: pd.DataFrame) -> pd.Series:
    if IS_MEAN in df:
        return df[IS_MEAN].fillna(False).astype(bool)
    return df["category"].astype(object).eq(MEAN) if "category" in df else pd.Series(True, index=df.index)


def ok_rows(df: pd.DataFrame, category: str | None = MEAN) -> pd.DataFrame:
    """Successful rows: the mean rows (category="mean"), one category's, or every row (None)."""
    keep = df["status"].eq("ok").fillna(False).astype(bool) if "status" in df else pd.Series(True, index=df.index)
    if category == MEAN:
        keep &= _flag(df)
    elif category is not None:
        keep &= df["category"].eq(category).fillna(False).astype(bool)
    return df[keep]


def trials(df: pd.DataFrame, all_columns: bool = False) -> pd.DataFrame:
    """One row per trial (its mean row): arm, status, error, seeds, the config keys that vary, the mean
    metrics, time and memory. `all_columns=True` keeps every column (constant config values too)."""
    rows = mean_rows(df)
    key = "run_key" if "run_key" in rows else "trial_id"
    # one evaluation config per file today; several would share a run_key, so keep eval_hash apart too
    rows = rows.drop_duplicates([c for c in (key, "eval_hash") if c in rows])
    if all_columns:
        return rows.reset_index(drop=True)
    from analysis.select import as_key  # select imports this module

    config = [c for c in config_columns(rows) if c == "train.seed" or as_key(rows[c]).nunique() > 1]
    ids = [c for c in (SWEEP_KEY, "arm", "trial_id", "run_key", "status", "error") if c in rows]
    values = [c for c in METRIC_COLUMNS + COST_COLUMNS if c in rows and rows[c].notna().any()]
    return rows[ids + config + values].reset_index(drop=True)
