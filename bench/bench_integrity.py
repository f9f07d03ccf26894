"""Cost of integrity by content: hashing a cpu-profile checkpoint's model.safetensors once per load.

    PYTHONPATH=. python bench/bench_integrity.py [--profile cpu] [--repeats 5]

Prints the file size, the sha256 time (cold memo), the full load_trained time and the share the hash takes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from diad import checkpoint as ckpt, integrity
    from diad.config import build_run_config
    from diad.models import build_model
    from diad.pipeline import load_trained

    cfg = build_run_config({"model": {"profile": args.profile}, "train": {"steps": 1}})
    model = build_model(cfg.model, load_pretrained=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = ckpt.save_checkpoint(Path(tmp) / "step-00000001", model, cfg.model_dump(mode="json"), step=1)
        size_mb = (path / "model.safetensors").stat().st_size / 2**20
        hashes, loads, finite = [], [], []
        for _ in range(args.repeats):
            integrity._VERIFIED.clear()
            t0 = time.perf_counter()
            ckpt.weights_sha256(path)
            hashes.append(time.perf_counter() - t0)
            integrity._VERIFIED.clear()
            t0 = time.perf_counter()
            load_trained(path)  # hash + verify + load + finite check
            loads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            integrity.check_finite(model, path, "")
            finite.append(time.perf_counter() - t0)
    h, load, fin = statistics.median(hashes), statistics.median(loads), statistics.median(finite)
    print(f"profile {args.profile}: model.safetensors {size_mb:.1f} MiB; sha256 {h * 1e3:.1f} ms, finite check "
          f"{fin * 1e3:.1f} ms (medians of {args.repeats}); load_trained {load * 1e3:.0f} ms in all, "
          f"so the checks add {100 * (h + fin) / load:.1f}%")


if __name__ == "__main__":
    main()
