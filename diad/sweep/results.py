"""Result rows and Parquet files: one file per trial, under results/sweep_id=<id>/, written atomically.

The schema is diad/schema.py (docs/results-schema.md). Config columns (`data.*`, `model.*`, `train.*`, `eval.*`) are typed
from the RunConfig field annotations, so a None in one file and a value in another still read as one column;
list fields (`eval.layers`, `model.sg.levels`, ...) are Parquet lists.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import types
import typing
from datetime import datetime, timezone
from enum import Enum
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any, Literal, Union

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from diad.io import atomic_file
from diad.machine import cpu_model
from diad.sweep.layout import results_dir
from diad.schema import COLUMNS, KEY_COLUMNS, METRICS

_S, _F, _I, _B = pa.string(), pa.float64(), pa.int64(), pa.bool_()
ARROW_TYPES: dict[str, pa.DataType] = {"string": _S, "float": _F, "int": _I, "bool": _B,
                                       "timestamp": pa.timestamp("us", tz="UTC")}
# Every column but the config values, in file order (config columns follow the keys): diad/schema.py.
RESULT_COLUMNS: dict[str, pa.DataType] = {c.name: ARROW_TYPES[c.kind] for c in COLUMNS}
VERSIONED = ("diad-sweep", "torch", "torchvision", "diffusers", "timm", "numpy", "ray", "optuna", "pyarrow")


def _arrow_type(ann: Any) -> pa.DataType:
    """Parquet type of one config field: scalars keep their type, lists of scalars stay lists; dicts and
    mixed unions become text."""
    origin = typing.get_origin(ann)
    if origin in (list, tuple) and len({a for a in typing.get_args(ann) if a is not Ellipsis}) == 1:
        item = _arrow_type(typing.get_args(ann)[0])
        return pa.list_(item) if not pa.types.is_nested(item) else _S
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return _arrow_type(args[0]) if len(args) == 1 else _S
    if origin is Literal:
        kinds = {type(v) for v in typing.get_args(ann)}
        return {bool: _B, int: _I, float: _F}.get(kinds.pop(), _S) if len(kinds) == 1 else _S
    if isinstance(ann, type) and issubclass(ann, Enum):
        return _S
    return {bool: _B, int: _I, float: _F}.get(ann, _S)


def config_columns(model: type[BaseModel], prefix: str = "") -> dict[str, pa.DataType]:
    """{"model.variant": string, "train.lr": float64, ...} for every leaf field of a RunConfig class."""
    cols: dict[str, pa.DataType] = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        inner = [a for a in (typing.get_args(ann) or (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cols.update(config_columns(ann, f"{prefix}{name}."))
        elif len(inner) == 1 and typing.get_origin(ann) in (Union, types.UnionType):
            cols.update(config_columns(inner[0], f"{prefix}{name}."))
        else:
            cols[f"{prefix}{name}"] = _arrow_type(ann)
    return cols


def schema_for(run_config_cls: type[BaseModel]) -> pa.Schema:
    """Full file schema: keys, config columns, then the rest of RESULT_COLUMNS."""
    cols = {k: RESULT_COLUMNS[k] for k in KEY_COLUMNS}
    cols.update(config_columns(run_config_cls))
    cols.update({k: v for k, v in RESULT_COLUMNS.items() if k not in KEY_COLUMNS})
    return pa.schema(list(cols.items()))


def _cell(value: Any, typ: pa.DataType) -> Any:
    """Config value -> Parquet cell: lists of list columns as lists, other lists as "1,2,3", dicts as JSON."""
    if value is None:
        return None
    if pa.types.is_list(typ):
        return [_cell(v, typ.value_type) for v in value]
    if typ == _S:
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        if isinstance(value, dict):
            return json.dumps(value, sort_keys=True)
        return str(value)
    if typ == _B:
        return bool(value)
    return int(value) if typ == _I else float(value)


def config_cells(flat_cfg: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """Typed cells for every config column of `schema` (missing values -> null)."""
    skip = set(RESULT_COLUMNS)
    return {f.name: _cell(flat_cfg.get(f.name), f.type) for f in schema if f.name not in skip}


def git_state(repo: Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD sha, dirty) of the repo holding the diad package, or (None, None) outside git."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo,  # untracked (not ignored) count
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if sha.returncode != 0:
        return None, None
    return sha.stdout.strip(), bool(dirty.stdout.strip())


def package_versions() -> str:
    """JSON {package: version} of what shapes the numbers."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return json.dumps(out, sort_keys=True)


