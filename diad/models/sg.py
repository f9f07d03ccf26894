"""Semantic-Guided network (docs/method.md, SG network): a trainable copy of the SD encoder + middle block.

Built like diffusers' `ControlNetModel.from_unet`: deep copies of the SD UNet's conv_in, time
embedding, down blocks and mid block (so it starts from the SD weights), a hint path C(x0) added to
the output of conv_in, and zero-initialised 1x1 convs on the outputs injected into SD, so that at
initialisation SD + SG computes exactly the plain SD UNet.
"""

from __future__ import annotations

import copy

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from torch import nn

from diad.models.config import SGConfig
from diad.models.sff import SFF


def encoder_channels(unet: UNet2DConditionModel) -> list[int]:
    """Channels of each encoder output (conv_in, then every res block and downsampler): 12 for SD."""
    boc, per_level = unet.config.block_out_channels, unet.config.layers_per_block
    channels = [boc[0]]
    for level, ch in enumerate(boc):
        channels += [ch] * per_level
        if level < len(boc) - 1:
            channels.append(ch)  # the downsampler keeps the channel count
    return channels


def level_indices(unet: UNet2DConditionModel) -> dict[str, list[int]]:
    """Encoder-output indices of SGEB4 / SGEB3: the skips consumed by the lowest / next decoder block.

    With 4 levels and 2 res blocks per level these are outputs 9-11 and 6-8 of 12 (docs/method.md, SG network).
    """
    n = len(encoder_channels(unet))
    r4, r3 = len(unet.up_blocks[0].resnets), len(unet.up_blocks[1].resnets)
    return {"sgeb4": list(range(n - r4, n)), "sgeb3": list(range(n - r4 - r3, n - r4))}


def zero_conv(channels: int) -> nn.Conv2d:
    """1x1 conv with zero weight and bias: contributes nothing until trained."""
    conv = nn.Conv2d(channels, channels, kernel_size=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class SGNetwork(nn.Module):
    """SG encoder + middle: (z_t, t, context, hint) -> residuals for the SD skips and middle output."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        cfg: SGConfig,
    ):
        super().__init__()
        sg_middle, sg_levels, sff = cfg.middle, cfg.levels, cfg.sff
        self.conv_in = copy.deepcopy(unet.conv_in)
        self.time_proj = copy.deepcopy(unet.time_proj)
        self.time_embedding = copy.deepcopy(unet.time_embedding)
        self.down_blocks = copy.deepcopy(unet.down_blocks)
        self.mid_block = copy.deepcopy(unet.mid_block) if sg_middle else None
        # C(x0): 3 -> hint_channels (one stride-2 per step) -> conv_in width, last conv zero-init.
        self.hint = ControlNetConditioningEmbedding(
            conditioning_embedding_channels=unet.config.block_out_channels[0],
            conditioning_channels=3,
            block_out_channels=tuple(cfg.hint_channels),
        )
        channels = encoder_channels(unet)
        levels = level_indices(unet)
        self.sgeb3, self.sgeb4 = levels["sgeb3"], levels["sgeb4"]
        self.inject = sorted(i for name in sg_levels for i in levels[name])
        self.wiring = cfg.sff_wiring if sff != "none" else None
        zero_conv_at = set(self.inject) | (set(self.sgeb3) if self.wiring == "authors" else set())
        self.zero_convs = nn.ModuleDict({str(i): zero_conv(channels[i]) for i in sorted(zero_conv_at)})
        self.mid_zero_conv = zero_conv(channels[-1]) if sg_middle else None
        self.sff = None
        if sff != "none":
            # Authors: SFF reads SGEB3 *after* its zero-convs and its zero-init output is added after
            # the SGEB4 zero-convs: input and weights are both zero, so every gradient through SFF
            # is exactly zero, forever. Learnable (ours): SFF reads the raw SGEB3 features and its
            # default-init output joins the raw SGEB4 features *before* the SGEB4 zero-convs, which
            # gate it. Training starts exactly at plain SD, and as for the whole SG encoder in
            # ControlNet, SFF's gradient is zero only at step 0 (gate closed), non-zero from step 1.
            # Rejected: zero-init SFF added after the zero-convs (BN+ReLU would never learn, ReLU
            # has zero slope at 0) and small-init SFF there (IN rescales any non-zero conv output to
            # unit variance, so training would not start at SD). One wiring for IN and BN keeps
            # Table 5's comparison like for like. The learnable wiring keeps the activation on the
            # branch sum only (not on raw SGEB4 + sum, the authors' outer SiLU): a SiLU over the raw
            # features would cut their negative half from every SGEB4 skip, SFF or not.
            self.sff = SFF(
                [channels[i] for i in self.sgeb3],
                [channels[i] for i in self.sgeb4],
                sff,
                zero_init=self.wiring == "authors",
            )
        self.requires_grad_(True)  # the copies inherit requires_grad=False from a frozen SD UNet

    def _encode(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, hint: torch.Tensor):
        """Encoder outputs (12 for SD), the last hidden state and the time embedding."""
        emb = self.time_embedding(self.time_proj(t).to(z_t.dtype))
        h = self.conv_in(z_t) + self.hint(hint)
        feats = [h]
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=context)
            else:
                h, res = block(hidden_states=h, temb=emb)
            feats.extend(res)
        return feats, h, emb

    def forward(
        self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, hint: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """z_t (N,C,h,w), t (N,), context (N,L,D), hint (N,3,H,W) in [-1,1] ->
        (one residual per SD encoder output, the middle residual); zeros where nothing is injected."""
        feats, h, emb = self._encode(z_t, t, context, hint)
        if self.wiring == "learnable":
            fused = self.sff([feats[i] for i in self.sgeb3])
            for i, f in zip(self.sgeb4, fused):
                feats[i] = feats[i] + f
        outs: list[torch.Tensor | None] = [None] * len(feats)
        for key, conv in self.zero_convs.items():
            outs[int(key)] = conv(feats[int(key)])
        if self.wiring == "authors":
            # the authors' outer SiLU covers the SGEB4 zero-conv output too: silu(zc(sgeb4) + sum of branches)
            fused = self.sff([outs[i] for i in self.sgeb3], base=[outs[i] for i in self.sgeb4])
            for i, f in zip(self.sgeb4, fused):
                outs[i] = f
        # Levels that are not injected get zeros: SD's UNet takes one residual per skip.
        residuals = [o if i in self.inject else torch.zeros_like(f) for i, (o, f) in enumerate(zip(outs, feats))]
        if self.mid_block is None:
            return residuals, torch.zeros_like(h)
        return residuals, self.mid_zero_conv(self.mid_block(h, emb, encoder_hidden_states=context))
