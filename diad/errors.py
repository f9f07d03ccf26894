"""User-facing errors: one line that names the thing and what was expected."""

from __future__ import annotations

import types
import typing
from typing import Any, Callable, Union


class DiadError(Exception):
    """Bad input from a user (path, file, value). The CLIs print it as one line, no traceback.

    `key` is the dotted config key at fault, when there is one (`train.steps`), for callers that
    want to point at it (the sweep layer maps it to a file:line).
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside `X | None` (or the annotation itself)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if hasattr(arg, "model_fields"):
                return arg
    return annotation


def allowed_keys(model: type, loc: tuple) -> list[str] | None:
    """Field names of the pydantic model reached by following `loc` from `model` (None when not a model)."""
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return None
        model = _model_in(fields[part].annotation)
    fields = getattr(model, "model_fields", None)
    return list(fields) if fields is not None else None


def validation_error(err: Any, model: type, where: str | Callable[[tuple], str], prefix: tuple = ()) -> DiadError:
    """A pydantic ValidationError as one DiadError line: `<where>: <dotted.key>: <problem>[; allowed: ...]`.

    `where` is a file name, or a function of the key path that returns its origin (a spec's file:line).
    Only the first error is spelled out; the count of the others follows.
    """
    errors = err.errors()
    first = errors[0]
    loc = tuple(str(p) for p in first["loc"])
    full = prefix + loc
    key = ".".join(full) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        allowed = allowed_keys(model, loc[:-1])
        msg = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif "input" in first and not isinstance(first["input"], dict) and first["type"] != "value_error":
        msg = f"{msg} (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    origin = where(full) if callable(where) else where
    return DiadError(f"{origin}: {key}: {msg}{more}", key=key)
