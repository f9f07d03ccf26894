"""Test helper: diffusers UNet/VAE state dicts -> the original LDM (CompVis / v1-5-pruned.ckpt) key layout.

The inverse of diffusers' convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint for SD-1.x structures (any
number of levels, any layers_per_block), written from the LDM module names, so a tiny generated checkpoint can
stand in for v1-5-pruned.ckpt in tests. VAE attention projections become 1x1 convs, as in the real file.
"""

from __future__ import annotations

import torch

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _split(key: str, n: int) -> tuple[list[str], str]:
    parts = key.split(".")
    return parts[:n], ".".join(parts[n:])


def _resnet(rest: str, table: dict[str, str]) -> str:
    head, _, tail = rest.partition(".")
    return f"{table.get(head, head)}.{tail}"


def unet_key_to_ldm(key: str, layers_per_block: int, up_has_attention: list[bool]) -> str:
    """One diffusers UNet2DConditionModel key -> its LDM name (without the model.diffusion_model. prefix)."""
    for diffusers, ldm in _UNET_FIXED.items():
        if key.startswith(diffusers + "."):
            return ldm + key[len(diffusers):]
    per = layers_per_block + 1
    if key.startswith("down_blocks."):
        (_, b, kind, j), rest = _split(key, 4)
        b, j = int(b), int(j)
        if kind == "resnets":
            return f"input_blocks.{1 + b * per + j}.0.{_resnet(rest, _UNET_RESNET)}"
        if kind == "attentions":
            return f"input_blocks.{1 + b * per + j}.1.{rest}"
        return f"input_blocks.{(b + 1) * per}.0.op.{rest.removeprefix('conv.')}"  # downsamplers.0.conv
    if key.startswith("mid_block."):
        (_, kind, j), rest = _split(key, 3)
        if kind == "resnets":
            return f"middle_block.{2 * int(j)}.{_resnet(rest, _UNET_RESNET)}"
        return f"middle_block.1.{rest}"
    if key.startswith("up_blocks."):
        (_, b, kind, j), rest = _split(key, 4)
        b, j = int(b), int(j)
        if kind == "resnets":
            return f"output_blocks.{b * per + j}.0.{_resnet(rest, _UNET_RESNET)}"
        if kind == "attentions":
            return f"output_blocks.{b * per + j}.1.{rest}"
        slot = 2 if up_has_attention[b] else 1  # the upsampler follows the attention when there is one
        return f"output_blocks.{b * per + layers_per_block}.{slot}.{rest}"  # upsamplers.0.conv.*
    raise KeyError(key)


def vae_key_to_ldm(key: str, n_levels: int) -> str:
    """One diffusers AutoencoderKL key -> its LDM name (without the first_stage_model. prefix)."""
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        return key  # quant_conv, post_quant_conv
    if rest.startswith("conv_norm_out."):
        return f"{side}.norm_out.{rest.removeprefix('conv_norm_out.')}"
    if rest.startswith(("conv_in.", "conv_out.")):
        return key
    vae_resnet = {"conv_shortcut": "nin_shortcut"}
    if rest.startswith(("down_blocks.", "up_blocks.")):
        (blocks, i, kind, j), tail = _split(rest, 4)
        level = int(i) if blocks == "down_blocks" else n_levels - 1 - int(i)
        name = "down" if blocks == "down_blocks" else "up"
        if kind == "resnets":
            return f"{side}.{name}.{level}.block.{j}.{_resnet(tail, vae_resnet)}"
        sampler = "downsample" if name == "down" else "upsample"
        return f"{side}.{name}.{level}.{sampler}.{tail}"  # downsamplers.0.conv.* -> downsample.conv.*
    (_, kind, j), tail = _split(rest, 3)  # mid_block
    if kind == "resnets":
        return f"{side}.mid.block_{int(j) + 1}.{_resnet(tail, vae_resnet)}"
    for diffusers, ldm in _VAE_ATTN.items():
        if tail.startswith(diffusers + "."):
            return f"{side}.mid.attn_1.{ldm}{tail[len(diffusers):]}"
    raise KeyError(key)


def sd_ldm_state_dict(unet: torch.nn.Module, vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    """One SD-1.x checkpoint in the LDM layout from a diffusers UNet and VAE (plus keys real files hold besides)."""
    ucfg, vcfg = unet.config, vae.config
    up_attn = ["CrossAttn" in t for t in ucfg.up_block_types]
    out = {"model.diffusion_model." + unet_key_to_ldm(k, ucfg.layers_per_block, up_attn): v.clone()
           for k, v in unet.state_dict().items()}
    for k, v in vae.state_dict().items():
        ldm = vae_key_to_ldm(k, len(vcfg.block_out_channels))
        if ".mid.attn_1." in ldm and ldm.endswith("weight") and v.ndim == 2:
            v = v[:, :, None, None]  # LDM's AttnBlock uses 1x1 convs
        out["first_stage_model." + ldm] = v.clone()
    # what a real v1-5-pruned.ckpt holds besides: schedule buffers, flattened EMA copies, the CLIP text encoder
    out["alphas_cumprod"] = torch.linspace(0.999, 0.005, 1000)
    out["model_ema.decay"] = torch.tensor(0.9999)
    out["model_ema.diffusion_modelconv_inweight"] = torch.zeros(1)
    out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    return out
