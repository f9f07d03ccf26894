"""Launch, resume and inspect sweeps: the Tuner, the Ray cluster connection, the dashboard, the progress line."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from diad.errors import DiadError
from diad.integrity import ensure_writable_dir
from diad.sweep import group, live, results
from diad.sweep.backend import Backend, DiadBackend, backend_from_path, backend_path
from diad.sweep.cluster_checks import check_cluster, join
from diad.sweep.cache_store import check_writable, is_uri, published
from diad.sweep.keys import SEED_KEYS
from diad.sweep.layout import META_FILE, filesystem, read_meta, results_dir, storage_root
from diad.sweep.plan import Point, distinct
from diad.sweep.spec import Distribution, SweepSpec
from diad.sweep.token import dashboard_note, ensure_private_token, keep_token_private
from diad.sweep.trainable import DONE_FILE, SweepContext, run_trial



def write_meta(storage: str, sweep_id: str, meta: dict, file: str = META_FILE) -> None:
    """Save what `resume` needs (the resolved spec, backend, cache dir) beside the Tune experiment."""
    if "://" not in storage:
        from diad.io import atomic_write_text

        atomic_write_text(Path(storage) / sweep_id / file, json.dumps(meta, indent=1, default=str))
        return
    fs, path = filesystem(f"{storage}/{sweep_id}")
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{file}") as f:
        f.write(json.dumps(meta, indent=1, default=str).encode())


def _cache_dir(storage: str, cache_dir: str | None) -> str:
    """--cache-dir, else <storage>/cache: one cache per storage root, so sweeps under it share trainings."""
    if cache_dir:
        return cache_dir.rstrip("/") if is_uri(cache_dir) else str(Path(cache_dir).expanduser().resolve())
    if is_uri(storage):  # object storage: node-local copies synced through it (diad.sweep.cache_store)
        return f"{storage}/cache"
    return str(Path(storage) / "cache")


def _tune_dist(d: Distribution):
    lo_hi = getattr(d, d.kind)
    if d.kind == "choice":
        return tune.choice(lo_hi)
    if d.kind == "randint":
        return tune.randint(lo_hi[0], lo_hi[1] + 1)  # spec bounds are inclusive, Tune's upper is not
    return getattr(tune, d.kind)(*lo_hi)


def param_space(spec: SweepSpec, points: list[Point]) -> dict:
    """Grid: one grid_search over explicit points; random: points x sampled axes; Optuna: all axes sampled."""
    sampled = {k: _tune_dist(a) for k, a in spec.axes.items() if isinstance(a, Distribution)}
    if spec.search.algorithm != "optuna":
        space: dict[str, Any] = {"point": tune.grid_search([p.as_param() for p in points])}
        return space | ({"sample": sampled} if sampled else {})
    grid = {k: tune.choice(a) for k, a in spec.axes.items() if isinstance(a, list)}
    seed = spec.seeds[0]
    space = {"sample": {**sampled, **grid, **{key: seed for key in SEED_KEYS}}}
    return space | ({"arm": tune.choice(list(range(len(spec.arms))))} if spec.arms else {})


def _tune_config(spec: SweepSpec) -> tune.TuneConfig:
    search, sched = spec.search, spec.scheduler
    # Reused workers skip re-importing torch per trial (seconds each on a small CPU box).
    kwargs: dict[str, Any] = {"max_concurrent_trials": spec.max_concurrent_trials, "reuse_actors": True,
                              "trial_name_creator": _trial_name, "trial_dirname_creator": _trial_dirname}
    if search.algorithm == "optuna":
        kwargs.update(search_alg=OptunaSearch(metric=search.metric, mode=search.mode))
    if search.algorithm != "grid":
        kwargs["num_samples"] = search.num_samples
    if sched.name == "asha":
        kwargs["scheduler"] = ASHAScheduler(metric=sched.metric, mode=sched.mode, time_attr="training_iteration",
                                            grace_period=sched.grace_period, max_t=sched.max_t,
                                            reduction_factor=sched.reduction_factor)
    else:
        kwargs["scheduler"] = FIFOScheduler()
    return tune.TuneConfig(**kwargs)


_trial_name = live.trial_label  # "diad seed=0": progress lines, status, TensorBoard runs
_trial_dirname = live.trial_dirname  # "diad_seed=0_<trial id>": Tune's trial dir, so TensorBoard's run name


class Progress(tune.Callback):
    """One terminal line per event: trials done / running / failed, and what the event was."""

    def __init__(self, total: int | None):
        self.total, self.start, self.done, self.failed = total, time.time(), 0, 0
        self.eval_lines = live.EvalLines()

    def _line(self, trials, text: str) -> None:
        running = sum(t.status == "RUNNING" for t in trials)
        total = self.total or len(trials)
        mins = (time.time() - self.start) / 60
        print(f"[{mins:5.1f} min] {self.done}/{total} done, {self.failed} failed, {running} running | {text}",
              flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("phase") == "train":
            loss = result.get("train_loss", float("nan"))
            self._line(trials, f"{_trial_name(trial)}: training step {result.get('step')} loss {loss:.4g}")
        elif result.get("phase") == "eval" and (text := self.eval_lines.text(trial.trial_id, result)):
            self._line(trials, f"{_trial_name(trial)}: {text}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        res = trial.last_result or {}
        self.done += 1
        self.failed += res.get("status") == "failed"
        summary = f"image_auroc {res.get('image_auroc', float('nan')):.3f}" if res.get("status") == "ok" else \
            f"{res.get('status', '?')}"
        self._line(trials, f"{_trial_name(trial)}: finished, {summary}{' (already done)' if res.get('skipped') else ''}")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._line(trials, f"{_trial_name(trial)}: worker lost, retrying from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        self.failed += 1
        self._line(trials, f"{_trial_name(trial)}: errored after all retries")


def check_num_cpus(num_cpus: int | None, spec: SweepSpec) -> None:
    """A local Ray with fewer CPUs than one trial reserves would wait forever: refuse it up front."""
    if num_cpus is None:
        return
    if num_cpus < 1 or num_cpus < spec.resources.cpu:
        raise DiadError(f"--num-cpus {num_cpus}: each trial of sweep {spec.name} reserves resources.cpu="
                        f"{spec.resources.cpu:g} CPUs; give --num-cpus >= {max(1, math.ceil(spec.resources.cpu))}")


def check_local_dirs(storage: str, cache: str) -> None:
    """Storage and cache folders (or buckets) must take files before the first trial runs (not after its training)."""
    for location, what in ((storage, "--storage"), (cache, "--cache-dir")):
        if is_uri(location):
            check_writable(location, what)
        else:
            ensure_writable_dir(location, what)


def connect(address: str | None, dashboard: bool, dashboard_host: str, num_cpus: int | None) -> None:
    """Start a local Ray (default) or join `address`; print how to open the dashboard (token auth stays on)."""
    if ray.is_initialized():
        return
    if address:
        info = join(address)  # one-line errors for an address nothing listens on or a refused token
    else:
        created = ensure_private_token()
        info = ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                        dashboard_host=dashboard_host)
        if created:
            print(f"generated a Ray auth token in {created} (mode 0600)", flush=True)
    keep_token_private()
    url = getattr(info, "dashboard_url", None)
    if dashboard and url:
        port = url.rsplit(":", 1)[-1]
        print(f"Ray dashboard: http://{url}  ({dashboard_note()}; remote: ssh -L {port}:localhost:{port} this-host)",
              flush=True)


def _context(spec: SweepSpec, storage: str, cache_dir: str, backend: Backend) -> SweepContext:
    sha, dirty = results.git_state()
    return SweepContext(sweep_id=spec.name, storage=storage, cache_dir=cache_dir, base=spec.base,
                        arms=spec.arms, cpus=spec.resources.cpu, backend=backend, git_sha=sha, git_dirty=dirty)


def _trainable(ctx: SweepContext, spec: SweepSpec):
    res = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return live.named_trainable(tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), res))


def _run_config(spec: SweepSpec, storage: str, total: int | None, verbose: int) -> tune.RunConfig:
    return tune.RunConfig(
        storage_path=storage, name=spec.name, verbose=verbose,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[Progress(total), *live.callbacks(storage, spec.name)],
    )


def launch(spec_paths: str | list[str], overrides: list[str] | None = None, storage: str | None = None,
           cache_dir: str | None = None, address: str | None = None, dashboard: bool = True,
           dashboard_host: str = "127.0.0.1", num_cpus: int | None = None, verbose: int = 0,
           backend: Backend | None = None) -> dict:
    """Run one sweep, or several in one Tune experiment (group.py); the overrides apply to every spec. Finished
    runs (an "ok" result file with the same run_key) are skipped. Returns a summary.

    `backend` is the core the trials call (default: DiadBackend, the real one).
    """
    backend = backend or DiadBackend()
    paths = [str(spec_paths)] if isinstance(spec_paths, (str, Path)) else [str(p) for p in spec_paths]
    storage = storage_root(storage)
    cache = _cache_dir(storage, cache_dir)
    members = group.load_members(paths, overrides, backend, storage)
    for m in members:
        check_num_cpus(num_cpus, m.spec)
    check_local_dirs(storage, cache)
    print(f"caches: trainings and reconstructions under {cache}, embedded data under "
          f"{os.environ.get('DIAD_CACHE') or '~/.cache/diad'} ($DIAD_CACHE)", flush=True)
    experiment = group.experiment_name([m.name for m in members])
    pending = [p for m in members for p in m.pending]
    n_train = len({p.keys["train_hash"] for m in members for p in m.points})
    _print_plan(members, experiment, n_train)
    for cfg in distinct(pending, "data"):
        backend.prepare(backend.config_class.model_validate(cfg))  # generate embedded data once, not in each trial
    _write_launch_meta(members, experiment, overrides, backend, storage, cache)
    summary = {"sweep_id": experiment, "storage": storage, "points": sum(len(m.points) for m in members),
               "trainings": n_train} | ({"sweeps": [m.name for m in members]} if len(members) > 1 else {})
    if all(m.is_grid for m in members) and not pending:
        return summary | {"ran": 0, "wall_s": 0.0}
    for m in members:  # `diad-sweep status` lists every pending point at once
        if m.is_grid:
            live.write_queued(storage, m.name, m.pending, read_meta(storage, m.name)["created"])
    connect(address, dashboard, dashboard_host, num_cpus)
    if address:  # other nodes: local paths must be shared, and some node must fit a trial
        check_cluster({"--storage": storage, "--cache-dir": cache}, [m.spec.resources for m in members])
    contexts = {m.name: _context(m.spec, storage, cache, backend) for m in members}
    return summary | _fit(_new_tuner(members, contexts, experiment, storage, verbose))


def _print_plan(members: list[group.Member], experiment: str, n_train: int) -> None:
    for m in members:
        print(f"sweep {m.name}: {len(m.points)} grid points, {len({p.keys['train_hash'] for p in m.points})} "
              f"distinct trainings; {len(m.points) - len(m.pending)} already finished", flush=True)
    if len(members) > 1:
        print(f"{len(members)} sweeps in one Tune experiment {experiment}: {sum(len(m.points) for m in members)} "
              f"grid points, {n_train} distinct trainings in all (resume: `diad-sweep resume {experiment}` or "
              f"any member's sweep id)", flush=True)


def _new_tuner(members: list[group.Member], contexts: dict[str, SweepContext], experiment: str, storage: str,
               verbose: int) -> tune.Tuner:
    """One spec: its own search, scheduler and resources; several: one grid over all their points (group.py)."""
    if len(members) == 1:
        (m,) = members
        total = len(m.pending) if m.is_grid else None
        return tune.Tuner(_trainable(contexts[m.name], m.spec), param_space=param_space(m.spec, m.pending),
                          tune_config=_tune_config(m.spec), run_config=_run_config(m.spec, storage, total, verbose))
    settings = group.tune_settings([m.spec for m in members], experiment)
    return tune.Tuner(live.named_trainable(group.trainable(contexts, {m.name: m.spec for m in members})),
                      param_space=group.param_space(members), tune_config=_tune_config(settings),
                      run_config=_run_config(settings, storage, sum(len(m.pending) for m in members), verbose))


def _write_launch_meta(members: list[group.Member], experiment: str, overrides: list[str] | None, backend: Backend, storage: str,
                       cache: str) -> None:
    """Each member's sweep.json (naming the experiment it runs in); a group's group.json beside its Tune state."""
    common = {"overrides": overrides or [], "backend": backend_path(backend), "cache_dir": cache, "storage": storage,
              "experiment": experiment, "created": time.time()}
    for m in members:
        write_meta(storage, m.name, common | {
            "spec": m.spec.model_dump(mode="json"), "spec_path": m.spec_path,
            "n_points": len(m.points) if m.is_grid else None,  # sampled searches: trials draw their own configs
            "train_hashes": sorted({p.keys["train_hash"] for p in m.points}) if m.is_grid else None})
    if len(members) > 1:
        write_meta(storage, experiment, common | {"members": {m.name: m.spec.model_dump(mode="json") for m in members},
                                                  "spec_paths": [m.spec_path for m in members]}, file=group.GROUP_FILE)


def _fit(tuner) -> dict:
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # train-phase reports lack eval metrics
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    start = time.time()
    grid = tuner.fit()
    errors = [str(r.error).splitlines()[0] for r in grid if r.error is not None]
    failed = failed_trials(grid)
    return {"ran": len(grid), "errored": len(errors), "failed": len(failed), "failed_trials": failed,
            "errors": errors, "wall_s": time.time() - start}


def failed_trials(grid) -> list[dict]:
    """[{trial: its arm/point label, error: one line}] for each trial that errored in Tune or wrote a failed row."""
    out = []
    for r in grid:
        metrics, config = r.metrics or {}, r.config or {}
        label = config.get("point", {}).get("label") or metrics.get("trial_id") or "?"
        if r.error is not None:
            out.append({"trial": label, "error": " ".join(str(r.error).split())[:300]})
        elif metrics.get("status") == "failed":
            out.append({"trial": label, "error": metrics.get("error") or "(no message)"})
    return out


def resume(name: str, storage: str | None = None, address: str | None = None, dashboard: bool = True,
           dashboard_host: str = "127.0.0.1", num_cpus: int | None = None, backend: Backend | None = None) -> dict:
    """Continue an interrupted sweep from Tune's experiment state: finished trials stay, the rest resume.

    `name` is a sweep id or a group's name ("a+b"); a sweep launched in a group resumes the whole group.
    `backend` defaults to the one the sweep was launched with (saved in sweep.json / group.json).
    """
    storage = storage_root(storage)
    exp = group.find_experiment(storage, name)
    path = f"{storage}/{exp.name}"
    if not tune.Tuner.can_restore(path):
        raise DiadError(f"{path}: no Tune experiment state to resume; run `diad-sweep launch` again instead")
    backend = backend or backend_from_path(exp.backend)
    for spec in exp.specs.values():
        check_num_cpus(num_cpus, spec)
    check_local_dirs(storage, exp.cache_dir)
    connect(address, dashboard, dashboard_host, num_cpus)
    if address:
        check_cluster({"--storage": storage, "--cache-dir": exp.cache_dir}, [s.resources for s in exp.specs.values()])
    contexts = {n: _context(spec, storage, exp.cache_dir, backend) for n, spec in exp.specs.items()}
    if exp.is_group:
        trainable = live.named_trainable(group.trainable(contexts, exp.specs))
    else:
        trainable = _trainable(contexts[exp.name], exp.specs[exp.name])
    tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    extra = {"sweeps": list(exp.specs)} if exp.is_group else {}
    return {"sweep_id": exp.name, "storage": storage} | extra | _fit(tuner)


def sweep_status(sweep_id: str, storage: str | None = None) -> dict:
    """Counts of finished, failed and pending runs, and cached trainings, read from disk (no Ray needed)."""
    storage = storage_root(storage)
    meta = read_meta(storage, sweep_id)
    status = results.run_status(storage, sweep_id)
    ok = sum(s == "ok" for s in status.values())
    failed = len(status) - ok
    cache, hashes = meta["cache_dir"], meta.get("train_hashes")  # the cache is shared: count this sweep's
    if is_uri(cache):
        trainings = published(cache, "train", hashes)
    else:
        cache = Path(cache)
        trainings = len(list(cache.glob(f"train/*/{DONE_FILE}"))) if hashes is None else \
            sum((cache / "train" / h / DONE_FILE).is_file() for h in hashes)
    n = meta.get("n_points")
    return {"sweep_id": sweep_id, "ok": ok, "failed": failed,
            "pending": None if n is None else max(n - ok - failed, 0), "points": n,
            "trainings_cached": trainings, "results": results_dir(storage, sweep_id),
            "resumable": tune.Tuner.can_restore(f"{storage}/{meta.get('experiment', sweep_id)}")}


def list_sweeps(storage: str | None = None) -> list[dict]:
    """Every sweep under the storage root (a directory holding sweep.json)."""
    storage = storage_root(storage)
    fs, path = filesystem(storage)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    out = []
    for info in sorted(infos, key=lambda i: i.path):
        if info.type == pafs.FileType.Directory and fs.get_file_info(f"{info.path}/{META_FILE}").is_file:
            out.append(sweep_status(Path(info.path).name, storage))
    return out
