"""The authors'-fidelity switches (issue 10): outer SiLU of SFF, DDIM grid, VAE posterior, grad accumulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diad.errors import DiadError
from diad.models import make_scheduler
from diad.models.ddim import ddim_plan

from test_models import TINY, images, open_zero_convs, tiny


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomise_sff(model, seed: int = 4) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for row in model.sg.sff.branches:
            for branch in row:
                branch[0].weight.copy_(0.1 * torch.randn(branch[0].weight.shape, generator=g))


def test_authors_sff_outer_silu_covers_the_sgeb4_zero_conv_output():
    # sgn/sgn.py: outs[9+i] = silu(outs[9+i] + sum_j down_{j+1}{i+1}(outs[6+j])), outs = zero-conv outputs
    model = tiny("diad_authors").eval()
    open_zero_convs(model)
    _randomise_sff(model)
    sg, x = model.sg, images(2)
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500, 20])
    ctx = model.context.expand(2, -1, -1)
    with torch.no_grad():
        residuals, _ = sg(z, t, ctx, x * 2 - 1)
        feats, _, _ = sg._encode(z, t, ctx, x * 2 - 1)
        outs = {i: sg.zero_convs[str(i)](feats[i]) for i in sg.sgeb3 + sg.sgeb4}
        for i, i4 in enumerate(sg.sgeb4):
            branch_sum = sum(sg.sff.branches[i][j](outs[i3]) for j, i3 in enumerate(sg.sgeb3))
            torch.testing.assert_close(residuals[i4], F.silu(outs[i4] + branch_sum))
            # and not the old rule (SiLU on the branch sum only), which differs wherever outs[i4] != 0
            assert not torch.allclose(residuals[i4], outs[i4] + F.silu(branch_sum))


# ---- DDIM grid ------------------------------------------------------------------------------------

def _authors_alphas_cumprod() -> np.ndarray:
    """ldm make_beta_schedule("linear", 0.00085, 0.012): linspace of sqrt(beta) squared, float64, cumprod."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def test_authors_ddim_grid_golden_10_steps():
    # make_ddim_timesteps("uniform", 10, 1000): range(0, 1000, 100) + 1; make_ddim_sampling_parameters:
    # alphas = ac[ts], alphas_prev = [ac[0]] + ac[ts[:-1]] (ascending order; we walk it descending)
    ac = _authors_alphas_cumprod()
    ts_ref = (np.arange(0, 1000, 1000 // 10) + 1)[::-1]
    plan = ddim_plan(1000, 10, "authors")
    assert plan.noise_t == 999  # the latent is noised to t=999, although the first step is at 901
    assert [t for t, _ in plan.steps] == ts_ref.tolist() == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    assert [p for _, p in plan.steps] == [801, 701, 601, 501, 401, 301, 201, 101, 1, 0]
    ours = make_scheduler().alphas_cumprod.double().numpy()
    a_t = [ours[t] for t, _ in plan.steps]
    a_prev = [ours[p] for _, p in plan.steps]
    np.testing.assert_allclose(a_t, ac[ts_ref], rtol=2e-5)
    np.testing.assert_allclose(a_prev, np.r_[ac[ts_ref[1:]], ac[0]], rtol=2e-5)
    # literal values (from the formula above, float64)
    assert a_prev[-1] == pytest.approx(0.99915, abs=1e-7)  # alpha_bar_0 = 1 - beta_0, not 1
    assert a_t[0] == pytest.approx(0.0140049, rel=1e-4)  # t=901
    assert a_t[-2] == pytest.approx(0.8929805, rel=1e-5)  # t=101
    assert a_t[-1] == pytest.approx(0.9982960, rel=1e-6)  # t=1
    assert ours[999] == pytest.approx(0.0046601, rel=1e-4)  # where the latent is noised to


def test_diffusers_grid_is_unchanged():
    plan = ddim_plan(1000, 10, "diffusers")
    assert plan.noise_t == 999 and plan.steps[0] == (999, 899) and plan.steps[-1] == (99, -1)


def test_authors_grid_refuses_steps_too_dense():
    with pytest.raises(DiadError, match="ddim_grid=authors"):
        ddim_plan(10, 10, "authors")


class _ZeroEps(torch.nn.Module):
    """A model whose noise prediction is 0: then DDIM only rescales, z_end = z_T * sqrt(a_end / a_first)."""

    def __init__(self, posterior="mode"):
        super().__init__()
        self.cfg = type("Cfg", (), {"vae_posterior": posterior})()
        self.seen: list[int] = []

    def encode(self, x, sample=False, generator=None):
        return x[:, :1] * 2 - 1

    def predict_noise(self, z, t, x0):
        self.seen.append(int(t))
        return torch.zeros_like(z)

    def decode(self, z):
        return z


@pytest.mark.parametrize("grid, first, end", [("authors", 901, 0), ("diffusers", 999, None)])
def test_reconstruct_walks_the_grid_from_a_latent_noised_to_999(grid, first, end):
    from diad.models.ddim import reconstruct

    model = _ZeroEps()
    x = images(2)
    out = reconstruct(model, x, 1000, 10, generator=torch.Generator().manual_seed(0), ddim_grid=grid)
    ac = make_scheduler().alphas_cumprod
    noise = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    z_T = ac[999].sqrt() * (x[:, :1] * 2 - 1) + (1 - ac[999]).sqrt() * noise
    a_end = ac[end] if end is not None else torch.tensor(1.0)
    torch.testing.assert_close(out, z_T * (a_end / ac[first]).sqrt(), rtol=1e-4, atol=1e-5)
    assert model.seen[0] == first and len(model.seen) == 10


# ---- VAE posterior, batching, precision ---------------------------------------------------------------

def _recon(model, x, keys, **kw):
    from diad.models.ddim import reconstruct

    gens = [torch.Generator().manual_seed(1000 + k) for k in keys]  # one generator per image, as the pipeline
    return reconstruct(model, x, 100, 3, generator=gens, **kw)


def test_sampled_posterior_is_seeded_per_image_and_batch_independent():
    model = tiny("diad", vae_posterior="sample")
    open_zero_convs(model)
    x = images(3)
    batch = _recon(model, x, [0, 1, 2])
    alone = torch.cat([_recon(model, x[i:i + 1], [i]) for i in range(3)])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_recon(model, x, [0, 1, 2]), batch, rtol=0, atol=0)  # deterministic
    model.cfg = model.cfg.model_copy(update={"vae_posterior": "mode"})
    assert not torch.allclose(_recon(model, x, [0, 1, 2]), batch, atol=1e-4)  # the sample is really drawn


def test_mode_posterior_batch_1_equals_batch_3():
    model = tiny("diad_authors")
    open_zero_convs(model)
    x = images(3)
    batch = _recon(model, x, [0, 1, 2], ddim_grid="authors")
    alone = torch.cat([_recon(model, x[i:i + 1], [i], ddim_grid="authors") for i in range(3)])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)


