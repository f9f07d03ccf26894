"""Load sweep results (Parquet, one file per trial, hive-partitioned by sweep) into one typed DataFrame.

The schema is docs/results-schema.md. Reading is per file, so a sweep that is still running (new files
appearing, older files with slightly different columns) loads fine.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from diad.errors import DiadError
from diad.schema import COLUMNS, CONFIG_SECTIONS, METRICS

SWEEP_KEY = "sweep_id"


def _named(kind: str) -> tuple[str, ...]:
    return tuple(c.name for c in COLUMNS if c.kind == kind)


STRING_COLUMNS = _named("string") + ("eval.layers", SWEEP_KEY)
METRIC_COLUMNS = METRICS
FLOAT_COLUMNS = _named("float")
INT_COLUMNS = _named("int")
BOOL_COLUMNS = _named("bool")
TIME_COLUMNS = _named("timestamp")
CONFIG_PREFIXES = tuple(f"{s}." for s in CONFIG_SECTIONS)

_HIVE = re.compile(rf"^{SWEEP_KEY}=(.+)$")


def load_results(sources: str | Path | Iterable[str | Path], storage: str | Path = "runs") -> pd.DataFrame:
    """Rows of every result file under `sources` (files, directories or sweep ids under the sweep storage
    root `storage`, as `diad-sweep --storage` names it), typed per the schema (diad/schema.py)."""
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


def _resolve(source: str | Path, root: Path) -> tuple[list[Path], str]:
    """Result files for one source and a description of where they were searched.

    A bare name that is a sweep id under `root` means that sweep, even if a same-named path exists here.
    """
    path = Path(source)
    by_id = root / "results" / f"{SWEEP_KEY}={source}"
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
        df = pq.read_table(path, partitioning=None).to_pandas()
    except Exception as e:  # a foreign or damaged file must not hide the rest of a sweep
        warnings.warn(f"skipping unreadable result file {path}: {e}", stacklevel=3)
        return None
    if SWEEP_KEY not in df.columns:
        sweep = next((m.group(1) for part in reversed(path.parent.parts) if (m := _HIVE.match(part))), None)
        df[SWEEP_KEY] = sweep
    return df


def cast_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Cast the schema's known columns to their types; list-valued config columns become "a,b" text."""
    df = df.copy()
    for col in df.columns:
        if col.startswith(CONFIG_PREFIXES) and df[col].dtype == object:
            df[col] = df[col].map(_scalar_text)
    for col in STRING_COLUMNS:
        if col in df:
            df[col] = df[col].map(_scalar_text).astype("string")
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


def _scalar_text(value):
    """Lists/arrays (e.g. layer tuples) as "1,2,3" so they group and compare; other values unchanged."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ",".join(str(v) for v in value)
    return value


def config_columns(df: pd.DataFrame) -> list[str]:
    """The `data.*`, `model.*`, `train.*`, `eval.*` columns of `df`, in order."""
    return [c for c in df.columns if c.startswith(CONFIG_PREFIXES)]


def ok_rows(df: pd.DataFrame, category: str | None = "mean") -> pd.DataFrame:
    """Successful rows, of one category (None: every category)."""
    keep = df["status"].eq("ok").fillna(False) if "status" in df else pd.Series(True, index=df.index)
    if category is not None and "category" in df:
        keep &= df["category"].eq(category).fillna(False)
    return df[keep.astype(bool)]
