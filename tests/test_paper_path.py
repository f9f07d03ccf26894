"""The paper profile's real path at tiny widths: configs/paper.yaml, SD weights from a diffusers folder, frozen SD
encoder, autoencoder stage + denoiser + evaluation (bench/bench_paper_full.py runs the same at SD-1.5 size)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from bench_paper_full import PAPER_YAML, TINY_IMAGE_SIZE, paper_overrides, write_images, write_random_sd15  # noqa: E402

from diad.config import load_run_config  # noqa: E402
from diad.pipeline import evaluate, train  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_paper_yaml_trains_and_evaluates_from_a_diffusers_folder(tmp_path):
    write_random_sd15(tmp_path / "sd15", tiny=True)
    write_images(tmp_path / "data", TINY_IMAGE_SIZE, n_train=4, n_test=4)
    cfg = load_run_config(PAPER_YAML, paper_overrides(tmp_path / "sd15", tmp_path / "data", True, 1, TINY_IMAGE_SIZE))
    assert cfg.model.profile == "paper" and not cfg.model.unet.encoder_trainable and cfg.model.variant == "diad"
    assert len(cfg.model.unet.block_out_channels) == 4 and len(cfg.model.autoencoder.block_out_channels) == 4
    result = train(cfg, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    assert result.steps == 2 and math.isfinite(result.final_loss)
    trained = load_file(str(result.checkpoint_dir / "model.safetensors"))
    start = load_file(str(tmp_path / "sd15" / "unet" / "diffusion_pytorch_model.safetensors"))
    frozen = [k for k in start if k.startswith(("down_blocks.", "mid_block.", "time_embedding.", "conv_in."))]
    decoder = [k for k in start if k.startswith("up_blocks.")]
    assert frozen and all(torch.equal(trained["unet." + k], start[k]) for k in frozen)  # the paper: SD encoder frozen
    assert sum(not torch.equal(trained["unet." + k], start[k]) for k in decoder) > len(decoder) // 2  # decoder trains
    ev = evaluate(result.checkpoint_dir, cache_dir=tmp_path / "cache", progress=False)
    assert ev.n_images["mean"] == 4 and cfg.eval.ddim_steps == 10 and cfg.eval.forward_steps == 1000  # the paper's
    assert all(math.isfinite(ev.per_category["mean"][m]) for m in ("image_auroc", "pixel_auroc", "pixel_aupro"))


@pytest.mark.slow
def test_bench_paper_full_tiny_runs_both_cli_commands(tmp_path):
    """The bench script itself (subprocesses, memory watchdog, results files), at tiny widths."""
    env = {**os.environ, "DIAD_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(BENCH / "bench_paper_full.py"), "--tiny", "--out-dir", str(tmp_path),
                           "--work", str(tmp_path / "work")], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads((tmp_path / "paper_full_cpu_tiny.json").read_text())
    assert out["ok"] and [c["name"] for c in out["commands"]] == ["train", "evaluate"]
    assert all(c["rc"] == 0 and c["peak_rss_gib"] > 0.1 and c["wall_s"] > 0 for c in out["commands"])
    assert out["train_result"]["steps"] == 2 and "image_auroc" in out["metrics_mean"]


def _gpu_check(tmp_path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "GPU_CHECK_TINY": "1", "PYTHON": sys.executable, "DIAD_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--out-dir", str(tmp_path), *extra], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    return proc, json.loads((tmp_path / "gpu_check_tiny.json").read_text())


@pytest.mark.slow
def test_gpu_check_tiny_cpu_mode(tmp_path):
    proc, out = _gpu_check(tmp_path)
    assert "paper-profile training:" in proc.stdout and "inference:" in proc.stdout and "smoke sweep: 4/4" in proc.stdout
    assert out["tiny"] and out["speed"]["train"]["images_per_s"] > 0 and out["speed"]["infer"]["full"]["images_per_s"] > 0
    assert out["sweep"]["trials"] == 4 and out["sweep"]["ok"] == 4


@pytest.mark.slow
def test_gpu_check_refuses_to_guess_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    env = {**os.environ, "GPU_CHECK_TINY": "0", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3 and "no GPU visible" in proc.stderr
