"""DiADModel: KL autoencoder + SD UNet + SG network, and the builders that make them from a ModelConfig.

Networks only: no timestep loop here (that is diad.models.ddim and the trainer).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel
from torch import nn

from diad.errors import DiadError
from diad.models.config import AutoencoderConfig, ModelConfig, PixelUNetConfig, UNetConfig
from diad.models.pretrained import load_pretrained as load_sd_network, weights_path
from diad.models.sg import SGNetwork

# Optional file beside unet/ and vae/: the authors' constant context, CLIP("") of shape (77, 768).
CONTEXT_FILE = "empty_context.pt"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # mean, std (the authors' mvtecad_dataloader.py)


def unet_kwargs(cfg: UNetConfig, latent_channels: int, latent_size: int) -> dict:
    """SD-style UNet: cross-attention at every level but the lowest-resolution one."""
    levels = len(cfg.block_out_channels)
    return dict(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.attention_heads,  # diffusers' legacy name: this IS the head count
        norm_num_groups=cfg.norm_num_groups,
    )


def autoencoder_kwargs(cfg: AutoencoderConfig, image_size: int) -> dict:
    """SD-style KL autoencoder; downsampling 2 ** (levels - 1)."""
    levels = len(cfg.block_out_channels)
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=image_size,
        scaling_factor=cfg.latent_scale,
    )


def pretrained_weights(cfg: ModelConfig, name: str) -> Path | None:
    """Where the SD-1.5 `name` ("unet" or "vae") weights come from: <pretrained_dir>/<name> (diffusers folder) or
    pretrained_dir itself (one LDM-layout checkpoint file); None for a random init (cpu profile)."""
    if cfg.pretrained_dir is None:
        if cfg.profile == "paper":
            raise DiadError(
                "model.pretrained_dir: not set; the paper profile needs SD-1.5: a folder with unet/ and vae/ in "
                "diffusers format (e.g. stable-diffusion-v1-5), or the checkpoint file v1-5-pruned.ckpt / "
                ".safetensors in the original LDM layout", key="model.pretrained_dir"
            )
        return None
    return weights_path(Path(cfg.pretrained_dir), name)


def build_unet(cfg: UNetConfig, latent_channels: int, latent_size: int, weights: Path | None = None
               ) -> UNet2DConditionModel:
    """The SD denoiser (model.unet): weights from pretrained_weights() (folder or LDM file), or a random init."""
    kw = unet_kwargs(cfg, latent_channels, latent_size)
    if weights is None:
        return UNet2DConditionModel(**kw)
    return load_sd_network(weights, "unet", kw)


def build_autoencoder(cfg: AutoencoderConfig, image_size: int, weights: Path | None = None) -> AutoencoderKL:
    """The KL autoencoder (model.autoencoder): weights from pretrained_weights(), or a random init when None."""
    kw = autoencoder_kwargs(cfg, image_size)
    if weights is None:
        return AutoencoderKL(**kw)
    return load_sd_network(weights, "vae", kw)


def autoencoder_for(cfg: ModelConfig, load_pretrained: bool = True) -> AutoencoderKL:
    """The autoencoder of a model config: its own stage trains it (diad/train/autoencoder.py)."""
    if cfg.pixel_space:
        raise DiadError("model.variant: 'ddpm' works in pixel space and has no autoencoder", key="model.variant")
    return build_autoencoder(cfg.autoencoder, cfg.image_size, pretrained_weights(cfg, "vae") if load_pretrained else None)


def build_pixel_unet(cfg: PixelUNetConfig, image_size: int) -> UNet2DModel:
    """DDPM baseline (model.pixel_unet): unconditional pixel-space UNet, self-attention at the second-lowest
    resolution."""
    levels = len(cfg.block_out_channels)
    down = ["DownBlock2D"] * levels
    down[levels - 2] = "AttnDownBlock2D"
    up = ["AttnUpBlock2D" if b == "AttnDownBlock2D" else "UpBlock2D" for b in reversed(down)]
    return UNet2DModel(
        sample_size=image_size,
        in_channels=3,
        out_channels=3,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        attention_head_dim=None,  # one head, as in Ho et al.
        norm_num_groups=cfg.norm_num_groups,
    )


def _context(cfg: ModelConfig, load_pretrained: bool) -> torch.Tensor:
    """Constant context (L, D). Authors: CLIP("") embedding; offline: zeros (= no text), docs/method.md, Context.

    With zeros every cross-attention key/value is zero, so cross-attention adds only its output
    bias: the same for every image, which the spec allows ("a learned constant context (or none)
    is equivalent"). <pretrained_dir>/empty_context.pt, when present, restores the authors' setting.
    """
    shape = (cfg.unet.context_tokens, cfg.unet.cross_attention_dim)
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
        self.register_buffer("latent_scale", torch.tensor(float(cfg.autoencoder.latent_scale)))
        self.requires_grad_(False)
        for p in self.trainable_parameters():
            p.requires_grad_(True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """SG network + SD decoder half (up_blocks, conv_norm_out, conv_out), or the whole SD UNet when
        cfg.unet.encoder_trainable (cpu profile: no pretrained SD) and for ddpm."""
        if self.cfg.pixel_space:
            return list(self.unet.parameters())
        if self.cfg.unet.encoder_trainable:
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

    def to_net(self, x01: torch.Tensor) -> torch.Tensor:
        """Images in [0,1] -> what the autoencoder and the hint path see: [-1,1] (SD), or ImageNet-normalised
        (image_norm=imagenet: the authors' data loader, for their imported checkpoints)."""
        if self.cfg.image_norm == "imagenet":
            mean, std = (torch.tensor(v, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1) for v in IMAGENET)
            return (x01 - mean) / std
        return x01 * 2 - 1

    def from_net(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of to_net, clamped to [0,1]."""
        if self.cfg.image_norm == "imagenet":
            mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype).view(1, 3, 1, 1) for v in IMAGENET)
            return (x * std + mean).clamp(0, 1)
        return ((x + 1) / 2).clamp(0, 1)

    def encode(self, x01: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images (N,3,H,W) in [0,1] -> scaled latents z0 (N,C,H/f,W/f); identity to [-1,1] for ddpm."""
        x = self.to_net(x01)
        if self.vae is None:
            return x
        dist = self.vae.encode(x).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        return z * self.latent_scale

    def posterior_std(self, x01: torch.Tensor) -> torch.Tensor:
        """Scaled posterior std (N,C,h,w): encode(sample=True) = encode() + posterior_std() * N(0, I)."""
        return self.vae.encode(self.to_net(x01)).latent_dist.std * self.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents (N,C,h,w) -> images (N,3,H,W) in [0,1]."""
        x = z if self.vae is None else self.vae.decode(z / self.latent_scale).sample
        return self.from_net(x)

    def predict_noise(self, z_t: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor,
                      use_sg: bool = True) -> torch.Tensor:
        """eps_theta(z_t, t, C(x0)): z_t (N,C,h,w), t int or (N,), x0 (N,3,H,W) in [0,1] -> (N,C,h,w).

        use_sg=False leaves the SG residuals out (the plain SD UNet): diad.diagnostics compares the two.
        """
        n = z_t.shape[0]
        t = torch.as_tensor(t, device=z_t.device).reshape(-1).expand(n)
        if self.cfg.pixel_space:
            return self.unet(z_t, t).sample  # unconditional: x0 is not used
        context = self.context.to(z_t.dtype).expand(n, -1, -1)
        if self.sg is None or not use_sg:
            return self.unet(z_t, t, encoder_hidden_states=context).sample
        residuals, mid = self.sg(z_t, t, context, self.to_net(x0))
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
        return DiADModel(cfg, build_pixel_unet(cfg.pixel_unet, cfg.image_size), None, None, None)
    unet = build_unet(cfg.unet, cfg.autoencoder.latent_channels, cfg.latent_size,
                      pretrained_weights(cfg, "unet") if load_pretrained else None)
    vae = vae if vae is not None else autoencoder_for(cfg, load_pretrained)
    sg = None
    if cfg.sg.enabled:
        sg = SGNetwork(unet, cfg.sg)
    return DiADModel(cfg, unet, vae, sg, _context(cfg, load_pretrained))


@torch.no_grad()
def estimate_latent_scale(vae: AutoencoderKL, images01: torch.Tensor) -> float:
    """1 / std of the latents of images (N,3,H,W) in [0,1]: how SD's 0.18215 was chosen."""
    z = vae.encode(images01 * 2 - 1).latent_dist.mode()
    return float(1.0 / z.float().std())
