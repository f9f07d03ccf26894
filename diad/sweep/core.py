"""The core calls a trial makes, in one place. Tests point DIAD_SWEEP_CORE at a fake module with the same names.

A core module provides: `RunConfig` (pydantic), `build(raw, source) -> RunConfig` (profile defaults, one-line
DiadError "source: key: problem"), `parts(run_cfg) -> (training part, evaluation part)` (what the hashes
cover), `prepare(run_cfg)`, `train(run_cfg, out_dir, cache_dir, on_checkpoint)` and
`evaluate(checkpoint_dir, run_cfg, cache_dir)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def __getattr__(name: str) -> Any:
    # Imported on first use so `import diad.sweep.core` stays cheap.
    if name == "RunConfig":
        from diad.config import RunConfig

        return RunConfig
    raise AttributeError(name)


def build(raw: dict, source: str):
    """Raw nested dict -> RunConfig with the profile defaults and variant presets filled in."""
    from diad.config import build_run_config

    return build_run_config(raw, source)


def parts(run_cfg) -> tuple[dict, dict]:
    """(training-time part, evaluation-time part): the checkpoint cache key and the rest of the run key."""
    from diad.config import evaluation_part, training_part

    return training_part(run_cfg), evaluation_part(run_cfg)


def prepare(run_cfg) -> None:
    """Generate the embedded default data once, in the driver, before parallel trials read it."""
    from diad.data import ensure_default_dataset

    if run_cfg.data.format == "synth" and run_cfg.data.root is None:
        ensure_default_dataset(run_cfg.data)


def train(run_cfg, out_dir: Path, cache_dir: Path, on_checkpoint: Callable | None = None):
    """diad.pipeline.train into `out_dir` (resumes from a checkpoint there); the autoencoder is cached in cache_dir."""
    from diad.pipeline import train as core_train

    return core_train(run_cfg, out_dir, cache_dir=cache_dir, on_checkpoint=on_checkpoint, progress=False)


def evaluate(checkpoint_dir: Path, run_cfg, cache_dir: Path):
    """diad.pipeline.evaluate; reconstructions are cached under cache_dir/recon by the core."""
    from diad.pipeline import evaluate as core_evaluate

    return core_evaluate(checkpoint_dir, run_cfg.data, run_cfg.eval, cache_dir=cache_dir)
