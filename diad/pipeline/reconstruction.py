"""Reconstructions of a test split, cached on disk by what produced them.

The cache key (recon_key) is the checkpoint's content hash, the test data and the ReconConfig fields of eval:
the one key
for this artifact, used by the cache here and by the sweep layer's lock on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tqdm import tqdm

from diad import checkpoint as ckpt
from diad import recon_cache
from diad.config import ReconConfig, eval_data_part
from diad.data import DataConfig, load_samples
from diad.errors import DiadError
from diad.hashing import json_hash
from diad.integrity import clean_stale_temps, ensure_writable_dir
from diad.io import cache_root
from diad.models.ddim import reconstruct
from diad.pipeline.device import resolve_device
from diad.pipeline.records import EvalProgress
from diad.pipeline.trained import load_trained, resolve_checkpoint
from diad.train.batches import DecodedSplit, decode_split, generator, to_float


def recon_inputs(checkpoint_dir: str | Path, data_cfg: DataConfig, recon: ReconConfig) -> dict:
    """What the reconstructions depend on: the checkpoint's content, the test data and the eval.* ReconConfig fields."""
    return {"checkpoint": ckpt.checkpoint_key(checkpoint_dir), "data": eval_data_part(data_cfg),
            "recon": recon.model_dump(mode="json")}


def recon_key(checkpoint_dir: str | Path, data_cfg: DataConfig, recon: ReconConfig) -> str:
    """Key of the reconstructions: the hash of recon_inputs."""
    return json_hash(recon_inputs(checkpoint_dir, data_cfg, recon))


@torch.no_grad()
def reconstruct_images(model, images: torch.Tensor, keys: list[str], recon: ReconConfig, batch_size: int,
                       device: torch.device, progress: bool = False,
                       on_progress: EvalProgress | None = None) -> torch.Tensor:
    """uint8 (N,3,H,W) -> reconstructions as uint8 (quantised like the inputs, so cached == fresh).

    `on_progress("reconstruct", done, total)` before the first batch and after each (the sweep layer shows it).
    """
    if on_progress is not None:
        on_progress("reconstruct", 0, len(images))
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="reconstruct", file=sys.stderr,
                      disable=not progress, leave=False):
        x = to_float(images[start:start + batch_size], device)
        # one CPU generator per image (diffusers' randn_tensor takes a list): the result does not depend
        # on the batch size or the device, and a subset reconstructs exactly as in the full split
        gens = [generator(recon.seed, "recon", key) for key in keys[start:start + batch_size]]
        rec = reconstruct(model, x, generator=gens, **recon.model_dump(exclude={"seed"}))  # seed: in the generators
        out.append((rec.clamp(0, 1) * 255.0).round().to(torch.uint8).cpu())
        if on_progress is not None:
            on_progress("reconstruct", min(start + batch_size, len(images)), len(images))
    return torch.cat(out)


def image_keys(split: DecodedSplit) -> list[str]:
    """category/defect/name of each image: the per-image noise seed does not depend on where the data lives."""
    return ["/".join(Path(p).parts[-3:]) for p in split.paths]


def reconstruct_split(checkpoint_dir: str | Path, data_cfg: DataConfig, recon: ReconConfig,
                      cache_dir: str | Path | None = None, batch_size: int = 8, device: str = "auto",
                      progress: bool = False, on_progress: EvalProgress | None = None,
                      ) -> tuple[DecodedSplit, torch.Tensor, bool]:
    """(decoded test split, reconstructions uint8 (N,3,H,W), cache hit) for a checkpoint.

    Cached under cache_dir/recon/<recon_key>. `on_progress`: see reconstruct_images (a cache hit reports n of n).
    """
    checkpoint_dir = resolve_checkpoint(checkpoint_dir)
    samples = load_samples(data_cfg, "test")
    if not samples:
        raise DiadError(f"data: no test images found for {data_cfg.format} at {data_cfg.root}")
    split = decode_split(samples, data_cfg.image_size)
    inputs = recon_inputs(checkpoint_dir, data_cfg, recon)
    path = Path(cache_dir if cache_dir is not None else cache_root()) / "recon" / json_hash(inputs)
    recons = recon_cache.load_cached(path, inputs, split.paths)
    if recons is not None:
        if on_progress is not None:
            on_progress("reconstruct", len(recons), len(recons))
        return split, recons, True
    ensure_writable_dir(path.parent, "reconstruction cache")  # before minutes of reconstruction, not after
    dev = resolve_device(device)
    model, _ = load_trained(checkpoint_dir, dev)
    recons = reconstruct_images(model, split.images, image_keys(split), recon, batch_size, dev, progress, on_progress)
    clean_stale_temps(path.parent)
    recon_cache.save_cached(path, inputs, split.paths, recons)
    return split, recons, False
