"""Sweep efficiency: trainings vs grid points, wall time vs independent runs, share of time outside train/eval.

Reads finished sweeps (result Parquet + the Tune experiment dir + the training cache) under a storage root,
or runs them first with --run (each spec through `diad-sweep launch`, its wall time measured here; with
--together all specs in ONE `diad-sweep launch`, one Tune experiment over the union of their points).

    .venv/bin/python bench/bench_sweep.py --run sweeps/ablation.yaml sweeps/timesteps.yaml --storage /tmp/sw
    .venv/bin/python bench/bench_sweep.py --together --run sweeps/ablation.yaml sweeps/timesteps.yaml \
        sweeps/feature_layers.yaml sweeps/backbones.yaml --storage /tmp/sw4 --num-cpus 2   # one launch
    .venv/bin/python bench/bench_sweep.py ablation timesteps --storage /tmp/sw   # already run
    .venv/bin/python bench/bench_sweep.py ablation+timesteps --storage /tmp/sw4  # a one-launch group, already run
    .venv/bin/python bench/bench_sweep.py --smoke                                # hand-built example

Definitions (k = trial slots = concurrent trials the sweep could run; W = sweep wall time):
- independent cost of a grid point = its training (denoiser + the autoencoder stage, even when the sweep reused a
  cached autoencoder; data loading left out, so a lower bound) + its evaluation including the reconstruction (for a
  trial that reused cached reconstructions: the evaluation time of the trial that computed them, if larger); the
  sum is what running every point alone costs.
- busy = trainings actually run (a training that reused a cached autoencoder: its denoiser time) + every trial's
  evaluation (seconds of work). Lock waits = waiting for another trial's training or autoencoder.
- Ray+bookkeeping share = (k (W - span) + in-trial overhead) / (k W), span = first trial start to last trial end:
  Ray start-up/shut-down (all slots idle) plus, inside trials, trial time minus its train/eval work minus the time
  it waited on another trial's training lock (worker start-up and imports, Tune reporting, checkpoint hand-off,
  result writing).
- share outside train/eval = 1 - busy / (k W): the above plus lock waits and idle slots (fewer runnable trials than
  slots, e.g. every point of a one-training sweep waits for that training). Reported, not the goal's measure.
- one launch of several specs (a group, `<storage>/<a+b>/group.json`): W, span, slots and the shares are the
  group's (one row "one launch: ..."); each member's own row has only its counts, independent sum and busy
  seconds (its time columns are the group's, so they are left blank).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from benchlib import RESULTS_DIR, markdown_table, write_results

ROW_COLUMNS = ["trial_id", "run_key", "train_hash", "category", "status", "train_wall_s", "eval_wall_s",
               "train_cached", "recon_cached", "eval.forward_steps", "eval.ddim_steps", "eval.seed"]


# ---- reading a finished sweep -------------------------------------------------------------------------

def read_trials(storage: Path, sweep_id: str) -> list[dict]:
    """One dict per finished "ok" trial: the "mean" row of its result file (the keys in ROW_COLUMNS)."""
    files = sorted((storage / "results" / f"sweep_id={sweep_id}").glob("*.parquet"))
    trials = []
    for f in files:
        rows = pq.read_table(f, columns=[c for c in ROW_COLUMNS if c in pq.read_schema(f).names]).to_pylist()
        mean = next((r for r in rows if r["category"] == "mean"), rows[0] if rows else None)
        if mean is not None and mean["status"] == "ok":
            trials.append(mean)
    return trials


def read_tune_times(experiment: Path) -> dict[str, dict]:
    """{trial_id: {"start", "end", "total_s"}} from each trial's result.json (JSON lines) in the Tune dir."""
    out = {}
    for path in experiment.glob("*/result.json"):
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        if not lines:
            continue
        last = lines[-1]
        out[last["trial_id"]] = {"end": float(last["timestamp"]), "total_s": float(last["time_total_s"]),
                                 "start": float(last["timestamp"]) - float(last["time_total_s"])}
    return out


