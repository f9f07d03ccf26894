"""Following a sweep live: TensorBoard runs named by arm, `diad-sweep status`, the progress stream, token hints."""

import contextlib
import io
import json
import re
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from diad.sweep import board, live, runner, trialstate
from fake_backend import FakeBackend

SPEC = """\
name: live
base:
  data: {image_size: 32}
  train: {steps: 6, checkpoint_every: 2, step_s: 0.25}
arms:
  - {name: ldm, model.variant: ldm}
  - {name: diad, model.variant: diad}
  - {name: bad, model.variant: ldm, data.root: /x/broken}
max_concurrent_trials: 1
resources: {cpu: 1}
"""


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def live_sweep(ray_session, tmp_path_factory):
    """One fake sweep (one trial at a time), its stdout, and snapshots of `status` taken while it ran."""
    import ray

    tmp = tmp_path_factory.mktemp("live")
    spec, storage = tmp / "live.yaml", str(tmp / "runs")
    spec.write_text(textwrap.dedent(SPEC))
    snapshots, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            snapshots.append(trialstate.trials("live", storage))
            time.sleep(0.1)

    poller = threading.Thread(target=poll)
    poller.start()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            summary = runner.launch(str(spec), storage=storage, dashboard=False, backend=FakeBackend())
    finally:
        stop.set()
        poller.join()
    logs = Path(ray_session.address_info["session_dir"]) / "logs"
    assert ray.is_initialized()
    return summary, storage, out.getvalue(), snapshots, logs


def test_status_shows_running_apart_from_queued_then_done_and_failed(live_sweep):
    summary, storage, _, snapshots, _ = live_sweep
    assert summary["ran"] == 3 and summary["failed"] == 1
    mid = [s for s in snapshots if any(t["state"] == "running" and t.get("step") for t in s)
           and any(t["state"] == "queued" for t in s)]
    assert mid, "no snapshot caught a training trial while others were queued"
    running = next(t for t in mid[-1] if t["state"] == "running")
    assert running["steps_total"] == 6 and 2 <= running["step"] <= 6 and running["loss"] > 0
    assert [t["state"] for t in mid[-1]].index("running") < [t["state"] for t in mid[-1]].index("queued")
    final = {t["trial"]: t for t in trialstate.trials("live", storage)}
    assert {k: v["state"] for k, v in final.items()} == {"ldm": "done", "diad": "done", "bad": "failed"}
    assert final["diad"]["step"] == 6 and final["diad"]["image_auroc"] == pytest.approx(0.9)
    assert "cannot identify image file" in final["bad"]["error"]

    from click.testing import CliRunner

    from diad.sweep.cli import main

    text = CliRunner().invoke(main, ["status", "live", "--storage", storage]).output
    assert "sweep live: 2 ok, 1 failed, 0 pending runs" in text and "done (2)" in text and "failed (1)" in text
    row = next(line.split() for line in text.splitlines() if line.strip().startswith("diad "))
    assert row[:4] == ["diad", "done", "6/6", "0.1667"] and "0.900" in row
    assert "cannot identify image file" in next(line for line in text.splitlines() if line.strip().startswith("bad"))
    doc = json.loads(CliRunner().invoke(main, ["status", "live", "--storage", storage, "--json"]).output)
    assert doc["ok"] == 2 and doc["resumable"] is True and len(doc["trials"]) == 3 and doc["eta_s"] == 0.0


def test_tensorboard_runs_are_named_by_arm_with_the_expected_scalars(live_sweep):
    _, storage, _, _, _ = live_sweep
    runs = {p.name.split("_")[0]: p for p in (Path(storage) / "live").iterdir() if list(p.glob("events.out.*"))}
    assert set(runs) == {"ldm", "diad", "bad"}
    diad = _scalars(runs["diad"])
    assert diad["train/loss"] == [(2, 0.5), (4, 0.25), (6, pytest.approx(1 / 6))]
    assert diad["metrics/image_auroc"] == [(6, pytest.approx(0.9))] and "metrics/pixel_auroc" in diad
    progress = [v for _, v in diad["eval/progress_pct"]]
    assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 100.0
    assert not any(tag.startswith("ray/tune") for tag in diad)  # only our tags, not every numeric result key
    assert not any(tag.startswith("metrics/") for tag in _scalars(runs["bad"]))  # failed: NaN metrics skipped


def test_progress_stream_shows_evaluation_and_no_checkpoint_noise(live_sweep):
    _, _, out, _, logs = live_sweep
    assert "ldm: evaluating: reconstruct 0/8 images" in out and "diad: evaluating: diagnostics" in out
    assert "ldm: finished, image_auroc 0.700" in out
    worker_out = "".join(p.read_text(errors="replace") for p in logs.glob("worker-*.out"))
    worker_err = "".join(p.read_text(errors="replace") for p in logs.glob("worker-*.err"))
    assert ":actor_name:diad" in worker_out  # we read this sweep's worker logs: its trials renamed their prefix
    assert "Checkpoint successfully created" not in worker_err + worker_out


