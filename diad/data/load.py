"""Dispatch a DataConfig to its loader; generate (once) and cache the embedded default synth set."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from filelock import FileLock

from diad.errors import DiadError
from diad.io import cache_root
from diad.data.config import DataConfig
from diad.data.elpv import load_elpv
from diad.data.folder import load_folder
from diad.data.mvtec import load_mvtec
from diad.data.sample import Sample
from diad.data.synth import MANIFEST, SYNTH_VERSION, write_synth_dataset
from diad.data.visa import load_visa


def _synth_params(cfg: DataConfig) -> dict:
    return {"version": SYNTH_VERSION, "train_per_category": cfg.synth_train_per_category,
            "test_per_category": cfg.synth_test_per_category, "size": cfg.synth_image_size, "seed": cfg.synth_seed}


def ensure_default_dataset(cfg: DataConfig) -> Path:
    """The default synth set for cfg's synth parameters under cache_root(), generated once (process-safe)."""
    params = _synth_params(cfg)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / f"synth-{digest}"
    if (path / MANIFEST).is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # parallel trials may all ask at once: one generates, the others wait and reuse it
    with FileLock(str(path) + ".lock"):
        if not (path / MANIFEST).is_file():
            write_synth_dataset(path, None, params["train_per_category"], params["test_per_category"],
                                params["size"], params["seed"], overwrite=True)
    return path


def _need_root(cfg: DataConfig) -> Path:
    if cfg.root is None:
        raise DiadError(f"format '{cfg.format}' needs data.root (the dataset directory)")
    return cfg.root


def load_samples(cfg: DataConfig, split: str) -> list[Sample]:
    """Samples of split "train" (normal training images) or "test" (normals and anomalies)."""
    if split not in ("train", "test"):
        raise DiadError(f"split {split!r}: expected 'train' or 'test'")
    if cfg.format == "synth":
        return load_mvtec(cfg.root or ensure_default_dataset(cfg), split, cfg.categories)
    if cfg.format == "mvtec":
        return load_mvtec(_need_root(cfg), split, cfg.categories)
    if cfg.format == "visa":
        return load_visa(_need_root(cfg), split, cfg.categories)
    if cfg.format == "folder":
        return load_folder(cfg.root, cfg.normal_dir, cfg.abnormal_dir, cfg.mask_dir, split,
                           cfg.categories, cfg.split_seed)
    return load_elpv(cfg.root, split, cfg.categories, cfg.split_seed, cfg.elpv_keep_uncertain)
