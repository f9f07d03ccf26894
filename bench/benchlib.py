"""Shared helpers of the bench scripts: where results go, what machine they came from, markdown tables."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path

import torch

from diad.io import atomic_write_text, cache_root
from diad.machine import cpu_model

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def work_dir(name: str) -> Path:
    """Scratch space for training runs and caches of one bench (outside the repository)."""
    path = cache_root() / "bench" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine() -> dict:
    """Cores, CPU model, load average, torch threads and GPU: what a reader needs to judge the figures."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()], "gpu": gpu,
            "python": platform.python_version(), "torch": torch.__version__, "argv": sys.argv}


def fmt(value) -> str:
    """A table cell: floats to 3 decimals, NaN as a dash."""
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """Header + rows -> a GitHub markdown table (numbers right-aligned)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, payload: dict, markdown: str, out_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Write <out_dir>/<name>.json and <name>.md atomically; returns both paths."""
    payload = {"machine": machine(), **payload}
    js = atomic_write_text(out_dir / f"{name}.json", json.dumps(payload, indent=1, default=str) + "\n")
    md = atomic_write_text(out_dir / f"{name}.md", markdown + "\n")
    return js, md


def main_keeping_threads(run, argv=None) -> int:
    """Call a bench's `run(argv)` and restore the caller's torch thread count afterwards: the benches set their
    own (--threads; --smoke defaults to one, since two threads on a busy 2-core box run several times slower)
    and the tests call them in-process."""
    before = torch.get_num_threads()
    try:
        return run(argv)
    finally:
        torch.set_num_threads(before)
