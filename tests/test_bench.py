"""Smoke tests of the bench scripts (their --smoke modes, in-process) and the PatchCore-style baseline."""

import json
import math
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_quality  # noqa: E402
import bench_speed  # noqa: E402
import bench_sweep  # noqa: E402
import probe_profile  # noqa: E402
from patchcore import PatchCore  # noqa: E402

from diad.scoring import load_backbone  # noqa: E402


def _texture(n: int, seed: int) -> torch.Tensor:
    """(n,3,64,64) smooth grey stripes with a little noise: a 'normal' texture."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(64).float()
    stripes = 0.5 + 0.2 * torch.sin(x / 3.0)[None, None, None, :].expand(n, 3, 64, 64)
    return (stripes + 0.02 * torch.randn(n, 3, 64, 64, generator=g)).clamp(0, 1)


def test_patchcore_finds_the_defect():
    """A bright square on the normal texture: higher image score, and the map peaks inside the square."""
    model = PatchCore(load_backbone("efficientnet_lite0", layers=(2, 3)), sigma=2.0).fit(_texture(6, 0))
    test = _texture(2, 1)
    test[1, :, 36:50, 8:22] = 1.0
    maps, scores = model.predict(test)
    assert maps.shape == (2, 64, 64) and scores.shape == (2,)
    assert scores[1] > 1.5 * scores[0]
    y, x = divmod(int(maps[1].argmax()), 64)
    assert 30 <= y < 56 and 2 <= x < 28
    # a random coreset keeps the requested share of the memory bank
    half = PatchCore(model.extractor, coreset_fraction=0.5).fit(_texture(6, 0))
    assert len(half.bank) == round(0.5 * len(model.bank))
    assert torch.isin(half.bank[:, 0], model.bank[:, 0]).all()  # a subset of the full bank's vectors


def test_quality_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAD_CACHE", str(tmp_path / "cache"))
    assert bench_quality.main(["--smoke", "--methods", "patchcore,diad", "--out-dir", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "quality_synth_64px.json").read_text())
    assert set(out["results"]) == {"patchcore", "diad"}
    for method in ("patchcore", "diad"):
        mean = out["results"][method]["metrics"]["mean"]
        assert 0.0 <= mean["image_auroc"] <= 1.0 and 0.0 <= mean["pixel_aupro"] <= 1.0
    assert out["results"]["diad"]["info"]["train_steps"] == 2
    assert set(out["results"]["diad"]["info"]["diagnostics"]) >= {"diag_sg_influence_t600", "diag_ae_floor_l1"}
    assert list(out["results"]["diad"]["per_seed"]) == ["0"]  # JSON keys are strings
    md = (tmp_path / "quality_synth_64px.md").read_text()
    assert "| patchcore |" in md and "Mean ± std over seeds" in md


def test_probe_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAD_CACHE", str(tmp_path / "cache"))
    assert probe_profile.main(["--smoke", "--sigma", "0,2", "--out-dir", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "probe_synth.json").read_text())
    assert [(r["sigma"], r["rule"]) for r in out["records"]] == [(0.0, "max"), (2.0, "max")]
    assert "diag_hint_sensitivity" in out["records"][0]


def test_speed_smoke(tmp_path):
    assert bench_speed.main(["--smoke", "--out-dir", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "speed.json").read_text())
    (row,) = out["rows"]
    assert row["profile"] == "cpu" and row["train"]["images_per_s"] > 0
    full, rec = row["infer"]["2"]["full"], row["infer"]["2"]["reconstruct"]  # JSON keys are strings
    assert 0 < full["images_per_s"] <= rec["images_per_s"]  # end to end includes the reconstruction


def test_speed_gpu_part_skips_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_speed.gpu_skip_reason(no_gpu=False).startswith("GPU part skipped: no GPU")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert bench_speed.gpu_skip_reason(no_gpu=False) is None


def test_sweep_smoke_figures(tmp_path):
    assert bench_sweep.main(["--smoke", "--out-dir", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    assert row["grid_points"] == 3 and row["trainings_run"] == 2
    assert row["independent_sum_s"] == pytest.approx(195.0)  # 70 + 70 + (40 + 5 AE + 10)
    assert row["busy_s"] == pytest.approx(122.0)  # 60 + 10, 2, 40 + 10
    assert row["lock_wait_s"] == pytest.approx(60.0)  # b waited from 1 until h1 was trained at 71 - 10
    assert row["in_trial_overhead_s"] == pytest.approx(185.0 - 122.0 - 60.0)
    assert row["ray_bookkeeping_share"] == pytest.approx((2 * 9.0 + 3.0) / 250.0)
    assert row["share_outside_train_eval"] == pytest.approx(1 - 122 / 250)


def test_sweep_reads_a_finished_sweep_from_disk(tmp_path):
    """Result Parquet + Tune result.json + training cache + sweep.json -> the same figures as in memory."""
    storage, cache = tmp_path / "runs", tmp_path / "runs" / "s1" / "cache"
    (storage / "s1").mkdir(parents=True)
    (storage / "s1" / "sweep.json").write_text(json.dumps(
        {"created": 1000.0, "cache_dir": str(cache), "spec": {"resources": {"cpu": 1}, "max_concurrent_trials": 1}}))
    res_dir = storage / "results" / "sweep_id=s1"
    res_dir.mkdir(parents=True)
    for tid, cached, train_s, eval_s, total, end in [("t1", False, 50.0, 8.0, 60.0, 1065.0),
                                                     ("t2", True, 50.0, 8.0, 9.0, 1075.0)]:
        rows = [{"trial_id": tid, "run_key": f"k{tid}", "train_hash": "h", "category": c, "status": "ok",
                 "train_wall_s": train_s, "eval_wall_s": eval_s, "train_cached": cached, "recon_cached": False,
                 "eval.forward_steps": 1000, "eval.ddim_steps": 5 if tid == "t1" else 10, "eval.seed": 0}
                for c in ("a", "mean")]
        pq.write_table(pa.Table.from_pylist(rows), res_dir / f"k{tid}.parquet")
        (storage / "s1" / tid).mkdir()
        (storage / "s1" / tid / "result.json").write_text(
            json.dumps({"trial_id": tid, "timestamp": end - total + 1, "time_total_s": 1.0}) + "\n"
            + json.dumps({"trial_id": tid, "timestamp": end, "time_total_s": total}) + "\n")
    ck = cache / "train" / "h" / "checkpoints" / "step-1"
    ck.mkdir(parents=True)
    (ck / "state.json").write_text(json.dumps({"metrics": {"ae_wall_s": 4.0, "wall_s": 46.0}}))
    (cache / "train" / "h" / "train_result.json").write_text(
        json.dumps({"checkpoint_dir": str(ck), "wall_s": 50.0, "ae_cached": False}))
    row = bench_sweep.analyse(storage, "s1", wall_s=None, slots=None)
    assert row["wall_s"] == pytest.approx(75.0)  # created 1000 -> last trial end 1075
    assert row["slots"] == 1 and row["trainings_run"] == 1 and row["grid_points"] == 2
    assert row["independent_sum_s"] == pytest.approx(2 * (50.0 + 8.0))
    assert row["busy_s"] == pytest.approx(50.0 + 8.0 + 8.0)
    assert row["span_s"] == pytest.approx(70.0) and row["lock_wait_s"] == 0.0
    assert row["in_trial_overhead_s"] == pytest.approx(69.0 - 66.0)
    assert row["ray_bookkeeping_share"] == pytest.approx((5.0 + 3.0) / 75.0)
    assert row["share_outside_train_eval"] == pytest.approx(1 - 66.0 / 75.0)


def test_sweep_reads_a_one_launch_group_from_disk(tmp_path):
    """Two member sweeps run as one Tune experiment "g+h": member h reuses g's training (waits for it)."""
    storage, cache = tmp_path / "runs", tmp_path / "runs" / "cache"
    spec = {"resources": {"cpu": 1}, "max_concurrent_trials": 2}
    (storage / "g+h").mkdir(parents=True)
    (storage / "g+h" / "group.json").write_text(json.dumps(
        {"created": 1000.0, "cache_dir": str(cache), "members": {"g": spec, "h": spec}}))
    for sweep, tid, cached, total, end in [("g", "t1", False, 60.0, 1065.0), ("h", "t2", True, 69.0, 1075.0)]:
        res_dir = storage / "results" / f"sweep_id={sweep}"
        res_dir.mkdir(parents=True)
        rows = [{"trial_id": tid, "run_key": f"k{tid}", "train_hash": "h", "category": "mean", "status": "ok",
                 "train_wall_s": 50.0, "eval_wall_s": 8.0, "train_cached": cached, "recon_cached": False,
                 "eval.forward_steps": 1000 if sweep == "g" else 500, "eval.ddim_steps": 10, "eval.seed": 0}]
        pq.write_table(pa.Table.from_pylist(rows), res_dir / f"k{tid}.parquet")
        (storage / "g+h" / tid).mkdir()
        (storage / "g+h" / tid / "result.json").write_text(
            json.dumps({"trial_id": tid, "timestamp": end, "time_total_s": total}) + "\n")
    ck = cache / "train" / "h" / "checkpoints" / "step-1"
    ck.mkdir(parents=True)
    (ck / "state.json").write_text(json.dumps({"metrics": {"ae_wall_s": 4.0, "wall_s": 46.0}}))
    (cache / "train" / "h" / "train_result.json").write_text(
        json.dumps({"checkpoint_dir": str(ck), "wall_s": 50.0, "ae_cached": False}))
    out = tmp_path / "out"
    assert bench_sweep.main(["g+h", "--storage", str(storage), "--num-cpus", "2", "--out-dir", str(out)]) == 0
    g, h, both = json.loads((out / "sweep.json").read_text())["rows"]
    assert (g["sweep"], h["sweep"], both["sweep"]) == ("g (in g+h)", "h (in g+h)", "one launch: g + h")
    assert (g["trainings_run"], h["trainings_run"], both["trainings_run"], both["grid_points"]) == (1, 0, 1, 2)
    assert g["busy_s"] == pytest.approx(58.0) and h["busy_s"] == pytest.approx(8.0) and math.isnan(h["wall_s"])
    assert both["wall_s"] == pytest.approx(75.0) and both["span_s"] == pytest.approx(70.0) and both["slots"] == 2
    assert both["lock_wait_s"] == pytest.approx(51.0)  # h waited from 1006 until g's training ended at 1065 - 8
    assert both["in_trial_overhead_s"] == pytest.approx(129.0 - 66.0 - 51.0)
    assert both["ray_bookkeeping_share"] == pytest.approx((2 * 5.0 + 12.0) / 150.0)
