"""Sweep specs: validation errors with file:line, overrides and presets, grid expansion, keys, Parquet schema."""

import math
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from diad.errors import DiadError
from diad.sweep import results
from diad.sweep.plan import grid_points, interleave_by_training
from diad.sweep.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fake_backend import FakeBackend, RunConfig as FakeRunConfig  # noqa: E402

fake = FakeBackend()

SPEC = """\
name: t
base:
  data: {image_size: 32}
  train:
    steps: 4
arms:
  - {name: ldm, model.variant: ldm}
  - {name: diad, model.variant: diad}
axes:
  eval.backbone: [efficientnet_lite0, resnet18]
seeds: [0, 1]
"""


def _write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(path, overrides=(), backend=fake):
    with pytest.raises(DiadError) as info:
        spec, source = load_spec(path, list(overrides))
        grid_points(spec, source, backend)
    return str(info.value)


def test_unknown_top_level_key_names_file_line_and_allowed(tmp_path):
    path = _write(tmp_path, SPEC + "serach: {algorithm: optuna}\n")
    msg = _error(path)
    assert f"{path}:12: serach: unknown key; allowed: name, description, preset" in msg
    assert "search" in msg and "max_concurrent_trials" in msg


def test_bad_value_names_line_and_allowed_values(tmp_path):
    path = _write(tmp_path, SPEC + "search:\n  algorithm: bayes\n")
    msg = _error(path)
    assert msg.startswith(f"{path}:13: search.algorithm:")
    assert "'grid'" in msg and "'optuna'" in msg


def test_unknown_base_key_and_bad_axis_value_point_at_their_lines(tmp_path):
    path = _write(tmp_path, SPEC.replace("steps: 4", "stepz: 4"))
    msg = _error(path)
    assert msg.startswith(f"{path}:5: train.stepz:") and "unknown" in msg
    path = _write(tmp_path, SPEC.replace("[efficientnet_lite0, resnet18]", "[efficientnet_lite0, 7]"))
    assert _error(path).startswith(f"{path}:10: eval.backbone:")
    path = _write(tmp_path, SPEC.replace("model.variant: diad", "model.variant: dyad"))
    msg = _error(path)
    assert msg.startswith(f"{path}:8: model.variant:") and "'ldm'" in msg


def test_real_core_errors_also_point_at_the_line(tmp_path):
    from diad.sweep.backend import DiadBackend

    text = SPEC.replace("image_size: 32", "image_size: 64").replace("model.variant: diad", "model.variant: dyad")
    text = text.replace("[efficientnet_lite0, resnet18]", "[efficientnet_lite0]")  # resnet18 has no local weights
    path = _write(tmp_path, text)
    msg = _error(path, backend=DiadBackend())
    assert msg.startswith(f"{path}:8: model.variant:") and "'diad_authors'" in msg


def test_grid_distributions_and_asha_are_refused(tmp_path):
    path = _write(tmp_path, SPEC.replace("  eval.backbone: [efficientnet_lite0, resnet18]",
                                         "  train.lr: {loguniform: [1.0e-5, 1.0e-3]}"))
    assert "random or optuna" in _error(path)  # the grid search refuses a distribution
    path = _write(tmp_path, SPEC + "scheduler: {name: asha}\n")
    assert "asha needs search.algorithm random or optuna" in _error(path)


def test_overrides_presets_and_their_errors(tmp_path):
    text = SPEC + "presets:\n  gpu:\n    resources.gpu: 1\n    train.steps: 100\n"
    path = _write(tmp_path, text)
    spec, source = load_spec(path, ["train.lr=0.5", "seeds=[3]"])
    assert spec.base["train"] == {"steps": 4, "lr": 0.5} and spec.seeds == [3] and spec.resources.gpu == 0
    spec, source = load_spec(path, ["preset=gpu", "train.steps=7"])
    assert spec.resources.gpu == 1 and spec.base["train"]["steps"] == 7  # the command line wins
    assert "command line (train.steps=7)" in source.locate(("base", "train", "steps"))
    with pytest.raises(DiadError, match="preset 'tpu' is not defined; allowed: gpu"):
        load_spec(path, ["preset=tpu"])
    with pytest.raises(DiadError, match="expected key=value"):
        load_spec(path, ["train.steps"])
    msg = _error(path, ["resources.tpu=1"])
    assert msg.startswith("command line (resources.tpu=1): resources.tpu: unknown key; allowed: cpu, gpu")


def test_overriding_a_swept_key_is_refused_not_silently_replaced(tmp_path):
    path = _write(tmp_path, SPEC)
    with pytest.raises(DiadError, match=r"model.variant is swept by this spec's arms \(ldm, diad\)"):
        load_spec(path, ["model.variant=bogus"])
    with pytest.raises(DiadError, match="eval.backbone is swept by this spec's axes.eval.backbone"):
        load_spec(path, ["eval.backbone=resnet50"])
    spec, _ = load_spec(path, ["axes.eval.backbone=[resnet18]"])  # the axis itself may be overridden
    assert spec.axes["eval.backbone"] == ["resnet18"]


