"""Train + evaluate end to end on a tiny synth set; caches of the autoencoder and the reconstructions."""

import json
import math

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from diad import pipeline
from diad.cli import cli
from diad.config import build_run_config
from diad.data import write_synth_dataset
from diad.metrics import IMAGE_METRICS, PIXEL_METRICS
from diad.pipeline.reconstruction import reconstruct_images
from test_train import TINY_MODEL


@pytest.fixture(scope="module", autouse=True)
def diad_cache(tmp_path_factory):
    threads = torch.get_num_threads()  # pipeline.train sets train.num_threads process-wide
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIAD_CACHE", str(tmp_path_factory.mktemp("diad_cache")))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, diad_cache):
    """One tiny run: 2 categories x (6 train, 4 test) at 64 px, 2 AE steps, 2 denoiser steps."""
    tmp = tmp_path_factory.mktemp("pipe")
    root = write_synth_dataset(tmp / "synth", ["brick", "elpv_mono"], 6, 4, 64, 0)
    cfg = build_run_config({"data": {"root": str(root), "val_fraction": 0.2}, "model": TINY_MODEL,
                            "train": {"steps": 2, "batch_size": 2, "autoencoder": {"steps": 2, "batch_size": 2},
                                      "checkpoint_every": 1, "num_threads": 1},
                            "eval": {"ddim_steps": 2, "batch_size": 3}})
    seen = []
    result = pipeline.train(cfg, tmp / "run", cache_dir=tmp / "cache", progress=False,
                            on_checkpoint=lambda step, path, m: seen.append((step, path.name, sorted(m))))
    return cfg, result, tmp, seen


def test_train_result_and_checkpoint_callbacks(trained):
    cfg, result, tmp, seen = trained
    assert result.steps == 2 and result.checkpoint_dir.name == "step-00000002"
    assert not result.ae_cached and result.wall_s > 0 and result.peak_mem_mb > 0
    assert math.isfinite(result.final_loss) and math.isfinite(result.val_loss)
    assert [s[:2] for s in seen] == [(1, "step-00000001"), (2, "step-00000002")]
    assert {"loss", "val_loss", "images_per_s", "total_steps"} <= set(seen[0][2])
    model, loaded_cfg = pipeline.load_trained(result.checkpoint_dir)
    assert loaded_cfg == cfg and not model.training
    assert float(model.latent_scale) != 1.0  # estimated from the autoencoder trained from scratch


def test_second_training_reuses_the_autoencoder_and_a_finished_run(trained):
    cfg, result, tmp, _ = trained
    other = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": 2e-3, "steps": 1})})
    again = pipeline.train(other, tmp / "run2", cache_dir=tmp / "cache", progress=False)
    assert again.ae_cached
    done = pipeline.train(cfg, tmp / "run", cache_dir=tmp / "cache", progress=False)  # nothing left to do
    assert done.checkpoint_dir == result.checkpoint_dir and done.steps == 2


def test_prepare_autoencoder_makes_the_stage_train_then_reuses(trained, tmp_path):
    cfg, _, _, _ = trained
    cache = tmp_path / "cache"
    assert not pipeline.prepare_autoencoder(cfg, cache)  # trained now, where the sweep layer looks for it
    assert (cache / "autoencoders" / pipeline.autoencoder_key(cfg) / "state.json").is_file()
    assert pipeline.prepare_autoencoder(cfg, cache)
    one_step = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 1})})
    assert pipeline.train(one_step, tmp_path / "run", cache_dir=cache, progress=False).ae_cached
    no_stage = cfg.model_copy(update={"train": cfg.train.model_copy(
        update={"autoencoder": cfg.train.autoencoder.model_copy(update={"steps": 0})})})
    assert pipeline.autoencoder_key(no_stage) is None and pipeline.prepare_autoencoder(no_stage, cache)


