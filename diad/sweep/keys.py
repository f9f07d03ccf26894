"""Dotted config paths and content hashes: which run a result belongs to, which checkpoint it reuses."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

# Replicate seeds: rows that differ only in these share a config_hash.
SEED_KEYS = ("train.seed", "eval.seed")


def get_path(tree: dict, dotted: str) -> Any:
    """Value at `a.b.c` in a nested dict; KeyError when absent."""
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def set_path(tree: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating intermediate dicts."""
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[parts[-1]] = value


def apply_overrides(tree: dict, overrides: dict[str, Any]) -> dict:
    """A deep copy of `tree` with each dotted override set."""
    out = copy.deepcopy(tree)
    for key, value in overrides.items():
        set_path(out, key, copy.deepcopy(value))
    return out


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": leaf}; lists and other values are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def content_hash(obj: Any, n: int = 16) -> str:
    """Short sha256 of the canonical JSON of `obj` (sorted keys), stable across processes."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _without_seeds(part: dict) -> dict:
    return {k: v for k, v in flatten(part).items() if k not in SEED_KEYS}


def run_hashes(train_part: dict, eval_part: dict) -> dict[str, str]:
    """The four keys of one run from its training-time and evaluation-time config parts (JSON-able dicts).

    train_hash: the checkpoint cache key; eval_hash: the evaluation config; run_key: both;
    config_hash: both without the replicate seeds (rows that differ only by seed share it).
    """
    both = {**train_part, **eval_part}
    return {
        "train_hash": content_hash(train_part),
        "eval_hash": content_hash(eval_part),
        "run_key": content_hash(both),
        "config_hash": content_hash(_without_seeds(both)),
    }


def recon_key(cfg: dict, train_hash: str) -> str:
    """Lock key for reconstructions: checkpoint, T, DDIM steps, eval seed (what the recon cache keys on)."""
    ev = cfg.get("eval", {})
    parts = [train_hash] + [ev.get(k) for k in ("forward_steps", "ddim_steps", "seed")]
    return content_hash(parts)
