"""The Ray Tune function trainable: one trial = one grid point = train (once, cached) + evaluate + write rows.

Training is cached under a content hash of the training-time config: the first trial that needs a checkpoint
trains it while holding the entry (a file lock on a local cache, a Ray lease on an object-store one:
diad.sweep.cache_store); the others wait and reuse it. The autoencoder stage that many trainings share is made
the same way first. Reconstructions are cached by the core per (checkpoint, reconstruction settings); holding
their entry keeps two trials from computing the same reconstructions at once, so backbone and layer axes only
cost feature extraction.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ray import tune

from diad.hashing import json_hash
from diad.io import atomic_write_text
from diad.overrides import flatten
from diad.schema import DIAGNOSTICS, MEAN_CATEGORY, METRICS, PROTOCOL_KEYS
from diad.sweep import results
from diad.sweep.backend import Backend, DiadBackend
from diad.sweep.live import EvalEvents, prepare_worker
from diad.sweep.node import node_columns
from diad.sweep.cache_store import CacheStore, cache_store
from diad.sweep.plan import run_keys, validate_run

DONE_FILE = "sweep-train.json"


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs besides its own config; absolute paths (trials run in their own cwd)."""

    sweep_id: str
    storage: str  # absolute path or URI; results go to <storage>/results/
    cache_dir: str  # absolute POSIX path all workers share (file locks), or a URI (node-local copies + leases)
    base: dict
    arms: list[dict] = field(default_factory=list)
    cpus: float = 1.0
    backend: Backend | None = None  # None: the real core (DiadBackend)
    git_sha: str | None = None
    git_dirty: bool | None = None


def trial_overrides(config: dict, ctx: SweepContext) -> dict[str, Any]:
    """Dotted overrides of one trial: its grid point, then an Optuna-chosen arm, then sampled values."""
    overrides = dict(config.get("point", {}).get("set", {}))
    if "arm" in config:
        overrides.update({k: v for k, v in ctx.arms[config["arm"]].items() if k != "name"})
    overrides.update(config.get("sample", {}))
    return overrides


def trial_arm(config: dict, ctx: SweepContext) -> str | None:
    """The name of the trial's arm (grid point or Optuna-chosen), or None when the spec has no arms."""
    if "arm" in config:
        return str(ctx.arms[config["arm"]].get("name", config["arm"]))
    return config.get("point", {}).get("arm")


def _limit_threads(cpus: float) -> None:
    """As many torch threads as CPUs reserved for the trial (more would fight the other trials)."""
    import sys

    n = str(max(1, int(cpus)))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = n
    torch = sys.modules.get("torch")  # a core that never imports torch (the tests' fake) stays light
    if torch is not None:
        torch.set_num_threads(int(n))


def _reset_peak_mem() -> None:
    """Start this trial's peak-memory count (workers are reused across trials): VmHWM and the CUDA peak."""
    import sys

    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak resident set size
    except OSError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_mem_mb() -> float:
    """Peak resident memory of this trial in MB (the GPU peak when CUDA is in use)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"[:500]


def _restore_tune_checkpoint(out_dir: Path) -> None:
    """A retried trial whose training dir lacks Tune's last checkpoint (a node-local disk) gets it back."""
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return
    rel = ckpt.get_metadata().get("rel")
    if rel is None or (out_dir / rel).exists():
        return  # on shared storage the core resumes from its own (possibly newer) checkpoint
    with ckpt.as_directory() as src:
        shutil.copytree(src, out_dir / rel, dirs_exist_ok=True)


