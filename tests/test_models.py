"""diad.models: shapes for every variant, exact SD at init, the SFF gradient fact, freezing, DDIM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from diad.errors import DiadError
from diad.models import VARIANTS, build_model, ddim_timesteps, make_scheduler, model_config, reconstruct
from diad.models.ddim import ddim_step
from diad.models.sg import level_indices

# 32 px, x2 autoencoder -> 16x16 latent; 4 UNet levels -> SGEB4 at 2x2 (the smallest SFF allows).
TINY = dict(
    image_size=32,
    autoencoder={"block_out_channels": [8, 8], "layers_per_block": 1, "norm_num_groups": 4},
    unet={"block_out_channels": [8, 8, 8, 8], "cross_attention_dim": 8, "attention_heads": 1, "norm_num_groups": 4,
          "context_tokens": 2},
    sg={"hint_channels": [4, 8]},
    pixel_unet={"block_out_channels": [8, 8, 8, 8], "norm_num_groups": 4},
)
SG_VARIANTS = [v for v in VARIANTS if v not in ("ldm", "ddpm")]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models are dispatch-bound: extra threads only spin (10x slower on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(variant: str, seed: int = 0, **overrides):
    """A tiny model; overrides are nested like TINY (e.g. unet={"encoder_trainable": False})."""
    from diad.overrides import deep_merge

    torch.manual_seed(seed)
    return build_model(model_config("cpu", variant, **deep_merge(TINY, overrides)))


def images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def noisy_batch(model, x: torch.Tensor, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    z0 = model.encode(x).detach()
    noise = torch.randn(z0.shape, generator=g)
    t = torch.randint(0, 1000, (x.shape[0],), generator=g)
    return make_scheduler().add_noise(z0, noise, t), t, noise


def mse_backward(model, x: torch.Tensor) -> None:
    z_t, t, noise = noisy_batch(model, x)
    F.mse_loss(model.predict_noise(z_t, t, x), noise).backward()


def open_zero_convs(model, seed: int = 3) -> None:
    """Give every zero-conv small seeded weights so the SG path contributes."""
    g = torch.Generator().manual_seed(seed)
    convs = list(model.sg.zero_convs.values()) + [model.sg.mid_zero_conv, model.sg.hint.conv_out]
    with torch.no_grad():
        for conv in convs:
            conv.weight.copy_(0.05 * torch.randn(conv.weight.shape, generator=g))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_shapes_every_variant(variant):
    model = tiny(variant)
    x = images(2)
    z_t, t, _ = noisy_batch(model, x)
    expected = (2, 3, 32, 32) if variant == "ddpm" else (2, 4, 16, 16)
    assert z_t.shape == expected
    assert model.predict_noise(z_t, t, x).shape == expected
    out = reconstruct(model, x, forward_steps=50, ddim_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert (model.sg is None) == (variant in ("ldm", "ddpm"))


@pytest.mark.parametrize("variant", SG_VARIANTS)
def test_sg_variants_start_exactly_at_plain_sd(variant):
    model = tiny(variant).train()
    x = images(2)
    z_t, t, _ = noisy_batch(model, x)
    context = model.context.expand(2, -1, -1)
    with torch.no_grad():
        plain = model.unet(z_t, t, encoder_hidden_states=context).sample
        assert torch.equal(model.predict_noise(z_t, t, x), plain)
        open_zero_convs(model)  # the comparison can fail: an open SG path changes the output
        assert not torch.allclose(model.predict_noise(z_t, t, x), plain)


def _sff_convs(model):
    return [b[0].weight for row in model.sg.sff.branches for b in row]


def _sgeb3_zero_convs(model):
    return [model.sg.zero_convs[str(i)].weight for i in model.sg.sgeb3]


def test_authors_sff_gets_exactly_zero_gradient_forever():
    model = tiny("diad_authors").train()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    watched = _sff_convs(model) + _sgeb3_zero_convs(model)
    for _ in range(3):
        opt.zero_grad()
        mse_backward(model, images(2))
        assert all(p.grad is not None and torch.count_nonzero(p.grad) == 0 for p in watched)
        assert torch.count_nonzero(model.sg.zero_convs[str(model.sg.sgeb4[0])].weight.grad) > 0
        opt.step()
    assert all(torch.count_nonzero(p) == 0 for p in watched)  # still exactly zero after training


@pytest.mark.parametrize("variant", ["diad", "diad_bn_relu"])
def test_learnable_sff_gets_gradient(variant):
    # Learnable wiring: SFF feeds the SGEB4 zero-convs, so (as for the whole SG encoder in
    # ControlNet) its gradient is zero only while those gates are exactly closed, at step 0.
    model = tiny(variant).train()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    mse_backward(model, images(2))
    assert torch.count_nonzero(model.sg.zero_convs[str(model.sg.sgeb4[0])].weight.grad) > 0
    opt.step()
    opt.zero_grad()
    mse_backward(model, images(2))
    assert all(torch.count_nonzero(p.grad) > 0 for p in _sff_convs(model))


def test_sff_changes_the_sgeb4_gradient_at_init():
    # Same weights with and without SFF: at step 0 SFF already shapes the SGEB4 zero-conv gradient.
    grads = []
    for variant in ("sgeb3_sgeb4", "diad"):
        model = tiny(variant).train()
        mse_backward(model, images(2))
        grads.append(model.sg.zero_convs[str(model.sg.sgeb4[0])].weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("variant", ["ldm", "diad", "ddpm"])
@pytest.mark.parametrize("sd_encoder_trainable", [False, True])
def test_frozen_parameters_get_no_gradient(variant, sd_encoder_trainable):
    model = tiny(variant, unet={"encoder_trainable": sd_encoder_trainable}).train()
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable == {id(p) for p in model.parameters() if p.requires_grad}
    if variant != "ddpm":
        unet = model.unet
        encoder_half = [unet.conv_in, unet.time_embedding, unet.down_blocks, unet.mid_block]
        in_trainable = [id(p) in trainable for m in encoder_half for p in m.parameters()]
        # paper: the SD encoder half is frozen; cpu profile (no pretrained SD): it trains too
        assert all(in_trainable) if sd_encoder_trainable else not any(in_trainable)
        assert all(id(p) not in trainable for p in model.vae.parameters())
        assert all(id(p) in trainable for p in model.unet.up_blocks.parameters())
        assert not model.vae.training  # the autoencoder stays in eval mode while training
    if model.sg is not None:
        assert all(id(p) in trainable for p in model.sg.parameters())
    mse_backward(model, images(2))
    assert all(p.grad is None for p in model.parameters() if id(p) not in trainable)
    assert any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in model.unet.conv_out.parameters())


@pytest.mark.parametrize("n", [1, 3])
def test_reconstruct_any_batch_size_is_deterministic(n):
    model = tiny("diad")
    open_zero_convs(model)
    x = images(n)
    a = reconstruct(model, x, forward_steps=100, ddim_steps=3, generator=torch.Generator().manual_seed(5))
    b = reconstruct(model, x, forward_steps=100, ddim_steps=3, generator=torch.Generator().manual_seed(5))
    assert a.shape == (n, 3, 32, 32) and torch.equal(a, b)
    assert model.training  # reconstruct restores the mode it found


def test_reconstruct_golden_number():
    # Pins the whole path (encode, add_noise, 2 DDIM steps with SG guidance, decode).
    model = tiny("diad", seed=0)
    open_zero_convs(model)
    out = reconstruct(model, images(2), forward_steps=1000, ddim_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.sum().item() == pytest.approx(3097.2048, rel=1e-4)


def test_ddim_timesteps_match_diffusers_trailing():
    scheduler = make_scheduler()
    scheduler.set_timesteps(10)
    assert ddim_timesteps(1000, 10) == scheduler.timesteps.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert ddim_timesteps(600, 10)[0] == 599 and ddim_timesteps(600, 10)[-1] == 59
    assert ddim_timesteps(1000, 1) == [999]
    with pytest.raises(DiadError, match="ddim_steps"):
        ddim_timesteps(5, 10)


def test_ddim_step_matches_diffusers_step():
    scheduler = make_scheduler()
    scheduler.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    z, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for t, t_prev in [(999, 899), (99, -1)]:
        ours = ddim_step(scheduler.alphas_cumprod, z, eps, t, t_prev)
        theirs = scheduler.step(eps, t, z, eta=0.0).prev_sample
        torch.testing.assert_close(ours, theirs)


def test_sgeb_levels_are_outputs_9_to_11_and_6_to_8_for_sd_shape():
    unet = UNet2DConditionModel(
        block_out_channels=(8, 8, 8, 8), layers_per_block=2, cross_attention_dim=8, norm_num_groups=4, sample_size=16
    )
    assert level_indices(unet) == {"sgeb4": [9, 10, 11], "sgeb3": [6, 7, 8]}


def test_config_variant_fills_switches_and_user_values_win():
    cfg = model_config("cpu", "sgeb4")
    assert (cfg.sg.middle, cfg.sg.levels, cfg.sg.sff) == (True, ["sgeb4"], "none")
    assert model_config("cpu", "diad", sg={"sff": "bn_relu"}).sg.sff == "bn_relu"
    assert model_config("cpu", "diad", sg={"sff": "bn_relu"}).sg.hint_channels == [8, 16, 32]  # profile kept
    assert model_config("paper", "diad").unet.block_out_channels == [320, 640, 1280, 1280]
    assert model_config("cpu", "ldm").sg.enabled is False


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"variant": "nope"}, "variant"),
        ({"typo_field": 1}, "typo_field"),
        ({"variant": "diad", "sg": {"levels": ["sgeb3"]}}, "sgeb4"),
        ({"variant": "ddpm", "sg": {"middle": True}}, "ddpm"),
        ({"sg": {"sff": "gn_gelu"}}, "model.sg.sff"),  # an unknown SFF kind is refused, not turned into BN+ReLU
        ({"unet": {"typo": 1}}, "model.unet.typo: unknown key; allowed: block_out_channels"),
    ],
)
def test_config_errors_name_the_field(kwargs, match):
    with pytest.raises(DiadError, match=match):
        model_config(**{"profile": "cpu", **kwargs})


def test_paper_profile_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(DiadError, match="pretrained_dir.*unet"):
        build_model(model_config("paper", "diad"))
    with pytest.raises(DiadError, match="unet"):
        build_model(model_config("paper", "diad", pretrained_dir=tmp_path))


def test_pretrained_dir_is_loaded_and_checked(tmp_path):
    source = tiny("ldm", seed=7)
    source.unet.save_pretrained(tmp_path / "unet")
    source.vae.save_pretrained(tmp_path / "vae")
    torch.save(torch.full((2, 8), 0.5), tmp_path / "empty_context.pt")  # the authors' CLIP("") slot
    model = tiny("diad", seed=8, pretrained_dir=tmp_path)
    for a, b in [(model.unet, source.unet), (model.vae, source.vae), (model.sg.down_blocks, source.unet.down_blocks)]:
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.equal(model.context, torch.full((2, 8), 0.5))
    with pytest.raises(DiadError, match="block_out_channels"):
        tiny("diad", pretrained_dir=tmp_path, unet={"block_out_channels": [8, 8, 8, 16]})


def test_estimate_latent_scale_gives_unit_std_latents():
    from diad.models import estimate_latent_scale

    model = tiny("ldm")
    x = images(4)
    scale = estimate_latent_scale(model.vae, x)
    z = model.vae.encode(x * 2 - 1).latent_dist.mode() * scale
    assert z.std().item() == pytest.approx(1.0, rel=1e-4)
