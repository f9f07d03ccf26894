"""ModelConfig: one sub-config per network (autoencoder, SD UNet, SG network, pixel UNet) plus the
architecture switches of paper Table 5. Torch-free, so configs load without torch.

Sizes come from the profile (diad/profiles.py), switches from the variant (VARIANTS below); a value the
user sets explicitly always wins. Each builder in diad/models/diad_model.py takes only its own sub-config,
so the cache key of an artifact (diad/config.py) can be exactly the sub-configs that shape it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Profile = Literal["cpu", "paper"]
Variant = Literal[
    "ldm", "msg", "sgeb3", "sgeb4", "sgeb3_sgeb4", "diad", "diad_bn_relu", "diad_authors", "ddpm"
]
Level = Literal["sgeb3", "sgeb4"]

# SFF branch normalisation and activation (paper Table 5: IN+SiLU beats BN+ReLU), as torch.nn class
# names: the norm is built as Norm(channels), the activation with no argument. Adding a kind = one line
# here (plus a variant below, if it should have a preset name); the config refuses any other name.
SFF_NORMS: dict[str, tuple[str, str]] = {
    "in_silu": ("InstanceNorm2d", "SiLU"),
    "bn_relu": ("BatchNorm2d", "ReLU"),
}

# Architecture switches (model.sg.*). `levels` = which SG encoder levels are added to the SD decoder
# skips; SFF always reads SGEB3 and writes into SGEB4 (docs/method.md, section SFF).
VARIANTS: dict[str, dict[str, Any]] = {
    "ldm": {"middle": False, "levels": [], "sff": "none"},
    "msg": {"middle": True, "levels": [], "sff": "none"},
    "sgeb3": {"middle": True, "levels": ["sgeb3"], "sff": "none"},
    "sgeb4": {"middle": True, "levels": ["sgeb4"], "sff": "none"},
    "sgeb3_sgeb4": {"middle": True, "levels": ["sgeb3", "sgeb4"], "sff": "none"},
    # Full DiAD: SGEB4 injected, SGEB3 reaching the decoder only through SFF (same levels as the
    # authors' code; only the SFF wiring differs: ours learns).
    "diad": {"middle": True, "levels": ["sgeb4"], "sff": "in_silu", "sff_wiring": "learnable"},
    "diad_bn_relu": {"middle": True, "levels": ["sgeb4"], "sff": "bn_relu", "sff_wiring": "learnable"},
    # The authors' shipped code: SGEB3 feeds nothing but SFF, so its zero-convs and SFF's zero-init
    # convs get exactly zero gradient and SFF never learns.
    "diad_authors": {"middle": True, "levels": ["sgeb4"], "sff": "in_silu", "sff_wiring": "authors"},
    "ddpm": {"middle": False, "levels": [], "sff": "none"},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AutoencoderConfig(_Strict):
    """SD-style KL autoencoder; spatial downsampling 2 ** (len(block_out_channels) - 1)."""

    block_out_channels: list[int]
    layers_per_block: int = Field(ge=1)
    latent_channels: int = Field(ge=1)
    norm_num_groups: int = Field(ge=1)
    # SD's 0.18215 for the pretrained KL-f8; for one trained from scratch, 1/std of its latents
    # (set after the autoencoder stage and saved with the checkpoint)
    latent_scale: float = Field(gt=0)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


class UNetConfig(_Strict):
    """The SD denoiser: cross-attention at every level but the lowest-resolution one."""

    block_out_channels: list[int]
    layers_per_block: int = Field(ge=1)
    cross_attention_dim: int = Field(ge=1)
    attention_heads: int = Field(ge=1)
    norm_num_groups: int = Field(ge=1)
    context_tokens: int = Field(ge=1)
    # Train the encoder half too (conv_in, time embedding, down and middle blocks). False = the paper
    # (pretrained SD kept frozen); True where SD starts from random weights (nothing to protect).
    encoder_trainable: bool

    @field_validator("block_out_channels")
    @classmethod
    def _three_levels(cls, v: list[int]) -> list[int]:
        if len(v) < 3:
            raise ValueError("needs >= 3 levels (SGEB3/SGEB4 are the lowest two, the middle block below them)")
        return v


class SGConfig(_Strict):
    """The Semantic-Guided network: what is injected into SD (Table 5 switches) and its hint path C(x0)."""

    middle: bool = False  # SG middle block -> SD middle output ("MSG")
    levels: list[Level] = []  # SG encoder levels added to the SD decoder skips
    sff: Literal[("none", *SFF_NORMS)] = "none"  # Spatial-aware Feature Fusion SGEB3 -> SGEB4, by norm kind
    sff_wiring: Literal["learnable", "authors"] = "learnable"
    hint_channels: list[int]  # C(x0): one stride-2 stage per autoencoder downsampling

    @property
    def enabled(self) -> bool:
        """True when an SG network is built (every variant except ldm and ddpm)."""
        return self.middle or bool(self.levels) or self.sff != "none"


class PixelUNetConfig(_Strict):
    """The DDPM baseline's unconditional pixel-space UNet."""

    block_out_channels: list[int]
    layers_per_block: int = Field(ge=1)
    norm_num_groups: int = Field(ge=1)


