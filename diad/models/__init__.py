"""DiAD torch model: KL autoencoder, SD UNet, SG network with SFF, and the DDIM reconstruction."""

from diad.models.config import PROFILES, VARIANTS, ModelConfig, model_config
from diad.models.diad_model import (
    DiADModel,
    build_autoencoder,
    build_model,
    build_unet,
    estimate_latent_scale,
)
from diad.models.reconstruct import ddim_timesteps, make_scheduler, reconstruct

__all__ = [
    "PROFILES",
    "VARIANTS",
    "DiADModel",
    "ModelConfig",
    "build_autoencoder",
    "build_model",
    "build_unet",
    "ddim_timesteps",
    "estimate_latent_scale",
    "make_scheduler",
    "model_config",
    "reconstruct",
]
