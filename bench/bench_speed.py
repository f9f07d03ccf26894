"""Model speed: denoiser training images/s and inference images/s at DDIM 5, 10, 25 steps.

CPU: the `cpu` profile (DiAD variant, random weights: speed does not depend on the weights), float32.
GPU (only when torch sees one): the `paper` profile's architecture (SD-1.5-sized UNet, SG network, KL-f8
autoencoder) built with RANDOM weights, since the SD-1.5 weights are not available here; bf16 autocast,
batches larger than one, no guidance doubling (reconstruct runs one UNet pass per step). Speed only.

Inference = reconstruct (encode, T=1000, DDIM, decode) + anomaly map (backbone on image and reconstruction)
+ image score; the reconstruction alone is reported as well.

    .venv/bin/python bench/bench_speed.py                  # CPU part; GPU part when a GPU is visible
    .venv/bin/python bench/bench_speed.py --smoke          # seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from benchlib import RESULTS_DIR, main_keeping_threads, markdown_table, write_results

from diad.models import build_model, make_scheduler, model_config, reconstruct
from diad.models.precision import autocast
from diad.scoring import anomaly_maps, image_scores, load_backbone


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, bf16: bool):
    """The product's own precision switch (eval.precision / train.precision), so the bench times that path."""
    return autocast(device, "bf16" if bf16 else "fp32")


class Clock:
    """Accumulates wall seconds and this process's CPU seconds (all threads) over timed sections."""

    def __init__(self, device: torch.device):
        self.device, self.wall, self.cpu = device, 0.0, 0.0

    def __enter__(self) -> "Clock":
        _sync(self.device)
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        _sync(self.device)
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c

    def rates(self, images: int) -> dict:
        """images/s of wall time, and images per CPU-second (robust to other jobs on a shared machine)."""
        return {"images_per_s": images / self.wall, "images_per_cpu_s": images / max(self.cpu, 1e-9)}


def train_speed(model, size: int, batch: int, steps: int, warmup: int, device: torch.device, bf16: bool) -> dict:
    """Denoiser training rates: eps-MSE, backward, AdamW step on the trainable parameters (latents precomputed,
    as diad.train does)."""
    model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.trainable_parameters() if p.requires_grad], lr=1e-5)
    sched = make_scheduler()
    x = torch.rand(batch, 3, size, size, device=device)
    with torch.no_grad(), _autocast(device, bf16):
        z0 = model.encode(x).float()
    clock = Clock(device)
    for i in range(warmup + steps):
        with clock if i >= warmup else nullcontext():
            t = torch.randint(0, 1000, (batch,), device=device)
            noise = torch.randn_like(z0)
            with _autocast(device, bf16):
                eps = model.predict_noise(sched.add_noise(z0, noise, t), t, x)
                loss = F.mse_loss(eps.float(), noise)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return clock.rates(steps * batch)


@torch.no_grad()
def infer_speed(model, extractor, size: int, batch: int, ddim_steps: int, repeats: int, device: torch.device,
                bf16: bool) -> dict:
    """Rates of reconstruction alone ("reconstruct") and end to end incl. anomaly map + image score ("full"),
    after one warm-up batch."""
    model.to(device).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    rec_clock, score_clock = Clock(device), Clock(device)
    for i in range(repeats + 1):
        warm = i == 0  # the first batch is warm-up (allocator, kernels)
        with nullcontext() if warm else rec_clock, _autocast(device, bf16):
            rec = reconstruct(model, x, forward_steps=1000, ddim_steps=ddim_steps)
        with nullcontext() if warm else score_clock:
            image_scores(anomaly_maps(extractor, x, rec.float()), "authors_pool")
    full = Clock(device)
    full.wall, full.cpu = rec_clock.wall + score_clock.wall, rec_clock.cpu + score_clock.cpu
    return {"reconstruct": rec_clock.rates(repeats * batch), "full": full.rates(repeats * batch)}


