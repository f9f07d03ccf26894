"""Content hashes of configuration: the same JSON-able value always gives the same short key."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """Sorted-key compact JSON of a pydantic model or JSON-able value (Paths and the like as str)."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def json_hash(obj: Any, length: int = 16) -> str:
    """sha256 prefix of canonical_json(obj): stable across processes and machines."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]
