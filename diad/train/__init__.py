"""Training: the autoencoder stage (cached by content) and the denoiser trainer (exactly resumable)."""

from diad.train.autoencoder import autoencoder_key, ensure_autoencoder, train_autoencoder
from diad.train.batches import load_images_uint8, load_split
from diad.train.denoiser import DenoiserResult, OnCheckpoint, total_steps, train_denoiser

__all__ = [
    "DenoiserResult", "OnCheckpoint", "autoencoder_key", "ensure_autoencoder", "load_images_uint8", "load_split",
    "total_steps", "train_autoencoder", "train_denoiser",
]
