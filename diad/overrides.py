"""Dotted keys over nested dicts: `key=value` parsing, get/set by path, flatten, deep merge.

One parser for every command line and spec (`diad train ... train.steps=10`, `diad-sweep launch ... preset=gpu`):
the value is read as YAML (`[1,2]` a list, `null` None, `3` an int); an empty value means None.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Iterable

import yaml

from diad.errors import DiadError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def parse_override(item: str) -> tuple[str, Any]:
    """"train.steps=10" -> ("train.steps", 10); a malformed item is a one-line DiadError."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        raise DiadError(f"override {item!r}: expected key=value with a dotted key, e.g. train.steps=100",
                        key=key or None)
    try:
        return key, (yaml.safe_load(value) if value.strip() else None)
    except yaml.YAMLError as e:
        raise DiadError(f"override {item!r}: value is not valid YAML ({str(e).splitlines()[0]})", key=key) from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """["train.steps=10", "eval.layers=[1,2]"] -> {"train.steps": 10, "eval.layers": [1, 2]} (order kept)."""
    return dict(parse_override(item) for item in items)


def get_path(tree: dict, dotted: str) -> Any:
    """Value at `a.b.c` in a nested dict; KeyError when absent."""
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def set_path(tree: dict, dotted: str | tuple, value: Any) -> None:
    """Set `a.b.c` (or the path tuple) in a nested dict, creating (or replacing non-dict) intermediates."""
    parts = dotted.split(".") if isinstance(dotted, str) else list(dotted)
    node = tree
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def apply_overrides(tree: dict, overrides: dict[str, Any]) -> dict:
    """A deep copy of `tree` with each dotted override set."""
    out = copy.deepcopy(tree)
    for key, value in overrides.items():
        set_path(out, key, copy.deepcopy(value))
    return out


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": leaf}; lists, empty dicts and other values are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def deep_merge(base: dict, top: dict) -> dict:
    """A copy of `base` with `top` merged in, dicts recursively; `top` wins on every leaf."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