def measure(profile: str, device: torch.device, args) -> dict:
    """Training and inference figures for one profile on one device."""
    bf16 = device.type == "cuda"
    cfg = model_config(profile, "diad")
    torch.manual_seed(0)
    model = build_model(cfg, load_pretrained=False)  # random weights: the paper's SD-1.5 are not here
    extractor = load_backbone("efficientnet_lite0").to(device)
    tb, ib = (args.gpu_train_batch, args.gpu_infer_batch) if bf16 else (args.train_batch, args.infer_batch)
    out = {"profile": profile, "variant": "diad", "device": str(device), "image_size": cfg.image_size,
           "dtype": "bf16 autocast" if bf16 else "float32", "weights": "random (speed only)",
           "train_batch": tb, "infer_batch": ib, "threads": torch.get_num_threads(),
           "train_steps_timed": args.train_steps, "infer_batches_timed": args.repeats}
    t0 = time.perf_counter()
    out["train"] = train_speed(model, cfg.image_size, tb, args.train_steps, 1, device, bf16)
    print(f"{profile} on {device}: training {out['train']}", flush=True)
    out["infer"] = {}
    for steps in args.ddim:
        out["infer"][steps] = infer_speed(model, extractor, cfg.image_size, ib, steps, args.repeats, device, bf16)
        print(f"{profile} on {device}: DDIM {steps}: {out['infer'][steps]}", flush=True)
    out["wall_s"] = time.perf_counter() - t0
    return out


def gpu_skip_reason(no_gpu: bool) -> str | None:
    """Why the GPU part does not run, or None when it does."""
    if no_gpu:
        return "GPU part skipped: --no-gpu/--smoke given."
    if not torch.cuda.is_available():
        return "GPU part skipped: no GPU visible to torch (torch.cuda.is_available() is False); not measured."
    return None


def table(rows: list[dict], ddim: list[int]) -> str:
    """Rates as 'wall images/s (images per CPU-second)'; inference end to end, reconstruction alone in JSON."""
    def cell(r: dict) -> str:
        return f"{r['images_per_s']:.2f} ({r['images_per_cpu_s']:.2f})"

    header = ["profile / device", "size", "dtype", "threads", "train batch", "train img/s (per CPU-s)"] + \
        [f"infer img/s DDIM {s} (per CPU-s)" for s in ddim]
    body = [[f"{r['profile']} / {r['device']}", r["image_size"], r["dtype"], r["threads"], r["train_batch"],
             cell(r["train"])] + [cell(r["infer"][s]["full"]) for s in ddim] for r in rows]
    return markdown_table(header, body)


def _run(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ddim", default="5,10,25", help="comma list of DDIM step counts")
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--train-batch", type=int, default=8, help="CPU (the cpu profile's batch size)")
    ap.add_argument("--infer-batch", type=int, default=16, help="CPU (the cpu profile's eval batch size)")
    ap.add_argument("--gpu-train-batch", type=int, default=12, help="GPU (the paper's batch size)")
    ap.add_argument("--gpu-infer-batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2, help="timed inference batches per DDIM setting")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--no-gpu", action="store_true", help="skip the GPU part even when a GPU is visible")
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="1 training step, DDIM 2, batch 2, one thread (for the test)")
    args = ap.parse_args(argv)
    args.ddim = [int(s) for s in args.ddim.split(",")]
    if args.smoke:
        args.ddim, args.train_steps, args.train_batch, args.infer_batch, args.repeats = [2], 1, 2, 2, 1
        args.no_gpu, args.threads = True, args.threads or 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="bench-smoke-")) if args.smoke else RESULTS_DIR)
    rows = [measure("cpu", torch.device("cpu"), args)]
    gpu_note = gpu_skip_reason(args.no_gpu)
    if gpu_note is None:
        rows.append(measure("paper", torch.device("cuda"), args))
        gpu_note = (f"GPU: {torch.cuda.get_device_name(0)}; paper-profile architecture with RANDOM weights "
                    "(speed only), bf16 autocast, no guidance doubling.")
    print(gpu_note)
    md = table(rows, args.ddim) + "\n\n" + gpu_note
    print("\n" + md)
    js, _ = write_results("speed", {"rows": rows, "gpu_note": gpu_note, "args": vars(args) | {"out_dir": str(out_dir)}},
                          md, out_dir)
    print(f"wrote {js}")
    return 0


def main(argv=None) -> int:
    return main_keeping_threads(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
