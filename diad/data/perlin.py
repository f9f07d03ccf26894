"""2-D gradient (Perlin) noise in numpy, as used by DRAEM to shape foreign-texture anomalies."""

from __future__ import annotations

import numpy as np


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H,W) noise in about [-1,1] with res[0] x res[1] lattice cells over the image (any H, W)."""
    h, w = shape
    ry, rx = max(1, int(res[0])), max(1, int(res[1]))
    angles = rng.uniform(0.0, 2 * np.pi, size=(ry + 1, rx + 1))
    gy, gx = np.sin(angles), np.cos(angles)
    # lattice coordinates of pixel centres
    cy = (np.arange(h) + 0.5) * ry / h
    cx = (np.arange(w) + 0.5) * rx / w
    iy, ix = np.floor(cy).astype(int)[:, None], np.floor(cx).astype(int)[None, :]
    fy, fx = (cy[:, None] - iy), (cx[None, :] - ix)

    def corner(dy: int, dx: int) -> np.ndarray:
        return gy[iy + dy, ix + dx] * (fy - dy) + gx[iy + dy, ix + dx] * (fx - dx)

    uy, ux = _fade(fy), _fade(fx)
    top = corner(0, 0) + ux * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + ux * (corner(1, 1) - corner(1, 0))
    return np.sqrt(2.0) * (top + uy * (bottom - top))