class _Reporter:
    """Every report carries the same keys (NaN until known): searchers and schedulers read them on each result."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {"train_loss": float("nan"), "step": None,
                                     **{m: float("nan") for m in (*METRICS, *DIAGNOSTICS)}}

    def on_checkpoint(self, out_dir: Path, kept: Callable[[Path, int], bool] = lambda checkpoint_dir, step: False):
        """on_checkpoint callback for the core: hand each training checkpoint to Tune (a retry resumes from it),
        unless `kept(checkpoint_dir, step)` says the cache store keeps it itself."""

        def callback(step: int, checkpoint_dir: Path | str, metrics: dict | None = None) -> None:
            ckpt = None
            if not kept(Path(checkpoint_dir), int(step)):
                ckpt = tune.Checkpoint.from_directory(str(checkpoint_dir))
                ckpt.set_metadata({"rel": os.path.relpath(checkpoint_dir, out_dir)})
            numeric = {f"train_{k}": float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
            self.last.update(numeric, step=int(step))
            tune.report({**self.last, "phase": "train"}, checkpoint=ckpt)

        return callback

    def on_eval(self) -> EvalEvents:
        """on_progress callback for the core's evaluate: a few phase "eval" reports (stage, done, total)."""
        return EvalEvents(lambda event: tune.report({**self.last, **event}))

    def final(self, rows: list[dict], **extra: Any) -> None:
        """The last report: the "mean" row's metrics and diagnostics, and the trial's status."""
        mean = next((r for r in rows if r["category"] == MEAN_CATEGORY), rows[0])
        self.last.update({m: mean.get(m) for m in (*METRICS, *DIAGNOSTICS)})
        tune.report({**self.last, "phase": "done", "status": mean["status"], "run_key": mean["run_key"],
                     "error": mean.get("error"), **extra})


def prepare_autoencoder(backend: Backend, run_cfg, store: CacheStore) -> None:
    """Make the autoencoder stage that many trainings share once, before the denoiser training that needs it."""
    key_fn = getattr(backend, "autoencoder_key", None)  # a backend without the method has no shared stage
    key = key_fn(run_cfg) if key_fn is not None else None
    if key is None:
        return
    with store.once(f"autoencoders/{key}", None, f"autoencoder {key}") as ready:
        if not ready:
            backend.prepare_autoencoder(run_cfg, store.local)


def train_cached(backend: Backend, run_cfg, train_hash: str, store: CacheStore, reporter: _Reporter) -> tuple[dict, bool]:
    """Train once per training config; returns (training record, reused?). Waits if another trial trains it."""
    rel = f"train/{train_hash}"
    out_dir = store.local / rel
    done = out_dir / DONE_FILE
    with store.once(rel, DONE_FILE, f"training {train_hash}") as ready:
        if ready:
            return json.loads(done.read_text()), True
        prepare_autoencoder(backend, run_cfg, store)
        store.restore_progress(rel, out_dir)
        _restore_tune_checkpoint(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "sweep-owner.txt", f"pid {os.getpid()} host {os.uname().nodename}\n")
        kept = functools.partial(store.save_progress, rel, out_dir)  # (checkpoint_dir, step) -> kept by the store?
        res = backend.train(run_cfg, out_dir, store.local, on_checkpoint=reporter.on_checkpoint(out_dir, kept))
        record = {
            "checkpoint_rel": os.path.relpath(res.checkpoint_dir, out_dir),
            "wall_s": float(res.wall_s), "images_per_s": float(res.images_per_s),
            "peak_mem_mb": float(res.peak_mem_mb), "steps": int(res.steps),
        }
        atomic_write_text(done, json.dumps(record, indent=1))
    return record, False


def evaluate_locked(backend: Backend, checkpoint_dir: Path, run_cfg, store: CacheStore, on_progress=None):
    """Evaluate holding the reconstruction key's entry, so equal reconstructions are computed once."""
    rel = f"recon/{backend.recon_key(checkpoint_dir, run_cfg)}"
    with store.once(rel, None, "reconstructions of the same checkpoint and reconstruction settings"):
        return backend.evaluate(checkpoint_dir, run_cfg, store.local, on_progress=on_progress)


