"""Training: the autoencoder stage (cached by content) and the denoiser trainer (exactly resumable)."""

from diad.lazy import lazy_exports

_EXPORTS = {
    "ensure_autoencoder": "diad.train.autoencoder",
    "train_autoencoder": "diad.train.autoencoder",
    "load_images_uint8": "diad.train.batches",
    "DecodedSplit": "diad.train.batches",
    "decode_split": "diad.train.batches",
    "DenoiserResult": "diad.train.denoiser",
    "OnCheckpoint": "diad.train.denoiser",
    "total_steps": "diad.train.denoiser",
    "train_denoiser": "diad.train.denoiser",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
