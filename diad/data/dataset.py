"""Torch dataset over samples: decoded, resized [0,1] RGB images and {0,1} masks, with loud errors on bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from diad.errors import DiadError
from diad.data.sample import Sample

from diad.data.pixels import mask_array, rgb01

MASK_RULE = ("mask read at its own bit depth (8/16/32-bit grey, float, palette index, RGB(A) any channel), "
             "resized to the image size with nearest-neighbour, pixel value > 0 is defect "
             "(MVTec masks are 0/255, VisA masks hold class indices)")


def _open(path: Path) -> Image.Image:
    """Open and fully decode (so a truncated file fails here, not later), in the file's own mode."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DiadError(f"cannot read image '{path}': {e}") from None


def load_image(path: Path, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(3,size,size) float [0,1] RGB from any bit depth and mode, bilinear antialiased resize; also (width, height)."""
    im = _open(path)
    try:
        arr = rgb01(im)
    except ValueError as e:
        raise DiadError(f"cannot read image '{path}': {e}") from None
    x = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    if x.shape[1:] != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        x = x.clamp_(0.0, 1.0)
    return x, im.size


def load_mask(path: Path, size: int, image_path: Path, image_wh: tuple[int, int]) -> torch.Tensor:
    """(1,size,size) float {0,1} following MASK_RULE; the mask must have its image's size."""
    m = _open(path)
    if m.size != image_wh:
        raise DiadError(f"mask '{path}' is {m.size[0]}x{m.size[1]} but its image '{image_path}' is "
                        f"{image_wh[0]}x{image_wh[1]}; masks must have the image's size")
    try:
        defect = Image.fromarray(mask_array(m).astype(np.uint8) * 255)
    except ValueError as e:
        raise DiadError(f"cannot read mask '{path}': {e}") from None
    if defect.size != (size, size):
        defect = defect.resize((size, size), Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(defect) > 0).float()[None]


class AnomalyDataset(Dataset):
    """Items: {"image": (3,H,W) float [0,1], "mask": (1,H,W) float {0,1}, "label", "category", "path"}."""

    def __init__(self, samples: list[Sample], image_size: int):
        self.samples = list(samples)
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        image, wh = load_image(s.image_path, self.image_size)
        if s.mask_path is not None:
            mask = load_mask(s.mask_path, self.image_size, s.image_path, wh)
        else:
            mask = torch.zeros(1, self.image_size, self.image_size)
        return {"image": image, "mask": mask, "label": s.label, "category": s.category, "path": str(s.image_path)}