def hardware() -> str:
    """CPU model and cores, plus the GPU name when one is visible (torch only if already imported)."""
    text = f"{cpu_model()} x{os.cpu_count()}"
    torch = __import__("sys").modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        text += f"; GPU {torch.cuda.get_device_name()}"
    return text


def _is_uri(root: str) -> bool:
    return "://" in root


def write_rows(storage: str, sweep_id: str, run_key: str, rows: list[dict], schema: pa.Schema) -> str:
    """Write one trial's rows as <run_key>.parquet; a reader never sees a partial file."""
    table = pa.Table.from_pylist(rows, schema=schema)
    target = f"{results_dir(storage, sweep_id)}/{run_key}.parquet"
    if not _is_uri(storage):
        with atomic_file(target) as tmp:
            pq.write_table(table, tmp)
        return target
    fs, path = pa.fs.FileSystem.from_uri(target)
    tmp = f"{path}.tmp-{os.getpid()}"
    fs.create_dir(str(PurePath(path).parent), recursive=True)
    pq.write_table(table, tmp, filesystem=fs)
    fs.move(tmp, path)
    return target


def _list_files(storage: str, sweep_id: str) -> tuple[Any, list[str]]:
    root = results_dir(storage, sweep_id)
    if not _is_uri(storage):
        d = Path(root)
        return None, sorted(str(p) for p in d.glob("*.parquet")) if d.is_dir() else []
    fs, path = pa.fs.FileSystem.from_uri(root)
    infos = fs.get_file_info(pa.fs.FileSelector(path, allow_not_found=True))
    return fs, sorted(i.path for i in infos if i.path.endswith(".parquet"))


def read_rows(storage: str, sweep_id: str, run_key: str | None = None, columns: list[str] | None = None) -> pa.Table:
    """All rows of a sweep (or of one run_key's file) as one table; empty table when none."""
    fs, files = _list_files(storage, sweep_id)
    if run_key is not None:
        files = [f for f in files if Path(f).name == f"{run_key}.parquet"]
    tables = [pq.read_table(f, columns=columns, filesystem=fs) for f in files]
    if not tables:
        return pa.table({c: pa.array([], type=_S) for c in (columns or ["run_key"])})
    return pa.concat_tables(tables, promote_options="default")


def run_status(storage: str, sweep_id: str) -> dict[str, str]:
    """{run_key: "ok" | "failed"} for every trial file of the sweep (one file per run_key, one status each)."""
    table = read_rows(storage, sweep_id, columns=["run_key", "status"])
    if "status" not in table.column_names:
        return {}
    return dict(zip(table.column("run_key").to_pylist(), table.column("status").to_pylist()))


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def make_rows(schema: pa.Schema, keys: dict[str, str], flat_cfg: dict[str, Any], per_category: dict | None,
              info: dict[str, Any]) -> list[dict]:
    """Rows of one trial: one per category (incl. "mean"); a failed trial gets one "mean" row with NaN metrics.

    `info` holds the non-metric columns (status, error, wall times, provenance, protocol.*).
    """
    common = {**keys, **config_cells(flat_cfg, schema)}
    common.update({k: info.get(k) for k in RESULT_COLUMNS if k not in KEY_COLUMNS and k not in METRICS})
    common["finished_at"] = common.get("finished_at") or now_utc()
    categories = per_category or {"mean": {}}
    rows = []
    for category, metrics in categories.items():
        row = dict(common, category=category)
        row["n_test_images"] = metrics.get("n_test_images", metrics.get("n_images"))
        for m in METRICS:
            value = metrics.get(m)
            row[m] = float("nan") if value is None else float(value)
        row["pixel_metrics_note"] = metrics.get("pixel_metrics_note")
        rows.append(row)
    return rows
