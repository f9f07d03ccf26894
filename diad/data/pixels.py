"""Decoded PIL images of any mode -> the model's [0, 1] RGB, and masks -> defect booleans, by real bit depth.

Pillow's `convert("RGB")` clips 16-bit grey (I;16) to white and ignores 32-bit scales, so each mode is mapped
here: integer grey by its bit depth (I;16* / 65535; 32-bit I by the range its values need: 255, 65535 or 2**32 - 1), float grey
(F) as given when in [0, 1] else by the integer depth it fits, 1-bit as 0/1, palette through its colours,
alpha dropped (colour as stored), CMYK through Pillow's conversion.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_GREY16 = ("I;16", "I;16B", "I;16L", "I;16N")


def _grey_scale(a: np.ndarray) -> float:
    """Divisor that maps integer-valued grey data to [0, 1]: 255, 65535 or 2**32 - 1 by the data's range."""
    hi = float(a.max()) if a.size else 0.0
    return 255.0 if hi <= 255 else 65535.0 if hi <= 65535 else 4294967295.0


def grey01(im: Image.Image) -> np.ndarray | None:
    """(H,W) float32 in [0,1] for single-channel modes of more than 8 bits (I;16*, I, F); None otherwise."""
    if im.mode in _GREY16:
        return np.asarray(im, dtype=np.float64).astype(np.float32) / 65535.0
    if im.mode == "I":  # 32-bit grey (TIFF; 16-bit PNG in older Pillow): the file does not say its depth
        a = np.clip(np.asarray(im, dtype=np.float64), 0, None)
        return (a / _grey_scale(a)).clip(0, 1).astype(np.float32)
    if im.mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)
        if a.min(initial=0) >= 0 and a.max(initial=0) <= 1.0:
            return a.astype(np.float32)
        return (np.clip(a, 0, None) / _grey_scale(a)).clip(0, 1).astype(np.float32)
    return None


def rgb01(im: Image.Image) -> np.ndarray:
    """(H,W,3) float32 RGB in [0,1] from a decoded image of any mode."""
    grey = grey01(im)
    if grey is not None:
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode not in ("RGB", "L", "1", "P", "PA", "RGBA", "LA", "RGBX", "RGBa", "La", "CMYK", "YCbCr", "LAB", "HSV"):
        raise ValueError(f"unsupported image mode {im.mode!r}")
    if im.mode == "LAB" or im.mode == "HSV":
        raise ValueError(f"unsupported image mode {im.mode!r}; save it as RGB or grey")
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def mask_array(im: Image.Image) -> np.ndarray:
    """(H,W) bool: True where the mask marks a defect (any non-zero value, at the mask's own depth)."""
    if im.mode in _GREY16 or im.mode in ("I", "F", "L", "1", "P"):
        a = np.asarray(im)  # palette masks: the index (VisA-style class ids), not the colour
        return np.nan_to_num(a.astype(np.float64)) > 0
    if im.mode in ("LA", "La", "PA"):
        return np.asarray(im.getchannel(0)) > 0  # the value, not the alpha
    if im.mode in ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr"):
        return (np.asarray(im.convert("RGB")) > 0).any(axis=2)
    raise ValueError(f"unsupported mask mode {im.mode!r}")
