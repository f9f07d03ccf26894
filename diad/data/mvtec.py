"""MVTec-AD layout: <root>/<cat>/train/good, <cat>/test/<defect>, <cat>/ground_truth/<defect>/<stem>_mask.png."""

from __future__ import annotations

from pathlib import Path

from diad.errors import DiadError
from diad.data.common import list_images, require_root, select_categories
from diad.data.sample import Sample, Split

LAYOUT = ("an MVTec-AD layout <root>/<category>/train/good/*.png, <category>/test/<defect>/*.png, "
          "<category>/ground_truth/<defect>/<stem>_mask.png")


def mvtec_categories(root: Path) -> list[str]:
    """Sub-directories of `root` that hold a train/ or test/ folder, sorted."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and ((p / "train").is_dir() or (p / "test").is_dir()))


def load_mvtec(root: Path, split: Split, categories: list[str] | None = None) -> list[Sample]:
    """Samples of `split` for the chosen categories, in one list (multi-class: all categories together)."""
    root = require_root(Path(root), LAYOUT)
    chosen = select_categories(mvtec_categories(root), categories, root)
    out: list[Sample] = []
    for cat in chosen:
        out += _train(root / cat, cat) if split == "train" else _test(root / cat, cat)
    return out


def _train(cat_dir: Path, cat: str) -> list[Sample]:
    good = cat_dir / "train" / "good"
    images = list_images(good)
    if not images:
        raise DiadError(f"category '{cat}' has no training images in '{good}'; expected {LAYOUT}")
    return [Sample(p, None, 0, cat, "good", "train") for p in images]


def _test(cat_dir: Path, cat: str) -> list[Sample]:
    test_dir = cat_dir / "test"
    defects = sorted(p.name for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
    out: list[Sample] = []
    for defect in defects:
        for img in list_images(test_dir / defect):
            if defect == "good":
                out.append(Sample(img, None, 0, cat, "good", "test"))
            else:
                out.append(Sample(img, _mask_for(cat_dir, defect, img), 1, cat, defect, "test"))
    if not out:
        raise DiadError(f"category '{cat}' has no test images in '{test_dir}'; expected {LAYOUT}")
    return out


def _mask_for(cat_dir: Path, defect: str, img: Path) -> Path | None:
    """The ground-truth mask of a defective image; None when the defect has no ground_truth dir at all."""
    gt_dir = cat_dir / "ground_truth" / defect
    if not gt_dir.is_dir():
        return None
    mask = gt_dir / f"{img.stem}_mask.png"
    if not mask.is_file():
        raise DiadError(f"mask '{mask}' for test image '{img}' is missing; "
                        f"every image of test/{defect} needs ground_truth/{defect}/<stem>_mask.png")
    return mask
