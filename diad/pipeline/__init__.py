"""Train and evaluate: what the CLI, the sweep layer and the benchmarks call (no Ray, no pandas here).

One module per job: training.py (autoencoder stage + denoiser into a run dir), trained.py (load a checkpoint),
reconstruction.py (test-split reconstructions, cached by content), evaluation.py (scores and metrics).
"""

from diad.lazy import lazy_exports

_EXPORTS = {
    "TrainResult": "diad.pipeline.records",
    "train": "diad.pipeline.training",
    "autoencoder_key": "diad.pipeline.training",
    "prepare_autoencoder": "diad.pipeline.training",
    "load_trained": "diad.pipeline.trained",
    "resolve_checkpoint": "diad.pipeline.trained",
    "recon_key": "diad.pipeline.reconstruction",
    "reconstruct_split": "diad.pipeline.reconstruction",
    "EvalResult": "diad.pipeline.records",
    "evaluate": "diad.pipeline.evaluation",
    "score_split": "diad.pipeline.evaluation",
    "diagnose_checkpoint": "diad.pipeline.evaluation",
    "resolve_device": "diad.pipeline.device",
    "peak_mem_mb": "diad.pipeline.device",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
