"""Import the DiAD authors' trained checkpoint (LDM / ControlNet key layout) as a diad run.

The authors' model (lewandofskee/DiAD, models/diad.yaml, sgn/sgn.py) holds three networks under three
prefixes; each maps key by key onto one part of our DiADModel (diffusers modules):

    model.diffusion_model.*  LDM UNetModel (ControlledUnetModel)      -> unet.*  (UNet2DConditionModel)
    control_model.*          SemanticGuidedNetwork (with SFF down11..33) -> sg.* (SGNetwork, variant diad_authors)
    first_stage_model.*      LDM AutoencoderKL                        -> vae.*   (AutoencoderKL)

`official_name(our_key, cfg)` is the whole name table (ours -> theirs); importing reads, for every key of our
model, the authors' tensor under that name. Every key of theirs must be read or be in IGNORED (with the reason),
so nothing is silently dropped. Their model sees images ImageNet-normalised (mvtecad_dataloader.py), hence
model.image_norm=imagenet in the imported run.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from diad.errors import DiadError
from diad.models.config import ModelConfig

UNET, SG, VAE = "model.diffusion_model.", "control_model.", "first_stage_model."

# Their keys that hold nothing our model needs, and why (prefix match).
IGNORED: dict[str, str] = {
    "cond_stage_model.": "CLIP text encoder: DiAD only uses its constant output CLIP(''), given as the context",
    "pretrained_model.": "the authors' validation backbone (timm resnet50), not part of DiAD",
    "model_ema.": "EMA weights (use_ema: False in models/diad.yaml)",
    "first_stage_model.loss.": "autoencoder training loss (LPIPS/discriminator)",
}
# LatentDiffusion buffers: the noise schedule (checked against ours, see _check_schedule) and the latent scale.
SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "logvar", "lvlb_weights", "scale_factor",
)

# diffusers ResnetBlock2D -> LDM ResBlock (openaimodel.py)
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
# diffusers ResnetBlock2D -> LDM autoencoder ResnetBlock (diffusionmodules/model.py)
_VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
# diffusers Attention (VAE mid block) -> LDM AttnBlock (1x1 convs there, linear layers here)
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _sub(rest: str, table: dict[str, str]) -> str:
    for ours, theirs in table.items():
        if rest == ours or rest.startswith(ours + "."):
            return theirs + rest[len(ours):]
    raise KeyError(rest)


def _unet_encoder_name(key: str, per_level: int) -> str | None:
    """conv_in / time_embedding / down_blocks / mid_block of a diffusers UNet -> LDM input_blocks / middle_block.

    input_blocks: 0 = conv_in; then per level `per_level` (ResBlock [+ SpatialTransformer]) and, except on the
    last level, one Downsample. Shared by the SD UNet and the SG network (its trainable copy).
    """
    if m := re.fullmatch(r"conv_in\.(.+)", key):
        return f"input_blocks.0.0.{m[1]}"
    if m := re.fullmatch(r"time_embedding\.linear_([12])\.(.+)", key):
        return f"time_embed.{0 if m[1] == '1' else 2}.{m[2]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block = 1 + int(m[1]) * (per_level + 1) + int(m[3])
        rest = _sub(m[4], _UNET_RESNET) if m[2] == "resnets" else m[4]  # transformer names are LDM's own
        return f"input_blocks.{block}.{0 if m[2] == 'resnets' else 1}.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * (per_level + 1)}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.([01])\.(.+)", key):
        return f"middle_block.{0 if m[1] == '0' else 2}.{_sub(m[2], _UNET_RESNET)}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    return None


def _unet_name(key: str, cfg: ModelConfig) -> str:
    per_level = cfg.unet.layers_per_block
    if (name := _unet_encoder_name(key, per_level)) is not None:
        return name
    # output_blocks: per level per_level + 1 blocks (ResBlock [+ SpatialTransformer] [+ Upsample on the last])
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block = int(m[1]) * (per_level + 1) + int(m[3])
        rest = _sub(m[4], _UNET_RESNET) if m[2] == "resnets" else m[4]
        return f"output_blocks.{block}.{0 if m[2] == 'resnets' else 1}.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        level = int(m[1])
        has_attention = level > 0  # SD: no cross-attention at the lowest resolution (up block 0)
        return f"output_blocks.{level * (per_level + 1) + per_level}.{2 if has_attention else 1}.conv.{m[2]}"
    if m := re.fullmatch(r"conv_norm_out\.(.+)", key):
        return f"out.0.{m[1]}"
    if m := re.fullmatch(r"conv_out\.(.+)", key):
        return f"out.2.{m[1]}"
    raise KeyError(key)


def _sg_name(key: str, cfg: ModelConfig) -> str:
    n_hint_blocks = 2 * (len(cfg.sg.hint_channels) - 1)
    if (name := _unet_encoder_name(key, cfg.unet.layers_per_block)) is not None:
        return name
    # input_hint_block: conv, SiLU, conv, SiLU, ...: the convs are its even entries
    if m := re.fullmatch(r"hint\.conv_in\.(.+)", key):
        return f"input_hint_block.0.{m[1]}"
    if m := re.fullmatch(r"hint\.blocks\.(\d+)\.(.+)", key):
        return f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"
    if m := re.fullmatch(r"hint\.conv_out\.(.+)", key):
        return f"input_hint_block.{2 * (n_hint_blocks + 1)}.{m[1]}"
    if m := re.fullmatch(r"zero_convs\.(\d+)\.(.+)", key):
        return f"zero_convs.{m[1]}.0.{m[2]}"
    if m := re.fullmatch(r"mid_zero_conv\.(.+)", key):
        return f"middle_block_out.0.{m[1]}"
    # SFF: outs[9+i] = silu(outs[9+i] + sum_j down{j+1}{i+1}(outs[6+j])); ours: branches[i][j] (conv, norm, act)
    if m := re.fullmatch(r"sff\.branches\.(\d)\.(\d)\.(\d)\.(.+)", key):
        return f"down{int(m[2]) + 1}{int(m[1]) + 1}.{m[3]}.{m[4]}"
    raise KeyError(key)


def _vae_name(key: str, cfg: ModelConfig) -> str:
    levels = len(cfg.autoencoder.block_out_channels)
    if m := re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out)\.(.+)", key):
        return key
    if m := re.fullmatch(r"(quant_conv|post_quant_conv)\.(.+)", key):
        return key
    if m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
        return f"{m[1]}.norm_out.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_sub(m[3], _VAE_RESNET)}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        return f"{m[1]}.mid.attn_1.{_sub(m[2], _VAE_ATTN)}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_sub(m[3], _VAE_RESNET)}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    # the LDM decoder counts its levels from the lowest resolution up: up.{levels-1} runs first
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{_sub(m[3], _VAE_RESNET)}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    raise KeyError(key)


def official_name(key: str, cfg: ModelConfig) -> str | None:
    """The authors' checkpoint key of our DiADModel state-dict key; None for our own buffers (context, scale)."""
    part, _, rest = key.partition(".")
    try:
        if part == "unet":
            return UNET + _unet_name(rest, cfg)
        if part == "sg":
            return SG + _sg_name(rest, cfg)
        if part == "vae":
            return VAE + _vae_name(rest, cfg)
    except KeyError:
        raise DiadError(f"official checkpoint layout: no name for our key {key!r} (model.{cfg.variant})") from None
    if key in ("context", "latent_scale"):
        return None
    raise DiadError(f"official checkpoint layout: no name for our key {key!r}")


