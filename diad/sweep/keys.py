"""Which run a result belongs to and which checkpoint it reuses: the four keys of one run."""

from __future__ import annotations

from diad.hashing import json_hash
from diad.overrides import flatten

# Replicate seeds: rows that differ only in these share a config_hash.
SEED_KEYS = ("train.seed", "eval.seed")


def _without_seeds(part: dict) -> dict:
    return {k: v for k, v in flatten(part).items() if k not in SEED_KEYS}


def run_hashes(train_part: dict, eval_part: dict) -> dict[str, str]:
    """The four keys of one run from its training-time and evaluation-time config parts (JSON-able dicts).

    train_hash: the checkpoint cache key; eval_hash: the evaluation config; run_key: both;
    config_hash: both without the replicate seeds (rows that differ only by seed share it).
    """
    both = {**train_part, **eval_part}
    return {
        "train_hash": json_hash(train_part),
        "eval_hash": json_hash(eval_part),
        "run_key": json_hash(both),
        "config_hash": json_hash(_without_seeds(both)),
    }
