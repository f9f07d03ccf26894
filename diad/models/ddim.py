"""Reconstruction (docs/method.md, Reconstruction): encode, noise to step T-1, DDIM (eta 0) guided by x0, decode.

The one timestep loop of the project. No classifier-free guidance: the authors' cond and uncond
branches are identical, so doubling the batch would change nothing but the cost.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from diad.errors import DiadError

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
    if not 1 <= forward_steps <= TRAIN_STEPS:
        raise DiadError(f"forward_steps: {forward_steps}, expected 1..{TRAIN_STEPS}")
    if not 1 <= ddim_steps <= forward_steps:
        raise DiadError(f"ddim_steps: {ddim_steps}, expected 1..forward_steps ({forward_steps})")
    grid = np.round(np.linspace(forward_steps, 0, ddim_steps + 1)).astype(int)[:-1] - 1
    return [int(t) for t in grid]


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
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images (N,3,H,W) in [0,1] -> reconstructions (N,3,H,W) in [0,1], any N.

    z0 = E(x0) (posterior mode, scaled); z = sqrt(a_T) z0 + sqrt(1-a_T) noise at t = T-1; then
    ddim_steps DDIM steps at ddim_timesteps(T, S), each eps from the SD UNet guided by the SG
    network on x0; x_hat = D(z). The model is put in eval mode and restored afterwards.
    """
    timesteps = ddim_timesteps(forward_steps, ddim_steps)
    was_training = model.training
    model.eval()
    try:
        z0 = model.encode(images01)
        noise = randn_tensor(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        scheduler = make_scheduler()
        z = scheduler.add_noise(z0, noise, torch.tensor([timesteps[0]], device=z0.device))
        ac = scheduler.alphas_cumprod.to(device=z0.device, dtype=z0.dtype)
        for t, t_prev in zip(timesteps, timesteps[1:] + [-1]):
            eps = model.predict_noise(z, t, images01)
            z = ddim_step(ac, z, eps, t, t_prev)
        return model.decode(z)
    finally:
        model.train(was_training)
