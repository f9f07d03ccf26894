"""A folder of normal images, a folder of anomalous ones, optional masks matched by file stem (anomalib Folder style).

Normals are split into train/test by a seeded hash (80/20); every anomalous image is a test image.
The category is the name of `root` (or of the normal dir's parent when root is not given).
"""

from __future__ import annotations

from pathlib import Path

from diad.errors import DiadError
from diad.data.common import IMAGE_EXTS, list_images, select_categories
from diad.data.sample import Sample, Split
from diad.data.splits import stable_order

TEST_FRACTION = 0.2  # of the normal images


def _resolve(root: Path | None, d: Path | None, what: str) -> Path | None:
    if d is None:
        return None
    path = Path(d) if root is None or Path(d).is_absolute() else Path(root) / d
    if not path.is_dir():
        raise DiadError(f"{what} '{path}' does not exist; expected a directory of images")
    return path


def _find_mask(mask_dir: Path, image: Path) -> Path:
    for name in (image.stem, f"{image.stem}_mask"):
        for ext in IMAGE_EXTS:
            if (mask_dir / f"{name}{ext}").is_file():
                return mask_dir / f"{name}{ext}"
    raise DiadError(f"no mask for '{image}' in '{mask_dir}'; expected {image.stem}.png or {image.stem}_mask.png")


def load_folder(root: Path | None, normal_dir: Path, abnormal_dir: Path | None, mask_dir: Path | None,
                split: Split, categories: list[str] | None = None, seed: int = 0) -> list[Sample]:
    """Samples of `split`: a seeded 80/20 train/test split of the normals; anomalies all go to test."""
    normal = _resolve(root, normal_dir, "normal_dir")
    abnormal = _resolve(root, abnormal_dir, "abnormal_dir")
    masks = _resolve(root, mask_dir, "mask_dir")
    if normal is None:
        raise DiadError("format 'folder' needs normal_dir (a directory of normal images)")
    category = Path(root).name if root is not None else normal.parent.name
    select_categories([category], categories, root or normal)
    normals = list_images(normal)
    if not normals:
        raise DiadError(f"normal_dir '{normal}' has no images ({', '.join(IMAGE_EXTS)})")
    ordered = stable_order(normals, lambda p: p.name, seed)
    n_test = min(int(round(TEST_FRACTION * len(normals))), len(normals) - 1)
    test_normals = set(ordered[:n_test])
    if split == "train":
        return [Sample(p, None, 0, category, "good", "train") for p in normals if p not in test_normals]
    out = [Sample(p, None, 0, category, "good", "test") for p in normals if p in test_normals]
    for p in list_images(abnormal) if abnormal is not None else []:
        out.append(Sample(p, _find_mask(masks, p) if masks else None, 1, category, "anomaly", "test"))
    return out
