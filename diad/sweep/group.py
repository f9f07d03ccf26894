"""Several sweep specs in one launch: one Ray session, one Tuner over the union of their grid points.

`diad-sweep launch a.yaml b.yaml key=value` plans every spec as usual (the overrides apply to each), then runs
all their pending points as ONE Tune experiment named after the group ("a+b"), so trials of every spec share
the trial slots and no slot idles at one spec's tail. Trainings are shared through the storage root's one cache
(`<storage>/cache`): points of different specs with the same train_hash train once.

Each member keeps its own sweep id, sweep.json, results dir and `diad-sweep status`. The group's Tune state is
`<storage>/<group>/`, beside `group.json` (the members' resolved specs, backend and cache: what `resume` needs);
each member's sweep.json names the group (`experiment`), so `diad-sweep resume <member>` resumes the group too.
Spec names never contain "+", so a group name never collides with a sweep id.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ray import tune
from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

from diad.errors import DiadError
from diad.sweep import results
from diad.sweep.backend import Backend
from diad.sweep.layout import META_FILE, filesystem, read_meta
from diad.sweep.plan import Point, grid_points, interleave_by_training, with_absolute_paths
from diad.sweep.spec import SpecSource, SweepSpec, load_spec
from diad.sweep.trainable import SweepContext, run_trial

GROUP_FILE = "group.json"
RESERVED_NAMES = ("cache", "results")  # folders of the storage root itself (layout.py)
_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*=")


@dataclass(frozen=True)
class Member:
    """One spec of a launch: its validated spec, where it came from, its grid points and those not yet done."""

    spec: SweepSpec
    spec_path: str
    points: list[Point]
    pending: list[Point]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_grid(self) -> bool:
        return self.spec.search.algorithm == "grid"


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Command-line words -> (spec paths, key=value overrides). A word is an override when it starts with
    `key=` and is not an existing file; every other word is a spec path."""
    specs = [a for a in args if not _OVERRIDE.match(a) or Path(a).is_file()]
    overrides = [a for a in args if a not in specs]
    if not specs:
        raise DiadError(f"launch: no sweep spec given (only key=value overrides: {' '.join(overrides)}); "
                        f"give one or more spec YAML files first, e.g. sweeps/ablation.yaml")
    return specs, overrides


def _load(path: str, overrides: list[str], several: bool) -> tuple[SweepSpec, SpecSource]:
    try:
        return load_spec(path, overrides)
    except DiadError as e:
        if several and not str(e).startswith(str(path)):  # "command line: ..." must say which spec refused it
            raise DiadError(f"{path}: {e}", key=e.key) from None
        raise


def load_members(spec_paths: list[str], overrides: list[str] | None, backend: Backend, storage: str) -> list[Member]:
    """Validate and plan every spec (overrides apply to each); refuse clashing names and, in a group, open searches."""
    several = len(spec_paths) > 1
    members, seen = [], {}
    for path in spec_paths:
        spec, source = _load(path, overrides or [], several)
        if spec.name in RESERVED_NAMES:
            raise DiadError(f"{path}: name {spec.name!r} is reserved (<storage>/{spec.name} holds every sweep's "
                            f"{spec.name}); give the sweep another name")
        if spec.name in seen:
            raise DiadError(f"{seen[spec.name]} and {path}: both are sweep {spec.name!r}; give each spec its own "
                            f"name (its `name:` key; a name= override gives every spec the same one)")
        seen[spec.name] = path
        if several and spec.search.algorithm != "grid":
            raise DiadError(f"{path}: search.algorithm {spec.search.algorithm}: only grid sweeps share one launch; "
                            f"launch this spec on its own")
        spec = with_absolute_paths(spec)
        points = interleave_by_training(grid_points(spec, source, backend))
        status = results.run_status(storage, spec.name)
        # sampled searches draw new configs each launch; a trial whose run_key is already done skips itself
        pending = [p for p in points if status.get(p.keys["run_key"]) != "ok"] if spec.search.algorithm == "grid" \
            else points
        members.append(Member(spec, str(Path(path).resolve()), points, pending))
    return members


