"""Synthetic-defect dataset in MVTec layout: exact pixel masks drawn onto real normal images.

Sources (each a category): normal ELPV solar cells (elpv_mono, elpv_poly; from the installed `elpv-dataset`,
CC BY-NC-SA 4.0) and scikit-image textures (brick, grass, gravel; random crops and flips of the
512x512 image). Defect types (sub-folders of test/): see synth_defects.DEFECT_TYPES.
Deterministic: the same arguments give byte-identical PNGs; each category has its own seeded stream.
"""

from __future__ import annotations

import functools
import json
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from diad.errors import DiadError
from diad.io import atomic_dir
from diad.data.elpv import elpv_default_root, read_elpv_labels
from diad.data.synth_defects import DEFECT_TYPES, draw_defect

SYNTH_VERSION = 1  # bump when the generator's output changes (it is part of the cache key)
ELPV_CATEGORIES = {"elpv_mono": "mono", "elpv_poly": "poly"}
TEXTURE_CATEGORIES = ("brick", "grass", "gravel")
SYNTH_CATEGORIES = tuple(ELPV_CATEGORIES) + TEXTURE_CATEGORIES
MANIFEST = "synth.json"


@functools.lru_cache(maxsize=None)
def _texture(name: str) -> np.ndarray:
    """A bundled scikit-image texture as uint8 (H,W) (no download: these ship inside the wheel)."""
    import skimage.data

    return np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)


def _read_gray(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H,W) -> float32 (size,size) in [0,1], bilinear with antialiasing (PIL)."""
    im = Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def _texture_crop(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (50-75% of the side), maybe flipped, resized."""
    tex = _texture(name)
    side = int(rng.uniform(0.5, 0.75) * min(tex.shape))
    y, x = rng.integers(0, tex.shape[0] - side + 1), rng.integers(0, tex.shape[1] - side + 1)
    crop = tex[y : y + side, x : x + side]
    # flips only: a 90-degree turn would change the texture's orientation (bricks), an anomaly in itself
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1, :]
    return _resize(np.ascontiguousarray(crop), size)


def _normal_images(category: str, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n distinct normal images of a category, float32 (size,size) in [0,1]."""
    if category in ELPV_CATEGORIES:
        cell_type = ELPV_CATEGORIES[category]
        cells = [c for c in read_elpv_labels(elpv_default_root()) if c.type == cell_type and c.probability == 0.0]
        if n > len(cells):
            raise DiadError(f"synth category {category!r} has {len(cells)} normal ELPV cells; {n} were asked for")
        picks = rng.choice(len(cells), size=n, replace=False)
        return [_resize(_read_gray(cells[i].path), size) for i in picks]
    return [_texture_crop(category, size, rng) for _ in range(n)]


def _foreign_source(category: str, size: int):
    """Crops of the textures other than `category`'s own, for foreign-texture patches."""
    others = [t for t in TEXTURE_CATEGORIES if t != category] + ["moon"]

    def crop(rng: np.random.Generator) -> np.ndarray:
        return _texture_crop(others[int(rng.integers(len(others)))], size, rng)

    return crop


def _to_u8(a: np.ndarray) -> np.ndarray:
    """float [0,1] image or bool mask (H,W) -> uint8 (masks 0/255)."""
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)


def synth_category(category: str, n_train: int, n_test: int, size: int,
                   seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """(path relative to the category dir, uint8 (size,size) array) for every image and mask of a category."""
    rng = np.random.default_rng([seed, zlib.crc32(category.encode())])
    n_defect = n_test // 2  # about half the test set is defective
    images = _normal_images(category, n_train + n_test, size, rng)
    for i, img in enumerate(images[:n_train]):
        yield f"train/good/{i:03d}.png", _to_u8(img)
    for i, img in enumerate(images[n_train : n_train + n_test - n_defect]):
        yield f"test/good/{i:03d}.png", _to_u8(img)
    foreign = _foreign_source(category, size)
    counts = dict.fromkeys(DEFECT_TYPES, 0)
    for j, img in enumerate(images[n_train + n_test - n_defect :]):
        kind = DEFECT_TYPES[j % len(DEFECT_TYPES)]
        out, mask = draw_defect(kind, img, rng, foreign)
        stem = f"{counts[kind]:03d}"
        counts[kind] += 1
        yield f"test/{kind}/{stem}.png", _to_u8(out)
        yield f"ground_truth/{kind}/{stem}_mask.png", _to_u8(mask)


def write_synth_dataset(out: str | Path, categories: list[str] | None = None, train_per_category: int = 48,
                        test_per_category: int = 24, size: int = 256, seed: int = 0,
                        overwrite: bool = False) -> Path:
    """Write the synthetic-defect set to `out` (MVTec layout, atomically); returns `out`."""
    out = Path(out)
    cats = list(SYNTH_CATEGORIES) if categories is None else list(dict.fromkeys(categories))
    unknown = [c for c in cats if c not in SYNTH_CATEGORIES]
    if unknown:
        raise DiadError(f"unknown synth category {unknown[0]!r}; available: {', '.join(SYNTH_CATEGORIES)}")
    if size < 32 or size % 8:
        raise DiadError(f"size={size}: expected an integer >= 32 and a multiple of 8")
    if train_per_category < 1 or test_per_category < 2:
        raise DiadError(f"train_per_category={train_per_category}, test_per_category={test_per_category}: "
                        "expected at least 1 training and 2 test images per category")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DiadError(f"output '{out}' already exists and is not empty; choose a new path or overwrite")
    manifest = {"generator": "diad.data.synth", "version": SYNTH_VERSION, "seed": seed, "size": size,
                "train_per_category": train_per_category, "test_per_category": test_per_category,
                "categories": cats, "defect_types": list(DEFECT_TYPES),
                "masks": "8-bit PNG, 255 = exactly the changed defect region, 0 elsewhere",
                "sources": {"elpv": "elpv-dataset (CC BY-NC-SA 4.0)", "textures": "scikit-image data"}}
    with atomic_dir(out) as tmp:
        for cat in cats:
            for rel, u8 in synth_category(cat, train_per_category, test_per_category, size, seed):
                (tmp / cat / rel).parent.mkdir(parents=True, exist_ok=True)
                # zlib level 1: 4x faster than the default 6 for ~15% larger files (noise-like textures)
                Image.fromarray(u8).save(tmp / cat / rel, format="PNG", compress_level=1)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out
