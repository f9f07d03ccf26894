"""Strict YAML for run configs and sweep specs: a duplicate key, an empty file or a binary file is an error.

PyYAML's safe_load lets the last of two equal keys win silently and reads an empty file as None (= all defaults);
both hide a user's mistake, so every config and spec is read through `load_yaml_file`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from diad.errors import DiadError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)  # merge keys (<<) first, as SafeLoader does
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise DiadError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                            f"(first on line {seen[key]}); give each key once")
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml_text(path: Path, what: str) -> str:
    """The text of a YAML file; a missing, unreadable, binary or empty file is a one-line DiadError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DiadError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise DiadError(f"{path}: is a directory; expected a {what} (YAML file)") from None
    except OSError as e:
        raise DiadError(f"{path}: cannot read {what} ({e.strerror})") from None
    if b"\0" in data:
        raise DiadError(f"{path}: binary file (NUL bytes); expected a {what} in YAML text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DiadError(f"{path}: not UTF-8 text (byte {e.start}); expected a {what} in YAML") from None
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        example = "sweeps/smoke.yaml" if "sweep" in what else "configs/cpu.yaml"
        raise DiadError(f"{path}: empty {what}; expected a YAML mapping (see {example})")
    return text


def loads_strict(text: str, source: str) -> Any:
    """Parse YAML text, refusing duplicate keys; errors name `source` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except DiadError as e:
        raise DiadError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        raise DiadError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None


def load_yaml_file(path: str | Path, what: str = "config file") -> Any:
    """read_yaml_text + loads_strict."""
    path = Path(path)
    return loads_strict(read_yaml_text(path, what), str(path))