def run_trial(config: dict, ctx: SweepContext) -> None:
    """Tune function trainable: train (cached), evaluate, write this trial's Parquet, report the mean metrics."""
    prepare_worker(tune.get_context().get_trial_name())
    _limit_threads(ctx.cpus)
    backend = ctx.backend or DiadBackend()
    _reset_peak_mem()
    schema = results.schema_for(backend.config_class)
    overrides = trial_overrides(config, ctx)
    reporter = _Reporter()
    info: dict[str, Any] = {
        "arm": trial_arm(config, ctx), "git_sha": ctx.git_sha, "git_dirty": ctx.git_dirty,
        "versions": results.package_versions(),
    }
    keys = {"trial_id": tune.get_context().get_trial_id() or "local", "run_key": json_hash(overrides),
            "config_hash": None, "train_hash": None, "eval_hash": None}
    try:
        run_cfg = validate_run(backend, ctx.base, overrides)
    except Exception as exc:  # a sampled value the RunConfig refuses: record it, the sweep goes on
        info.update(status="failed", error=_one_line(exc), peak_mem_mb=_peak_mem_mb())
        rows = results.make_rows(schema, keys, {}, None, info)
    else:
        keys.update(run_keys(backend, run_cfg))
        previous = results.read_rows(ctx.storage, ctx.sweep_id, run_key=keys["run_key"])
        if previous.num_rows and "failed" not in previous.column("status").to_pylist():
            reporter.final(previous.to_pylist(), skipped=True)  # finished before a driver restart: no new rows
            return
        rows = _train_and_evaluate(backend, run_cfg, keys, ctx, schema, info, reporter)
    hardware = results.hardware()  # now that the core has loaded torch (and seen the GPU, if any)
    where = node_columns()  # node_id, node_ip, hostname: which cluster node ran this trial
    rows = [dict(r, hardware=hardware, **where) for r in rows]
    results.write_rows(ctx.storage, ctx.sweep_id, keys["run_key"], rows, schema)
    reporter.final(rows)


def _train_and_evaluate(backend: Backend, run_cfg, keys: dict, ctx: SweepContext, schema, info: dict,
                        reporter: _Reporter) -> list[dict]:
    """The trial body; any exception becomes a failed row (a worker that dies is retried by Tune instead)."""
    cfg = run_cfg.model_dump(mode="json")
    _limit_threads(ctx.cpus)  # torch is loaded by now if the core uses it
    try:
        store = cache_store(ctx.cache_dir, holder=f"trial {keys['trial_id']}")
        train, cached = train_cached(backend, run_cfg, keys["train_hash"], store, reporter)
        info.update(train_wall_s=train["wall_s"], train_images_per_s=train["images_per_s"], train_cached=cached)
        reporter.last["step"] = reporter.last["step"] or train["steps"]  # a reused training reported no steps
        checkpoint_dir = store.local / "train" / keys["train_hash"] / train["checkpoint_rel"]
        ev = evaluate_locked(backend, checkpoint_dir, run_cfg, store, reporter.on_eval())
    except Exception as exc:
        traceback.print_exc()
        info.update(status="failed", error=_one_line(exc), peak_mem_mb=_peak_mem_mb())
        return results.make_rows(schema, keys, flatten(cfg), None, info)
    info.update(
        status="ok", error=None, eval_wall_s=float(ev.wall_s), eval_images_per_s=float(ev.images_per_s),
        recon_cached=ev.recon_cached, backbone_weights=ev.backbone_weights,
        peak_mem_mb=_peak_mem_mb(),  # this trial's peak (the worker may have run earlier trials)
        **{f"protocol.{k}": ev.protocol.get(k) for k in PROTOCOL_KEYS},
        **ev.diagnostics,  # per run: the same value on each category's row
    )
    per_category = {c: {**m, "n_test_images": ev.n_images.get(c), "pixel_metrics_note": ev.pixel_notes.get(c)}
                    for c, m in ev.per_category.items()}
    return results.make_rows(schema, keys, flatten(cfg), per_category, info)
