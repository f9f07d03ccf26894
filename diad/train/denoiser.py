"""Denoiser training: epsilon-prediction MSE, t ~ U{0..t_max-1} (train.t_max; 1000 = the paper), AdamW over model.trainable_parameters().

Exact resume: the batch of step s is a slice of per-epoch permutations seeded by (seed, epoch) and its noise and
timesteps come from a generator seeded by (seed, s), so N steps straight == N/2 + save + load + N/2 (bit-identical).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from diad import checkpoint as ckpt
from diad.config import RunConfig, training_part
from diad.errors import DiadError
from diad.models import make_scheduler
from diad.models.precision import autocast
from diad.train.batches import batch_indices, derived_seed, generator, to_float

OnCheckpoint = Callable[[int, Path, dict], None]


@dataclass(frozen=True)
class DenoiserResult:
    checkpoint_dir: Path
    steps: int
    wall_s: float  # this call's training time (resumed runs: only the part done now)
    images_per_s: float
    final_loss: float
    val_loss: float


def total_steps(cfg: RunConfig, n_train: int) -> int:
    """Optimizer steps to run: train.steps, else ceil(epochs * n_train / (batch_size * grad_accum))."""
    t = cfg.train
    if t.steps is not None:
        return t.steps
    return max(1, math.ceil(t.epochs * n_train / (t.batch_size * t.grad_accum)))


def _resume_key(cfg: RunConfig) -> dict:
    part = training_part(cfg)
    part["train"] = {k: v for k, v in part["train"].items() if k not in ("steps", "epochs")}
    return part


@torch.no_grad()
def encode_all(model: torch.nn.Module, images: torch.Tensor, device: torch.device, batch: int = 32) -> torch.Tensor:
    """uint8 images (N,3,H,W) -> latents z0 (N,C,h,w) on `device`; the frozen encoder runs once, not every step."""
    if len(images) == 0:  # e.g. no held-out validation images on a tiny dataset
        return torch.empty(0, device=device)
    model.eval()
    parts = [model.encode(to_float(images[i:i + batch], device)) for i in range(0, len(images), batch)]
    return torch.cat(parts)


@torch.no_grad()
def posterior_std_all(model: torch.nn.Module, images: torch.Tensor, device: torch.device, batch: int = 32) -> torch.Tensor:
    """Scaled posterior std (N,C,h,w) of the frozen encoder: with encode_all's mode, z0 = mode + std * eps is
    a posterior sample (vae_posterior=sample) drawn fresh each step without running the encoder again."""
    model.eval()
    parts = []
    for i in range(0, len(images), batch):
        parts.append(model.posterior_std(to_float(images[i:i + batch], device)))
    return torch.cat(parts)


def _posterior_sample(mode: torch.Tensor, std: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
    """mode itself (vae_posterior=mode) or mode + std * eps, eps from `g` drawn on CPU."""
    if std is None:
        return mode
    return mode + std * torch.randn(mode.shape, generator=g).to(mode.device)


def _noisy_batch(scheduler, z0: torch.Tensor, g: torch.Generator,
                 t_max: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z_t, t, eps) with t ~ U{0..t_max-1} (default: every training step), eps ~ N(0, I) drawn from `g` on CPU."""
    n_train = min(t_max or scheduler.config.num_train_timesteps, scheduler.config.num_train_timesteps)
    t = torch.randint(0, n_train, (z0.shape[0],), generator=g)
    noise = torch.randn(z0.shape, generator=g).to(z0.device)
    t = t.to(z0.device)
    return scheduler.add_noise(z0, noise, t), t, noise


def validation_loss(model, scheduler, z0: torch.Tensor, x0_uint8: torch.Tensor, cfg: RunConfig,
                    device: torch.device) -> float:
    """Mean eps-MSE on held-out normal training images, fixed noise and t (comparable across checkpoints)."""
    if len(z0) == 0:
        return float("nan")
    n = min(len(z0), cfg.train.val_batches * cfg.train.batch_size)
    g = generator(cfg.train.seed, "val")
    was_training = model.training
    model.eval()
    losses = []
    with torch.no_grad():
        for i in range(0, n, cfg.train.batch_size):
            z_t, t, noise = _noisy_batch(scheduler, z0[i:i + cfg.train.batch_size], g, cfg.train.t_max)
            x0 = to_float(x0_uint8[i:i + cfg.train.batch_size], device)
            with autocast(device, cfg.train.precision):
                eps = model.predict_noise(z_t, t, x0)
            losses.append(F.mse_loss(eps.float(), noise, reduction="sum").item() / eps[0].numel())
    model.train(was_training)
    return sum(losses) / n


def _params_finite(params: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params)


