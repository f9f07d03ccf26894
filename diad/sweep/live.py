"""Following a sweep while it runs: trial names, per-trial status records, evaluation events, quiet logs.

- `trial_label`, `trial_dirname`: a trial is named by its arm and grid values ("diad seed=0") in progress lines,
  status and (through its directory name) TensorBoard's run list (diad.sweep.board writes the events).
- `LiveStatus`: the driver's record of every trial (diad.sweep.trialstate) for `diad-sweep status`.
- `EvalEvents`: the core's evaluation progress callback turned into a few Tune reports (phase "eval").
- `prepare_worker`, `named_trainable`: trial names in worker output and the dashboard, less per-checkpoint noise.
- `next_steps`: what to run after a launch (report, status, TensorBoard), as commands that work as printed.
"""

from __future__ import annotations

import logging
import math
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

from ray import tune
from ray.tune.trainable.function_trainable import wrap_function

from diad.hashing import json_hash
from diad.pipeline.records import EVAL_STAGES
from diad.schema import METRICS
from diad.sweep import trialstate
from diad.sweep.layout import read_meta, storage_root

EVAL_REPORT_EVERY_S = 10.0  # the trial reports evaluation progress at most this often (plus each stage's start/end)
EVAL_LINE_EVERY_S = 30.0
RECORD_EVERY_S = 2.0  # a trial's status record is rewritten at most this often within one phase  # the launch's progress stream prints it at most this often per trial (plus stage changes)
# Loggers whose INFO lines repeat on every checkpoint of every trial ("Checkpoint successfully created at: ...").
NOISY_WORKER_LOGGERS = ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage")


def prepare_worker(trial_name: str | None) -> None:
    """At the start of each trial, in its worker: drop Ray's per-checkpoint INFO lines (keep its warnings), and
    prefix the worker's forwarded output with the trial's name, "(diad seed=0 pid=...)", not the first trial's.

    The prefix is Ray's log-monitor token (printed by Ray itself after an actor's __init__): printing it again
    renames the reused actor's output for this trial.
    """
    for name in NOISY_WORKER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from ray._private import ray_constants, worker
    except ImportError:
        return
    if trial_name and worker.global_worker.mode == worker.WORKER_MODE:
        token = getattr(ray_constants, "LOG_PREFIX_ACTOR_NAME", ":actor_name:")
        print(f"{token}{trial_name}", flush=True)
        print(f"{token}{trial_name}", file=sys.stderr, flush=True)


def named_trainable(fn) -> type:
    """Tune's class for the function trainable `fn`, named DiadTrial (the dashboard's Class and Repr columns
    read "DiadTrial", not ImplicitFunc). Trial names cannot go there: Ray takes the repr once, when the actor
    starts, and Tune reuses an actor for several trials; they appear in the log prefixes instead."""
    cls = type("DiadTrial", (wrap_function(fn),), {"__repr__": lambda self: "DiadTrial"})
    cls.__qualname__ = "DiadTrial"
    return cls  # Tune's trainable name stays the function's (`_name`), so older sweeps still resume


def trial_label(trial) -> str:
    """The trial's arm/point label ("diad seed=0"), or its Tune id for sampled searches."""
    return trial.config.get("point", {}).get("label") or trial.trial_id


def trial_dirname(trial) -> str:
    """`<label>_<trial id>`, e.g. "diad_seed=0_3f2a1_00004": unique across relaunches, readable as a run name."""
    slug = re.sub(r"[^A-Za-z0-9.=+-]+", "_", trial_label(trial)).strip("_")[:80]
    return f"{slug}_{trial.trial_id}" if slug and slug != trial.trial_id else trial.trial_id


def finite(value) -> bool:
    """A real number that is not NaN or inf (bools are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- evaluation progress: trial side ------------------------------------------------------------------------


def eval_progress_pct(stage: str, done: int, total: int) -> float:
    """Evaluation progress in percent: each stage of records.EVAL_STAGES is an equal share (not equal time)."""
    i = EVAL_STAGES.index(stage) if stage in EVAL_STAGES else 0
    return 100.0 * (i + (done / total if total else 1.0)) / len(EVAL_STAGES)


class EvalEvents:
    """The core's on_progress(stage, done, total) -> Tune reports: each stage's start and end, else one per 10 s.

    Few reports, since each is a round trip to the driver (and counts as a Tune iteration).
    """

    def __init__(self, report: Callable[[dict], None], every_s: float = EVAL_REPORT_EVERY_S):
        self.report, self.every_s = report, every_s
        self.stage, self.last = None, float("-inf")

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        edge = stage != self.stage or done in (0, total)
        if not edge and now - self.last < self.every_s:
            return
        self.stage, self.last = stage, now
        self.report({"phase": "eval", "eval_stage": stage, "eval_done": int(done), "eval_total": int(total),
                     "eval_progress_pct": eval_progress_pct(stage, done, total)})


class EvalLines:
    """Which evaluation events the progress stream prints: stage changes, else one per trial per 30 s."""

    def __init__(self, every_s: float = EVAL_LINE_EVERY_S):
        self.every_s, self.seen = every_s, {}

    def text(self, trial_id: str, result: dict) -> str | None:
        stage, now = result.get("eval_stage"), time.monotonic()
        last = self.seen.get(trial_id)
        if last and last[0] == stage and now - last[1] < self.every_s:
            return None
        self.seen[trial_id] = (stage, now)
        return f"evaluating: {eval_text(result)}"


def eval_text(result: dict) -> str:
    """"reconstruct 16/80 images", or the stage alone for one-shot stages (metrics, diagnostics)."""
    done, total = result.get("eval_done"), result.get("eval_total")
    return f"{result.get('eval_stage')} {done}/{total} images" if (total or 0) > 1 else str(result.get("eval_stage"))


# --- status records -------------------------------------------------------------------------------------------


def _error_line(trial) -> str:
    """The last line of the trial's error file (Tune writes the traceback there), else a placeholder."""
    try:
        lines = [x for x in Path(trial.error_file).read_text().splitlines() if x.strip()]
        return " ".join(lines[-1].split())[:300] if lines else "(no message)"
    except (OSError, TypeError):
        return "errored in Ray (see the trial's error.txt)"


