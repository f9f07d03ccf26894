"""Autoencoder stage: train (cpu) or fine-tune (paper) the KL autoencoder once per (data, AE config, AE params).

Loss = L1(x_hat, x) + w_p * perceptual(x_hat, x) + w_kl * KL(q(z|x) || N(0, I)); the perceptual term compares
channel-normalised features of the frozen offline backbone (EfficientNet-Lite0), LPIPS-style.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from filelock import FileLock
from tqdm import tqdm

from diad.checkpoint import read_state, save_checkpoint, load_weights
from diad.config import RunConfig, autoencoder_part
from diad.hashing import json_hash
from diad.errors import DiadError
from diad.integrity import clean_stale_temps
from diad.models import autoencoder_for, estimate_latent_scale
from diad.scoring import load_backbone
from diad.train.batches import batch_indices, generator, to_float

def _perceptual(extractor: torch.nn.Module, x_hat01: torch.Tensor, x01: torch.Tensor) -> torch.Tensor:
    """Mean over layers of the squared distance of unit-normalised features (LPIPS without learned weights)."""
    with torch.no_grad():
        ref = [F.normalize(f, dim=1) for f in extractor(x01)]
    out = [F.normalize(f, dim=1) for f in extractor(x_hat01)]
    return torch.stack([(a - b).pow(2).sum(1).mean() for a, b in zip(out, ref)]).mean()


def train_autoencoder(cfg: RunConfig, images: torch.Tensor, device: torch.device,
                      progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train/fine-tune the autoencoder on uint8 images (N,3,H,W); returns (vae on CPU, metrics)."""
    t = cfg.train.autoencoder
    seed = t.seed_for(cfg.train.seed)
    torch.manual_seed(seed)  # the init depends on this stage's seed only (trials of other seeds share this AE)
    vae = autoencoder_for(cfg.model).to(device).train()
    # always the packaged offline backbone: the AE must not depend on the evaluation backbone choice
    extractor = load_backbone("efficientnet_lite0").to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    bar = tqdm(range(t.steps), desc="autoencoder", file=sys.stderr, disable=not progress, leave=False)
    start, loss_ema = time.perf_counter(), None
    for step in bar:
        idx = batch_indices(len(images), t.batch_size, seed, step)
        x01 = to_float(images[idx], device)
        post = vae.encode(x01 * 2 - 1).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=generator(seed, "ae", step)).to(device)
        x_hat01 = (vae.decode(z).sample + 1) / 2
        l1 = (x_hat01 - x01).abs().mean()
        perc = _perceptual(extractor, x_hat01.clamp(0, 1), x01) if t.perceptual_weight > 0 else torch.zeros(())
        kl = post.kl().mean() / x01[0].numel()  # per pixel, so the weight is resolution-independent
        loss = l1 + t.perceptual_weight * perc + t.kl_weight * kl
        if not torch.isfinite(loss):
            raise DiadError(f"autoencoder step {step}: loss is {loss.item()} (not finite); lower train.autoencoder.lr "
                            f"(now {t.lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        bar.set_postfix(loss=f"{loss_ema:.4f}", l1=f"{l1.item():.4f}")
    wall = time.perf_counter() - start
    metrics = {"ae_loss": loss_ema, "ae_wall_s": wall, "ae_steps": t.steps}
    return vae.cpu().eval(), metrics


def latent_scale_for(cfg: RunConfig, vae: torch.nn.Module, images: torch.Tensor) -> float:
    """SD's 0.18215 for the pretrained KL-f8; 1/std of the latents for an autoencoder trained from scratch."""
    if cfg.model.pretrained_dir is not None:
        return cfg.model.autoencoder.latent_scale
    sub = images[torch.randperm(len(images), generator=generator(cfg.train.autoencoder.seed_for(cfg.train.seed), "scale"))[:64]]
    return estimate_latent_scale(vae, to_float(sub))


def ensure_autoencoder(cfg: RunConfig, images: torch.Tensor, cache_dir: Path, device: torch.device,
                       progress: bool = True) -> tuple[torch.nn.Module, bool, dict]:
    """The trained autoencoder for `cfg`, from `cache_dir/autoencoders/<hash>` or trained now and saved there.

    Returns (vae, cached, metrics). A file lock makes concurrent trials train it only once.
    """
    key = autoencoder_part(cfg)
    path = Path(cache_dir) / "autoencoders" / json_hash(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        clean_stale_temps(path.parent)
        if (path / "state.json").is_file():
            vae = autoencoder_for(cfg.model, load_pretrained=False)
            load_weights(path, vae)
            return vae.eval(), True, read_state(path)["metrics"]
        vae, metrics = train_autoencoder(cfg, images, device, progress)
        metrics["ae_latent_scale"] = latent_scale_for(cfg, vae, images)
        save_checkpoint(path, vae, key, step=cfg.train.autoencoder.steps, metrics=metrics)
        return vae, False, metrics