def test_status_table_orders_states_and_estimates(tmp_path):
    now = 1000.0
    old = {"trial_id": "o", "trial": "old", "launch": 1.0, "state": "running", "updated_at": 1.0}
    recs = [
        {"trial_id": "q", "trial": "msg seed=0", "launch": 2.0, "state": "queued"},
        {"trial_id": "r", "trial": "ldm seed=1", "launch": 2.0, "state": "running", "phase": "train", "step": 100,
         "steps_total": 300, "loss": 0.0412, "eta_s": 300.0, "updated_at": now - 60, "started_at": now - 200},
        {"trial_id": "d", "trial": "ldm seed=0", "launch": 2.0, "state": "done", "step": 300, "steps_total": 300,
         "image_auroc": 0.64, "started_at": now - 700, "finished_at": now - 100},
        {"trial_id": "f", "trial": "bad seed=0", "launch": 2.0, "state": "failed", "error": "OSError: broken"},
        old,
    ]
    for r in recs:
        trialstate.write_record(str(tmp_path), "s", dict(r, key=r["trial_id"]))
    trials = trialstate.current_trials(trialstate.read_records(str(tmp_path), "s"), now)
    assert [t["state"] for t in trials] == ["running", "queued", "done", "failed"]  # the old launch is left out
    assert trials[0]["eta_left_s"] == 240.0  # the driver's 300 s, less the minute since its update
    assert trialstate.sweep_eta(trials, now) == 240.0 + 600.0  # then the queued trial, as long as the done one
    summary = {"sweep_id": "s", "ok": 1, "failed": 1, "pending": 2, "trainings_cached": 1, "results": "r"}
    text = "\n".join(trialstate.lines(summary, trials, now))
    assert text.index("running (1)") < text.index("queued (1)") < text.index("done (1)") < text.index("failed (1)")
    assert "ETA of the launch ~14.0 min" in text and "ldm seed=1" in text and "100/300" in text
    assert "4.0 min" in text and "image_auroc 0.640" in text and "OSError: broken" in text
    stale = dict(recs[1], updated_at=now - 3600, eta_s=None)
    assert "no update for 60.0 min" in trialstate.table(trialstate.current_trials([stale], now), now)[-1]


def test_board_scalars_hparams_and_eval_events():
    train = {"phase": "train", "step": 40, "train_loss": 0.5, "train_val_loss": float("nan"), "train_total_steps": 300}
    assert list(board.board_scalars(train, None)) == [("train/loss", 0.5, 40)]
    ev = {"phase": "eval", "eval_progress_pct": 25.0, "time_total_s": 130.4}
    assert list(board.board_scalars(ev, 100.0)) == [("eval/progress_pct", 25.0, 30)]
    done = {"phase": "done", "step": 300, "image_auroc": 0.7, "pixel_aupro": float("nan"),
            "diag_sg_influence_t999": 0.02}
    assert list(board.board_scalars(done, None)) == [("metrics/image_auroc", 0.7, 300),
                                                    ("diagnostics/sg_influence_t999", 0.02, 300)]
    from types import SimpleNamespace

    trial = SimpleNamespace(trial_id="t", config={"point": {"label": "diad seed=1", "arm": "diad", "set": {
        "model.variant": "diad", "train.seed": 1, "eval.seed": 1, "eval.layers": [1, 2]}}})
    assert board.hparams_of(trial) == {"arm": "diad", "seed": "1", "model.variant": "diad", "eval.layers": "[1, 2]"}
    sent = []
    events = live.EvalEvents(sent.append, every_s=3600)
    for done_n in range(9):
        events("reconstruct", done_n, 8)
    events("score", 0, 8)
    assert [(e["eval_stage"], e["eval_done"]) for e in sent] == [("reconstruct", 0), ("reconstruct", 8), ("score", 0)]
    assert [e["eval_progress_pct"] for e in sent] == [0.0, 25.0, 25.0]


def test_dashboard_token_hint_names_commands_that_work(tmp_path, monkeypatch):
    token = tmp_path / "auth_token"
    token.write_text("tok-4f2a9c")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    from diad.sweep.token import dashboard_note

    note = dashboard_note()
    commands = re.findall(r"`([^`]+)`", note)
    assert str(token) in note and len(commands) == 2
    for command in commands:  # exactly as printed, without an activated venv
        out = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120,
                             env={"RAY_AUTH_TOKEN_PATH": str(token), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert out.stdout.strip() == "tok-4f2a9c", (command, out.stderr[-500:])
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert "DISABLED" in dashboard_note()


def test_next_steps_are_runnable_commands(tmp_path):
    lines = live.next_steps("ablation", str(tmp_path))
    report, status, board = lines
    assert report.startswith("report: ") and f"report ablation --storage {tmp_path}" in report
    assert f"--logdir {tmp_path}/ablation --host 127.0.0.1" in board
    for line in lines:
        exe = line.split()[1]
        assert Path(exe).is_absolute() and Path(exe).exists(), line  # the venv's own, not whatever is on PATH
    assert "s3://b/runs/ablation/<trial>/" in live.next_steps("ablation", "s3://b/runs")[-1]


def test_a_launch_group_writes_each_members_trials_under_its_own_sweep(ray_session, tmp_path):
    specs = []
    for name, variant in (("ga", "ldm"), ("gb", "diad")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\nbase:\n  train: {{steps: 2, checkpoint_every: 1}}\n"
                        f"arms:\n  - {{name: {variant}, model.variant: {variant}}}\nresources: {{cpu: 1}}\n")
        specs.append(str(path))
    storage = str(tmp_path / "runs")
    with contextlib.redirect_stdout(io.StringIO()):
        summary = runner.launch(specs, storage=storage, dashboard=False, backend=FakeBackend())
    assert summary["sweep_id"] == "ga+gb" and summary["ran"] == 2
    for name, arm in (("ga", "ldm"), ("gb", "diad")):
        (trial,) = trialstate.trials(name, storage)  # the member's own point, not the group's "ga/ldm" label
        assert (trial["trial"], trial["state"], trial["step"], trial["sweep"]) == (arm, "done", 2, name)
    lines = live.next_steps("ga+gb", storage, ["ga", "gb"])
    assert [line.split()[2:4] for line in lines[:4]] == [["report", "ga"], ["status", "ga"], ["report", "gb"],
                                                          ["status", "gb"]]
    assert f"--logdir {storage}/ga+gb " in lines[-1]
