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
from diad.sweep import results
from diad.sweep.backend import Backend, DiadBackend, backend_from_path, backend_path
from diad.sweep.keys import SEED_KEYS
from diad.sweep.layout import META_FILE, filesystem, read_meta, results_dir, storage_root
from diad.sweep.plan import Point, distinct, grid_points, interleave_by_training, with_absolute_paths
from diad.sweep.spec import Distribution, SweepSpec, load_spec
from diad.sweep.token import ensure_private_token, keep_token_private
from diad.sweep.trainable import DONE_FILE, SweepContext, run_trial



def write_meta(storage: str, sweep_id: str, meta: dict) -> None:
    """Save what `resume` needs (the resolved spec, backend, cache dir) beside the Tune experiment."""
    if "://" not in storage:
        from diad.io import atomic_write_text

        atomic_write_text(Path(storage) / sweep_id / META_FILE, json.dumps(meta, indent=1, default=str))
        return
    fs, path = filesystem(f"{storage}/{sweep_id}")
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{META_FILE}") as f:
        f.write(json.dumps(meta, indent=1, default=str).encode())


def _cache_dir(storage: str, sweep_id: str, cache_dir: str | None) -> str:
    if cache_dir:
        return str(Path(cache_dir).expanduser().resolve())
    if "://" in storage:
        raise DiadError(f"storage {storage} is a URI: give --cache-dir, a POSIX path every worker shares (NFS)")
    return str(Path(storage) / sweep_id / "cache")


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


def _trial_name(trial) -> str:
    return trial.config.get("point", {}).get("label") or trial.trial_id


def _trial_dirname(trial) -> str:
    return trial.trial_id


class Progress(tune.Callback):
    """One terminal line per event: trials done / running / failed, and what the event was."""

    def __init__(self, total: int | None):
        self.total, self.start, self.done, self.failed = total, time.time(), 0, 0

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
    """Storage and cache folders must take files before the first trial runs (not after its training)."""
    if "://" not in storage:
        ensure_writable_dir(storage, "--storage")
    if "://" not in cache:
        ensure_writable_dir(cache, "--cache-dir")


def connect(address: str | None, dashboard: bool, dashboard_host: str, num_cpus: int | None) -> None:
    """Start a local Ray (default) or join `address`; print how to open the dashboard (token auth stays on)."""
    if ray.is_initialized():
        return
    if address:
        info = ray.init(address=address)
    else:
        created = ensure_private_token()
        info = ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                        dashboard_host=dashboard_host)
        if created:
            print(f"generated a Ray auth token in {created} (mode 0600)", flush=True)
    keep_token_private()
    url = getattr(info, "dashboard_url", None)
    if dashboard and url:
        token = os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"
        if os.environ.get("RAY_AUTH_MODE", "token") != "disabled":
            note = f"token authentication on: paste the token from {token} or `ray get-auth-token`"
        else:
            note = "token authentication DISABLED by RAY_AUTH_MODE=disabled"
        port = url.rsplit(":", 1)[-1]
        print(f"Ray dashboard: http://{url}  ({note}; remote: ssh -L {port}:localhost:{port} this-host)", flush=True)


def _context(spec: SweepSpec, storage: str, cache_dir: str, backend: Backend) -> SweepContext:
    sha, dirty = results.git_state()
    return SweepContext(sweep_id=spec.name, storage=storage, cache_dir=cache_dir, base=spec.base,
                        arms=spec.arms, cpus=spec.resources.cpu, backend=backend, git_sha=sha, git_dirty=dirty)


def _trainable(ctx: SweepContext, spec: SweepSpec):
    res = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), res)


def _run_config(spec: SweepSpec, storage: str, total: int | None, verbose: int) -> tune.RunConfig:
    return tune.RunConfig(
        storage_path=storage, name=spec.name, verbose=verbose,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[Progress(total)],
    )


