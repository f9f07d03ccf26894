"""Train one run into a directory: the autoencoder stage (cached by content), then the denoiser (resumable)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from diad import checkpoint as ckpt
from diad.config import RunConfig, autoencoder_part
from diad.data import load_samples, split_train_val
from diad.errors import DiadError
from diad.hashing import json_hash
from diad.integrity import clean_stale_temps, ensure_writable_dir
from diad.io import cache_root
from diad.models import build_model
from diad.pipeline.records import TrainResult
from diad.pipeline.device import peak_mem_mb, resolve_device, set_threads_and_seed
from diad.preflight import check_eval_settings
from diad.train import OnCheckpoint, ensure_autoencoder, load_images_uint8, train_denoiser


def has_autoencoder_stage(run_cfg: RunConfig) -> bool:
    """A latent model whose autoencoder is trained (not pixel space, not train.autoencoder.steps=0)."""
    return not run_cfg.model.pixel_space and run_cfg.train.autoencoder.steps != 0


def autoencoder_key(run_cfg: RunConfig) -> str | None:
    """The key of the run's trained autoencoder (cache_dir/autoencoders/<key>), None without that stage."""
    return json_hash(autoencoder_part(run_cfg)) if has_autoencoder_stage(run_cfg) else None


def _train_images(run_cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) images as uint8 (N,3,H,W): the split every stage of one run trains on."""
    train_samples, val_samples = split_train_val(load_samples(run_cfg.data, "train"), run_cfg.data.val_fraction,
                                                 run_cfg.data.split_seed)
    if not train_samples:
        raise DiadError(f"data: no training images found for {run_cfg.data.format} at {run_cfg.data.root}")
    size = run_cfg.data.image_size
    return load_images_uint8(train_samples, size), load_images_uint8(val_samples, size)


def prepare_autoencoder(run_cfg: RunConfig, cache_dir: str | Path, progress: bool = False) -> bool:
    """Train the run's autoencoder into cache_dir/autoencoders/<key> unless it is there; returns cached?

    The sweep layer calls this before `train` so that one trial makes the stage that many trainings share.
    """
    if not has_autoencoder_stage(run_cfg):
        return True
    ensure_writable_dir(cache_dir, "cache dir")
    set_threads_and_seed(run_cfg.train.num_threads, run_cfg.train.seed)
    train_x, _ = _train_images(run_cfg)
    _, cached, _ = ensure_autoencoder(run_cfg, train_x, Path(cache_dir), resolve_device(run_cfg.train.device),
                                      progress)
    return cached


def _initial_model(run_cfg: RunConfig, train_x: torch.Tensor, out_dir: Path, cache_dir: Path,
                   device: torch.device, progress: bool) -> tuple[torch.nn.Module, bool, dict]:
    """The model to start from: with the (cached) trained autoencoder, or bare when a checkpoint will be resumed."""
    cfg = run_cfg.model
    if ckpt.latest_checkpoint(out_dir / "checkpoints") is not None:
        return build_model(cfg, load_pretrained=False), False, {}  # every weight comes from the checkpoint
    if not has_autoencoder_stage(run_cfg):
        return build_model(cfg), False, {}
    vae, cached, metrics = ensure_autoencoder(run_cfg, train_x, cache_dir, device, progress)
    torch.manual_seed(run_cfg.train.seed)  # the denoiser's init must not depend on whether the AE was cached
    model = build_model(cfg, vae=vae)
    model.latent_scale.fill_(metrics["ae_latent_scale"])  # a buffer: saved with the checkpoint
    return model, cached, metrics


def train(run_cfg: RunConfig, out_dir: str | Path, cache_dir: str | Path | None = None,
          on_checkpoint: OnCheckpoint | None = None, progress: bool = True) -> TrainResult:
    """Autoencoder stage (cached) then denoiser training into out_dir/checkpoints; resumes when possible."""
    out_dir, t0 = Path(out_dir), time.perf_counter()
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_root()
    check_eval_settings(run_cfg.eval, "run config")  # a run must not train, then fail at evaluation
    ensure_writable_dir(out_dir, "training output")
    ensure_writable_dir(cache_dir, "cache dir")
    for folder in (out_dir, out_dir / "checkpoints"):  # temp dirs of writes a kill interrupted
        clean_stale_temps(folder)
    set_threads_and_seed(run_cfg.train.num_threads, run_cfg.train.seed)
    device = resolve_device(run_cfg.train.device)
    train_x, val_x = _train_images(run_cfg)
    model, ae_cached, ae_metrics = _initial_model(run_cfg, train_x, out_dir, cache_dir, device, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt.write_json(out_dir / "run_config.json", run_cfg.model_dump(mode="json"))
    res = train_denoiser(run_cfg, model, train_x, val_x, out_dir, device, progress, on_checkpoint,
                         extra_metrics={f"{k}": v for k, v in ae_metrics.items() if k.startswith("ae_")})
    result = TrainResult(res.checkpoint_dir, res.steps, time.perf_counter() - t0, res.images_per_s,
                         peak_mem_mb(device), res.final_loss, res.val_loss, ae_cached)
    ckpt.write_json(out_dir / "train_result.json", asdict(result))
    return result
