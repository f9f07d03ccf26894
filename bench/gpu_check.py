"""The GPU path in one run (bench/gpu_check.sh calls this): paper-profile speed, peak GPU memory, fractional-GPU sweep.

1. Writes an SD-1.5-sized UNet + KL-f8 autoencoder with RANDOM weights in diffusers format (bench_paper_full's
   code) and builds the paper-profile DiAD model from that folder (the real loading path; SG copied from it).
2. Training images/s: denoiser steps at the paper's batch 12 (eps-MSE, backward, AdamW on the trainable part).
3. Inference images/s at 256 px, T=1000, 10 DDIM steps, batch 32: reconstruction + anomaly map + image score.
4. Peak GPU memory (torch.cuda.max_memory_allocated) of each part.
5. A 4-trial smoke sweep (sweeps/smoke.yaml, 2 arms x 2 seeds) with resources.gpu=0.25 per trial: all four
   trials share one GPU; its Parquet rows are read back and summarised.

bf16 autocast on GPU (the product's switch, diad.models.precision, as eval.precision=bf16), float32 on CPU
(bench_speed's loops). Speed only: the weights are random.
GPU_CHECK_TINY=1 (or --tiny): the same steps at tiny widths, 128 px and small batches on CPU, for the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_paper_full import REPO, TINY_IMAGE_SIZE, TINY_MODEL, write_random_sd15
from bench_speed import infer_speed, train_speed
from benchlib import write_results

from diad.models import build_model, model_config
from diad.scoring import load_backbone


def _gib(nbytes: int) -> float:
    return nbytes / 2**30


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return round(_gib(torch.cuda.max_memory_allocated(device)), 2) if device.type == "cuda" else None


def _gib_text(value: float | None) -> str:
    return "n/a (no GPU)" if value is None else f"{value:.2f} GiB"


def speed(args, weights: Path, device: torch.device) -> dict:
    """Training and inference rates of the paper-profile model built from the random diffusers folder."""
    bf16 = device.type == "cuda"
    sizes = dict(TINY_MODEL, image_size=TINY_IMAGE_SIZE) if args.tiny else {}  # nested like model.unet.*
    cfg = model_config("paper", "diad", pretrained_dir=weights, **sizes)
    t0 = time.perf_counter()
    model = build_model(cfg)  # loads unet/ and vae/ from the folder, copies the SG network from the UNet
    load_s = time.perf_counter() - t0
    out = {"image_size": cfg.image_size, "dtype": "bf16 autocast" if bf16 else "float32", "load_s": load_s,
           "train_batch": args.train_batch, "infer_batch": args.infer_batch, "ddim_steps": args.ddim_steps}
    _peak_reset(device)
    out["train"] = train_speed(model, cfg.image_size, args.train_batch, args.train_steps, 1, device, bf16)
    out["train_peak_gpu_gib"] = _peak_gib(device)
    print(f"training: {out['train']['images_per_s']:.2f} images/s (batch {args.train_batch}), "
          f"peak GPU memory {_gib_text(out['train_peak_gpu_gib'])}", flush=True)
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    extractor = load_backbone("efficientnet_lite0").to(device)
    _peak_reset(device)
    rates = infer_speed(model, extractor, cfg.image_size, args.infer_batch, args.ddim_steps, args.repeats, device, bf16)
    out["infer"] = rates
    out["infer_peak_gpu_gib"] = _peak_gib(device)
    print(f"inference: {rates['full']['images_per_s']:.2f} images/s end to end "
          f"({rates['reconstruct']['images_per_s']:.2f} reconstruction alone), {cfg.image_size} px, "
          f"{args.ddim_steps} DDIM steps, batch {args.infer_batch}, peak GPU memory {_gib_text(out['infer_peak_gpu_gib'])}", flush=True)
    del model, extractor
    return out


def sweep(args, work: Path, gpu: bool) -> dict:
    """sweeps/smoke.yaml as 4 trials (2 arms x 2 seeds) at resources.gpu=0.25 each; their rows summarised."""
    import pyarrow.parquet as pq

    name = "gpu_check_smoke"
    cmd = [sys.executable, "-m", "diad.sweep.cli", "launch", str(REPO / "sweeps" / "smoke.yaml"), f"name={name}",
           "seeds=[0,1]", f"resources.gpu={0.25 if gpu else 0}", f"resources.cpu={args.sweep_cpus}",
           "--storage", str(work / "runs"), "--cache-dir", str(work / "cache"), "--no-dashboard",
           "--num-cpus", str(max(2, 4 * args.sweep_cpus) if gpu else 2)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "DIAD_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    files = sorted((work / "runs" / "results" / f"sweep_id={name}").glob("*.parquet"))
    rows = [r for f in files for r in pq.read_table(f).to_pylist() if r.get("category") == "mean"]
    out = {"rc": proc.returncode, "wall_s": wall, "trials": len(files), "gpu_per_trial": 0.25 if gpu else 0,
           "ok": sum(r.get("status") == "ok" for r in rows),
           "hardware": sorted({str(r.get("hardware")) for r in rows}),
           "peak_mem_mb": [round(float(r.get("peak_mem_mb") or 0), 1) for r in rows],
           "image_auroc": [r.get("image_auroc") for r in rows]}
    if proc.returncode != 0:
        out["stderr_tail"] = proc.stderr[-2000:]
    print(f"sweep: {out['ok']}/{out['trials']} trials ok at {out['gpu_per_trial']} GPU each in {wall:.1f} s; "
          f"peak memory per trial (MB): {out['peak_mem_mb']}; hardware: {out['hardware']}", flush=True)
    return out


def _run(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", default=os.environ.get("GPU_CHECK_TINY") == "1",
                    help="tiny widths, 128 px, small batches (CPU; also GPU_CHECK_TINY=1)")
    ap.add_argument("--train-batch", type=int, default=None, help="default 12 (tiny: 2)")
    ap.add_argument("--train-steps", type=int, default=None, help="timed training steps (default 10, tiny: 1)")
    ap.add_argument("--infer-batch", type=int, default=None, help="default 32 (tiny: 2)")
    ap.add_argument("--ddim-steps", type=int, default=None, help="default 10 (tiny: 2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed inference batches (default 3, tiny: 1)")
    ap.add_argument("--sweep-cpus", type=int, default=2, help="CPUs per sweep trial on GPU (tiny: 1)")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir, deleted)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where gpu_check.json/.md go (default bench/results)")
    args = ap.parse_args(argv)
    small = {"train_batch": 2, "train_steps": 1, "infer_batch": 2, "ddim_steps": 2, "repeats": 1}
    full = {"train_batch": 12, "train_steps": 10, "infer_batch": 32, "ddim_steps": 10, "repeats": 3}
    for key, value in (small if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.tiny:
        args.sweep_cpus = 1
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    if not gpu and not args.tiny:
        print("no GPU visible to torch: nothing measured (GPU_CHECK_TINY=1 runs the tiny CPU version)", file=sys.stderr)
        return 3
    if not gpu:
        torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        counts = write_random_sd15(work / "sd15", tiny=args.tiny, device=device)
        print(f"random SD-1.5{' (tiny)' if args.tiny else ''} weights written in {time.perf_counter() - t0:.1f} s: "
              f"{counts}", flush=True)
        result = {"device": torch.cuda.get_device_name(0) if gpu else "cpu", "tiny": args.tiny, "params": counts,
                  "speed": speed(args, work / "sd15", device)}
        if gpu:
            torch.cuda.empty_cache()  # hand the cached blocks back: the sweep's four trials share this GPU
        if not args.no_sweep:
            result["sweep"] = sweep(args, work, gpu)
    result["wall_s"] = time.perf_counter() - t0
    s = result["speed"]
    lines = [f"device: {result['device']}{' (tiny sizes)' if args.tiny else ''}; weights random (speed only); "
             f"{s['dtype']}; total {result['wall_s']:.0f} s",
             f"paper-profile training: {s['train']['images_per_s']:.2f} images/s at batch {s['train_batch']}, "
             f"{s['image_size']} px; peak GPU memory {_gib_text(s['train_peak_gpu_gib'])}",
             f"inference: {s['infer']['full']['images_per_s']:.2f} images/s end to end "
             f"({s['infer']['reconstruct']['images_per_s']:.2f} reconstruction alone) at {s['image_size']} px, "
             f"{s['ddim_steps']} DDIM steps, batch {s['infer_batch']}; peak GPU memory {_gib_text(s['infer_peak_gpu_gib'])}"]
    if "sweep" in result:
        sw = result["sweep"]
        lines.append(f"smoke sweep: {sw['ok']}/{sw['trials']} trials ok at {sw['gpu_per_trial']} GPU each, "
                     f"{sw['wall_s']:.0f} s (rc {sw['rc']})")
    md = "\n".join(f"- {line}" for line in lines)
    print("\n" + md)
    out_dir = args.out_dir or (Path(tempfile.gettempdir()) if args.tiny else None)
    js, _ = write_results("gpu_check_tiny" if args.tiny else "gpu_check", result, md,
                          *([out_dir] if out_dir else []))
    print(f"wrote {js}")
    ok = "sweep" not in result or (result["sweep"]["rc"] == 0 and result["sweep"]["ok"] == 4)
    return 0 if ok else 1


def main(argv=None) -> int:
    before = torch.get_num_threads()
    try:
        return _run(argv)
    finally:
        torch.set_num_threads(before)


if __name__ == "__main__":
    sys.exit(main())
