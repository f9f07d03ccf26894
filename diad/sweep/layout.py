"""Where a sweep's files live under its storage root (no Ray here: `analysis` reads these too).

    <storage>/<sweep_id>/sweep.json                        the resolved spec, backend, cache dir, Tune experiment
    <storage>/<a>+<b>/group.json                           several specs launched as one Tune experiment (group.py)
    <storage>/cache/                                       trained checkpoints, reconstructions: every sweep's (local storage)
    <storage>/<experiment>/<trial>_<trial_id>/            Ray Tune's trial dirs (TensorBoard event files, result.json)
    <storage>/<sweep_id>/live/<trial>.json                 each trial's state, step, loss, ETA (`diad-sweep status`)
    <storage>/results/sweep_id=<sweep_id>/<run_key>.parquet  one result file per run
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.fs as pafs

from diad.errors import DiadError

META_FILE = "sweep.json"


def storage_root(storage: str | None) -> str:
    """Absolute local path (trials run in their own cwd) or a URI kept as given; default ./runs."""
    storage = storage or os.environ.get("DIAD_SWEEP_STORAGE") or "runs"
    return storage.rstrip("/") if "://" in storage else str(Path(storage).expanduser().resolve())


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path or a URI (s3://, gs://, file://)."""
    return pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), path)


def results_dir(storage: str, sweep_id: str) -> str:
    """Where one sweep's result files live: <storage>/results/sweep_id=<id>."""
    return f"{storage.rstrip('/')}/results/sweep_id={sweep_id}"


def live_dir(storage: str, sweep_id: str) -> str:
    """Where the driver keeps one small status JSON per trial (diad.sweep.trialstate), readable without Ray."""
    return f"{storage.rstrip('/')}/{sweep_id}/live"


def read_meta(storage: str, sweep_id: str) -> dict:
    """The sweep.json of a sweep; a missing one is a one-line DiadError."""
    fs, path = filesystem(f"{storage}/{sweep_id}/{META_FILE}")
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read().decode())
    except (FileNotFoundError, OSError):
        raise DiadError(f"{storage}/{sweep_id}: no sweep there (no {META_FILE}); `diad-sweep ls` lists sweeps") from None