def read_trainings(cache_dir: Path) -> dict[str, dict]:
    """{train_hash: {"wall_s", "denoiser_s", "ae_cached", "ae_wall_s"}} from the sweep's training cache.

    wall_s is the whole `train` call: data loading, the autoencoder stage (trained, or waited for when another
    trial held its lock) and the denoiser; denoiser_s and ae_wall_s come from the checkpoint's metrics.
    """
    out = {}
    for res in cache_dir.glob("train/*/train_result.json"):
        info = json.loads(res.read_text())
        state = Path(info["checkpoint_dir"]) / "state.json"
        metrics = json.loads(state.read_text()).get("metrics", {}) if state.is_file() else {}
        wall, cached = float(info["wall_s"]), bool(info.get("ae_cached"))
        ae_wall = float(metrics.get("ae_wall_s", 0.0) or 0.0)
        denoiser = float(metrics.get("wall_s", wall - (0.0 if cached else ae_wall)))
        out[res.parent.name] = {"wall_s": wall, "denoiser_s": denoiser, "ae_cached": cached, "ae_wall_s": ae_wall}
    return out


def _training_costs(tr: dict) -> tuple[float, float, float]:
    """(cost alone, work done in the sweep, waiting for a cached autoencoder) of one training record.

    Alone, a training pays its autoencoder and denoiser (data loading left out: a lower bound). In the sweep, a
    training that reused a cached autoencoder did only the denoiser; the rest of its wall time was mostly spent
    waiting on the autoencoder lock (counted with the lock waits, not as work or overhead).
    """
    alone = tr["denoiser_s"] + tr["ae_wall_s"]
    if not tr["ae_cached"]:
        return alone, tr["wall_s"], 0.0
    return alone, tr["denoiser_s"], max(0.0, tr["wall_s"] - tr["denoiser_s"])


# ---- the figures --------------------------------------------------------------------------------------

def _recon_group(t: dict) -> tuple:
    return (t["train_hash"], t.get("eval.forward_steps"), t.get("eval.ddim_steps"), t.get("eval.seed"))


def _lock_waits(trials: list[dict], tune_times: dict[str, dict]) -> dict[str, float]:
    """{trial_id: seconds it waited for another trial to finish the training it reuses} (from Tune's timestamps).

    The training trial j finished training at about end_j - eval_j; a trial i reusing it waited for the overlap
    of its own interval with [start_i, that moment].
    """
    trained_at = {t["train_hash"]: tune_times[t["trial_id"]]["end"] - t["eval_wall_s"]
                  for t in trials if not t["train_cached"] and t["trial_id"] in tune_times}
    waits = {}
    for t in trials:
        tt = tune_times.get(t["trial_id"])
        if t["train_cached"] and tt is not None and t["train_hash"] in trained_at:
            waits[t["trial_id"]] = max(0.0, min(tt["end"], trained_at[t["train_hash"]]) - tt["start"])
    return waits