def launch(spec_path: str, overrides: list[str] | None = None, storage: str | None = None,
           cache_dir: str | None = None, address: str | None = None, dashboard: bool = True,
           dashboard_host: str = "127.0.0.1", num_cpus: int | None = None, verbose: int = 0,
           backend: Backend | None = None) -> dict:
    """Run a sweep; finished runs (an "ok" result file with the same run_key) are skipped. Returns a summary.

    `backend` is the core the trials call (default: DiadBackend, the real one).
    """
    backend = backend or DiadBackend()
    spec, source = load_spec(spec_path, overrides)
    spec = with_absolute_paths(spec)
    storage = storage_root(storage)
    cache = _cache_dir(storage, spec.name, cache_dir)
    check_num_cpus(num_cpus, spec)
    points = interleave_by_training(grid_points(spec, source, backend))
    check_local_dirs(storage, cache)
    print(f"caches: trainings and reconstructions under {cache}, embedded data under "
          f"{os.environ.get('DIAD_CACHE') or '~/.cache/diad'} ($DIAD_CACHE)", flush=True)
    status = results.run_status(storage, spec.name)
    grid_only = spec.search.algorithm == "grid"
    # sampled searches draw new configs each launch; a trial whose run_key is already done skips itself
    pending = [p for p in points if status.get(p.keys["run_key"]) != "ok"] if grid_only else points
    n_train = len({p.keys["train_hash"] for p in points})
    print(f"sweep {spec.name}: {len(points)} grid points, {n_train} distinct trainings; "
          f"{len(points) - len(pending)} already finished", flush=True)
    for cfg in distinct(pending, "data"):
        backend.prepare(backend.config_class.model_validate(cfg))  # generate embedded data once, not in each trial
    meta = {"spec": spec.model_dump(mode="json"), "spec_path": str(Path(spec_path).resolve()),
            "overrides": overrides or [], "backend": backend_path(backend), "cache_dir": cache, "storage": storage,
            "n_points": len(points) if grid_only else None, "created": time.time()}
    write_meta(storage, spec.name, meta)
    summary = {"sweep_id": spec.name, "storage": storage, "points": len(points), "trainings": n_train}
    if grid_only and not pending:
        return summary | {"ran": 0, "wall_s": 0.0}
    connect(address, dashboard, dashboard_host, num_cpus)
    ctx = _context(spec, storage, cache, backend)
    total = len(pending) if grid_only else None
    tuner = tune.Tuner(_trainable(ctx, spec), param_space=param_space(spec, pending),
                       tune_config=_tune_config(spec), run_config=_run_config(spec, storage, total, verbose))
    return summary | _fit(tuner)


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


def resume(sweep_id: str, storage: str | None = None, address: str | None = None, dashboard: bool = True,
           dashboard_host: str = "127.0.0.1", num_cpus: int | None = None, backend: Backend | None = None) -> dict:
    """Continue an interrupted sweep from Tune's experiment state: finished trials stay, the rest resume.

    `backend` defaults to the one the sweep was launched with (saved in sweep.json).
    """
    storage = storage_root(storage)
    meta = read_meta(storage, sweep_id)
    spec = SweepSpec.model_validate(meta["spec"])
    path = f"{storage}/{sweep_id}"
    if not tune.Tuner.can_restore(path):
        raise DiadError(f"{path}: no Tune experiment state to resume; run `diad-sweep launch` again instead")
    backend = backend or backend_from_path(meta["backend"])
    check_num_cpus(num_cpus, spec)
    check_local_dirs(storage, meta["cache_dir"])
    connect(address, dashboard, dashboard_host, num_cpus)
    ctx = _context(spec, storage, meta["cache_dir"], backend)
    tuner = tune.Tuner.restore(path, trainable=_trainable(ctx, spec), resume_errored=True)
    return {"sweep_id": sweep_id, "storage": storage} | _fit(tuner)


def sweep_status(sweep_id: str, storage: str | None = None) -> dict:
    """Counts of finished, failed and pending runs, and cached trainings, read from disk (no Ray needed)."""
    storage = storage_root(storage)
    meta = read_meta(storage, sweep_id)
    status = results.run_status(storage, sweep_id)
    ok = sum(s == "ok" for s in status.values())
    failed = len(status) - ok
    trainings = 0
    if "://" not in meta["cache_dir"]:
        trainings = len(list(Path(meta["cache_dir"]).glob(f"train/*/{DONE_FILE}")))
    n = meta.get("n_points")
    return {"sweep_id": sweep_id, "ok": ok, "failed": failed,
            "pending": None if n is None else max(n - ok - failed, 0), "points": n,
            "trainings_cached": trainings, "results": results_dir(storage, sweep_id),
            "resumable": tune.Tuner.can_restore(f"{storage}/{sweep_id}")}


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
