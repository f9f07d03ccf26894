"""`diad import-official`: the authors' checkpoint layout (model.diffusion_model / control_model /
first_stage_model) maps key by key onto our model, at tiny widths (no real weights here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from diad import official
from diad.errors import DiadError
from diad.models import build_model

# paper structure (SD-style UNet, KL autoencoder, diad_authors SG + SFF) at tiny widths: 32 px, x2 AE
TINY = ["model.image_size=32", "model.autoencoder.block_out_channels=[8,8]", "model.autoencoder.layers_per_block=1",
        "model.autoencoder.norm_num_groups=4", "model.unet.block_out_channels=[8,8,16,16]",
        "model.unet.cross_attention_dim=8", "model.unet.attention_heads=1", "model.unet.norm_num_groups=4",
        "model.unet.context_tokens=2", "model.sg.hint_channels=[4,8]", "model.pixel_unet.norm_num_groups=4",
        "eval.backbone=efficientnet_lite0"]

# names straight from the authors' code (sgn/sgn.py, ldm openaimodel.py / model.py), at these sizes
THEIR_NAMES = [
    "model.diffusion_model.time_embed.0.weight", "model.diffusion_model.time_embed.2.bias",
    "model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.input_blocks.1.0.in_layers.2.weight",
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
    "model.diffusion_model.input_blocks.3.0.op.weight", "model.diffusion_model.input_blocks.7.0.skip_connection.weight",
    "model.diffusion_model.input_blocks.11.0.emb_layers.1.weight",
    "model.diffusion_model.middle_block.1.proj_in.weight", "model.diffusion_model.middle_block.2.out_layers.3.bias",
    "model.diffusion_model.output_blocks.2.1.conv.weight", "model.diffusion_model.output_blocks.5.2.conv.weight",
    "model.diffusion_model.output_blocks.11.1.proj_out.weight", "model.diffusion_model.out.0.weight",
    "model.diffusion_model.out.2.bias",
    "control_model.input_hint_block.0.weight", "control_model.input_hint_block.4.weight",
    "control_model.input_hint_block.6.bias", "control_model.zero_convs.9.0.weight",
    "control_model.zero_convs.6.0.bias", "control_model.middle_block_out.0.weight",
    "control_model.down11.0.weight", "control_model.down23.0.weight", "control_model.down33.0.weight",
    "control_model.input_blocks.7.1.norm.weight", "control_model.middle_block.0.in_layers.0.weight",
    "first_stage_model.encoder.down.0.block.0.conv1.weight", "first_stage_model.encoder.down.0.downsample.conv.weight",
    "first_stage_model.encoder.mid.attn_1.q.weight", "first_stage_model.decoder.up.1.block.1.norm2.weight",
    "first_stage_model.decoder.up.1.upsample.conv.weight", "first_stage_model.decoder.mid.block_1.conv2.weight",
    "first_stage_model.encoder.norm_out.weight", "first_stage_model.quant_conv.weight",
    "first_stage_model.post_quant_conv.bias",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _source_model(seed=0):
    """Our model with every weight random (zero-convs and SFF included), as a trained model would be."""
    cfg = official.official_run_config(TINY)
    torch.manual_seed(seed)
    model = build_model(cfg.model, load_pretrained=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p + 0.05 * torch.randn(p.shape, generator=g))
    return cfg, model.eval()


def _authors_layout(model) -> dict[str, torch.Tensor]:
    """A state dict in the authors' layout: our tensors under their names, plus what their file holds besides."""
    sd = {}
    for key, t in model.state_dict().items():
        name = official.official_name(key, model.cfg)
        if name is None:
            continue
        if name.startswith("first_stage_model.") and ".attn_1." in name and t.ndim == 2:
            t = t[:, :, None, None]  # their attention projections are 1x1 convs
        sd[name] = t.clone()
    for i in range(6):  # zero-convs on outputs 0-5: in their model, read by nobody (only_mid_control)
        sd[f"control_model.zero_convs.{i}.0.weight"] = torch.zeros(8, 8, 1, 1)
        sd[f"control_model.zero_convs.{i}.0.bias"] = torch.zeros(8)
    betas = torch.from_numpy(np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2).float()
    sd.update(betas=betas, alphas_cumprod=torch.cumprod(1 - betas, 0), scale_factor=torch.tensor(0.18215))
    sd["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = torch.ones(8)
    return sd


def test_layout_has_the_authors_names_and_matches_diffusers_own_conversion():
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    _, model = _source_model()
    sd = _authors_layout(model)
    missing = [n for n in THEIR_NAMES if n not in sd]
    assert not missing
    # diffusers' single-file conversion is an independent LDM -> diffusers table: it must invert ours
    unet = convert_ldm_unet_checkpoint(sd, dict(model.unet.config))
    assert unet.keys() == model.unet.state_dict().keys()
    for k, v in model.unet.state_dict().items():
        assert torch.equal(unet[k], v), k
    vae = convert_ldm_vae_checkpoint(sd, dict(model.vae.config))
    assert vae.keys() == model.vae.state_dict().keys()
    for k, v in model.vae.state_dict().items():
        assert torch.equal(vae[k].reshape(v.shape), v), k


def test_import_maps_every_key_and_reproduces_the_model(tmp_path):
    from diad.models.ddim import reconstruct
    from diad.pipeline import load_trained, resolve_checkpoint

    cfg, src = _source_model()
    path = tmp_path / "authors.safetensors"
    save_file(_authors_layout(src), str(path))
    context = tmp_path / "ctx.pt"
    torch.save(torch.randn(2, 8, generator=torch.Generator().manual_seed(3)), context)
    official.import_official(path, tmp_path / "run", cfg, context=context)
    got, got_cfg = load_trained(resolve_checkpoint(tmp_path / "run"))
    assert got_cfg.model.variant == "diad_authors" and got_cfg.model.image_norm == "imagenet"
    assert got_cfg.eval.ddim_grid == "authors" and got_cfg.model.vae_posterior == "sample"
    theirs, ours = src.state_dict(), got.state_dict()
    for k in theirs:
        if k != "context":
            assert torch.equal(theirs[k], ours[k]), k
    src.context.copy_(torch.load(context))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(got.predict_noise(z, 901, x), src.predict_noise(z, 901, x), rtol=0, atol=0)
    a = reconstruct(got, x, 1000, 2, generator=[torch.Generator().manual_seed(i) for i in range(2)], ddim_grid="authors")
    b = reconstruct(src, x, 1000, 2, generator=[torch.Generator().manual_seed(i) for i in range(2)], ddim_grid="authors")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    report = __import__("json").loads((tmp_path / "run" / "import.json").read_text())
    assert report["mapped"] == sum(1 for k in theirs if k not in ("context", "latent_scale"))
    assert sum(report["ignored"].values()) == 12 + 3 + 1  # 6 zero-convs x 2, 3 schedule buffers, CLIP


def test_unknown_or_missing_keys_are_refused(tmp_path):
    cfg, src = _source_model()
    sd = _authors_layout(src)
    extra = dict(sd, **{"control_model.down44.0.weight": torch.zeros(1)})
    with pytest.raises(DiadError, match="map to nothing.*down44"):
        official.convert(extra, build_model(cfg.model, load_pretrained=False))
    short = {k: v for k, v in sd.items() if k != "control_model.down21.0.weight"}
    with pytest.raises(DiadError, match="missing.*down21"):
        official.convert(short, build_model(cfg.model, load_pretrained=False))
    bad = dict(sd, betas=sd["betas"] * 2)
    with pytest.raises(DiadError, match="betas"):
        official.convert(bad, build_model(cfg.model, load_pretrained=False))


def test_cli_import_then_evaluate(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from diad.cli import cli

    monkeypatch.setenv("DIAD_CACHE", str(tmp_path / "cache"))
    run = CliRunner()
    res = run.invoke(cli, ["data", "synth", str(tmp_path / "data"), "--size", "32", "--train-per-category", "1",
                           "--test-per-category", "4", "--categories", "brick"])
    assert res.exit_code == 0, res.output
    _, src = _source_model()
    save_file(_authors_layout(src), str(tmp_path / "authors.safetensors"))
    res = run.invoke(cli, ["import-official", str(tmp_path / "authors.safetensors"), "--out", str(tmp_path / "run"),
                           *TINY, "eval.ddim_steps=2", "eval.batch_size=4"])
    assert res.exit_code == 0, res.output
    assert "mapped" in res.output and "context: zeros" in res.output
    res = run.invoke(cli, ["evaluate", str(tmp_path / "run"), f"data.root={tmp_path / 'data'}",
                           "eval.score_rule=max", "--out", str(tmp_path / "eval"), "--no-progress"])
    assert res.exit_code == 0, res.output
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "eval" / "metrics.parquet").to_pylist()
    mean = next(r for r in rows if r["category"] == "mean")
    for col in ("image_auroc", "pixel_aupro", "pixel_pro_legacy", "image_auroc_flipped_legacy",
                "pixel_auroc_flipped_legacy"):
        assert mean[col] == mean[col]  # present and not NaN
    assert mean["image_auroc_flipped_legacy"] == max(mean["image_auroc"], 1 - mean["image_auroc"])
    again = run.invoke(cli, ["import-official", str(tmp_path / "authors.safetensors"), "--out", str(tmp_path / "run")])
    assert again.exit_code == 2 and "already holds checkpoints" in again.output


@pytest.mark.slow
def test_sd15_sized_layout_on_the_meta_device():
    """The name table at the real sizes (no weights: meta tensors): shapes of the authors' sgn/sgn.py, SD-1.5's 686
    UNet tensors, and diffusers' own LDM conversion agreeing at full size."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    cfg = official.official_run_config()
    with torch.device("meta"):
        model = build_model(cfg.model, load_pretrained=False)
    sd = {}
    for key, t in model.state_dict().items():
        name = official.official_name(key, cfg.model)
        if name is not None:
            sd[name] = t
    shapes = {n: tuple(sd[n].shape) for n in ("control_model.down11.0.weight", "control_model.down32.0.weight",
                                                 "control_model.input_hint_block.14.weight",
                                                 "model.diffusion_model.output_blocks.8.2.conv.weight")}
    # sgn/sgn.py: down1x = Conv2d(640, 1280, 3, stride 2), down2x/3x = Conv2d(1280, 1280, ...); hint 256 -> 320
    assert shapes == {"control_model.down11.0.weight": (1280, 640, 3, 3), "control_model.down32.0.weight": (1280, 1280, 3, 3),
                      "control_model.input_hint_block.14.weight": (320, 256, 3, 3),
                      "model.diffusion_model.output_blocks.8.2.conv.weight": (640, 640, 3, 3)}
    assert sum(n.startswith("model.diffusion_model.") for n in sd) == 686  # tensors of SD-1.5's UNet
    assert convert_ldm_unet_checkpoint(sd, dict(model.unet.config)).keys() == model.unet.state_dict().keys()
    assert convert_ldm_vae_checkpoint(sd, dict(model.vae.config)).keys() == model.vae.state_dict().keys()


class _Hparams:  # stands for the Python objects a Lightning .ckpt pickles besides tensors
    lr = 1e-5


def test_torch_ckpt_reads_tensors_only_unless_trusted(tmp_path):
    sd = {"model.diffusion_model.out.2.bias": torch.zeros(4)}
    torch.save({"state_dict": sd}, tmp_path / "plain.ckpt")
    assert official.read_state_dict(tmp_path / "plain.ckpt").keys() == sd.keys()
    torch.save({"state_dict": sd, "hyper_parameters": _Hparams()}, tmp_path / "lightning.ckpt")
    with pytest.raises(DiadError, match="--unsafe-pickle"):
        official.read_state_dict(tmp_path / "lightning.ckpt")
    assert official.read_state_dict(tmp_path / "lightning.ckpt", unsafe_pickle=True).keys() == sd.keys()
    with pytest.raises(DiadError, match="not found"):
        official.read_state_dict(tmp_path / "none.ckpt")