class ModelConfig(_Strict):
    """All networks of one model; see diad/profiles.py (sizes) and VARIANTS (switches)."""

    profile: Profile = "cpu"
    variant: Variant = "diad"
    image_size: int
    # SD-1.5 weights: a diffusers folder with unet/ and vae/ (required by the paper profile)
    pretrained_dir: Path | None = None
    # z0 = E(x0): the posterior's mode, or a sample of it (seeded per image at test time, per step in training)
    vae_posterior: Literal["sample", "mode"] = "mode"
    # what the autoencoder and the hint path see: [-1,1] (SD's convention), or ImageNet-normalised images
    # (the authors' data loader; set by `diad import-official` so their weights see what they were trained on)
    image_norm: Literal["minus_one_one", "imagenet"] = "minus_one_one"
    autoencoder: AutoencoderConfig
    unet: UNetConfig
    sg: SGConfig
    pixel_unet: PixelUNetConfig

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        """Profile sizes, then the variant's switches, then the user's explicit values (which win)."""
        from diad.overrides import deep_merge
        from diad.profiles import PROFILES

        if not isinstance(data, dict):
            return data
        profile, variant = data.get("profile", "cpu"), data.get("variant", "diad")
        if profile not in PROFILES or variant not in VARIANTS:
            return data  # the field validators name the bad value
        preset = deep_merge(PROFILES[profile]["model"], {"sg": VARIANTS[variant]})
        return deep_merge(preset, data)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        """Reject combinations that cannot be built."""
        sg = self.sg
        if self.pixel_space and sg.enabled:
            raise ValueError("variant 'ddpm' is unconditional: sg.middle/sg.levels/sg.sff must be off")
        if self.pixel_space and self.image_norm != "minus_one_one":
            raise ValueError("variant 'ddpm' denoises images in [-1,1]: image_norm must be minus_one_one")
        if sg.sff != "none" and "sgeb4" not in sg.levels:
            raise ValueError(f"sg.sff={sg.sff!r} writes into SGEB4: sg.levels must contain 'sgeb4'")
        if len(sg.hint_channels) != len(self.autoencoder.block_out_channels):
            raise ValueError(
                f"sg.hint_channels {sg.hint_channels} needs one entry per autoencoder level "
                f"({len(self.autoencoder.block_out_channels)}) so C(x0) matches the latent size"
            )
        levels = len(self.pixel_unet.block_out_channels if self.pixel_space else self.unet.block_out_channels)
        if self.image_size % (self.downsampling * 2 ** (levels - 1)):
            raise ValueError(f"image_size {self.image_size} must be divisible by the total UNet+AE downsampling")
        lowest = self.latent_size // 2 ** (levels - 1)
        if sg.sff != "none" and lowest < 2:
            raise ValueError(f"SFF needs SGEB4 of at least 2x2 (got {lowest}x{lowest}): raise image_size")
        return self

    @property
    def pixel_space(self) -> bool:
        """True for the DDPM baseline: no autoencoder, the UNet denoises images in [-1, 1]."""
        return self.variant == "ddpm"

    @property
    def downsampling(self) -> int:
        """Autoencoder spatial downsampling factor (1 in pixel space)."""
        return 1 if self.pixel_space else self.autoencoder.downsampling

    @property
    def latent_size(self) -> int:
        """Side of the latent (or image, for ddpm) the UNet sees."""
        return self.image_size // self.downsampling


def model_config(profile: str = "cpu", variant: str = "diad", **fields: Any) -> ModelConfig:
    """Validated ModelConfig from a profile, a variant and explicit (nested) fields; bad input -> DiadError."""
    from pydantic import ValidationError

    from diad.errors import validation_error

    try:
        return ModelConfig(profile=profile, variant=variant, **fields)
    except ValidationError as err:
        raise validation_error(err, ModelConfig, "model config", prefix=("model",)) from None
