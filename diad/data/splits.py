"""Deterministic, location-independent splits: order items by a seeded hash of their names."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Callable, TypeVar

from diad.errors import DiadError
from diad.data.sample import Sample

T = TypeVar("T")


def stable_order(items: list[T], key: Callable[[T], str], seed: int) -> list[T]:
    """Items sorted by sha256(seed, key): the same for any numpy version, machine or dataset location."""
    def digest(item: T) -> str:
        return hashlib.sha256(f"{seed}\0{key(item)}".encode()).hexdigest()

    return sorted(items, key=digest)


def sample_key(s: Sample) -> str:
    """Names relative to the dataset (not absolute paths), so a moved dataset splits the same way."""
    return f"{s.category}/{s.image_path.parent.name}/{s.image_path.name}"


def split_train_val(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out round(fraction * n) normal training images per category (at least one stays in train)."""
    if not 0.0 <= fraction < 1.0:
        raise DiadError(f"val_fraction={fraction}: expected 0 <= val_fraction < 1")
    bad = [s for s in samples if s.split != "train" or s.label != 0]
    if bad:
        raise DiadError(f"split_train_val takes normal training samples only; got {bad[0].image_path} "
                        f"(split={bad[0].split}, label={bad[0].label})")
    by_cat: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_cat[s.category].append(s)
    val_set: set[Sample] = set()
    for items in by_cat.values():
        n_val = min(int(round(fraction * len(items))), len(items) - 1)
        val_set.update(stable_order(items, sample_key, seed)[:n_val])
    # keep the caller's order inside each part
    return [s for s in samples if s not in val_set], [s for s in samples if s in val_set]
