"""ModelConfig: one typed config for the autoencoder, the SD UNet and the SG network.

Defaults live in two tables: PROFILES (sizes: `cpu` runs on a laptop, `paper` is SD-1.5 at 256 px)
and VARIANTS (the architecture switches of paper Table 5 and the baselines). A ModelConfig is filled
from both before validation, and any field the user sets explicitly wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from diad.errors import DiadError

Profile = Literal["cpu", "paper"]
Variant = Literal[
    "ldm", "msg", "sgeb3", "sgeb4", "sgeb3_sgeb4", "diad", "diad_bn_relu", "diad_authors", "ddpm"
]
Level = Literal["sgeb3", "sgeb4"]

# Sizes. `cpu` keeps the paper's structure (KL autoencoder, 4 UNet levels x 2 res blocks,
# cross-attention at the three highest resolutions) at 64 px with narrow channels.
PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {
        "image_size": 64,
        "ae_block_out_channels": [16, 32, 32],  # 3 levels: x4 downsampling, 64 px -> 16x16x4
        "ae_layers_per_block": 1,
        "latent_channels": 4,
        "latent_scale": 1.0,  # set from the trained autoencoder (estimate_latent_scale)
        # Narrow enough for ~0.15 s per denoiser step (batch 8, one CPU thread); SGEB4 is 2x2.
        "unet_block_out_channels": [16, 32, 32, 32],
        "layers_per_block": 2,
        "cross_attention_dim": 16,
        "attention_heads": 1,
        "norm_num_groups": 8,
        "context_tokens": 4,
        "hint_channels": [8, 16, 32],  # C(x0): one stride-2 stage per autoencoder downsampling
        "pixel_block_out_channels": [16, 32, 32, 32],
        "pretrained_dir": None,
        # No pretrained SD here, so there is nothing to protect by freezing its encoder half:
        # a frozen random encoder starves the model of capacity (see sd_encoder_trainable).
        "sd_encoder_trainable": True,
    },
    "paper": {
        "image_size": 256,
        "ae_block_out_channels": [128, 256, 512, 512],  # SD KL-f8
        "ae_layers_per_block": 2,
        "latent_channels": 4,
        "latent_scale": 0.18215,
        "unet_block_out_channels": [320, 640, 1280, 1280],  # SD-1.5
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_heads": 8,
        "norm_num_groups": 32,
        "context_tokens": 77,
        "hint_channels": [16, 32, 96, 256],  # ControlNet's hint path for f8
        "pixel_block_out_channels": [128, 128, 256, 256, 512, 512],  # DDPM-256 baseline
        "pretrained_dir": None,
        "sd_encoder_trainable": False,  # the paper: SD encoder, middle block and time embedding frozen
    },
}

# Architecture switches. sg_levels = which SG encoder levels are added to the SD decoder skips;
# SFF always reads SGEB3 and writes into SGEB4.
VARIANTS: dict[str, dict[str, Any]] = {
    "ldm": {"sg_middle": False, "sg_levels": [], "sff": "none", "sff_wiring": "learnable"},
    "msg": {"sg_middle": True, "sg_levels": [], "sff": "none", "sff_wiring": "learnable"},
    "sgeb3": {"sg_middle": True, "sg_levels": ["sgeb3"], "sff": "none", "sff_wiring": "learnable"},
    "sgeb4": {"sg_middle": True, "sg_levels": ["sgeb4"], "sff": "none", "sff_wiring": "learnable"},
    "sgeb3_sgeb4": {
        "sg_middle": True, "sg_levels": ["sgeb3", "sgeb4"], "sff": "none", "sff_wiring": "learnable",
    },
    # Full DiAD (spec 1.3-1.4): SGEB4 injected, SGEB3 reaching the decoder only through SFF.
    # Same levels as the authors' code; only the SFF wiring differs (ours learns).
    "diad": {"sg_middle": True, "sg_levels": ["sgeb4"], "sff": "in_silu", "sff_wiring": "learnable"},
    "diad_bn_relu": {"sg_middle": True, "sg_levels": ["sgeb4"], "sff": "bn_relu", "sff_wiring": "learnable"},
    # The authors' shipped code: SGEB3 feeds nothing but SFF (so its zero-convs and SFF's
    # zero-init convs get exactly zero gradient; SFF never learns).
    "diad_authors": {
        "sg_middle": True, "sg_levels": ["sgeb4"], "sff": "in_silu", "sff_wiring": "authors",
    },
    "ddpm": {"sg_middle": False, "sg_levels": [], "sff": "none", "sff_wiring": "learnable"},
}


class ModelConfig(BaseModel):
    """Autoencoder, SD UNet and SG network sizes and switches; see PROFILES and VARIANTS."""

    model_config = ConfigDict(extra="forbid")

    profile: Profile = "cpu"
    variant: Variant = "diad"
    sg_middle: bool
    sg_levels: list[Level]
    sff: Literal["none", "in_silu", "bn_relu"]
    sff_wiring: Literal["learnable", "authors"]
    image_size: int
    ae_block_out_channels: list[int]
    ae_layers_per_block: int
    latent_channels: int
    latent_scale: float
    unet_block_out_channels: list[int]
    layers_per_block: int
    cross_attention_dim: int
    attention_heads: int
    norm_num_groups: int
    context_tokens: int
    hint_channels: list[int]
    pixel_block_out_channels: list[int]
    pretrained_dir: Path | None
    # Train the SD UNet's encoder half too (conv_in, time embedding, down and middle blocks).
    # False = the paper (pretrained SD kept frozen); True where SD starts from random weights.
    sd_encoder_trainable: bool

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        """Profile sizes, then variant switches, then the user's explicit values (which win)."""
        if not isinstance(data, dict):
            return data
        profile = data.get("profile", "cpu")
        variant = data.get("variant", "diad")
        if profile not in PROFILES or variant not in VARIANTS:
            return data  # the field validators name the bad value
        return {**PROFILES[profile], **VARIANTS[variant], **data}

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        """Reject combinations that cannot be built."""
        if self.variant == "ddpm" and self.uses_sg:
            raise ValueError("variant 'ddpm' is unconditional: sg_middle/sg_levels/sff must be off")
        if self.sff != "none" and "sgeb4" not in self.sg_levels:
            raise ValueError(f"sff={self.sff!r} writes into SGEB4: sg_levels must contain 'sgeb4'")
        if len(self.unet_block_out_channels) < 3:
            raise ValueError("unet_block_out_channels needs >= 3 levels (SGEB3/SGEB4 are the lowest two)")
        if len(self.hint_channels) != len(self.ae_block_out_channels):
            raise ValueError(
                f"hint_channels {self.hint_channels} needs one entry per autoencoder level "
                f"({len(self.ae_block_out_channels)}) so C(x0) matches the latent size"
            )
        levels = len(self.pixel_block_out_channels if self.pixel_space else self.unet_block_out_channels)
        if self.image_size % (self.downsampling * 2 ** (levels - 1)):
            raise ValueError(f"image_size {self.image_size} must be divisible by the total UNet+AE downsampling")
        lowest = self.latent_size // 2 ** (levels - 1)
        if self.sff != "none" and lowest < 2:
            raise ValueError(f"SFF needs SGEB4 of at least 2x2 (got {lowest}x{lowest}): raise image_size")
        return self

    @property
    def uses_sg(self) -> bool:
        """True when an SG network is built (every variant except ldm and ddpm)."""
        return self.sg_middle or bool(self.sg_levels) or self.sff != "none"

    @property
    def pixel_space(self) -> bool:
        """True for the DDPM baseline: no autoencoder, the UNet denoises images in [-1, 1]."""
        return self.variant == "ddpm"

    @property
    def downsampling(self) -> int:
        """Autoencoder spatial downsampling factor (1 in pixel space)."""
        return 1 if self.pixel_space else 2 ** (len(self.ae_block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        """Side of the latent (or image, for ddpm) the UNet sees."""
        return self.image_size // self.downsampling


def model_config(profile: str = "cpu", variant: str = "diad", **overrides: Any) -> ModelConfig:
    """Validated ModelConfig from a profile, a variant and explicit overrides; bad input -> DiadError."""
    try:
        return ModelConfig(profile=profile, variant=variant, **overrides)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(["model", *(str(p) for p in first["loc"])])
        raise DiadError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
