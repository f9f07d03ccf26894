"""Per-trial status records, readable without Ray: one small JSON per trial under <storage>/<sweep>/live/.

The driver writes them as Tune reports (diad.sweep.live.LiveStatus): state (queued / running / done / failed),
phase, step of total, last loss, evaluation stage, error and an ETA. `diad-sweep status` reads them through
pyarrow's file systems, so a local path and s3:// storage work alike, from any machine, while the sweep runs
or after it ended. Records carry the launch they belong to (sweep.json's "created"): a relaunch starts new
trials, and the table shows the newest launch only (the Parquet results count every launch).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pyarrow.fs as pafs

from diad.io import atomic_write_text
from diad.sweep.layout import filesystem, live_dir, storage_root

STATES = ("running", "queued", "done", "failed")  # the order of the sections of `diad-sweep status`
STALE_S = 600  # a running trial without news for this long is shown with its age (driver gone?)


def write_record(storage: str, sweep_id: str, record: dict) -> None:
    """Replace the trial's record: atomic rename locally; one PUT (atomic by itself) on object storage."""
    text = json.dumps(record, default=str, allow_nan=True)
    name = f"{record['key']}.json"  # diad.sweep.live.record_key
    if "://" not in storage:
        atomic_write_text(Path(live_dir(storage, sweep_id)) / name, text)
        return
    fs, path = filesystem(live_dir(storage, sweep_id))
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{name}") as f:
        f.write(text.encode())


def read_records(storage: str, sweep_id: str) -> list[dict]:
    """Every trial record of the sweep (all launches); unreadable or foreign files are skipped."""
    fs, path = filesystem(live_dir(storage, sweep_id))
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    out = []
    for info in infos:
        name = Path(info.path).name
        if info.type != pafs.FileType.File or not name.endswith(".json") or name.startswith("."):
            continue
        try:
            with fs.open_input_stream(info.path) as f:
                out.append(json.loads(f.read().decode()))
        except (OSError, ValueError):
            continue  # a record being replaced on a file system without atomic rename: next read has it
    return out


def current_trials(records: list[dict], now: float | None = None) -> list[dict]:
    """The newest launch's records, ordered running, queued, done, failed (then by name), each with eta_left_s."""
    if not records:
        return []
    launch = max(r.get("launch") or 0 for r in records)
    now = time.time() if now is None else now
    rows = [dict(r, eta_left_s=eta_left(r, now)) for r in records if (r.get("launch") or 0) == launch]
    order = {s: i for i, s in enumerate(STATES)}
    return sorted(rows, key=lambda r: (order.get(r.get("state"), 9), str(r.get("trial"))))


def eta_left(record: dict, now: float) -> float | None:
    """Seconds this trial still needs: the ETA the driver computed at its last update, less the time since."""
    eta = record.get("eta_s")
    if record.get("state") != "running" or eta is None or not math.isfinite(eta):
        return None
    return max(eta - (now - float(record.get("updated_at") or now)), 0.0)


def sweep_eta(trials: list[dict], now: float | None = None) -> float | None:
    """Rough seconds until the launch ends: the longest running trial, then the queue in waves of `running`.

    A finished trial's duration (the mean over this launch) stands in for a queued one and for a running trial
    without its own ETA; None while that is needed and no trial has finished yet.
    """
    now = time.time() if now is None else now
    running = [t for t in trials if t.get("state") == "running"]
    queued = sum(t.get("state") == "queued" for t in trials)
    durations = [t["finished_at"] - t["started_at"] for t in trials
                 if t.get("state") == "done" and not t.get("skipped") and t.get("finished_at") and t.get("started_at")]
    mean = sum(durations) / len(durations) if durations else None
    lefts = []
    for t in running:
        left = t.get("eta_left_s")
        if left is None and mean is not None:
            left = max(mean - (now - float(t.get("started_at") or now)), 0.0)
        if left is None:
            return None
        lefts.append(left)
    if queued and mean is None:
        return None
    return max(lefts, default=0.0) + math.ceil(queued / max(len(running), 1)) * (mean or 0.0)


def minutes(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _step(t: dict) -> str:
    step, total = t.get("step"), t.get("steps_total")
    if step is None:
        return "-"
    return f"{step}/{total}" if total else str(step)


def _loss(t: dict) -> str:
    loss = t.get("loss")
    return f"{loss:.4g}" if isinstance(loss, (int, float)) and math.isfinite(loss) else "-"


def _note(t: dict, now: float) -> str:
    """What the trial is doing (running), its headline metric (done) or its error (failed)."""
    state = t.get("state")
    if state == "failed":
        return t.get("error") or "(no message)"
    if state == "done":
        auroc = t.get("image_auroc")
        text = f"image_auroc {auroc:.3f}" if isinstance(auroc, (int, float)) and math.isfinite(auroc) else ""
        return f"{text} (finished in an earlier run)" if t.get("skipped") else text
    if state != "running":
        return ""
    if t.get("phase") == "eval":
        total = t.get("eval_total") or 0
        note = f"evaluating: {t.get('eval_stage')}" + (f" {t.get('eval_done')}/{total} images" if total > 1 else "")
    elif t.get("phase") == "retrying":
        note = "worker lost, retrying from its last checkpoint"
    else:
        note = "training" if t.get("step") is not None else "starting (or waiting for a shared training)"
    if t.get("eta_excludes_eval"):
        note += "; ETA without evaluation (none finished yet)"
    age = now - float(t.get("updated_at") or now)
    return note + (f"; no update for {minutes(age)}" if age > STALE_S else "")


def table(trials: list[dict], now: float | None = None) -> list[str]:
    """`diad-sweep status` lines: one section per state, one row per trial (trial, state, step, loss, ETA, note)."""
    now = time.time() if now is None else now
    header = ("trial (arm, seed)", "state", "step", "loss", "ETA", "doing / result / error")
    lines = []
    for state in STATES:
        group = [t for t in trials if t.get("state") == state]
        if not group:
            continue
        rows = [(str(t.get("trial")), state, _step(t), _loss(t),
                 minutes(t.get("eta_left_s")) if state == "running" else "", _note(t, now)) for t in group]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
        lines += ["", f"{state} ({len(group)})",
                  "  " + "  ".join([*(h.ljust(w) for h, w in zip(header, widths)), header[5]])]
        lines += ["  " + "  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[5]]).rstrip() for r in rows]
    return lines


def trials(sweep_id: str, storage: str | None = None) -> list[dict]:
    """The newest launch's trial records of a sweep (see current_trials); [] before any."""
    return current_trials(read_records(storage_root(storage), sweep_id))


def lines(summary: dict, trials: list[dict], now: float | None = None) -> list[str]:
    """The whole `diad-sweep status` text: result counts (all launches), then the newest launch's trials."""
    now = time.time() if now is None else now
    pending = "?" if summary.get("pending") is None else summary["pending"]
    out = [f"sweep {summary['sweep_id']}: {summary['ok']} ok, {summary['failed']} failed, {pending} pending runs; "
           f"{summary['trainings_cached']} trainings cached; results in {summary['results']}"]
    if not trials:
        return out + ["no trial records yet (they appear once `diad-sweep launch` starts the trials)"]
    counts = ", ".join(f"{sum(t.get('state') == s for t in trials)} {s}" for s in STATES)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(trials[0].get("launch") or 0))
    eta = sweep_eta(trials, now)
    tail = "" if eta == 0.0 else f"; ETA of the launch ~{minutes(eta)}" if eta is not None else \
        "; ETA of the launch: once a trial has finished"
    return out + [f"launch of {started}: {counts}{tail}", *table(trials, now)]
