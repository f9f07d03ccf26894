"""The `diad` CLI: help texts, synth data, and one-line user errors with exit code 2."""

import pytest
from click.testing import CliRunner

from diad.cli import cli


@pytest.fixture(autouse=True)
def diad_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAD_CACHE", str(tmp_path / "diad_cache"))


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_user_error(res, *fragments):
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    for f in fragments:
        assert f in lines[0], lines[0]


def test_help_lists_commands():
    res = invoke("--help")
    assert res.exit_code == 0
    for name in ("data", "train", "evaluate", "predict"):
        assert name in res.output


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {profile: cpu}\ntrain: {steps: 1}\n")
    return path


def test_missing_config_file(tmp_path):
    assert_user_error(invoke("train", tmp_path / "nope.yaml", "--out", tmp_path / "o"), "nope.yaml", "not found")


def test_typo_key(config, tmp_path):
    assert_user_error(invoke("train", config, "train.stpes=3", "--out", tmp_path / "o"),
                      "run.yaml", "train.stpes", "allowed:", "steps")


def test_bad_value(config, tmp_path):
    assert_user_error(invoke("train", config, "model.variant=best", "--out", tmp_path / "o"),
                      "model.variant", "'diad'")


def test_missing_dataset_dir(config, tmp_path):
    assert_user_error(invoke("train", config, "data.format=mvtec", f"data.root={tmp_path / 'nodata'}",
                             "--out", tmp_path / "o"), "nodata")


def test_missing_checkpoint(tmp_path):
    assert_user_error(invoke("evaluate", tmp_path / "nockpt", "--out", tmp_path / "o"), "nockpt")


def test_evaluate_refuses_model_overrides(tmp_path):
    (tmp_path / "state.json").write_text("{}")
    assert_user_error(invoke("evaluate", tmp_path, "model.sff=none", "--out", tmp_path / "o"),
                      "data.* and eval.*")


def test_data_synth(tmp_path):
    out = tmp_path / "synth"
    res = invoke("data", "synth", out, "--size", 32, "--train-per-category", 1, "--test-per-category", 2,
                 "--categories", "brick")
    assert res.exit_code == 0, res.output
    assert len(list((out / "brick" / "train" / "good").glob("*.png"))) == 1
    assert_user_error(invoke("data", "synth", out, "--categories", "brick"), "already exists")