def _prune(root: Path, keep_last: int | None) -> None:
    if keep_last is None:
        return
    import shutil

    for old in ckpt.list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def _resume(root: Path, cfg: RunConfig, model, opt) -> tuple[int, dict]:
    """Load the latest checkpoint under `root` into model and optimizer; returns (step, its metrics)."""
    latest = ckpt.latest_checkpoint(root)
    if latest is None:
        return 0, {}
    saved = RunConfig.model_validate(ckpt.read_config(latest))
    if _resume_key(saved) != _resume_key(cfg):
        raise DiadError(f"{root}: holds checkpoints of a different training config; use another --out "
                        f"or delete {latest.parent}")
    ckpt.load_weights(latest, model)
    ckpt.load_optimizer(latest, opt)
    state = ckpt.read_state(latest)
    return state["step"], state.get("metrics", {})


def train_denoiser(cfg: RunConfig, model, train_x: torch.Tensor, val_x: torch.Tensor, out_dir: Path,
                   device: torch.device, progress: bool = True, on_checkpoint: OnCheckpoint | None = None,
                   extra_metrics: dict | None = None) -> DenoiserResult:
    """Train the denoiser on uint8 images, checkpointing under out_dir/checkpoints; resumes from the latest one."""
    t = cfg.train
    root = Path(out_dir) / "checkpoints"
    model.to(device)
    params = [p for p in model.trainable_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    start, prev = _resume(root, cfg, model, opt)
    total = total_steps(cfg, len(train_x))
    if start >= total:
        last = ckpt.latest_checkpoint(root)
        return DenoiserResult(last, start, 0.0, 0.0, prev.get("loss", float("nan")), prev.get("val_loss", float("nan")))
    scheduler = make_scheduler()
    z_train, z_val = encode_all(model, train_x, device), encode_all(model, val_x, device)  # val: always the mode
    sampled = model.vae is not None and cfg.model.vae_posterior == "sample"
    std_train = posterior_std_all(model, train_x, device) if sampled else None
    model.train()
    bar = tqdm(total=total, initial=start, desc="denoiser", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    t0, seen, window = time.perf_counter(), 0, []
    last_dir, loss_val = ckpt.latest_checkpoint(root), float("nan")
    for step in range(start, total):
        torch.manual_seed(derived_seed(t.seed, "global", step))  # any module-internal randomness (dropout)
        step_loss = 0.0
        for micro in range(t.grad_accum):
            idx = batch_indices(len(z_train), t.batch_size, t.seed, step, micro, t.grad_accum)
            di = idx.to(z_train.device)
            z0 = _posterior_sample(z_train[di], None if std_train is None else std_train[di],
                                   generator(t.seed, "posterior", step, micro))
            z_t, tt, noise = _noisy_batch(scheduler, z0, generator(t.seed, "noise", step, micro), t.t_max)
            with autocast(device, t.precision):
                eps = model.predict_noise(z_t, tt, to_float(train_x[idx], device))
            loss = F.mse_loss(eps.float(), noise) / t.grad_accum
            if not torch.isfinite(loss):
                raise DiadError(f"step {step}: loss is {loss.item() * t.grad_accum} (not finite); training stopped, "
                                f"last good checkpoint: {last_dir or 'none'}; lower train.lr (now {t.lr})")
            loss.backward()
            step_loss += loss.item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        seen += t.batch_size * t.grad_accum
        window.append(step_loss)
        ips = seen / max(time.perf_counter() - t0, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}", img_s=f"{ips:.1f}")
        if (step + 1) % t.checkpoint_every == 0 or step + 1 == total:
            if not _params_finite(params):
                raise DiadError(f"step {step}: weights became non-finite; training stopped, last good checkpoint: "
                                f"{last_dir or 'none'}; lower train.lr (now {t.lr})")
            loss_val = validation_loss(model, scheduler, z_val, val_x, cfg, device)
            metrics = {"loss": sum(window) / len(window), "val_loss": loss_val, "images_per_s": ips,
                       "wall_s": prev.get("wall_s", 0.0) + time.perf_counter() - t0, **(extra_metrics or {})}
            last_dir = ckpt.save_checkpoint(ckpt.step_dir(root, step + 1), model, cfg.model_dump(mode="json"),
                                            step + 1, opt, metrics)
            _prune(root, t.keep_last)
            window = []
            if on_checkpoint is not None:  # the total too, so a sweep can show "step 120/300" and an ETA
                on_checkpoint(step + 1, last_dir, {**metrics, "total_steps": total})
    bar.close()
    wall = time.perf_counter() - t0
    final = ckpt.read_state(last_dir)["metrics"]
    return DenoiserResult(last_dir, total, wall, seen / max(wall, 1e-9), final["loss"], loss_val)
