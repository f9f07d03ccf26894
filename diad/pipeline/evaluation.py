"""Evaluate a checkpoint on its test split: reconstructions (cached), anomaly maps, image scores, metrics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from diad.config import EvalConfig
from diad.data import MASK_RULE, DataConfig, load_samples
from diad.data.checks import check_test_split
from diad.errors import DiadError
from diad.metrics import PRO_DEFINITION, evaluate_by_category
from diad.pipeline.device import resolve_device, set_threads_and_seed
from diad.pipeline.records import EvalProgress, EvalResult
from diad.pipeline.reconstruction import reconstruct_split
from diad.pipeline.trained import load_run_config_of, load_trained, resolve_checkpoint
from diad.preflight import check_eval_settings
from diad.scoring import anomaly_maps, image_scores, load_backbone
from diad.train.batches import DecodedSplit, to_float


def score_split(split: DecodedSplit, recons: torch.Tensor, eval_cfg: EvalConfig, device: torch.device,
                on_progress: EvalProgress | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(maps (N,H,W) float32, image scores (N,), backbone weights source) for a split and its reconstructions.

    `on_progress("score", done, total)` before the first batch and after each.
    """
    extractor = load_backbone(eval_cfg.backbone, eval_cfg.backbone_weights, eval_cfg.layers,
                              allow_random=eval_cfg.allow_random_backbone).to(device)
    maps = []
    if on_progress is not None:
        on_progress("score", 0, len(recons))
    for i in range(0, len(recons), eval_cfg.batch_size):
        x = to_float(split.images[i:i + eval_cfg.batch_size], device)
        r = to_float(recons[i:i + eval_cfg.batch_size], device)
        maps.append(anomaly_maps(extractor, x, r, sigma=eval_cfg.sigma).float().cpu())
        if on_progress is not None:
            on_progress("score", min(i + eval_cfg.batch_size, len(recons)), len(recons))
    maps_t = torch.cat(maps)
    scores = image_scores(maps_t, eval_cfg.score_rule, k=eval_cfg.topk)
    return maps_t.numpy(), scores.numpy(), extractor.weights_source


def run_diagnostics(checkpoint_dir: Path, split: DecodedSplit, recons: torch.Tensor, eval_cfg: EvalConfig,
                    device: torch.device) -> dict[str, float]:
    """diad.diagnostics figures of a checkpoint on its test split and reconstructions ({} when eval.diag_images=0)."""
    from diad.diagnostics import diagnose

    if eval_cfg.diag_images == 0:
        return {}
    model, _ = load_trained(checkpoint_dir, device)
    return diagnose(model, split, recons, eval_cfg.recon, eval_cfg.diag_images, device)


def diagnose_checkpoint(checkpoint_dir: str | Path, data_cfg: DataConfig | None = None,
                        eval_cfg: EvalConfig | None = None, cache_dir: str | Path | None = None,
                        progress: bool = False) -> dict[str, float]:
    """The diagnostics alone (`diad diagnose`): the figures `evaluate` reports, reconstructions cached."""
    checkpoint_dir = resolve_checkpoint(checkpoint_dir)
    run_cfg = load_run_config_of(checkpoint_dir)
    data_cfg, eval_cfg = data_cfg or run_cfg.data, eval_cfg or run_cfg.eval
    if eval_cfg.diag_images == 0:
        eval_cfg = eval_cfg.model_copy(update={"diag_images": 8})
    set_threads_and_seed(eval_cfg.num_threads, eval_cfg.recon.seed)
    split, recons, _ = reconstruct_split(checkpoint_dir, data_cfg, eval_cfg.recon, cache_dir, eval_cfg.batch_size,
                                         eval_cfg.device, progress)
    return run_diagnostics(checkpoint_dir, split, recons, eval_cfg, resolve_device(eval_cfg.device))


def evaluate(checkpoint_dir: str | Path, data_cfg: DataConfig | None = None, eval_cfg: EvalConfig | None = None,
             cache_dir: str | Path | None = None, progress: bool = False,
             on_progress: EvalProgress | None = None) -> EvalResult:
    """Metrics on the TEST split per category and their mean; data/eval default to the checkpoint's config.

    `on_progress(stage, done, total)` is called as each stage (records.EVAL_STAGES) advances.
    """
    report = on_progress or (lambda stage, done, total: None)
    t0 = time.perf_counter()
    checkpoint_dir = resolve_checkpoint(checkpoint_dir)
    run_cfg = load_run_config_of(checkpoint_dir)
    data_cfg, eval_cfg = data_cfg or run_cfg.data, eval_cfg or run_cfg.eval
    if data_cfg.image_size != run_cfg.model.image_size:
        raise DiadError(f"data.image_size={data_cfg.image_size}: the checkpoint was trained at "
                        f"{run_cfg.model.image_size} px; evaluate at that size", key="data.image_size")
    check_eval_settings(eval_cfg, "eval settings")
    check_test_split(load_samples(data_cfg, "test"), data_cfg)
    set_threads_and_seed(eval_cfg.num_threads, eval_cfg.recon.seed)
    device = resolve_device(eval_cfg.device)
    split, recons, cached = reconstruct_split(checkpoint_dir, data_cfg, eval_cfg.recon, cache_dir,
                                              eval_cfg.batch_size, eval_cfg.device, progress, on_progress)
    maps, scores, weights_source = score_split(split, recons, eval_cfg, device, on_progress)
    report("metrics", 0, 1)
    notes = dict(split.pixel_notes)
    pixel = len(notes) < len(set(split.categories))  # some category has complete masks
    per_category = evaluate_by_category(split.categories, split.labels, scores,
                                        split.masks.numpy() if pixel else None, maps if pixel else None,
                                        no_masks=notes)
    if notes:
        notes["mean"] = f"pixel metrics NaN: no complete masks in {', '.join(sorted(notes))}"
    n_images = {c: split.categories.count(c) for c in sorted(set(split.categories))}
    n_images["mean"] = len(split)
    report("diagnostics", 0, 1)
    diagnostics = run_diagnostics(checkpoint_dir, split, recons, eval_cfg, device)
    report("diagnostics", 1, 1)
    wall = time.perf_counter() - t0
    protocol = {"resolution": data_cfg.image_size, "mask_rule": MASK_RULE, "score_rule": eval_cfg.score_rule,
                "pro_definition": PRO_DEFINITION}
    return EvalResult(per_category, n_images, wall, len(recons) / max(wall, 1e-9), cached, weights_source, protocol,
                      notes, diagnostics)