def record_key(label: str, trial_id: str | None, sampled: bool) -> str:
    """File name of a trial's record: its grid point's label (known before Tune makes the trial, so queued points
    have a record), or the Tune trial id when sampled values make labels repeat."""
    if sampled or not label:
        return str(trial_id)
    return f"{re.sub(r'[^A-Za-z0-9.=+-]+', '_', label)[:60]}-{json_hash(label)[:8]}"


def _member(trial, default: str) -> tuple[str, str | None]:
    """(sweep id, point label within it): a trial of a launch group ("a+b", group.py) belongs to its point's sweep
    and carries the label "a/ldm seed=0"; its record goes under that sweep, labelled as the sweep's own point."""
    point = trial.config.get("point", {})
    sweep, label = point.get("sweep") or default, point.get("label")
    return sweep, label.removeprefix(f"{sweep}/") if label and point.get("sweep") else label


def write_queued(storage: str, sweep_id: str, points, launch: float) -> None:
    """Before Tune starts: a "queued" record per grid point (Tune itself makes trials only as slots free up)."""
    now = time.time()
    for p in points:
        trialstate.write_record(storage, sweep_id, {
            "key": record_key(p.label, None, False), "trial_id": None, "trial": p.label, "arm": p.arm,
            "launch": launch, "state": "queued", "started_at": None, "updated_at": now})


