"""Deterministic data order and noise: everything a step draws is a function of (seed, step), so resume is exact."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from diad.data import AnomalyDataset
from diad.data.sample import Sample, has_pixel_masks, pixel_metrics_notes


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple (seed, step, purpose): independent streams, stable across runs."""
    digest = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    """A CPU torch.Generator seeded from `parts` (draw on CPU, then move: identical on every device)."""
    return torch.Generator().manual_seed(derived_seed(*parts))


def batch_indices(n: int, batch_size: int, seed: int, step: int, micro: int = 0, micro_per_step: int = 1) -> torch.Tensor:
    """Indices of micro-batch `micro` of optimizer step `step` in an endless stream of per-epoch permutations."""
    start = (step * micro_per_step + micro) * batch_size
    out = []
    for k in range(start, start + batch_size):
        epoch, pos = divmod(k, n)
        out.append(int(_permutation(n, seed, epoch)[pos]))
    return torch.tensor(out, dtype=torch.long)


_PERM_CACHE: dict[tuple[int, int, int], torch.Tensor] = {}


def _permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    key = (n, seed, epoch)
    if key not in _PERM_CACHE:
        if len(_PERM_CACHE) > 8:
            _PERM_CACHE.clear()
        _PERM_CACHE[key] = torch.randperm(n, generator=generator(seed, "epoch", epoch))
    return _PERM_CACHE[key]


def load_images_uint8(samples: list[Sample], image_size: int, num_workers: int = 0) -> torch.Tensor:
    """All images of `samples` decoded once: (N,3,H,W) uint8 (a quarter of float32's memory)."""
    if not samples:
        return torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8)
    loader = DataLoader(AnomalyDataset(samples, image_size), batch_size=32, num_workers=num_workers)
    parts = [(b["image"] * 255.0).round().to(torch.uint8) for b in loader]
    return torch.cat(parts)


def to_float(images_uint8: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N,3,H,W) uint8 -> float [0,1] on `device`."""
    return images_uint8.to(device).float().div_(255.0)


@dataclass(frozen=True)
class DecodedSplit:
    """A split decoded once: images (N,3,H,W) uint8, masks (N,H,W) uint8 {0,1}, and per-image labels,
    categories and paths; has_masks tells whether pixel metrics can be computed."""

    images: torch.Tensor
    masks: torch.Tensor
    labels: list[int]
    categories: list[str]
    paths: list[str]
    has_masks: bool
    pixel_notes: dict[str, str] = field(default_factory=dict)  # category -> why its pixel metrics are NaN

    def __len__(self) -> int:
        return len(self.labels)


def decode_split(samples: list[Sample], image_size: int, batch: int = 32) -> DecodedSplit:
    """Decode every image and mask of `samples` at image_size."""
    loader = DataLoader(AnomalyDataset(samples, image_size), batch_size=batch, num_workers=0)
    images, masks = [], []
    for b in loader:
        images.append((b["image"] * 255.0).round().to(torch.uint8))
        masks.append(b["mask"][:, 0].to(torch.uint8))
    return DecodedSplit(torch.cat(images), torch.cat(masks), [s.label for s in samples],
                        [s.category for s in samples], [str(s.image_path) for s in samples],
                        has_pixel_masks(samples), pixel_metrics_notes(samples))
