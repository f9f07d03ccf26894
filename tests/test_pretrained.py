"""SD-1.5 weights in the forms users have them: a diffusers folder and one LDM-layout checkpoint file."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file

from diad.errors import DiadError
from diad.models import build_model, model_config
from diad.models.pretrained import SD15_CONFIG_DIR, load_pretrained
from ldm_layout import sd_ldm_state_dict

# Paper structure (4 UNet levels, KL-f8 with 4 levels, SFF) at tiny widths; 64 px -> 8x8 latent (no SFF: 1x1).
TINY = dict(
    image_size=64,
    autoencoder={"block_out_channels": [8, 8, 8, 8], "layers_per_block": 2, "norm_num_groups": 4},
    unet={"block_out_channels": [8, 8, 16, 16], "cross_attention_dim": 8, "attention_heads": 2,
          "norm_num_groups": 4, "context_tokens": 2},
    sg={"hint_channels": [4, 4, 8, 8]},
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(variant: str = "sgeb4", **overrides):
    """The paper profile at TINY sizes; overrides nested like TINY (unet={"cross_attention_dim": 16})."""
    from diad.overrides import deep_merge

    return model_config("paper", variant, **deep_merge(TINY, overrides))


@pytest.fixture(scope="module")
def source():
    """A tiny SD (random weights) and the same weights as one v1-5-pruned-style state dict."""
    torch.manual_seed(3)
    ref = build_model(tiny("ldm"), load_pretrained=False)
    return ref, sd_ldm_state_dict(ref.unet, ref.vae)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_helper_writes_the_real_sd15_key_layout():
    """The test helper is the real LDM layout: known key names and shapes of v1-5-pruned, at full size."""
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SD15_CONFIG_DIR / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(SD15_CONFIG_DIR / "vae"))
    sd = sd_ldm_state_dict(unet, vae)
    known = {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.input_blocks.4.0.skip_connection.weight": (640, 320, 1, 1),
        "model.diffusion_model.middle_block.2.emb_layers.1.weight": (1280, 1280),
        "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.11.1.proj_out.weight": (320, 320, 1, 1),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
        "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.decoder.up.0.block.2.conv2.weight": (128, 128, 3, 3),
        "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "first_stage_model.decoder.norm_out.weight": (128,),
    }
    assert {k: tuple(sd[k].shape) for k in known} == known
    assert sum(k.startswith("model.diffusion_model.") for k in sd) == 686  # SD-1.5 UNet: 686 tensors
    assert sum(k.startswith("first_stage_model.") for k in sd) == 248


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_ldm_file_loads_exactly_like_the_diffusers_folder(source, tmp_path, suffix):
    ref, ldm = source
    path = tmp_path / f"v1-5-pruned{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in ldm.items()}, str(path))
    else:
        torch.save({"state_dict": ldm, "global_step": 840000}, path)  # the .ckpt nests it under "state_dict"
    ref.unet.save_pretrained(tmp_path / "dir" / "unet")
    ref.vae.save_pretrained(tmp_path / "dir" / "vae")
    from_file = build_model(tiny("sgeb4", pretrained_dir=path))
    from_dir = build_model(tiny("sgeb4", pretrained_dir=tmp_path / "dir"))
    for model in (from_file, from_dir):
        assert _same(model.unet, ref.unet) and _same(model.vae, ref.vae)
        assert _same(model.sg.down_blocks, ref.unet.down_blocks)  # the SG copy starts from the loaded SD
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        z = from_file.encode(x)
        assert torch.equal(from_file.predict_noise(z, 500, x), from_dir.predict_noise(z, 500, x))


def _write(tmp_path, sd: dict, name: str = "sd.safetensors"):
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def test_wrong_single_files_are_one_line_errors(source, tmp_path):
    ref, ldm = source
    with pytest.raises(DiadError, match="does not exist"):
        build_model(tiny(pretrained_dir=tmp_path / "missing.ckpt"))
    no_unet = _write(tmp_path, {k: v for k, v in ldm.items() if not k.startswith("model.diffusion_model.")}, "a.safetensors")
    with pytest.raises(DiadError, match=r"no 'model\.diffusion_model\.\*' weights"):
        build_model(tiny(pretrained_dir=no_unet))
    dropped = "model.diffusion_model.output_blocks.4.1.proj_in.weight"
    one_missing = _write(tmp_path, {k: v for k, v in ldm.items() if k != dropped}, "b.safetensors")
    with pytest.raises(DiadError, match="1 missing .*up_blocks.1.attentions.1.proj_in.weight"):
        build_model(tiny(pretrained_dir=one_missing))
    good = _write(tmp_path, ldm, "c.safetensors")
    with pytest.raises(DiadError, match="shape"):  # the run config asks for other widths than the file holds
        build_model(tiny(pretrained_dir=good, unet={"cross_attention_dim": 16}))
    with pytest.raises(DiadError, match="shape"):
        load_pretrained(good, "vae", {**_vae_kwargs(), "latent_channels": 8})
    garbage = tmp_path / "d.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(DiadError, match="not a readable safetensors file"):
        build_model(tiny(pretrained_dir=garbage))
    pickled = tmp_path / "e.ckpt"
    torch.save({"state_dict": ldm, "callback": _NotAWeight()}, pickled)
    with pytest.raises(DiadError, match="weights_only=True"):  # never unpickles arbitrary objects
        build_model(tiny(pretrained_dir=pickled))


class _NotAWeight:
    """Stands in for the Lightning objects some .ckpt files carry."""


def _vae_kwargs() -> dict:
    from diad.models.diad_model import autoencoder_kwargs

    return autoencoder_kwargs(tiny("ldm").autoencoder, TINY["image_size"])


def test_diffusers_folder_errors_stay_one_line(source, tmp_path):
    ref, _ = source
    with pytest.raises(DiadError, match="unet has no config.json"):
        build_model(tiny(pretrained_dir=tmp_path))
    ref.unet.save_pretrained(tmp_path / "unet")
    ref.vae.save_pretrained(tmp_path / "vae")
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(DiadError, match="cannot load the vae"):
        build_model(tiny(pretrained_dir=tmp_path))