class LiveStatus(tune.Callback):
    """Driver side: one status record per trial (diad.sweep.trialstate), rewritten at each of its events."""

    def __init__(self, storage: str, sweep_id: str):
        self.storage, self.sweep_id = storage, sweep_id
        self.records: dict[str, dict] = {}
        self.timing: dict[str, dict] = {}
        self.eval_s: list[float] = []  # evaluation durations of this launch's finished trials (the ETA's guess)
        self.launches: dict[str, float | None] = {}  # sweep id -> its launch ("created" in its sweep.json)
        self.failed_write = False

    def setup(self, **info):
        self.launches = {}  # a resumed launch reads them again

    def _launch(self, sweep: str) -> float | None:
        if sweep not in self.launches:
            try:
                self.launches[sweep] = read_meta(self.storage, sweep).get("created")
            except Exception:  # no sweep.json: records still get written, as one "launch 0"
                self.launches[sweep] = None
        return self.launches[sweep]

    def _record(self, trial) -> dict:
        if trial.trial_id not in self.records:
            sweep, label = _member(trial, self.sweep_id)
            self.records[trial.trial_id] = {
                "key": record_key(label, trial.trial_id, "sample" in trial.config), "sweep": sweep,
                "trial_id": trial.trial_id, "trial": label or trial.trial_id,
                "arm": trial.config.get("point", {}).get("arm"), "launch": self._launch(sweep), "state": "queued",
                "started_at": None, "updated_at": time.time()}
        return self.records[trial.trial_id]

    def _write(self, rec: dict, throttle: bool = False) -> None:
        """Write the record; with `throttle`, skip it if this trial's was written < RECORD_EVERY_S ago (the
        driver's loop runs these callbacks between a checkpoint and Tune's snapshot of its state: keep it short)."""
        if throttle and time.time() - rec.get("updated_at", 0.0) < RECORD_EVERY_S:
            return
        rec["updated_at"] = time.time()
        try:
            trialstate.write_record(self.storage, rec["sweep"], rec)
        except Exception as exc:  # a status file must never stop the sweep
            if not self.failed_write:
                print(f"warning: cannot write trial status under {self.storage}/{rec['sweep']}/live: {exc}",
                      flush=True)
            self.failed_write = True

    def on_step_end(self, iteration, trials, **info):
        for trial in trials:  # queued trials appear here first (restored finished ones keep their records)
            if trial.trial_id not in self.records and trial.status == "PENDING":
                self._write(self._record(trial))

    def on_trial_start(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        rec.update(state="running", phase="start", started_at=rec.get("started_at") or time.time())
        self.timing[trial.trial_id] = {"t0": time.time(), "first": None}
        self._write(rec)

    def on_trial_recover(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        rec.update(state="running", phase="retrying", retries=int(rec.get("retries") or 0) + 1)
        self._write(rec)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rec, now = self._record(trial), time.time()
        tm = self.timing.setdefault(trial.trial_id, {"t0": now, "first": None})
        phase = result.get("phase")
        same_phase = phase == rec.get("phase") and rec.get("state") == "running"
        rec.update(state="running", phase=phase, host=result.get("hostname"))
        if result.get("step") is not None:
            rec["step"] = int(result["step"])
        if finite(result.get("train_total_steps")):
            rec["steps_total"] = int(result["train_total_steps"])
        if finite(result.get("train_loss")):
            rec["loss"] = float(result["train_loss"])
        if phase == "train":
            tm["first"] = tm["first"] or (now, rec["step"])
        elif phase == "eval":
            rec.setdefault("eval_started_at", now)
            rec.update(eval_stage=result.get("eval_stage"), eval_done=result.get("eval_done"),
                       eval_total=result.get("eval_total"))
        elif phase == "done":
            rec.update({m: result.get(m) for m in METRICS if finite(result.get(m))},
                       status=result.get("status"), error=result.get("error"), skipped=bool(result.get("skipped")))
        rec["eta_s"], rec["eta_excludes_eval"] = self._eta(rec, tm, now)
        self._write(rec, throttle=same_phase and phase != "done")

    def _eta(self, rec: dict, tm: dict, now: float) -> tuple[float | None, bool]:
        """(seconds left, whether that leaves evaluation out): training by its step rate so far, evaluation by
        the mean of this launch's finished trials (unknown before the first one)."""
        mean_eval = sum(self.eval_s) / len(self.eval_s) if self.eval_s else None
        if rec.get("phase") == "eval":
            left = None if mean_eval is None else max(mean_eval - (now - rec["eval_started_at"]), 0.0)
            return left, False
        step, total = rec.get("step"), rec.get("steps_total")
        if rec.get("phase") != "train" or not step or not total:
            return None, False
        t_first, s_first = tm["first"]
        per_step = (now - t_first) / (step - s_first) if step > s_first else (now - tm["t0"]) / step
        return (total - step) * per_step + (mean_eval or 0.0), mean_eval is None

    def on_trial_complete(self, iteration, trials, trial, **info):
        rec, now = self._record(trial), time.time()
        res = trial.last_result or {}
        failed = res.get("status") == "failed"
        rec.update(state="failed" if failed else "done", phase="done", finished_at=now, eta_s=None,
                   error=res.get("error") if failed else None)
        if rec.get("eval_started_at") and not res.get("skipped") and not failed:
            self.eval_s.append(now - rec["eval_started_at"])
        self._write(rec)

    def on_trial_error(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        rec.update(state="failed", phase="done", finished_at=time.time(), eta_s=None, error=_error_line(trial))
        self._write(rec)


def callbacks(storage: str, sweep_id: str) -> list:
    """The live-following callbacks a sweep's RunConfig carries (status records, TensorBoard)."""
    from diad.sweep.board import TrialBoard

    return [LiveStatus(storage, sweep_id), TrialBoard()]


# --- after a launch -------------------------------------------------------------------------------------------


def venv_command(name: str) -> str:
    """`name` as a command that works without an activated venv: this Python's own bin dir when it has it."""
    exe = Path(sys.executable).parent / name  # not resolved: a venv's python is a symlink out of the venv
    return shlex.quote(str(exe)) if exe.exists() else name


def next_steps(experiment: str, storage: str, sweeps: list[str] | None = None) -> list[str]:
    """The lines a launch ends with: the report, status and TensorBoard commands, runnable as printed.

    `experiment` is the Tune experiment (the sweep id, or a group's "a+b" with its member `sweeps`): reports and
    status are per sweep, TensorBoard shows the experiment's trials. TensorBoard reads local folders; with s3://
    storage the event files are in each trial dir there (and live in the driver's Ray session dir that Ray's
    banner names).
    """
    exe = venv_command("diad-sweep")
    store = "" if storage == storage_root(None) else f" --storage {shlex.quote(storage)}"
    lines = []
    for sweep in sweeps or [experiment]:
        lines += [f"report: {exe} report {shlex.quote(sweep)}{store}   (tables and plots as HTML)",
                  f"status: {exe} status {shlex.quote(sweep)}{store}"]
    if "://" in storage:
        return lines + [f"TensorBoard: event files in {storage}/{experiment}/<trial>/; copy them to a local folder "
                        f"and run {venv_command('tensorboard')} --logdir on it"]
    logdir = shlex.quote(f"{storage}/{experiment}")
    return lines + [f"TensorBoard: {venv_command('tensorboard')} --logdir {logdir} --host 127.0.0.1   (open "
                    "http://127.0.0.1:6006: one run per trial; train/loss per step, eval/progress_pct, metrics/*, "
                    "diagnostics/*)"]
