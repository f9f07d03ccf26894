"""Reconstruction (docs/method.md, Reconstruction): encode, noise to step T-1, DDIM (eta 0) guided by x0, decode.

The one timestep loop of the project. No classifier-free guidance: the authors' cond and uncond
branches are identical, so doubling the batch would change nothing but the cost. Any batch size:
every tensor op is per image and the noise comes from one generator per image when a list is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from diad.errors import DiadError
from diad.models.precision import Precision, autocast

DdimGrid = Literal["authors", "diffusers"]

TRAIN_STEPS = 1000


def make_scheduler() -> DDIMScheduler:
    """SD's schedule: 1000 steps, scaled-linear betas 0.00085..0.012, epsilon prediction.

    Used by training (add_noise, alphas_cumprod) and by reconstruct.
    """
    return DDIMScheduler(
        num_train_timesteps=TRAIN_STEPS,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        prediction_type="epsilon",
        timestep_spacing="trailing",
    )


def ddim_timesteps(forward_steps: int, ddim_steps: int) -> list[int]:
    """The timesteps where the denoiser is evaluated: round(linspace(T, 0, S + 1))[:-1] - 1.

    T=1000, S=10 -> [999, 899, 799, ..., 99] (diffusers' "trailing" spacing); T=600, S=10 ->
    [599, 539, ..., 59]. The first is T-1, the step the latent was noised to; each DDIM step goes to
    the next entry and the last one goes to the clean latent (alpha_bar = 1).
    """
    _check_steps(forward_steps, ddim_steps)
    grid = np.round(np.linspace(forward_steps, 0, ddim_steps + 1)).astype(int)[:-1] - 1
    return [int(t) for t in grid]


def authors_timesteps(forward_steps: int, ddim_steps: int) -> list[int]:
    """The authors' DDIM grid (ldm make_ddim_timesteps, "uniform"): i * (T // S) + 1 for i = S-1 .. 0.

    T=1000, S=10 -> [901, 801, ..., 101, 1]. Their code always uses T=1000 here; for T < 1000 the same rule
    over [0, T) is our generalisation (theirs runs the 1000-step grid whatever the noise level).
    """
    _check_steps(forward_steps, ddim_steps)
    stride = forward_steps // ddim_steps
    if stride < 2:
        raise DiadError(f"eval.ddim_grid=authors: forward_steps ({forward_steps}) must be >= 2 * ddim_steps "
                        f"({ddim_steps}): the grid is offset by 1 and must stay below T")
    return [i * stride + 1 for i in reversed(range(ddim_steps))]


@dataclass(frozen=True)
class DdimPlan:
    """Where the latent is noised to, and each DDIM step (t, t_prev); t_prev = -1 means alpha_bar = 1."""

    noise_t: int
    steps: list[tuple[int, int]]


def ddim_plan(forward_steps: int, ddim_steps: int, grid: DdimGrid = "diffusers") -> DdimPlan:
    """diffusers: noise to T-1, steps at ddim_timesteps, the last one to alpha_bar = 1 (set_alpha_to_one).
    authors: noise to T-1 = 999 too, but steps at authors_timesteps (901, ..., 1) and the last one to
    alpha_bar_0 = 1 - beta_0 = 0.99915 (their make_ddim_sampling_parameters: set_alpha_to_one False)."""
    if grid == "diffusers":
        ts = ddim_timesteps(forward_steps, ddim_steps)
        return DdimPlan(ts[0], list(zip(ts, ts[1:] + [-1])))
    if grid == "authors":
        ts = authors_timesteps(forward_steps, ddim_steps)
        return DdimPlan(forward_steps - 1, list(zip(ts, ts[1:] + [0])))
    raise DiadError(f"eval.ddim_grid: {grid!r}, expected authors or diffusers")


def _check_steps(forward_steps: int, ddim_steps: int) -> None:
    if not 1 <= forward_steps <= TRAIN_STEPS:
        raise DiadError(f"forward_steps: {forward_steps}, expected 1..{TRAIN_STEPS}")
    if not 1 <= ddim_steps <= forward_steps:
        raise DiadError(f"ddim_steps: {ddim_steps}, expected 1..forward_steps ({forward_steps})")


def ddim_step(alphas_cumprod: torch.Tensor, z: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from t to t_prev (-1 = clean): z' = sqrt(a') x0_hat + sqrt(1-a') eps."""
    a_t = alphas_cumprod[t]
    a_prev = alphas_cumprod[t_prev] if t_prev >= 0 else torch.ones_like(a_t)
    x0_hat = (z - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    return a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt() * eps


@torch.no_grad()
def reconstruct(
    model,
    images01: torch.Tensor,
    forward_steps: int = 1000,
    ddim_steps: int = 10,
    generator: torch.Generator | list[torch.Generator] | None = None,
    ddim_grid: DdimGrid = "diffusers",
    precision: Precision = "fp32",
    hint01: torch.Tensor | None = None,
) -> torch.Tensor:
    """Images (N,3,H,W) in [0,1] -> reconstructions (N,3,H,W) in [0,1], any N.

    hint01: the SG network's x0 when it is not the images themselves (diad.diagnostics: another image's hint).

    z0 = E(x0) (scaled; the posterior mode, or a sample when model.cfg.vae_posterior == "sample", drawn
    from the same per-image generator before the noise); z = sqrt(a) z0 + sqrt(1-a) noise at
    ddim_plan's noise_t; then the plan's DDIM steps, each eps from the SD UNet guided by the SG network
    on x0; x_hat = D(z). precision bf16 autocasts the networks; the DDIM update stays fp32. The model
    is put in eval mode and restored afterwards.
    """
    plan = ddim_plan(forward_steps, ddim_steps, ddim_grid)
    sample = getattr(getattr(model, "cfg", None), "vae_posterior", "mode") == "sample"
    was_training = model.training
    model.eval()
    try:
        with autocast(images01.device, precision):
            z0 = model.encode(images01, sample=sample, generator=generator).float()
        noise = randn_tensor(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        scheduler = make_scheduler()
        z = scheduler.add_noise(z0, noise, torch.tensor([plan.noise_t], device=z0.device))
        ac = scheduler.alphas_cumprod.to(device=z0.device, dtype=z0.dtype)
        for t, t_prev in plan.steps:
            with autocast(images01.device, precision):
                eps = model.predict_noise(z, t, images01 if hint01 is None else hint01)
            z = ddim_step(ac, z, eps.float(), t, t_prev)
        with autocast(images01.device, precision):
            return model.decode(z).float()
    finally:
        model.train(was_training)