def test_bf16_reconstruction_runs_and_stays_close_to_fp32():
    model = tiny("diad")
    open_zero_convs(model)
    x = images(2)
    fp32 = _recon(model, x, [0, 1])
    bf16 = _recon(model, x, [0, 1], precision="bf16")
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # autocast really took effect
    assert (bf16 - fp32).abs().max() < 0.05


# ---- training: accumulation, posterior samples, bf16 -------------------------------------------------

def _train_one_step(tmp_path, monkeypatch, **train):
    """One optimizer step of the tiny trainer with SGD in place of AdamW (its step is proportional to the
    gradient, so a wrongly scaled accumulation shows; AdamW's first step is ~lr * sign(grad))."""
    from diad.models import build_model
    from diad.train import denoiser
    from test_train import images as uint8_images
    from test_train import tiny_cfg

    monkeypatch.setattr(torch.optim, "AdamW", lambda params, lr, weight_decay: torch.optim.SGD(params, lr=lr))
    cfg = tiny_cfg(**{"steps": 1, "checkpoint_every": 1, "lr": 0.5, **train})
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    open_zero_convs(model)  # so the SG path, SFF and the decoder all get gradient
    init = {k: v.clone() for k, v in model.state_dict().items()}
    x = uint8_images(6, 1)
    denoiser.train_denoiser(cfg, model, x, uint8_images(2, 2), tmp_path / "run", torch.device("cpu"), progress=False)
    return cfg, model, init, x


