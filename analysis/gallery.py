"""A gallery of `diad predict` output: input, reconstruction, anomaly map and mask per test image.

Two layouts are read: separate files `<name>_<kind>.png` (kind one of KINDS, e.g. `bottle_003_recon.png`),
shown as one row per image with one column per kind; or one composite panel per image (any other PNG name,
already holding input | reconstruction | map | mask side by side), shown one per row.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
from matplotlib.figure import Figure

# Column order, with the spellings accepted for each kind.
KINDS = {
    "input": ("input", "image", "x0", "orig", "original"),
    "reconstruction": ("recon", "reconstruction", "xhat", "x_hat"),
    "anomaly map": ("map", "anomaly_map", "amap", "heatmap", "overlay"),
    "mask": ("mask", "gt", "ground_truth"),
}
_KIND_OF = {alias: kind for kind, aliases in KINDS.items() for alias in aliases}


def _kind(path: Path) -> tuple[str, str] | None:
    """(image name, kind) when the file name ends in `_<kind alias>`, else None."""
    stem = path.stem
    for alias in sorted(_KIND_OF, key=len, reverse=True):
        if stem.endswith("_" + alias) and len(stem) > len(alias) + 1:
            return stem[: -len(alias) - 1], _KIND_OF[alias]
    return None


def collect(predict_dir: str | Path, max_images: int = 8) -> list[tuple[str, dict[str, Path]]]:
    """[(image name, {kind or "panel": png path})] for up to `max_images` images, in name order."""
    root = Path(predict_dir)
    pngs = sorted(p for p in root.rglob("*.png")
                  if not any(part.startswith(".") for part in p.relative_to(root).parts))
    rows: dict[str, dict[str, Path]] = {}
    for p in pngs:
        found = _kind(p)
        name, kind = found if found else (str(p.relative_to(root).with_suffix("")), "panel")
        rows.setdefault(name, {})[kind] = p
    return list(rows.items())[:max_images]


def gallery(predict_dir: str | Path, max_images: int = 8) -> Figure | None:
    """Grid of the prediction PNGs (rows: images; columns: kinds), or None when there are none."""
    rows = collect(predict_dir, max_images) if Path(predict_dir).is_dir() else []
    if not rows:
        return None
    kinds = [k for k in list(KINDS) + ["panel"] if any(k in r for _, r in rows)]
    width = 2.4 * len(kinds) if kinds != ["panel"] else 9.0
    fig = Figure(figsize=(width, 2.4 * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), len(kinds), squeeze=False)
    for i, (name, files) in enumerate(rows):
        for j, kind in enumerate(kinds):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(kind, fontsize="x-small")
            ax.set_ylabel(name, fontsize="x-small")
            if kind in files:
                image = mpimg.imread(files[kind])
                ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
            else:
                ax.set_frame_on(False)
            if i == 0:
                ax.set_title(kind)
    fig.suptitle(f"Predictions from {Path(predict_dir).name}: " + ", ".join(kinds))
    return fig