def test_grid_expansion_keys_and_order(tmp_path):
    spec, source = load_spec(_write(tmp_path, SPEC))
    points = grid_points(spec, source, fake)
    assert len(points) == 2 * 2 * 2
    assert points[0].label == "ldm backbone=efficientnet_lite0 seed=0"
    by = {(p.overrides["model.variant"], p.overrides["eval.backbone"], p.overrides["train.seed"]): p.keys
          for p in points}
    a, b = by[("ldm", "efficientnet_lite0", 0)], by[("ldm", "resnet18", 0)]
    assert a["train_hash"] == b["train_hash"] and a["eval_hash"] != b["eval_hash"]  # eval axis: one training
    c = by[("ldm", "efficientnet_lite0", 1)]
    assert c["config_hash"] == a["config_hash"] and c["run_key"] != a["run_key"]  # seeds share config_hash
    assert len({p.keys["run_key"] for p in points}) == 8 and len({p.keys["train_hash"] for p in points}) == 4
    ordered = interleave_by_training(points)
    assert len({p.keys["train_hash"] for p in ordered[:4]}) == 4  # the first wave needs four trainings


def test_result_file_schema_is_typed_and_stable(tmp_path):
    schema = results.schema_for(FakeRunConfig)
    assert schema.field("data.root").type == "string" and schema.field("train.kill_at_step").type == "int64"
    assert schema.field("eval.layers").type == pa.list_(pa.int64()) and schema.field("train.lr").type == "double"
    keys = {"trial_id": "t1", "run_key": "rk", "config_hash": "ch", "train_hash": "th", "eval_hash": "eh"}
    cfg = FakeRunConfig().model_dump(mode="json")
    flat = {f"{s}.{k}": v for s, d in cfg.items() for k, v in d.items()}
    per_cat = {"a": {"image_auroc": 0.5, "n_test_images": 3}, "mean": {"image_auroc": 0.5}}
    rows = results.make_rows(schema, keys, flat, per_cat, {"status": "ok", "train_cached": True})
    target = results.write_rows(str(tmp_path), "sw", "rk", rows, schema)
    table = pq.read_table(target)
    assert table.schema.equals(schema) and table.num_rows == 2
    row = table.to_pylist()[0]
    assert row["eval.layers"] == [1, 2, 3] and row["arm"] is None and row["data.root"] is None and math.isnan(row["pixel_aupro"])
    assert [p.name for p in Path(target).parent.iterdir()] == ["rk.parquet"]  # no temp file left behind
    failed = results.make_rows(schema, keys | {"run_key": "rk2"}, flat, None, {"status": "failed", "error": "x"})
    results.write_rows(str(tmp_path), "sw", "rk2", failed, schema)
    assert results.run_status(str(tmp_path), "sw") == {"rk": "ok", "rk2": "failed"}


def test_cli_turns_user_errors_into_one_line_and_exit_2(tmp_path):
    from click.testing import CliRunner

    from diad.sweep.cli import main

    path = _write(tmp_path, SPEC + "serach: {algorithm: optuna}\n")
    result = CliRunner().invoke(main, ["launch", str(path), "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 2 and result.output.startswith(f"error: {path}:12: serach: unknown key")
    result = CliRunner().invoke(main, ["status", "nope", "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "no sweep there" in result.output


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    from diad.sweep.plan import with_absolute_paths

    monkeypatch.chdir(tmp_path)
    text = SPEC.replace("data: {image_size: 32}", "data: {image_size: 32, root: data/set}")
    text = text.replace("- {name: diad, model.variant: diad}", "- {name: diad, model.variant: diad, data.root: other}")
    spec, _ = load_spec(_write(tmp_path, text))
    spec = with_absolute_paths(spec)
    assert spec.base["data"]["root"] == str(tmp_path / "data" / "set")
    assert spec.arms[1]["data.root"] == str(tmp_path / "other") and "data.root" not in spec.arms[0]


def test_result_files_on_a_uri_storage(tmp_path):
    schema = results.schema_for(FakeRunConfig)
    keys = {"trial_id": "t", "run_key": "rk", "config_hash": None, "train_hash": None, "eval_hash": None}
    rows = results.make_rows(schema, keys, {}, None, {"status": "failed", "error": "boom"})
    uri = f"file://{tmp_path}/store"
    assert results.write_rows(uri, "sw", "rk", rows, schema) == f"{uri}/results/sweep_id=sw/rk.parquet"
    assert (tmp_path / "store" / "results" / "sweep_id=sw" / "rk.parquet").is_file()
    assert results.run_status(uri, "sw") == {"rk": "failed"}
    assert results.read_rows(uri, "sw", run_key="rk").column("error").to_pylist() == ["boom"]
