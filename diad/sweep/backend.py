"""The seam between the sweep layer and the core: what a trial calls, as a typed protocol.

`DiadBackend` is the real core. Tests pass a stand-in (tests/fake_backend.py) to `runner.launch(backend=...)`.
A backend is a plain picklable object (each trial receives a copy) that imports heavy modules only when called.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Protocol

from pydantic import BaseModel

from diad.pipeline.records import EvalProgress, EvalResult, TrainResult

OnCheckpoint = Callable[[int, Path, dict], None]


class Backend(Protocol):
    """What the sweep layer needs from a core."""

    @property
    def config_class(self) -> type[BaseModel]:
        """The RunConfig class: result columns are typed from its fields."""

    def build(self, raw: dict, source: str) -> BaseModel:
        """Raw nested dict -> validated RunConfig; errors are DiadError("source: key: problem", key=...)."""

    def parts(self, run_cfg: BaseModel) -> tuple[dict, dict]:
        """(training-time part, evaluation-time part): what the checkpoint and run keys hash."""

    def prepare(self, run_cfg: BaseModel) -> None:
        """Once per distinct data config, in the driver, before parallel trials read it."""

    def train(self, run_cfg: BaseModel, out_dir: Path, cache_dir: Path,
              on_checkpoint: OnCheckpoint | None) -> TrainResult:
        """Train into out_dir (resuming from a checkpoint there)."""

    def autoencoder_key(self, run_cfg: BaseModel) -> str | None:
        """The key of a stage many trainings share (the autoencoder), or None when the run has none.

        Its entry is cache_dir/autoencoders/<key>; trials with equal keys make it once (prepare_autoencoder)."""

    def prepare_autoencoder(self, run_cfg: BaseModel, cache_dir: Path) -> None:
        """Make the shared stage into cache_dir/autoencoders/<key>, as one whole directory; train() reuses it."""

    def recon_key(self, checkpoint_dir: Path, run_cfg: BaseModel) -> str:
        """The key of this evaluation's reconstructions, cached in cache_dir/recon/<key> (computed once)."""

    def evaluate(self, checkpoint_dir: Path, run_cfg: BaseModel, cache_dir: Path,
                 on_progress: EvalProgress | None = None) -> EvalResult:
        """Metrics per category and their mean; on_progress(stage, done, total) as evaluation advances."""


class DiadBackend:
    """The diad core: diad.config and diad.pipeline."""

    @property
    def config_class(self) -> type[BaseModel]:
        from diad.config import RunConfig

        return RunConfig

    def build(self, raw: dict, source: str):
        from diad.config import build_run_config
        from diad.preflight import check_eval_settings

        cfg = build_run_config(raw, source)
        check_eval_settings(cfg.eval, source)  # every grid point's eval settings, before any trial trains
        return cfg

    def parts(self, run_cfg) -> tuple[dict, dict]:
        from diad.config import evaluation_part, training_part

        return training_part(run_cfg), evaluation_part(run_cfg)

    def prepare(self, run_cfg) -> None:
        from diad.data import ensure_default_dataset

        if run_cfg.data.format == "synth" and run_cfg.data.root is None:
            ensure_default_dataset(run_cfg.data)

    def train(self, run_cfg, out_dir: Path, cache_dir: Path, on_checkpoint: OnCheckpoint | None = None) -> TrainResult:
        from diad.pipeline import train

        return train(run_cfg, out_dir, cache_dir=cache_dir, on_checkpoint=on_checkpoint, progress=False)

    def autoencoder_key(self, run_cfg) -> str | None:
        from diad.pipeline import autoencoder_key

        return autoencoder_key(run_cfg)

    def prepare_autoencoder(self, run_cfg, cache_dir: Path) -> None:
        from diad.pipeline import prepare_autoencoder

        prepare_autoencoder(run_cfg, cache_dir)

    def recon_key(self, checkpoint_dir: Path, run_cfg) -> str:
        from diad.pipeline import recon_key

        return recon_key(checkpoint_dir, run_cfg.data, run_cfg.eval.recon)

    def evaluate(self, checkpoint_dir: Path, run_cfg, cache_dir: Path,
                 on_progress: EvalProgress | None = None) -> EvalResult:
        from diad.pipeline import evaluate

        return evaluate(checkpoint_dir, run_cfg.data, run_cfg.eval, cache_dir=cache_dir, on_progress=on_progress)


def backend_path(backend: Backend) -> str:
    """"module:Class" of a backend, saved with a sweep so `resume` rebuilds the same one."""
    cls = type(backend)
    return f"{cls.__module__}:{cls.__qualname__}"


def backend_from_path(path: str) -> Backend:
    """The backend saved by backend_path (its class, constructed without arguments)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)()
