"""A stand-in backend for the diad core (diad.sweep.backend.Backend) that runs in milliseconds.

Sweep tests pass `FakeBackend()` to runner.launch; Ray workers unpickle it by module name (conftest puts
tests/ on PYTHONPATH). It leaves traces the tests read: `starts.txt` (the step each training started from),
`recon/computed.txt` (one line per reconstruction actually computed) and `recon/cpus.txt` (per evaluation:
its backbone and the CPUs Ray reserved for the trial). With $FAKE_BACKEND_LOG set, every
call that does work appends one line there too ("ae <key>", "train <hash> <start step>", "trained <hash>"),
wherever the worker runs. Its shared stage (one fake autoencoder per data config) must be in the cache before
train() runs, as the sweep layer promises.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from diad.errors import validation_error
from diad.hashing import json_hash
from diad.io import atomic_dir
from diad.pipeline.records import EvalResult, TrainResult


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_S):
    format: Literal["synth", "folder"] = "synth"
    root: str | None = None
    image_size: int = 32
    categories: list[str] | None = None


class ModelConfig(_S):
    profile: Literal["cpu", "paper"] = "cpu"
    variant: Literal["ldm", "msg", "sgeb4", "diad"] = "diad"


class TrainConfig(_S):
    steps: int = 4
    checkpoint_every: int = 2
    lr: float = 1e-4
    seed: int = 0
    step_s: float = 0.02
    kill_at_step: int | None = None  # SIGKILL the worker once at this step (worker-loss test)


class EvalConfig(_S):
    backbone: str = "efficientnet_lite0"
    layers: list[int] = [1, 2, 3]
    forward_steps: int = 1000
    ddim_steps: int = 10
    sigma: float = 4.0
    seed: int = 0


class RunConfig(_S):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()


class FakeBackend:
    config_class = RunConfig

    def build(self, raw: dict, source: str) -> RunConfig:
        """Like diad.config.build_run_config: one-line DiadError 'source: key: problem'."""
        try:
            return RunConfig.model_validate(raw)
        except ValidationError as e:
            raise validation_error(e, RunConfig, source) from None

    def parts(self, run_cfg: RunConfig) -> tuple[dict, dict]:
        dump = run_cfg.model_dump(mode="json")
        return {k: dump[k] for k in ("data", "model", "train")}, {"eval": dump["eval"]}

    def prepare(self, run_cfg: RunConfig) -> None:
        pass

    def autoencoder_key(self, run_cfg: RunConfig) -> str:
        return json_hash(run_cfg.data.model_dump(mode="json"), 12)  # every arm and seed shares it

    def prepare_autoencoder(self, run_cfg: RunConfig, cache_dir: Path) -> None:
        key = self.autoencoder_key(run_cfg)
        with atomic_dir(Path(cache_dir) / "autoencoders" / key) as tmp:
            (tmp / "state.json").write_text(json.dumps({"key": key}))
        _log(f"ae {key}")

    def recon_key(self, checkpoint_dir: Path, run_cfg: RunConfig) -> str:
        ev = run_cfg.eval
        return f"{Path(checkpoint_dir).parent.name}-{ev.forward_steps}-{ev.ddim_steps}-{ev.seed}"

    def train(self, run_cfg: RunConfig, out_dir: Path, cache_dir: Path, on_checkpoint=None) -> TrainResult:
        ae = Path(cache_dir) / "autoencoders" / self.autoencoder_key(run_cfg) / "state.json"
        if not ae.is_file():
            raise RuntimeError(f"{ae}: the shared stage is not in this node's cache")
        result = _train(run_cfg, out_dir, on_checkpoint)
        _log(f"trained {Path(out_dir).name}")
        return result

    def evaluate(self, checkpoint_dir: Path, run_cfg: RunConfig, cache_dir: Path, on_progress=None) -> EvalResult:
        for stage, total in (("reconstruct", 8), ("score", 8), ("metrics", 1), ("diagnostics", 1)):
            for done in range(total + 1):  # the events the real core sends
                if on_progress:
                    on_progress(stage, done, total)
        return _evaluate(self.recon_key(checkpoint_dir, run_cfg), run_cfg, cache_dir)


def _log(line: str) -> None:
    path = os.environ.get("FAKE_BACKEND_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def _train(run_cfg: RunConfig, out_dir: Path, on_checkpoint=None) -> TrainResult:
    """Counts steps, checkpoints a JSON state, resumes from it; raises on a 'broken' data root."""
    if run_cfg.data.root and "broken" in run_cfg.data.root:
        raise OSError(f"cannot identify image file '{run_cfg.data.root}/good/000.png'")
    ckpt = Path(out_dir) / "checkpoint"
    state = ckpt / "state.json"
    start = json.loads(state.read_text())["step"] if state.exists() else 0
    with open(Path(out_dir) / "starts.txt", "a") as f:
        f.write(f"{start}\n")
    _log(f"train {Path(out_dir).name} {start}")
    t0 = time.time()
    cfg = run_cfg.train
    for step in range(start + 1, cfg.steps + 1):
        time.sleep(cfg.step_s)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            ckpt.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({"step": step}))
            if on_checkpoint:
                on_checkpoint(step, ckpt, {"loss": 1.0 / step, "total_steps": cfg.steps})
        marker = Path(out_dir) / "killed-once"
        if cfg.kill_at_step == step and not marker.exists():
            marker.write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)
    return TrainResult(checkpoint_dir=ckpt, steps=cfg.steps, wall_s=time.time() - t0, images_per_s=10.0,
                       peak_mem_mb=1.0, final_loss=1.0 / cfg.steps, val_loss=None, ae_cached=False)


def _assigned_cpus() -> float | None:
    import ray

    return ray.get_runtime_context().get_assigned_resources().get("CPU") if ray.is_initialized() else None


def _evaluate(key: str, run_cfg: RunConfig, cache_dir: Path) -> EvalResult:
    """Scores that depend on variant and backbone; reconstructions cached per (checkpoint, T, steps, seed)."""
    ev = run_cfg.eval
    recon_dir = Path(cache_dir) / "recon"
    recon = recon_dir / key
    cached = recon.exists()
    if not cached:
        recon.mkdir(parents=True)
        with open(recon_dir / "computed.txt", "a") as f:
            f.write(key + "\n")
    with open(recon_dir / "cpus.txt", "a") as f:  # the CPUs Ray reserved for this trial
        f.write(f"{ev.backbone} {_assigned_cpus()}\n")
    base = {"ldm": 0.7, "msg": 0.8, "sgeb4": 0.85, "diad": 0.9}[run_cfg.model.variant]
    base -= 0.05 * (ev.backbone != "efficientnet_lite0")
    cats = {c: {"image_auroc": base + d, "pixel_auroc": base} for c, d in (("a", 0.01), ("b", -0.01))}
    cats["mean"] = {"image_auroc": base, "pixel_auroc": base}
    protocol = {"resolution": run_cfg.data.image_size, "mask_rule": "> 0", "score_rule": "max",
                "pro_definition": "fake"}
    return EvalResult(per_category=cats, n_images={"a": 4, "b": 4, "mean": 8}, wall_s=0.01, images_per_s=800.0,
                      recon_cached=cached, backbone_weights="packaged", protocol=protocol)
