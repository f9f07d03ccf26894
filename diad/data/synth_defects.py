"""Defects drawn onto a grayscale image, each returning the image and its exact pixel mask.

Every function takes a float (S,S) image in [0,1] and returns (image, mask) with mask (S,S) bool; pixels
outside the mask are never changed, so the mask is exactly the defect region.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from diad.data.perlin import perlin_noise

DEFECT_TYPES = ("scratch", "crack", "stain", "hole", "foreign_texture")
# A texture crop the size of the image, for foreign-texture patches: (rng) -> (S,S) float [0,1].
ForeignSource = Callable[[np.random.Generator], np.ndarray]


def _draw(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("L", (size, size), 0)
    return canvas, ImageDraw.Draw(canvas)


def _away_from(img: np.ndarray, mask: np.ndarray) -> float:
    """+1 to brighten a dark region, -1 to darken a bright one, so the defect shows."""
    return 1.0 if float(img[mask].mean()) < 0.5 else -1.0


def _width(size: int, rng: np.random.Generator, lo: int, hi: int) -> int:
    return max(1, int(round(rng.integers(lo, hi + 1) * size / 256)))


def scratch(img: np.ndarray, rng: np.random.Generator, foreign: ForeignSource) -> tuple[np.ndarray, np.ndarray]:
    """One or two long thin slightly curved lines, much brighter or darker than the surface."""
    s = img.shape[0]
    canvas, draw = _draw(s)
    for _ in range(int(rng.integers(1, 3))):
        p0 = rng.uniform(0.1, 0.9, 2) * s
        theta, length = rng.uniform(0, np.pi), rng.uniform(0.3, 0.7) * s
        p2 = p0 + length * np.array([np.cos(theta), np.sin(theta)])
        bend = rng.uniform(-0.12, 0.12) * length * np.array([-np.sin(theta), np.cos(theta)])
        t = np.linspace(0, 1, 32)[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * t * (1 - t) * ((p0 + p2) / 2 + bend) + t**2 * p2  # quadratic Bezier
        draw.line([tuple(p) for p in pts], fill=255, width=_width(s, rng, 1, 3), joint="curve")
    mask = np.asarray(canvas) > 0
    out = img.copy()
    out[mask] = np.clip(img[mask] + _away_from(img, mask) * rng.uniform(0.35, 0.6), 0, 1)
    return out, mask


def crack(img: np.ndarray, rng: np.random.Generator, foreign: ForeignSource) -> tuple[np.ndarray, np.ndarray]:
    """A dark random-walk polyline with an optional branch."""
    s = img.shape[0]
    canvas, draw = _draw(s)

    def walk(p: np.ndarray, theta: float, steps: int) -> list[np.ndarray]:
        pts = [p]
        for _ in range(steps):
            theta += rng.normal(0, 0.45)
            pts.append(pts[-1] + rng.uniform(0.01, 0.03) * s * np.array([np.cos(theta), np.sin(theta)]))
        return pts

    main = walk(rng.uniform(0.15, 0.85, 2) * s, rng.uniform(0, 2 * np.pi), int(rng.integers(15, 35)))
    lines = [main]
    if rng.random() < 0.5:
        lines.append(walk(main[len(main) // 2], rng.uniform(0, 2 * np.pi), int(rng.integers(6, 15))))
    for pts in lines:
        draw.line([tuple(p) for p in pts], fill=255, width=_width(s, rng, 1, 2), joint="curve")
    mask = np.asarray(canvas) > 0
    out = img.copy()
    out[mask] = np.clip(img[mask] * rng.uniform(0.1, 0.35) - 0.05, 0, 1)
    return out, mask


def stain(img: np.ndarray, rng: np.random.Generator, foreign: ForeignSource) -> tuple[np.ndarray, np.ndarray]:
    """A blurred blob that tints the surface; mask = blob opacity above 0.3, no change outside it."""
    s = img.shape[0]
    canvas, draw = _draw(s)
    centre, r = rng.uniform(0.2, 0.8, 2) * s, rng.uniform(0.05, 0.14) * s
    for _ in range(int(rng.integers(1, 4))):
        c = centre + rng.normal(0, 0.5 * r, 2)
        rx, ry = r * rng.uniform(0.6, 1.2, 2)
        draw.ellipse([c[0] - rx, c[1] - ry, c[0] + rx, c[1] + ry], fill=255)
    alpha = gaussian_filter(np.asarray(canvas, dtype=np.float32) / 255.0, sigma=max(1.0, r / 4))
    mask = alpha > 0.3
    out = img.copy()
    # blend towards a flat tint (darker or brighter than the surface) with the blob's opacity
    tint = rng.uniform(0.05, 0.2) if _away_from(img, mask) < 0 else rng.uniform(0.8, 0.95)
    weight = alpha[mask] * rng.uniform(0.5, 0.8)
    out[mask] = (1 - weight) * img[mask] + weight * tint
    return out, mask


def hole(img: np.ndarray, rng: np.random.Generator, foreign: ForeignSource) -> tuple[np.ndarray, np.ndarray]:
    """Missing material: an irregular polygon filled with a dark cavity or a flat background value."""
    s = img.shape[0]
    canvas, draw = _draw(s)
    centre, r = rng.uniform(0.2, 0.8, 2) * s, rng.uniform(0.04, 0.11) * s
    n = int(rng.integers(6, 11))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * rng.uniform(0.6, 1.3, n)
    draw.polygon([(centre[0] + q * np.cos(a), centre[1] + q * np.sin(a)) for a, q in zip(angles, radii)], fill=255)
    mask = np.asarray(canvas) > 0
    out = img.copy()
    fill = rng.uniform(0.0, 0.08) if rng.random() < 0.7 else rng.uniform(0.92, 1.0)
    out[mask] = np.clip(fill + rng.normal(0, 0.015, int(mask.sum())), 0, 1)
    return out, mask


def foreign_texture(img: np.ndarray, rng: np.random.Generator,
                    foreign: ForeignSource) -> tuple[np.ndarray, np.ndarray]:
    """DRAEM-style: threshold a Perlin noise field, paste another texture there (mostly opaque)."""
    s = img.shape[0]
    res = (2 ** int(rng.integers(1, 4)), 2 ** int(rng.integers(1, 4)))
    noise = perlin_noise((s, s), res, rng)
    area = rng.uniform(0.03, 0.12)  # fraction of the image covered
    mask = noise > np.quantile(noise, 1.0 - area)
    beta = rng.uniform(0.0, 0.3)  # opacity of the original under the patch, as DRAEM's beta
    # DRAEM jitters the pasted texture's colours; here contrast and brightness, so the patch stands out
    patch = np.clip(foreign(rng) * rng.uniform(0.6, 1.4) + rng.uniform(-0.25, 0.25), 0, 1)
    out = img.copy()
    out[mask] = beta * img[mask] + (1 - beta) * patch[mask]
    return out, mask


DEFECTS = {"scratch": scratch, "crack": crack, "stain": stain, "hole": hole, "foreign_texture": foreign_texture}


def draw_defect(kind: str, img: np.ndarray, rng: np.random.Generator,
                foreign: ForeignSource) -> tuple[np.ndarray, np.ndarray]:
    """Apply defect `kind`; retries until the mask has at least 0.1% of the pixels (and 4 pixels)."""
    min_px = max(4, img.size // 1000)
    for _ in range(20):
        out, mask = DEFECTS[kind](img, rng, foreign)
        if mask.sum() >= min_px:
            return out, mask
    raise RuntimeError(f"could not draw a visible {kind} defect on a {img.shape} image")