def summarize(trials: list[dict], trainings: dict[str, dict], tune_times: dict[str, dict], wall_s: float,
              slots: int, span_s: float) -> dict:
    """The sweep-efficiency figures of one sweep (or several run back to back: their union, summed W and span).

    span_s: first trial start to last trial end (the rest of W is Ray start-up and shut-down).
    """
    computed_eval: dict[tuple, float] = {}
    for t in trials:
        if not t["recon_cached"]:
            g = _recon_group(t)
            computed_eval[g] = max(computed_eval.get(g, 0.0), t["eval_wall_s"])
    waits = _lock_waits(trials, tune_times)
    independent, busy, in_trial_work = 0.0, 0.0, 0.0
    for t in trials:
        tr = trainings.get(t["train_hash"], {"wall_s": t["train_wall_s"], "denoiser_s": t["train_wall_s"],
                                             "ae_cached": False, "ae_wall_s": 0.0})
        train_alone, train_work, ae_wait = _training_costs(tr)
        eval_alone = max(t["eval_wall_s"], computed_eval.get(_recon_group(t), 0.0))
        independent += train_alone + eval_alone
        work = (0.0 if t["train_cached"] else train_work) + t["eval_wall_s"]
        busy += work
        if not t["train_cached"] and t["trial_id"] in tune_times:
            waits[t["trial_id"]] = waits.get(t["trial_id"], 0.0) + ae_wait
        if t["trial_id"] in tune_times:
            in_trial_work += work
    trial_total = sum(tune_times[t["trial_id"]]["total_s"] for t in trials if t["trial_id"] in tune_times)
    capacity = slots * wall_s
    lock_wait = sum(waits.values())
    in_trial_overhead = trial_total - in_trial_work - lock_wait
    startup = slots * (wall_s - span_s)  # every slot idle while Ray starts and stops
    return {
        "grid_points": len(trials),
        "trainings_run": sum(not t["train_cached"] for t in trials),
        "distinct_trainings": len({t["train_hash"] for t in trials}),
        "reconstructions_computed": sum(not t["recon_cached"] for t in trials),
        "wall_s": wall_s, "span_s": span_s, "slots": slots,
        "independent_sum_s": independent,
        "speedup_vs_independent_serial": independent / wall_s if wall_s else math.nan,
        "speedup_vs_independent_same_slots": independent / capacity if capacity else math.nan,
        "busy_s": busy,
        "trial_time_s": trial_total,
        "ray_startup_slot_s": startup,
        "in_trial_overhead_s": in_trial_overhead,
        "lock_wait_s": lock_wait,
        "idle_slot_s": slots * span_s - trial_total,
        "ray_bookkeeping_share": (startup + in_trial_overhead) / capacity if capacity else math.nan,
        "share_outside_train_eval": 1.0 - busy / capacity if capacity else math.nan,
    }


