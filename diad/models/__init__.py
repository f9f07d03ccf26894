"""DiAD torch model: KL autoencoder, SD UNet, SG network with SFF, and the DDIM reconstruction."""

from diad.lazy import lazy_exports

_EXPORTS = {
    "PROFILES": "diad.profiles",
    "VARIANTS": "diad.models.config",
    "ModelConfig": "diad.models.config",
    "model_config": "diad.models.config",
    "DiADModel": "diad.models.diad_model",
    "autoencoder_for": "diad.models.diad_model",
    "build_autoencoder": "diad.models.diad_model",
    "build_model": "diad.models.diad_model",
    "build_unet": "diad.models.diad_model",
    "estimate_latent_scale": "diad.models.diad_model",
    "ddim_timesteps": "diad.models.ddim",
    "make_scheduler": "diad.models.ddim",
    "reconstruct": "diad.models.ddim",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