def experiment_name(names: list[str]) -> str:
    """The Tune experiment of a launch: the sweep id itself for one spec, "a+b+c" for a group."""
    return "+".join(names)


def tune_settings(specs: list[SweepSpec], name: str) -> SweepSpec:
    """What the one Tuner of a group reads (runner._tune_config, _run_config): the group's name, the smallest
    max_concurrent_trials any member asks for (a member's limit is usually memory), the most retries any allows."""
    limits = [s.max_concurrent_trials for s in specs if s.max_concurrent_trials is not None]
    return specs[0].model_copy(update={"name": name, "max_concurrent_trials": min(limits) if limits else None,
                                       "max_failures": max(s.max_failures for s in specs)})


def param_space(members: list[Member]) -> dict:
    """One grid_search over the pending points of every member, ordered so that concurrent trials need different
    trainings across the whole group; each point carries its sweep id (which context and resources it gets)."""
    owner = {id(p): m.name for m in members for p in m.pending}
    ordered = interleave_by_training([p for m in members for p in m.pending])
    return {"point": tune.grid_search([p.as_param() | {"sweep": owner[id(p)], "label": f"{owner[id(p)]}/{p.label}"}
                                       for p in ordered])}


def run_member_trial(config: dict, contexts: dict[str, SweepContext]) -> None:
    """The group's trainable: the trial of one member's point, with that member's context."""
    run_trial(config, contexts[config["point"]["sweep"]])


class TrialResources:
    """Per-trial resources of a group: each point reserves its own spec's resources.cpu / resources.gpu."""

    def __init__(self, specs: dict[str, SweepSpec]):
        self.by_sweep = {name: {"cpu": s.resources.cpu, "gpu": s.resources.gpu} for name, s in specs.items()}

    def __call__(self, config: dict):
        return resource_dict_to_pg_factory(self.by_sweep[config["point"]["sweep"]])


def trainable(contexts: dict[str, SweepContext], specs: dict[str, SweepSpec]):
    return tune.with_resources(tune.with_parameters(run_member_trial, contexts=contexts), TrialResources(specs))


# ---- finding what `resume NAME` continues (runner.launch writes group.json) ----------------------------------------------

def _read_group(storage: str, name: str) -> dict | None:
    fs, path = filesystem(f"{storage}/{name}/{GROUP_FILE}")
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read().decode())
    except (FileNotFoundError, OSError):
        return None


@dataclass(frozen=True)
class Experiment:
    """A launched Tune experiment: one sweep or a group, with what resuming it needs."""

    name: str
    specs: dict[str, SweepSpec]  # sweep id -> resolved spec, in launch order
    backend: str  # "module:Class"
    cache_dir: str

    @property
    def is_group(self) -> bool:
        return len(self.specs) > 1


def find_experiment(storage: str, name: str) -> Experiment:
    """The experiment `resume NAME` continues: a group by its name, the group a member sweep was last launched
    in, or a sweep launched alone; anything else is a one-line DiadError."""
    group = _read_group(storage, name)
    if group is None:
        try:
            meta = read_meta(storage, name)
        except DiadError:
            raise DiadError(f"{storage}/{name}: no sweep or sweep group there (no {META_FILE} or {GROUP_FILE}); "
                            f"`diad-sweep ls` lists sweeps") from None
        experiment = meta.get("experiment", name)
        if experiment == name:
            return Experiment(name, {name: SweepSpec.model_validate(meta["spec"])}, meta["backend"], meta["cache_dir"])
        group = _read_group(storage, experiment)
        if group is None:
            raise DiadError(f"{storage}/{name}: sweep {name} was launched in group {experiment}, but "
                            f"{storage}/{experiment}/{GROUP_FILE} is missing; run `diad-sweep launch` again instead")
        print(f"sweep {name} was launched with {', '.join(s for s in group['members'] if s != name)} as "
              f"{experiment}: resuming all of them", flush=True)
    specs = {n: SweepSpec.model_validate(s) for n, s in group["members"].items()}
    return Experiment(group["experiment"], specs, group["backend"], group["cache_dir"])
