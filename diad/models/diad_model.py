"""DiADModel: KL autoencoder + SD UNet + SG network, and the builders that make them from a ModelConfig.

Networks only: no timestep loop here (that is diad.models.reconstruct and the trainer).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel
from torch import nn

from diad.errors import DiadError
from diad.models.config import ModelConfig
from diad.models.sg import SGNetwork

# Optional file beside unet/ and vae/: the authors' constant context, CLIP("") of shape (77, 768).
CONTEXT_FILE = "empty_context.pt"


def _unet_kwargs(cfg: ModelConfig) -> dict:
    """SD-style UNet: cross-attention at every level but the lowest-resolution one."""
    levels = len(cfg.unet_block_out_channels)
    return dict(
        sample_size=cfg.latent_size,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        block_out_channels=tuple(cfg.unet_block_out_channels),
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.attention_heads,  # diffusers' legacy name: this IS the head count
        norm_num_groups=cfg.norm_num_groups,
    )


def _autoencoder_kwargs(cfg: ModelConfig) -> dict:
    """SD-style KL autoencoder; downsampling 2 ** (levels - 1)."""
    levels = len(cfg.ae_block_out_channels)
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.ae_block_out_channels),
        layers_per_block=cfg.ae_layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=cfg.image_size,
        scaling_factor=cfg.latent_scale,
    )


def _pretrained_subdir(cfg: ModelConfig, name: str) -> Path | None:
    """<pretrained_dir>/<name> if weights should be loaded; None for a random init (cpu profile only)."""
    if cfg.pretrained_dir is None:
        if cfg.profile == "paper":
            raise DiadError(
                "model.pretrained_dir: not set; the paper profile needs SD-1.5 in diffusers format: "
                "<dir>/unet/ and <dir>/vae/ (config.json + weights, e.g. the unet and vae subfolders "
                "of stable-diffusion-v1-5)"
            )
        return None
    path = Path(cfg.pretrained_dir).expanduser() / name
    if not (path / "config.json").is_file():
        raise DiadError(
            f"model.pretrained_dir: {path} has no config.json; expected SD-1.5 {name} weights in "
            f"diffusers format (save_pretrained output) at <pretrained_dir>/{name}/"
        )
    return path


def _as_list(value):
    """Tuples and lists compare equal (diffusers configs hold lists, ours tuples)."""
    return list(value) if isinstance(value, (list, tuple)) else value


def _check_loaded(loaded: dict, expected: dict, path: Path) -> None:
    """Refuse pretrained weights whose sizes differ from the config (never silently reshape)."""
    for key, want in expected.items():
        if _as_list(loaded.get(key)) != _as_list(want):
            raise DiadError(f"model.pretrained_dir: {path} has {key}={loaded.get(key)}, the config expects {want}")


def build_unet(cfg: ModelConfig, load_pretrained: bool = True) -> UNet2DConditionModel:
    """The SD denoiser: SD-1.5 weights from pretrained_dir, or a random init (cpu profile, or a checkpoint follows)."""
    path = _pretrained_subdir(cfg, "unet") if load_pretrained else None
    if path is None:
        return UNet2DConditionModel(**_unet_kwargs(cfg))
    unet = UNet2DConditionModel.from_pretrained(path, local_files_only=True)
    kw = _unet_kwargs(cfg)
    keys = ("block_out_channels", "cross_attention_dim", "in_channels")
    _check_loaded(dict(unet.config), {k: kw[k] for k in keys}, path)
    return unet


def build_autoencoder(cfg: ModelConfig, load_pretrained: bool = True) -> AutoencoderKL:
    """The KL autoencoder alone (trained in its own stage, then passed to build_model)."""
    if cfg.pixel_space:
        raise DiadError("model.variant: 'ddpm' works in pixel space and has no autoencoder")
    path = _pretrained_subdir(cfg, "vae") if load_pretrained else None
    if path is None:
        return AutoencoderKL(**_autoencoder_kwargs(cfg))
    vae = AutoencoderKL.from_pretrained(path, local_files_only=True)
    kw = _autoencoder_kwargs(cfg)
    _check_loaded(dict(vae.config), {k: kw[k] for k in ("block_out_channels", "latent_channels")}, path)
    return vae


def build_pixel_unet(cfg: ModelConfig) -> UNet2DModel:
    """DDPM baseline: unconditional pixel-space UNet, self-attention at the second-lowest resolution."""
    levels = len(cfg.pixel_block_out_channels)
    down = ["DownBlock2D"] * levels
    down[levels - 2] = "AttnDownBlock2D"
    up = ["AttnUpBlock2D" if b == "AttnDownBlock2D" else "UpBlock2D" for b in reversed(down)]
    return UNet2DModel(
        sample_size=cfg.image_size,
        in_channels=3,
        out_channels=3,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        block_out_channels=tuple(cfg.pixel_block_out_channels),
        layers_per_block=cfg.layers_per_block,
        attention_head_dim=None,  # one head, as in Ho et al.
        norm_num_groups=cfg.norm_num_groups,
    )


def _context(cfg: ModelConfig, load_pretrained: bool) -> torch.Tensor:
    """Constant context (L, D). Authors: CLIP("") embedding; offline: zeros (= no text), spec 1.5.

    With zeros every cross-attention key/value is zero, so cross-attention adds only its output
    bias: the same for every image, which the spec allows ("a learned constant context (or none)
    is equivalent"). <pretrained_dir>/empty_context.pt, when present, restores the authors' setting.
    """
    shape = (cfg.context_tokens, cfg.cross_attention_dim)
    path = Path(cfg.pretrained_dir).expanduser() / CONTEXT_FILE if cfg.pretrained_dir else None
    if not load_pretrained or path is None or not path.is_file():
        return torch.zeros(shape)
    ctx = torch.load(path, map_location="cpu", weights_only=True).reshape(-1, shape[1])
    if ctx.shape != shape:
        raise DiadError(f"model.pretrained_dir: {path} holds shape {tuple(ctx.shape)}, expected {shape}")
    return ctx.float()


class DiADModel(nn.Module):
    """Autoencoder (frozen) + SD UNet (decoder half trained) + SG network (trained)."""

    def __init__(
        self,
        cfg: ModelConfig,
        unet: UNet2DConditionModel | UNet2DModel,
        vae: AutoencoderKL | None,
        sg: SGNetwork | None,
        context: torch.Tensor | None,
    ):
        super().__init__()
        self.cfg = cfg
        self.unet, self.vae, self.sg = unet, vae, sg
        self.register_buffer("context", context)  # (L, D), part of checkpoints
        self.register_buffer("latent_scale", torch.tensor(float(cfg.latent_scale)))
        self.requires_grad_(False)
        for p in self.trainable_parameters():
            p.requires_grad_(True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """SG network + SD decoder half (up_blocks, conv_norm_out, conv_out), or the whole SD UNet when
        cfg.sd_encoder_trainable (cpu profile: no pretrained SD) and for ddpm."""
        if self.cfg.pixel_space:
            return list(self.unet.parameters())
        if self.cfg.sd_encoder_trainable:
            modules = [self.unet]
        else:
            modules = [self.unet.up_blocks, self.unet.conv_norm_out, self.unet.conv_out]
        if self.sg is not None:
            modules.append(self.sg)
        return [p for m in modules for p in m.parameters()]

    def train(self, mode: bool = True) -> DiADModel:
        """Switch train/eval; the frozen autoencoder always stays in eval mode."""
        super().train(mode)
        if self.vae is not None:
            self.vae.eval()
        return self

    def encode(self, x01: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images (N,3,H,W) in [0,1] -> scaled latents z0 (N,C,H/f,W/f); identity to [-1,1] for ddpm."""
        x = x01 * 2 - 1
        if self.vae is None:
            return x
        dist = self.vae.encode(x).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        return z * self.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents (N,C,h,w) -> images (N,3,H,W) in [0,1]."""
        x = z if self.vae is None else self.vae.decode(z / self.latent_scale).sample
        return ((x + 1) / 2).clamp(0, 1)

    def predict_noise(self, z_t: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor) -> torch.Tensor:
        """eps_theta(z_t, t, C(x0)): z_t (N,C,h,w), t int or (N,), x0 (N,3,H,W) in [0,1] -> (N,C,h,w)."""
        n = z_t.shape[0]
        t = torch.as_tensor(t, device=z_t.device).reshape(-1).expand(n)
        if self.cfg.pixel_space:
            return self.unet(z_t, t).sample  # unconditional: x0 is not used
        context = self.context.to(z_t.dtype).expand(n, -1, -1)
        if self.sg is None:
            return self.unet(z_t, t, encoder_hidden_states=context).sample
        residuals, mid = self.sg(z_t, t, context, x0 * 2 - 1)
        return self.unet(
            z_t,
            t,
            encoder_hidden_states=context,
            down_block_additional_residuals=residuals,
            mid_block_additional_residual=mid,
        ).sample


def build_model(cfg: ModelConfig, vae: AutoencoderKL | None = None, load_pretrained: bool = True) -> DiADModel:
    """DiADModel for cfg. vae: an autoencoder trained in its own stage (else built/loaded here).

    load_pretrained=False builds the same architecture with random weights, for loading a checkpoint.
    The SG network is copied from the SD UNet after its weights are loaded.
    """
    if cfg.pixel_space:
        return DiADModel(cfg, build_pixel_unet(cfg), None, None, None)
    unet = build_unet(cfg, load_pretrained)
    vae = vae if vae is not None else build_autoencoder(cfg, load_pretrained)
    sg = None
    if cfg.uses_sg:
        sg = SGNetwork(unet, cfg.hint_channels, cfg.sg_middle, cfg.sg_levels, cfg.sff, cfg.sff_wiring)
    return DiADModel(cfg, unet, vae, sg, _context(cfg, load_pretrained))


@torch.no_grad()
def estimate_latent_scale(vae: AutoencoderKL, images01: torch.Tensor) -> float:
    """1 / std of the latents of images (N,3,H,W) in [0,1]: how SD's 0.18215 was chosen."""
    z = vae.encode(images01 * 2 - 1).latent_dist.mode()
    return float(1.0 / z.float().std())
