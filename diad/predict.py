"""PNG panels for eyes: input | reconstruction | anomaly map | ground-truth mask, one file per test image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from diad.config import EvalConfig
from diad.data import DataConfig
from diad.io import atomic_file
from diad.pipeline import resolve_checkpoint, resolve_device, reconstruct_split, score_split

TITLES = ("input", "reconstruction", "anomaly map", "mask")
MIN_TILE = 192  # pixels: narrower images are shown enlarged so the titles and defects stay readable


def _heat(m: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(H,W) float -> (H,W,3) uint8 'inferno' colours, scaled by the split-wide range [lo, hi]."""
    from matplotlib import colormaps  # only the panels need matplotlib

    x = np.clip((m - lo) / max(hi - lo, 1e-12), 0, 1)
    return (colormaps["inferno"](x)[..., :3] * 255).astype(np.uint8)


def _pick(categories: list[str], labels: list[int], limit: int) -> list[int]:
    """Up to `limit` indices, round-robin over categories, anomalous images first within each."""
    by_cat: dict[str, list[int]] = {}
    for i in sorted(range(len(labels)), key=lambda i: -labels[i]):
        by_cat.setdefault(categories[i], []).append(i)
    picked, queues = [], [list(v) for _, v in sorted(by_cat.items())]
    while len(picked) < limit and any(queues):
        for q in queues:
            if q and len(picked) < limit:
                picked.append(q.pop(0))
    return picked


def panel(image: np.ndarray, recon: np.ndarray, heat: np.ndarray, mask: np.ndarray, caption: str) -> Image.Image:
    """Four (H,W,3) uint8 tiles side by side with titles and a caption line."""
    h, w = image.shape[:2]
    zoom = max(1, -(-MIN_TILE // w))  # small (cpu-profile) images are enlarged, pixel for pixel
    h, w = h * zoom, w * zoom
    bar = 14
    canvas = Image.new("RGB", (4 * w, h + 2 * bar), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (tile, title) in enumerate(zip((image, recon, heat, mask), TITLES)):
        canvas.paste(Image.fromarray(tile).resize((w, h), Image.NEAREST), (k * w, bar))
        draw.text((k * w + 2, 1), title, fill="black")
    draw.text((2, h + bar + 1), caption, fill="black")
    return canvas


def write_panels(checkpoint_dir: str | Path, out_dir: str | Path, data_cfg: DataConfig, eval_cfg: EvalConfig,
                 limit: int = 16, cache_dir: str | Path | None = None) -> list[Path]:
    """Write up to `limit` panels to out_dir; the reconstructions are the (cached) ones `evaluate` scores."""
    checkpoint_dir, out_dir = resolve_checkpoint(checkpoint_dir), Path(out_dir)
    split, recons, _ = reconstruct_split(checkpoint_dir, data_cfg, eval_cfg.recon, cache_dir, eval_cfg.batch_size,
                                         eval_cfg.device)
    maps, scores, _ = score_split(split, recons, eval_cfg, resolve_device(eval_cfg.device))
    lo, hi = float(maps.min()), float(maps.max())
    written = []
    for i in _pick(split.categories, split.labels, limit):
        img = split.images[i].permute(1, 2, 0).numpy()
        rec = recons[i].permute(1, 2, 0).numpy()
        mask = np.repeat(split.masks[i].numpy()[..., None] * 255, 3, axis=2).astype(np.uint8)
        category, label = split.categories[i], split.labels[i]
        name = f"{category}_{i:04d}_{'anomalous' if label else 'normal'}.png"
        caption = f"{category} label={label} score={scores[i]:.4f}"
        with atomic_file(out_dir / name) as tmp:
            panel(img, rec, _heat(maps[i], lo, hi), mask, caption).save(tmp, format="PNG")
        written.append(out_dir / name)
    return written
