"""Sweep machinery on Ray with the fake core (milliseconds per trial): train once, caches, failures, retries."""

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from diad.sweep import runner
from fake_backend import FakeBackend

FAKE = FakeBackend()

SPEC = """\
name: fake
base:
  data: {image_size: 32}
  train: {steps: 4, checkpoint_every: 2}
arms:
  - {name: ldm, model.variant: ldm}
  - {name: diad, model.variant: diad}
axes:
  eval.backbone: [efficientnet_lite0, resnet18]
resources: {cpu: 1}
max_failures: 2
"""


@pytest.fixture
def fake_sweep(tmp_path, monkeypatch, ray_session):
    """Write a spec for the fake core; returns (spec path, storage)."""

    def make(text=SPEC):
        path = tmp_path / "fake.yaml"
        path.write_text(textwrap.dedent(text))
        return str(path), str(tmp_path / "runs")

    return make


def _rows(storage):
    return pd.read_parquet(Path(storage) / "results")


def _lines(path):
    return Path(path).read_text().split()


def test_train_once_evaluate_many_then_relaunch_skips(fake_sweep):
    spec, storage = fake_sweep()
    summary = runner.launch(spec, storage=storage, dashboard=False, backend=FAKE)
    assert summary["points"] == 4 and summary["trainings"] == 2 and summary["errored"] == 0
    df = _rows(storage)
    assert len(df) == 4 * 3 and set(df["category"]) == {"a", "b", "mean"} and (df["status"] == "ok").all()
    cache = Path(storage) / "cache"
    starts = [_lines(p) for p in cache.glob("train/*/starts.txt")]
    assert sorted(starts) == [["0"], ["0"]]  # two trainings for four trials: each trained once
    assert len(_lines(cache / "recon" / "computed.txt")) == 2  # the backbone axis reused reconstructions
    mean = df[df["category"] == "mean"].set_index(["model.variant", "eval.backbone"])["image_auroc"]
    assert mean[("diad", "efficientnet_lite0")] == pytest.approx(0.9) and mean[("ldm", "resnet18")] == pytest.approx(0.65)
    assert df["train_cached"].sum() == 2 * 3 and df["recon_cached"].sum() == 2 * 3
    assert df["sweep_id"].astype(str).eq("fake").all() and df["run_key"].nunique() == 4
    assert df["config_hash"].nunique() == 4 and df["git_sha"].notna().all()
    again = runner.launch(spec, storage=storage, dashboard=False, backend=FAKE)
    assert again["ran"] == 0 and len(_rows(storage)) == 12  # nothing re-run, no duplicated rows
    status = runner.sweep_status("fake", storage)
    assert (status["ok"], status["failed"], status["pending"], status["trainings_cached"]) == (4, 0, 0, 2)


def test_a_raising_trial_is_recorded_and_the_rest_go_on(fake_sweep):
    text = SPEC.replace("- {name: ldm, model.variant: ldm}", "- {name: bad, model.variant: ldm, data.root: /x/broken}")
    spec, storage = fake_sweep(text)
    summary = runner.launch(spec, storage=storage, dashboard=False, backend=FAKE)
    assert summary["errored"] == 0  # recorded as failed rows, not Tune errors (no pointless retries)
    assert summary["failed"] == 2 and {f["trial"].split()[0] for f in summary["failed_trials"]} == {"bad"}
    assert all("cannot identify image file" in f["error"] for f in summary["failed_trials"])
    df = _rows(storage)
    failed = df[df["status"] == "failed"]
    assert len(failed) == 2 and set(failed["category"]) == {"mean"} and failed["image_auroc"].isna().all()
    assert failed["error"].str.contains("OSError: cannot identify image file").all()
    assert (df[df["status"] == "ok"]["model.variant"] == "diad").all() and (df["status"] == "ok").sum() == 6
    assert runner.sweep_status("fake", storage)["failed"] == 2


def test_killed_worker_is_retried_from_its_checkpoint(fake_sweep):
    text = SPEC.replace("train: {steps: 4, checkpoint_every: 2}", "train: {steps: 6, checkpoint_every: 2, kill_at_step: 3}")
    text = text.replace("  eval.backbone: [efficientnet_lite0, resnet18]", "  eval.backbone: [efficientnet_lite0]")
    spec, storage = fake_sweep(text)
    summary = runner.launch(spec, storage=storage, dashboard=False, backend=FAKE)
    assert summary["errored"] == 0
    df = _rows(storage)
    assert len(df) == 2 * 3 and (df["status"] == "ok").all()
    for out in (Path(storage) / "cache" / "train").iterdir():
        assert (out / "killed-once").exists()
        assert _lines(out / "starts.txt") == ["0", "2"]  # resumed at the step-2 checkpoint, not from 0


def test_optuna_search_with_asha_samples_configs(fake_sweep):
    text = SPEC.split("arms:")[0] + textwrap.dedent("""\
        axes:
          train.lr: {loguniform: [1.0e-5, 1.0e-2]}
          model.variant: [ldm, diad]
        search: {algorithm: optuna, num_samples: 3, metric: image_auroc, mode: max}
        scheduler: {name: asha, metric: train_loss, mode: min, grace_period: 50, max_t: 100}
        resources: {cpu: 1}
        """)
    spec, storage = fake_sweep(text)
    summary = runner.launch(spec, storage=storage, dashboard=False, backend=FAKE)
    assert summary["ran"] == 3 and summary["errored"] == 0
    df = _rows(storage)
    mean = df[df["category"] == "mean"]
    assert len(mean) == 3 and mean["train.lr"].between(1e-5, 1e-2).all() and mean["train.lr"].nunique() == 3
    assert set(mean["model.variant"]) <= {"ldm", "diad"} and (mean["status"] == "ok").all()


def test_status_and_ls_commands(fake_sweep):
    from click.testing import CliRunner

    from diad.sweep.cli import main

    spec, storage = fake_sweep(SPEC.replace("  eval.backbone: [efficientnet_lite0, resnet18]", "  eval.backbone: [resnet18]"))
    runner.launch(spec, storage=storage, dashboard=False, backend=FAKE)
    out = CliRunner().invoke(main, ["ls", "--storage", storage]).output
    assert out.splitlines()[1].split() == ["fake", "2", "0", "0", "2"]
    out = CliRunner().invoke(main, ["status", "fake", "--storage", storage, "--json"]).output
    assert '"ok": 2' in out and '"resumable": true' in out
