"""Small helpers shared by the loaders: listing images, checking dirs and category choices."""

from __future__ import annotations

from pathlib import Path

from diad.errors import DiadError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(directory: Path) -> list[Path]:
    """Image files directly inside `directory`, sorted by name (empty if the dir is missing)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def require_root(root: Path, layout: str) -> Path:
    """`root` as a directory, or a DiadError naming it and the expected layout."""
    if not root.is_dir():
        raise DiadError(f"dataset root '{root}' does not exist; expected {layout}")
    return root


def select_categories(available: list[str], chosen: list[str] | None, where: Path | str) -> list[str]:
    """The chosen categories (all when None), refusing names that are not available."""
    if not available:
        raise DiadError(f"no categories found in '{where}'")
    if chosen is None:
        return list(available)
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise DiadError(f"unknown category {unknown[0]!r} in '{where}'; available: {', '.join(available)}")
    return list(dict.fromkeys(chosen))