def ignored_reason(key: str, used_zero_convs: set[int]) -> str | None:
    """Why one of the authors' keys is not imported, or None when it should have been."""
    for prefix, why in IGNORED.items():
        if key.startswith(prefix):
            return why
    if key in SCHEDULE_BUFFERS:
        return "noise schedule buffer (checked against ours)"
    if (m := re.fullmatch(r"control_model\.zero_convs\.(\d+)\.0\.(weight|bias)", key)) and int(m[1]) not in used_zero_convs:
        return "zero-conv whose output the authors' UNet never reads (only_mid_control=True in train.py/test.py)"
    return None


# ---- reading their file and writing our run -------------------------------------------------------------

def read_state_dict(path: Path, unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a torch .ckpt/.pth (its "state_dict" when it has one)."""
    path = Path(path)
    if not path.is_file():
        raise DiadError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not unsafe_pickle)
    except Exception as e:  # weights_only refuses Lightning's pickled hyper-parameters
        raise DiadError(f"{path}: cannot read it as tensors only ({type(e).__name__}); re-save its state_dict as "
                        f".safetensors, or pass --unsafe-pickle if you trust the file") from None
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DiadError(f"{path}: expected a state dict of tensors (optionally under 'state_dict')")
    return sd


def _fit(ours: torch.Tensor, theirs: torch.Tensor, name: str) -> torch.Tensor:
    """Their tensor in our shape: equal shapes, or 1x1 conv <-> linear (the VAE's attention projections)."""
    if theirs.shape == ours.shape:
        return theirs
    if theirs.numel() == ours.numel() and theirs.squeeze().shape == ours.squeeze().shape:
        return theirs.reshape(ours.shape)
    raise DiadError(f"official checkpoint: {name} has shape {tuple(theirs.shape)}, our model expects "
                    f"{tuple(ours.shape)}; the model config does not match the checkpoint's sizes")


def _check_schedule(sd: dict[str, torch.Tensor]) -> None:
    """Their betas must be ours (scaled-linear 0.00085..0.012, 1000 steps), or their model means something else."""
    from diad.models.ddim import make_scheduler

    if "betas" in sd:
        ours = make_scheduler().betas.double()
        theirs = sd["betas"].double().flatten()
        if theirs.shape != ours.shape or not torch.allclose(theirs, ours, rtol=1e-4, atol=1e-7):
            raise DiadError("official checkpoint: its betas differ from the scaled-linear 0.00085..0.012 schedule")


def convert(sd: dict[str, torch.Tensor], model) -> dict:
    """Load the authors' state dict `sd` into our DiADModel `model` (in place); returns the mapping report.

    Every key of our model (but the context and latent-scale buffers) must be found under its official name,
    and every key of theirs must be used or ignored for a stated reason; otherwise DiadError names them.
    """
    cfg = model.cfg
    ours = model.state_dict()
    loaded, missing, used = {}, [], set()
    for key, tensor in ours.items():
        name = official_name(key, cfg)
        if name is None:
            continue
        if name not in sd:
            missing.append(name)
            continue
        loaded[key] = _fit(tensor, sd[name], name).to(tensor.dtype)
        used.add(name)
    if missing:
        raise DiadError(f"official checkpoint: {len(missing)} keys our model needs are missing, e.g. {missing[:3]}")
    zero_convs = {int(k) for k in model.sg.zero_convs} if model.sg is not None else set()
    ignored: dict[str, int] = {}
    unexplained = []
    for name in sd:
        if name in used:
            continue
        why = ignored_reason(name, zero_convs)
        if why is None:
            unexplained.append(name)
        else:
            ignored[why] = ignored.get(why, 0) + 1
    if unexplained:
        raise DiadError(f"official checkpoint: {len(unexplained)} keys map to nothing in model.variant="
                        f"{cfg.variant}, e.g. {sorted(unexplained)[:3]}")
    _check_schedule(sd)
    model.load_state_dict(loaded, strict=False)
    if "scale_factor" in sd:
        model.latent_scale.fill_(float(sd["scale_factor"]))
    return {"mapped": len(used), "ignored": ignored, "latent_scale": float(model.latent_scale)}


def _read_context(path: Path | None, shape: tuple[int, int]) -> torch.Tensor | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise DiadError(f"--context {path}: file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = list(load_file(str(path)).values())
        ctx = tensors[0] if len(tensors) == 1 else None
    else:
        ctx = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ctx, torch.Tensor) or ctx.numel() != shape[0] * shape[1]:
        raise DiadError(f"--context {path}: expected one tensor of shape {shape} (CLIP(''), the authors' context)")
    return ctx.reshape(shape).float()


def import_official(checkpoint: Path, out_dir: Path, run_cfg, context: Path | None = None,
                    unsafe_pickle: bool = False) -> Path:
    """Write the authors' checkpoint as a diad run under out_dir (out_dir/checkpoints/step-00000000);
    `diad evaluate out_dir` then evaluates it. run_cfg: the RunConfig the run records (see official_run_config)."""
    from diad import checkpoint as ckpt
    from diad.models import build_model

    if run_cfg.model.variant != "diad_authors":
        raise DiadError(f"model.variant={run_cfg.model.variant}: the authors' checkpoint is variant diad_authors")
    model = build_model(run_cfg.model, load_pretrained=False)
    report = convert(read_state_dict(checkpoint, unsafe_pickle), model)
    ctx = _read_context(context, tuple(model.context.shape))
    if ctx is not None:
        model.context.copy_(ctx)
    report.update(imported_from=str(Path(checkpoint).resolve()),
                  context=str(Path(context).resolve()) if ctx is not None else
                  "zeros (no --context given: differs from the authors' CLIP('') embedding)")
    out_dir = Path(out_dir)
    cfg_json = run_cfg.model_dump(mode="json")
    path = ckpt.save_checkpoint(ckpt.step_dir(out_dir / "checkpoints", 0), model, cfg_json, 0,
                                metrics={"official_import": report})
    ckpt.write_json(out_dir / "run_config.json", cfg_json)
    ckpt.write_json(out_dir / "import.json", report)
    return path


def official_run_config(overrides: list[str] | tuple[str, ...] = ()):
    """The RunConfig of an imported run: the authors' model and test settings, then the user's overrides.

    Their test.py: 256 px, T=1000 (t=999), 10 DDIM steps on their grid, posterior sampled, resnet50 features
    [1:4] (our layers 1,2,3), Gaussian sigma 5; their images ImageNet-normalised.
    """
    from diad.config import build_run_config
    from diad.overrides import apply_overrides, parse_overrides

    base = {"data": {"format": "mvtec"},
            "model": {"profile": "paper", "variant": "diad_authors", "image_norm": "imagenet",
                      "vae_posterior": "sample"},
            "train": {"steps": 1, "autoencoder": {"steps": 0}},
            "eval": {"backbone": "resnet50", "layers": [1, 2, 3], "forward_steps": 1000, "ddim_steps": 10,
                     "ddim_grid": "authors", "sigma": 5.0, "score_rule": "authors_pool"}}
    return build_run_config(apply_overrides(base, parse_overrides(overrides)), "import-official")
