"""TensorBoard for sweeps: Ray Tune's own logger (TBXLoggerCallback) writing the scalars a user wants.

One run per trial, in the trial's directory (named by arm and seed, diad.sweep.live.trial_dirname): train/* per
training step, eval/progress_pct during evaluation, metrics/* and diagnostics/* (SG influence ...) at the end,
and an HPARAMS table of arm, grid values and metrics. Tune syncs the files to <storage>/<sweep>/<trial dir>/.
"""

from __future__ import annotations

from typing import Iterator

from ray.tune.logger import TBXLoggerCallback

from diad.schema import DIAG_TIMESTEPS, DIAGNOSTICS, METRICS
from diad.sweep.keys import SEED_KEYS
from diad.sweep.live import finite


def board_scalars(result: dict, eval_start_s: float | None) -> Iterator[tuple[str, float, int]]:
    """(tag, value, global step) for one Tune result: train/* per training step, eval/progress_pct per second of
    evaluation, metrics/* and diagnostics/* once at the end (at the final training step)."""
    phase, step = result.get("phase"), int(result.get("step") or 0)
    if phase == "train":
        for key, value in result.items():
            if key.startswith("train_") and key != "train_total_steps" and finite(value):
                yield f"train/{key[len('train_'):]}", float(value), step
    elif phase == "eval" and finite(result.get("eval_progress_pct")):
        seconds = float(result.get("time_total_s") or 0.0) - (eval_start_s or 0.0)
        yield "eval/progress_pct", float(result["eval_progress_pct"]), max(int(round(seconds)), 0)
    elif phase == "done":
        for m in METRICS:
            if finite(result.get(m)):
                yield f"metrics/{m}", float(result[m]), step
        for d in DIAGNOSTICS:
            if finite(result.get(d)):
                yield f"diagnostics/{d.removeprefix('diag_')}", float(result[d]), step


# The HPARAMS table's metric columns: the headline numbers (every metric and diagnostic is a scalar tag anyway).
HPARAM_METRICS = ("metrics/image_auroc", "metrics/pixel_auroc", "metrics/pixel_aupro",
                  *(f"diagnostics/sg_influence_t{t}" for t in DIAG_TIMESTEPS))


def hparams_of(trial) -> dict:
    """The trial's arm, seed and grid values for TensorBoard's HPARAMS table (ints and lists as text, so a seed
    reads "0", not "0.0000")."""
    point = trial.config.get("point", {})
    values = {**point.get("set", {}), **trial.config.get("sample", {})}
    out = {"arm": point.get("arm") or "", "seed": values.get(SEED_KEYS[0])}
    out.update({k: v for k, v in values.items() if k not in SEED_KEYS})
    return {k: v if isinstance(v, (bool, float, str)) else str(v) for k, v in out.items() if v is not None}


class TrialBoard(TBXLoggerCallback):
    """TBXLoggerCallback with our tags (not every numeric result key under ray/tune/) and an HPARAMS table.

    Writers live in each trial's driver-side dir; Tune syncs them to <storage>/<sweep>/<trial dir>/.
    """

    def __init__(self):
        super().__init__()
        self._eval_start: dict = {}  # trial -> its time_total_s when evaluation began (x axis of eval/progress_pct)

    def log_trial_result(self, iteration, trial, result):
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        if result.get("phase") == "eval":
            self._eval_start.setdefault(trial, float(result.get("time_total_s") or 0.0))
        writer = self._trial_writer[trial]
        for tag, value, step in board_scalars(result, self._eval_start.get(trial)):
            writer.add_scalar(tag, value, global_step=step)
            if result.get("phase") == "done":
                self._trial_result[trial][tag] = value
        writer.flush()

    def log_trial_end(self, trial, failed: bool = False):
        writer = self._trial_writer.pop(trial, None)
        metrics = self._trial_result.pop(trial, None)
        self._eval_start.pop(trial, None)
        if writer is None:
            return
        metrics = {tag: v for tag, v in (metrics or {}).items() if tag in HPARAM_METRICS}
        if metrics:
            from tensorboardX.summary import hparams

            for summary in hparams(hparam_dict=hparams_of(trial), metric_dict=metrics):
                writer.file_writer.add_summary(summary)
        writer.close()
