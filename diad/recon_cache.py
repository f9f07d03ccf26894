"""The on-disk reconstruction cache: one directory per key, its tensor file checked against the recorded hash.

Layout of cache_dir/recon/<config_hash(key)>/: recons.safetensors (uint8 (N,3,H,W)), paths.json (the test images,
in order), key.json (the key it was made from plus recons_sha256). An entry from before hashes were recorded is
rebuilt; an entry whose tensors do not match their hash, or whose key is not the one asked for, is an error that
names the entry to delete.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from diad.errors import DiadError
from diad.integrity import read_json, safetensors_error, sha256_file, verified_sha256
from diad.io import atomic_dir


def _recover(path: Path) -> str:
    return f"delete the cache entry {path} (it is rebuilt on the next run)"


def load_cached(path: Path, key: dict, paths: list[str]) -> torch.Tensor | None:
    """The cached reconstructions for `key` and these test images, or None when there is no (current) entry."""
    tensors, key_file = path / "recons.safetensors", path / "key.json"
    if not tensors.is_file() or not key_file.is_file():
        return None
    meta = read_json(key_file, "reconstruction cache key", _recover(path))
    recorded = meta.pop("recons_sha256", None) if isinstance(meta, dict) else None
    if recorded is None:
        return None  # written before hashes were recorded: rebuild it
    if meta != json.loads(json.dumps(key)):
        raise DiadError(f"{key_file}: this cache entry was made from another checkpoint or setting "
                        f"({meta.get('checkpoint')} != {key.get('checkpoint')}); {_recover(path)}")
    verified_sha256(tensors, recorded, _recover(path))
    if read_json(path / "paths.json", "reconstruction cache image list", _recover(path)) != paths:
        return None
    try:
        return load_file(str(tensors))["recons"]
    except Exception as e:
        raise safetensors_error(tensors, e, _recover(path)) from None


def save_cached(path: Path, key: dict, paths: list[str], recons: torch.Tensor) -> None:
    """Write the entry atomically with the sha256 of its tensor file."""
    with atomic_dir(path) as tmp:
        save_file({"recons": recons.contiguous()}, str(tmp / "recons.safetensors"))
        (tmp / "paths.json").write_text(json.dumps(paths))
        meta = dict(key, recons_sha256=sha256_file(tmp / "recons.safetensors"))
        (tmp / "key.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
