"""From a SweepSpec to the list of runs: arms x grid axes x seeds, validated and keyed (no Ray here)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diad.errors import DiadError
from diad.overrides import apply_overrides
from diad.sweep.backend import Backend
from diad.sweep.keys import SEED_KEYS, run_hashes
from diad.sweep.spec import RUN_SECTIONS, SpecSource, SweepSpec

_SOURCE = "<sweep-run>"  # placeholder source name in core errors, replaced by the spec location
# Config values that are file paths: made absolute at launch, since trials run in their own directories.
PATH_KEYS = ("data.root", "model.pretrained_dir", "eval.backbone_weights")
_NOT_PATHS = ("random",)  # eval.backbone_weights=random asks for random weights


def _absolute(value: Any) -> Any:
    if not isinstance(value, str) or value in _NOT_PATHS or "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


def with_absolute_paths(spec: SweepSpec) -> SweepSpec:
    """A copy of `spec` whose path-valued settings (PATH_KEYS) are absolute, relative to the current directory."""
    base = {section: dict(values or {}) for section, values in spec.base.items()}
    for key in PATH_KEYS:
        section, name = key.split(".")
        if name in base.get(section, {}):
            base[section][name] = _absolute(base[section][name])
    arms = [{k: _absolute(v) if k in PATH_KEYS else v for k, v in arm.items()} for arm in spec.arms]
    axes = {k: [_absolute(v) for v in a] if k in PATH_KEYS and isinstance(a, list) else a
            for k, a in spec.axes.items()}
    return spec.model_copy(update={"base": base, "arms": arms, "axes": axes})


def validate_run(backend: Backend, base: dict, overrides: dict[str, Any], locate=None, where: dict[str, tuple] | None = None):
    """base + dotted overrides -> the backend's RunConfig. Errors point at the override (or base key) at fault.

    `where` maps an override key to its spec path; `locate` turns a spec path into "file:line".
    """
    try:
        return backend.build(apply_overrides(base, overrides), _SOURCE)
    except DiadError as e:
        text = str(e).replace(f"{_SOURCE}: ", "", 1)
        if locate is None:
            raise DiadError(f"sweep trial {overrides}: {text}", key=e.key) from None
        parts = (e.key or "").split(".")
        candidates = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
        origin = next((where[k] for k in candidates if k in (where or {})), None)
        raise DiadError(f"{locate(origin or ('base', *parts))}: {text}", key=e.key) from None


def run_keys(backend: Backend, run_cfg) -> dict[str, str]:
    """train_hash, eval_hash, run_key, config_hash of a RunConfig (the backend decides what is hashed)."""
    train_part, eval_part = backend.parts(run_cfg)
    return run_hashes(train_part, eval_part)


@dataclass(frozen=True)
class Point:
    """One grid point: its dotted overrides of the base config, validated config and keys."""

    label: str
    overrides: dict[str, Any]
    cfg: dict  # validated RunConfig, JSON dump
    keys: dict[str, str]  # train_hash, eval_hash, run_key, config_hash
    arm: str | None = None  # the arm's name (the `arm` result column), None when the spec has no arms

    def as_param(self) -> dict:
        """The value Tune's grid_search carries for this point."""
        return {"label": self.label, "set": self.overrides, "arm": self.arm}


def _arm_overrides(spec: SweepSpec, source: SpecSource) -> list[tuple[str, dict, dict]]:
    """[(arm name, dotted overrides, override key -> spec path)], one empty arm when none are given."""
    if not spec.arms:
        return [("", {}, {})]
    arms, names = [], {}
    for i, arm in enumerate(spec.arms):
        name = str(arm.get("name", i))
        if name in names:
            raise DiadError(f"{source.locate(('arms', i, 'name'))}: arms[{i}].name: {name!r} is also the name of "
                            f"arms[{names[name]}]; give each arm its own name")
        names[name] = i
        sets = {k: v for k, v in arm.items() if k != "name"}
        for key in sets:
            if key.split(".")[0] not in RUN_SECTIONS:
                raise DiadError(f"{source.locate(('arms', i, key))}: arms[{i}].{key}: unknown key; "
                                f"arm keys are dotted config paths starting with {', '.join(RUN_SECTIONS)}, or name")
        arms.append((name, sets, {k: ("arms", i, k) for k in sets}))
    return arms


def _label(arm: str, values: list[tuple[str, Any]], seed: int, n_seeds: int) -> str:
    parts = [arm] if arm else []
    parts += [f"{k.split('.')[-1]}={v}" for k, v in values]
    if n_seeds > 1:
        parts.append(f"seed={seed}")
    return " ".join(parts) or "base"


def grid_points(spec: SweepSpec, source: SpecSource, backend: Backend) -> list[Point]:
    """Every arm x grid-axis combination x seed, each validated as a RunConfig (errors name file:line)."""
    grid = [(k, v) for k, v in spec.axes.items() if isinstance(v, list)]
    points = []
    for arm, arm_sets, where in _arm_overrides(spec, source):
        for combo in itertools.product(*[list(enumerate(values)) for _, values in grid]):
            for s, seed in enumerate(spec.seeds):
                sets, origin = dict(arm_sets), dict(where)
                for (key, _), (i, value) in zip(grid, combo):
                    sets[key], origin[key] = value, ("axes", key, i)
                for key in SEED_KEYS:
                    sets[key], origin[key] = seed, ("seeds", s)
                run_cfg = validate_run(backend, spec.base, sets, source.locate, origin)
                label = _label(arm, [(k, sets[k]) for k, _ in grid], seed, len(spec.seeds))
                points.append(Point(label, sets, run_cfg.model_dump(mode="json"), run_keys(backend, run_cfg),
                                    arm=arm if spec.arms else None))
    _refuse_same_runs(points, spec)
    return points


def _refuse_same_runs(points: list[Point], spec: SweepSpec) -> None:
    """Two points with one run key would be one result file and a sweep forever "pending 1": refuse them."""
    seen: dict[str, Point] = {}
    for p in points:
        first = seen.setdefault(p.keys["run_key"], p)
        if first is not p:
            raise DiadError(f"sweep {spec.name}: grid points {first.label!r} and {p.label!r} resolve to the same run "
                            f"(identical config {p.keys['run_key']}); drop one or make them differ")


def interleave_by_training(points: list[Point]) -> list[Point]:
    """Order points so concurrent trials need different checkpoints (fewer trials waiting on one training)."""
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(p.keys["train_hash"], []).append(p)
    ordered = []
    for layer in itertools.zip_longest(*groups.values()):
        ordered.extend(p for p in layer if p is not None)
    return ordered


def distinct(points: list[Point], section: str) -> list[dict]:
    """The distinct values of one config section across points (e.g. the data configs to prepare)."""
    seen: dict[str, dict] = {}
    for p in points:
        seen.setdefault(repr(sorted(p.cfg[section].items())), p.cfg)
    return list(seen.values())
