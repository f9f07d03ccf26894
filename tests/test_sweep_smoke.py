"""sweeps/smoke.yaml on the real core: the CLI launch, and the three reliability promises.

A killed worker resumes from its checkpoint; a killed driver plus `diad-sweep resume` loses and duplicates
no rows; a trial that raises (an unreadable image) is a failed row while the rest of the sweep goes on.
"""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from diad.sweep import runner
from diad.sweep.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "sweeps" / "smoke.yaml")
pytest.importorskip("diad.pipeline")


def _rows(storage, sweep_id):
    return pd.read_parquet(Path(storage) / "results" / f"sweep_id={sweep_id}")


def _no_lost_no_duplicated(df, n_runs):
    assert df["run_key"].nunique() == n_runs and (df["status"] == "ok").all()
    assert df.groupby(["run_key", "category"]).size().max() == 1
    assert set(df["category"]) == {"brick", "mean"}


@pytest.fixture(scope="module")
def smoke_storage(ray_session, tmp_path_factory):
    """`diad-sweep launch sweeps/smoke.yaml` once for the module (the session's Ray is reused)."""
    storage = tmp_path_factory.mktemp("smoke") / "runs"
    result = CliRunner().invoke(main, ["launch", SMOKE, "--storage", str(storage), "--no-dashboard"])
    assert result.exit_code == 0, result.output
    return storage, result.output


def test_launch_smoke_writes_one_row_per_category_and_relaunch_skips(smoke_storage):
    storage, output = smoke_storage
    assert '"errored": 0' in output and "2/2 done" in output
    df = _rows(storage, "smoke")
    _no_lost_no_duplicated(df, 2)
    assert set(df["model.variant"]) == {"ldm", "diad"} and (df["train.steps"] == 3).all()
    assert (df["protocol.resolution"] == 64).all() and df["protocol.pro_definition"].str.startswith("AU-PRO").all()
    assert (df["backbone_weights"] == "packaged").all() and (df["n_test_images"] > 0).all()
    assert df["image_auroc"].between(0, 1).all() and (df["train_wall_s"] > 0).all()
    result = CliRunner().invoke(main, ["launch", SMOKE, "--storage", str(storage), "--no-dashboard"])
    assert result.exit_code == 0 and '"ran": 0' in result.output and "2 already finished" in result.output
    assert len(_rows(storage, "smoke")) == len(df)


def test_unreadable_image_fails_its_trial_and_the_rest_go_on(smoke_storage, tmp_path):
    storage, _ = smoke_storage
    from diad.config import build_run_config
    from diad.data import ensure_default_dataset

    spec = yaml.safe_load(Path(SMOKE).read_text())
    data = ensure_default_dataset(build_run_config(spec["base"], SMOKE).data)  # the set the sweep generated
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    next((broken / "brick" / "train" / "good").iterdir()).write_bytes(b"not an image")
    spec["arms"] += [{"name": "unreadable", "model.variant": "ldm", "data.root": str(broken)},
                     {"name": "ldm_topk", "model.variant": "ldm", "eval.score_rule": "topk_mean"}]
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(spec))
    summary = runner.launch(str(path), storage=str(storage), dashboard=False)
    assert summary["ran"] == 2 and summary["errored"] == 0  # the first two arms were done already
    df = _rows(storage, "smoke")
    failed = df[df["status"] == "failed"]
    assert len(failed) == 1 and failed["error"].iloc[0].count("broken") >= 1
    ok = df[df["status"] == "ok"]
    assert ok["run_key"].nunique() == 3 and ok.groupby(["run_key", "category"]).size().max() == 1
    assert ok[ok["eval.score_rule"] == "topk_mean"]["train_cached"].all()  # evaluation-only arm reused the training


def test_killed_worker_resumes_training_from_its_checkpoint(ray_session, tmp_path, monkeypatch):
    from kill_backend import KillOnceBackend

    summary = runner.launch(SMOKE, ["name=smoke_kill"], storage=str(tmp_path), dashboard=False,
                            backend=KillOnceBackend())
    assert summary["errored"] == 0
    _no_lost_no_duplicated(_rows(tmp_path, "smoke_kill"), 2)
    for out in (tmp_path / "cache" / "train").iterdir():
        assert (out / "killed-at").read_text() == "1"
        assert (out / "starts.txt").read_text().split() == ["0", "1"]  # the retry started at step 1, not 0


def test_killed_driver_then_resume_loses_and_duplicates_nothing(ray_session, tmp_path):
    import ray

    # One trial at a time and a longer training, so the kill lands mid-sweep even on a fast, idle machine.
    cmd = [sys.executable, "-m", "diad.sweep.cli", "launch", SMOKE, "name=smoke_driver", "max_concurrent_trials=1",
           "train.steps=60", "--storage", str(tmp_path), "--address", ray.get_runtime_context().gcs_address,
           "--no-dashboard"]
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    tail = lambda: log.read_text()[-3000:]  # noqa: E731  (the driver's own words when something goes wrong)
    deadline = time.time() + 240
    while not list(tmp_path.glob("smoke_driver/*/checkpoint_*")) and time.time() < deadline:
        assert driver.poll() is None, "the driver ended before its first checkpoint:\n" + tail()
        time.sleep(0.5)
    time.sleep(1.0)  # let Tune snapshot its experiment state
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert len(list(tmp_path.glob("results/sweep_id=smoke_driver/*.parquet"))) < 2, tail()  # killed mid-sweep
    result = CliRunner().invoke(main, ["resume", "smoke_driver", "--storage", str(tmp_path), "--no-dashboard"])
    assert result.exit_code == 0, result.output + "\n--- driver before the kill ---\n" + tail()
    _no_lost_no_duplicated(_rows(tmp_path, "smoke_driver"), 2)
    status = runner.sweep_status("smoke_driver", str(tmp_path))
    assert (status["ok"], status["failed"], status["pending"]) == (2, 0, 0)