def test_evaluate_metrics_and_reconstruction_cache(trained):
    cfg, result, tmp, _ = trained
    events = []
    first = pipeline.evaluate(result.checkpoint_dir, cache_dir=tmp / "cache",
                              on_progress=lambda *event: events.append(event))
    assert not first.recon_cached
    # eval batch 3 of 8 images: each stage starts at 0 and counts to its total (what a sweep's status shows)
    assert events == [("reconstruct", n, 8) for n in (0, 3, 6, 8)] + [("score", n, 8) for n in (0, 3, 6, 8)] + [
        ("metrics", 0, 1), ("diagnostics", 0, 1), ("diagnostics", 1, 1)]
    assert set(first.per_category) == {"brick", "elpv_mono", "mean"}
    assert first.n_images == {"brick": 4, "elpv_mono": 4, "mean": 8}
    for metrics in first.per_category.values():
        assert set(IMAGE_METRICS + PIXEL_METRICS) <= set(metrics)
        assert all(0.0 <= v <= 1.0 for v in metrics.values()), metrics
    p = first.protocol
    assert p["resolution"] == 64 and p["score_rule"] == "max" and first.backbone_weights == "packaged"
    assert p["mask_rule"] and p["pro_definition"]
    # a second evaluation reuses the reconstructions; another eval batch size does not change them
    eval2 = cfg.eval.model_copy(update={"batch_size": 8})
    second = pipeline.evaluate(result.checkpoint_dir, cfg.data, eval2, cache_dir=tmp / "cache")
    assert second.recon_cached
    for cat, metrics in first.per_category.items():  # backbone batches differ: float noise only
        assert second.per_category[cat] == pytest.approx(metrics, rel=1e-4, abs=1e-5)


def test_reconstruction_does_not_depend_on_batch_size(trained):
    _, result, _, _ = trained
    model, cfg = pipeline.load_trained(result.checkpoint_dir)
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    keys = ["a", "b", "c"]
    recon = cfg.eval.recon.model_copy(update={"forward_steps": 1000, "ddim_steps": 2})
    one = reconstruct_images(model, x, keys, recon, 1, torch.device("cpu"))
    three = reconstruct_images(model, x, keys, recon, 3, torch.device("cpu"))
    assert (one.int() - three.int()).abs().max() <= 1  # uint8 rounding of float noise across batch shapes


def test_cli_evaluate_and_predict_write_files(trained, monkeypatch):
    cfg, result, tmp, _ = trained
    runner = CliRunner()
    out = tmp / "eval"
    res = runner.invoke(cli, ["evaluate", str(tmp / "run"), "eval.score_rule=max", "--out", str(out),
                              "--cache-dir", str(tmp / "cache"), "--no-progress"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["recon_cached"] and doc["protocol"]["score_rule"] == "max"
    table = pq.read_table(out / "metrics.parquet").to_pylist()
    assert {r["category"] for r in table} == {"brick", "elpv_mono", "mean"}
    assert all(0 <= r["image_auroc"] <= 1 for r in table)
    res = runner.invoke(cli, ["predict", str(result.checkpoint_dir), "--out", str(tmp / "png"), "--limit", "3",
                              "--cache-dir", str(tmp / "cache")])
    assert res.exit_code == 0, res.output
    pngs = sorted((tmp / "png").glob("*.png"))
    assert len(pngs) == 3 and {p.name.split("_")[0] for p in pngs} == {"brick", "elpv"}


def test_evaluate_reports_diagnostics_and_the_cli_writes_them(trained):
    from diad.schema import DIAGNOSTICS

    cfg, result, tmp, _ = trained
    ev = pipeline.evaluate(result.checkpoint_dir, cache_dir=tmp / "cache")
    assert tuple(ev.diagnostics) == DIAGNOSTICS
    assert ev.diagnostics["diag_ae_floor_l1"] > 0 and ev.diagnostics["diag_recon_l1_defect"] >= 0
    res = CliRunner().invoke(cli, ["diagnose", str(tmp / "run"), "--out", str(tmp / "diag"),
                                   "--cache-dir", str(tmp / "cache"), "--no-progress"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp / "diag" / "diagnostics.json").read_text())
    assert doc["diagnostics"] == pytest.approx(ev.diagnostics) and "diag_sg_influence_t999" in res.output