def test_grad_accum_equals_one_batch_of_k_times_the_size(tmp_path, monkeypatch):
    from diad.models import build_model
    from diad.train import denoiser
    from diad.train.batches import batch_indices, generator, to_float

    cfg, trained, init, x = _train_one_step(tmp_path, monkeypatch, batch_size=2, grad_accum=3)
    # the same 6 images, noise and timesteps as the 3 micro-batches, as ONE batch of 6 with a mean loss
    ref = build_model(cfg.model)
    ref.load_state_dict(init)
    ref.train()
    z0 = denoiser.encode_all(ref, x, torch.device("cpu"))
    parts = [(batch_indices(6, 2, 0, 0, m, 3), generator(0, "noise", 0, m)) for m in range(3)]
    sched = make_scheduler()
    noisy = [denoiser._noisy_batch(sched, z0[idx], g, cfg.train.t_max) for idx, g in parts]
    z_t, t, noise = (torch.cat([n[i] for n in noisy]) for i in range(3))
    idx = torch.cat([p[0] for p in parts])
    assert sorted(idx.tolist()) == list(range(6))  # one epoch: every image once
    ref.train()
    F.mse_loss(ref.predict_noise(z_t, t, to_float(x[idx])), noise).backward()
    with torch.no_grad():
        for p in ref.trainable_parameters():
            if p.grad is not None:
                p -= 0.5 * p.grad
    moved = 0
    for (name, a), b in zip(trained.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
        moved += int(not torch.equal(a, init[name]))
    assert moved > 10  # the step really changed the weights


def test_paper_profile_accumulates_4_micro_batches_of_12():
    from diad.config import build_run_config

    paper = build_run_config({"model": {"profile": "paper"}})
    assert (paper.train.batch_size, paper.train.grad_accum) == (12, 4)
    assert paper.eval.ddim_grid == "authors" and paper.model.vae_posterior == "sample"
    cpu = build_run_config({"model": {"profile": "cpu"}})
    assert (cpu.train.grad_accum, cpu.eval.ddim_grid, cpu.model.vae_posterior) == (1, "diffusers", "mode")
    assert cpu.train.precision == cpu.eval.precision == paper.train.precision == "fp32"


def test_training_with_sampled_posterior_is_deterministic_and_differs_from_mode(tmp_path, monkeypatch):
    from test_train import TINY_MODEL  # the model tiny_cfg builds

    runs = []
    for i, posterior in enumerate(["sample", "sample", "mode"]):
        monkeypatch.setitem(TINY_MODEL, "vae_posterior", posterior)
        runs.append(_train_one_step(tmp_path / str(i), monkeypatch)[1].state_dict())
    key = next(k for k in runs[0] if k.startswith("unet.conv_out.weight"))
    assert torch.equal(runs[0][key], runs[1][key])
    assert not torch.equal(runs[0][key], runs[2][key])


def test_bf16_training_step_runs_on_cpu(tmp_path, monkeypatch):
    cfg, model, init, _ = _train_one_step(tmp_path, monkeypatch, precision="bf16")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32 (autocast only)
    assert not torch.equal(model.state_dict()["unet.conv_out.weight"], init["unet.conv_out.weight"])
