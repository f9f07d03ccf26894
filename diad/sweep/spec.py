"""Sweep spec: YAML -> validated `SweepSpec`, with errors that name the key, the file:line and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from diad.errors import DiadError, validation_error
from diad.overrides import parse_overrides, set_path
from diad.yaml_io import loads_strict, read_yaml_text

RUN_SECTIONS = ("data", "model", "train", "eval")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Distribution(_Strict):
    """One random/Optuna axis: exactly one of `choice: [..]`, `uniform: [lo, hi]`, `loguniform`, `randint`."""

    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Distribution":
        given = [k for k in DISTRIBUTIONS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DISTRIBUTIONS)} (got {given or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in DISTRIBUTIONS if getattr(self, k) is not None)


class Resources(_Strict):
    """Per-trial resources; fractions allowed (gpu: 0.5 packs two trials on one GPU)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class Search(_Strict):
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    num_samples: int = Field(1, ge=1)
    metric: str = "image_auroc"
    mode: Literal["max", "min"] = "max"


class Scheduler(_Strict):
    """FIFO runs every trial to the end; ASHA stops weak ones early (open searches only)."""

    name: Literal["fifo", "asha"] = "fifo"
    metric: str = "train_loss"
    mode: Literal["max", "min"] = "min"
    grace_period: int = Field(1, ge=1)
    max_t: int = Field(100, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


class SweepSpec(_Strict):
    """A sweep: a base RunConfig, arms x grid axes x seeds (or sampled axes), and how to run it.

    `arms` are named bundles of dotted overrides (`{name: ldm, model.variant: ldm}`); `axes` map a dotted
    config key to grid values or a Distribution; each seed sets both train.seed and eval.seed;
    `presets.<name>` holds dotted overrides of this spec, applied by `preset=<name>` (before the CLI's).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    preset: str | None = None
    presets: dict[str, dict[str, Any]] = {}
    base: dict[str, Any]
    arms: list[dict[str, Any]] = []
    axes: dict[str, Union[list[Any], Distribution]] = {}
    seeds: list[int] = Field([0], min_length=1)
    search: Search = Search()
    scheduler: Scheduler = Scheduler()
    resources: Resources = Resources()
    max_concurrent_trials: int | None = Field(None, ge=1)
    max_failures: int = Field(2, ge=0)

    @field_validator("axes")
    @classmethod
    def _axes_nonempty(cls, axes: dict) -> dict:
        for key, axis in axes.items():
            if key.split(".")[0] not in RUN_SECTIONS:
                raise ValueError(f"axis {key!r} must start with one of {', '.join(RUN_SECTIONS)}")
            if isinstance(axis, list) and not axis:
                raise ValueError(f"axis {key!r} has no values")
        return axes

    @model_validator(mode="after")
    def _search_rules(self) -> "SweepSpec":
        sampled = [k for k, a in self.axes.items() if isinstance(a, Distribution)]
        if self.search.algorithm == "grid" and sampled:
            raise ValueError(f"axes {sampled} are distributions: set search.algorithm to random or optuna")
        if self.scheduler.name == "asha" and self.search.algorithm == "grid":
            # Early stopping makes ablation arms unequal: only for open hyperparameter searches.
            raise ValueError("scheduler asha needs search.algorithm random or optuna, not grid")
        if self.search.algorithm == "optuna" and len(self.seeds) > 1:
            raise ValueError("search optuna takes one seed; replicate the best config in a grid sweep")
        return self


class SpecSource:
    """Where each key of a spec came from (file:line, a profile entry, the command line)."""

    def __init__(self, path: str, lines: dict[tuple, int]):
        self.path = path
        self.origins: dict[tuple, str] = {k: f"{path}:{v}" for k, v in lines.items()}

    def locate(self, loc: tuple) -> str:
        """The origin of the longest known prefix of `loc`."""
        for n in range(len(loc), -1, -1):
            if tuple(loc[:n]) in self.origins:
                return self.origins[tuple(loc[:n])]
        return self.path


def _node_lines(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """Map every key path in a composed YAML tree to its 1-based line."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = path + (key_node.value,)
            lines.update(_node_lines(value_node, sub))
            lines[sub] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_node_lines(item, path + (i,)))
    return lines


def override_path(key: str) -> tuple:
    """CLI/preset key -> spec path: `train.lr` -> base.train.lr; `axes.model.variant` keeps the axis name."""
    if key.startswith("axes."):
        return ("axes", key[len("axes."):])
    parts = tuple(key.split("."))
    return ("base",) + parts if parts[0] in RUN_SECTIONS else parts


def _apply(raw: dict, source: SpecSource, overrides: dict[str, Any], origin: str) -> None:
    for key, value in overrides.items():
        path = override_path(key)
        set_path(raw, path, value)
        source.origins[path] = origin


def _refuse_swept_overrides(raw: dict, cli: dict[str, Any]) -> None:
    """A command-line value for a key that the arms or axes set would be silently replaced per trial: refuse it."""
    arms = [a for a in raw.get("arms") or [] if isinstance(a, dict)]
    axes = raw.get("axes") or {}
    for key in cli:
        if key.split(".")[0] not in RUN_SECTIONS:  # e.g. `name`, `seeds`: spec keys, not per-trial values
            continue
        swept = [a.get("name", "?") for a in arms if key in a]
        if swept or key in axes:
            by = f"arms ({', '.join(map(str, swept))})" if swept else f"axes.{key}"
            raise DiadError(f"command line: {key} is swept by this spec's {by}; change the spec "
                            f"(or axes.{key}=[...] for an axis) instead of overriding it")


def load_spec(path: str | Path, overrides: list[str] | None = None) -> tuple[SweepSpec, SpecSource]:
    """Read, profile, override and validate a sweep YAML; DiadError names file:line and the key."""
    path = Path(path)
    text = read_yaml_text(path, "sweep spec")  # refuses empty and binary files
    raw = loads_strict(text, str(path))  # and duplicate keys
    node = yaml.compose(text)
    if not isinstance(raw, dict):
        raise DiadError(f"{path}: a sweep spec is a YAML mapping (name, base, axes, ...)")
    source = SpecSource(str(path), _node_lines(node) if node is not None else {})
    raw.setdefault("name", path.stem)
    cli = parse_overrides(overrides or [])
    preset = cli.get("preset", raw.get("preset"))
    presets = raw.get("presets") or {}
    if preset in presets:
        values = presets[preset] or {}
        for key in values:
            _apply(raw, source, {key: values[key]}, source.locate(("presets", preset, key)))
    elif preset is not None:
        where = source.locate(("preset",)) if "preset" not in cli else "command line"
        allowed = ", ".join(presets) or "none (this spec defines no presets)"
        raise DiadError(f"{where}: preset {preset!r} is not defined; allowed: {allowed}", key="preset")
    _refuse_swept_overrides(raw, cli)
    for key, value in cli.items():
        _apply(raw, source, {key: value}, f"command line ({key}={value!r})")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        raise validation_error(e, SweepSpec, source.locate) from None
    return spec, source