def _slots(specs: list[dict], num_cpus: int | None) -> int:
    """Trial slots: CPUs // the largest per-trial CPU reservation, capped by the smallest max_concurrent_trials."""
    cpus = num_cpus or os.cpu_count() or 1
    by_cpu = max(1, int(cpus // max(s["resources"]["cpu"] for s in specs)))
    limits = [s["max_concurrent_trials"] for s in specs if s.get("max_concurrent_trials")]
    return min([by_cpu, *limits])


def _timing(tune_times: dict[str, dict], created: float, wall_s: float | None) -> tuple[float, float]:
    """(wall, span): wall measured, else `created` to the last trial end; span first trial start to last end."""
    ends = [v["end"] for v in tune_times.values()]
    span = (max(ends) - min(v["start"] for v in tune_times.values())) if ends else math.nan
    if wall_s is None:
        wall_s = (max(ends) - created) if ends else math.nan
    return wall_s, span


def load_sweep(storage: Path, sweep_id: str, wall_s: float | None, slots: int | None,
               num_cpus: int | None = None) -> dict:
    """The inputs of `summarize` for one finished sweep (wall: measured, else sweep.json 'created' to last trial end)."""
    meta = json.loads((storage / sweep_id / "sweep.json").read_text())
    tune_times = read_tune_times(storage / sweep_id)
    wall_s, span = _timing(tune_times, float(meta["created"]), wall_s)
    return {"trials": read_trials(storage, sweep_id), "trainings": read_trainings(Path(meta["cache_dir"])),
            "tune_times": tune_times, "wall_s": wall_s, "slots": slots or _slots([meta["spec"]], num_cpus),
            "span_s": span}


def is_group(storage: Path, name: str) -> bool:
    return (storage / name / "group.json").is_file()


_GROUP_TIME_KEYS = ("wall_s", "span_s", "speedup_vs_independent_serial", "speedup_vs_independent_same_slots",
                    "trial_time_s", "ray_startup_slot_s", "in_trial_overhead_s", "lock_wait_s", "idle_slot_s",
                    "ray_bookkeeping_share", "share_outside_train_eval")


def analyse_group(storage: Path, name: str, wall_s: float | None, slots: int | None,
                  num_cpus: int | None = None) -> list[dict]:
    """Figures of one multi-spec launch: a row per member (counts and work only) and the group's row."""
    meta = json.loads((storage / name / "group.json").read_text())
    members = list(meta["members"])
    tune_times = read_tune_times(storage / name)
    wall_s, span = _timing(tune_times, float(meta["created"]), wall_s)
    slots = slots or _slots(list(meta["members"].values()), num_cpus)
    trainings = read_trainings(Path(meta["cache_dir"]))
    trials = {m: read_trials(storage, m) for m in members}
    rows = []
    for m in members:
        row = summarize(trials[m], trainings, {}, math.nan, slots, math.nan)
        rows.append({"sweep": f"{m} (in {name})", **row, **{k: math.nan for k in _GROUP_TIME_KEYS}})
    row = summarize([t for m in members for t in trials[m]], trainings, tune_times, wall_s, slots, span)
    return rows + [{"sweep": "one launch: " + " + ".join(members), **row}]


def analyse(storage: Path, sweep_id: str, wall_s: float | None, slots: int | None, num_cpus: int | None = None) -> dict:
    """Figures of one finished sweep under `storage`."""
    return {"sweep": sweep_id, **summarize(**load_sweep(storage, sweep_id, wall_s, slots, num_cpus))}


def analyse_together(storage: Path, sweep_ids: list[str], walls: dict[str, float], slots: int | None,
                     num_cpus: int | None = None) -> dict:
    """Figures of several sweeps run one after the other: union of their trials, summed wall time."""
    parts = [load_sweep(storage, s, walls.get(s), slots, num_cpus) for s in sweep_ids]
    if len({p["slots"] for p in parts}) != 1:
        raise SystemExit(f"sweeps {sweep_ids} have different trial slots; give --slots")
    trainings = {k: v for p in parts for k, v in p["trainings"].items()}
    tune_times = {k: v for p in parts for k, v in p["tune_times"].items()}
    row = summarize([t for p in parts for t in p["trials"]], trainings, tune_times,
                    sum(p["wall_s"] for p in parts), parts[0]["slots"], sum(p["span_s"] for p in parts))
    return {"sweep": "together: " + " + ".join(sweep_ids), **row}


def run_sweep(specs: list[str], storage: Path, num_cpus: int | None, overrides: list[str],
              cache_dir: Path | None) -> tuple[str, float]:
    """`diad-sweep launch SPEC...` in a subprocess; -> (sweep id or group name, wall seconds measured around it)."""
    cmd = [sys.executable, "-m", "diad.sweep.cli", "launch", *specs, *overrides, "--storage", str(storage),
           "--no-dashboard"] + (["--num-cpus", str(num_cpus)] if num_cpus else []) + \
        (["--cache-dir", str(cache_dir)] if cache_dir else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}")
    summary = json.loads(proc.stdout[proc.stdout.index("{\n"):proc.stdout.rindex("}") + 1])
    return summary["sweep_id"], wall


# ---- smoke: a hand-built sweep whose figures are known -------------------------------------------------

def smoke_example() -> dict:
    """3 grid points sharing 2 trainings (60 s + 40 s), evals of 10 s (one reuses reconstructions: 2 s), 2 slots.

    Timeline (Tune timestamps): a trains h1 0..60 then evaluates; b starts at 1, waits for h1 until 60, evaluates;
    c trains h2 and evaluates 65..116. Ray starts 5 s before the first trial and stops 4 s after the last.
    """
    trials = [
        {"trial_id": "a", "train_hash": "h1", "train_wall_s": 60.0, "eval_wall_s": 10.0, "train_cached": False,
         "recon_cached": False, "eval.forward_steps": 1000, "eval.ddim_steps": 10, "eval.seed": 0},
        {"trial_id": "b", "train_hash": "h1", "train_wall_s": 60.0, "eval_wall_s": 2.0, "train_cached": True,
         "recon_cached": True, "eval.forward_steps": 1000, "eval.ddim_steps": 10, "eval.seed": 0},
        {"trial_id": "c", "train_hash": "h2", "train_wall_s": 40.0, "eval_wall_s": 10.0, "train_cached": False,
         "recon_cached": False, "eval.forward_steps": 1000, "eval.ddim_steps": 10, "eval.seed": 0},
    ]
    trainings = {"h1": {"wall_s": 60.0, "denoiser_s": 55.0, "ae_cached": False, "ae_wall_s": 5.0},
                 "h2": {"wall_s": 40.0, "denoiser_s": 40.0, "ae_cached": True, "ae_wall_s": 5.0}}
    tune_times = {"a": {"start": 0.0, "end": 71.0, "total_s": 71.0}, "b": {"start": 1.0, "end": 64.0, "total_s": 63.0},
                  "c": {"start": 65.0, "end": 116.0, "total_s": 51.0}}
    return {"sweep": "smoke-example", **summarize(trials, trainings, tune_times, wall_s=125.0, slots=2, span_s=116.0)}


# ---- report -------------------------------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    header = ["sweep", "grid points", "trainings run", "recons computed", "slots", "wall s",
              "independent sum s", "x vs independent (serial)", "x (same slots)", "busy s",
              "Ray start/stop slot-s", "in-trial overhead s", "lock wait s", "idle slot-s",
              "Ray+bookkeeping share", "share outside train/eval"]
    keys = ["sweep", "grid_points", "trainings_run", "reconstructions_computed", "slots", "wall_s",
            "independent_sum_s", "speedup_vs_independent_serial", "speedup_vs_independent_same_slots", "busy_s",
            "ray_startup_slot_s", "in_trial_overhead_s", "lock_wait_s", "idle_slot_s", "ray_bookkeeping_share",
            "share_outside_train_eval"]
    return markdown_table(header, [[r[k] for k in keys] for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweeps", nargs="*", help="sweep ids (or one-launch group names, a+b) already run under --storage")
    ap.add_argument("--run", nargs="+", default=[], metavar="SPEC", help="launch these sweep specs first")
    ap.add_argument("--together", action="store_true",
                    help="launch every --run spec in ONE `diad-sweep launch` (one Ray session, one Tune experiment)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every --run spec")
    ap.add_argument("--storage", type=Path, default=Path("runs"))
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="one training/reconstruction cache for every --run sweep (sweeps then share trainings)")
    ap.add_argument("--num-cpus", type=int, default=None)
    ap.add_argument("--slots", type=int, default=None, help="trial slots (default: from the spec and the CPUs)")
    ap.add_argument("--wall", action="append", default=[], metavar="SWEEP=SECONDS",
                    help="a wall time measured around an earlier launch (default for sweeps read from disk: "
                         "sweep.json's creation to the last trial's end)")
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--tag", default="")
    ap.add_argument("--smoke", action="store_true", help="the hand-built example only (no Ray)")
    args = ap.parse_args(argv)
    storage = args.storage.expanduser().resolve()
    rows, walls = [], {}
    given = {k: float(v) for k, _, v in (w.partition("=") for w in args.wall)}
    if args.smoke:
        rows.append(smoke_example())
    for specs in ([args.run] if args.together and args.run else [[spec] for spec in args.run]):
        sweep_id, wall = run_sweep(specs, storage, args.num_cpus, args.set, args.cache_dir)
        walls[sweep_id] = wall
        print(f"{' '.join(specs)}: {sweep_id} ran in {wall:.0f} s", flush=True)
    ids = [*walls, *args.sweeps]
    walls = given | walls
    for sweep_id in ids:
        if is_group(storage, sweep_id):
            rows.extend(analyse_group(storage, sweep_id, walls.get(sweep_id), args.slots, args.num_cpus))
        else:
            rows.append(analyse(storage, sweep_id, walls.get(sweep_id), args.slots, args.num_cpus))
    singles = [s for s in ids if not is_group(storage, s)]
    if len(singles) > 1:
        rows.append(analyse_together(storage, singles, walls, args.slots, args.num_cpus))
    if not rows:
        ap.error("give sweep ids, --run SPEC ... or --smoke")
    md = table(rows)
    print(md)
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="bench-smoke-")) if args.smoke else RESULTS_DIR)
    js, _ = write_results(f"sweep{args.tag}", {"rows": rows, "storage": str(storage), "measured_walls": walls,
                                               "args": vars(args) | {"out_dir": str(out_dir)}}, md, out_dir)
    print(f"wrote {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
