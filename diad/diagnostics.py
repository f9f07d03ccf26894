"""Is the conditioning used? Cheap, seeded figures of a trained model (pure torch; no Ray, no pandas).

`diagnose` returns a flat dict {name: float} with exactly the names in diad.schema.DIAGNOSTICS:

- diag_sg_influence_t{t} (t in DIAG_TIMESTEPS): rms over elements of eps(SG on) - eps(SG off) at timestep t,
  same z_t, on the diagnostic subset. eps has unit variance, so 0.1 means the SG moves the predicted noise by a
  tenth of its size. ldm and ddpm have no SG network: 0.0 by definition (there is nothing to switch off).
- diag_eps_mse_t{t}: the eps-MSE of the full model at t on the same z_t (test images, so it includes defects).
- diag_hint_sensitivity: mean L1 (images in [0,1]) between the reconstruction of image i with its own hint and
  with image i+1's hint, same z_T, the eval T and DDIM steps. Measured for every variant; ldm and ddpm never
  read the hint, so theirs is exactly 0.0. NaN when the subset has fewer than two images.
- diag_recon_l1_normal: mean |x - x_hat| (channels averaged, [0,1]) over normal pixels of the test split at the
  eval T: mask-0 pixels where masks exist, else every pixel of the normal-labelled images.
- diag_recon_l1_defect: the same over defect (mask-1) pixels; NaN without pixel masks.
- diag_recon_l1_anomalous: the same over every pixel of the anomalous-labelled images (image labels suffice).
- diag_ae_floor_l1: mean |x - D(E(x))| (posterior mode) over the normal test images: the error every latent
  reconstruction starts from. NaN for ddpm (no autoencoder).

Cost: two noise predictions per t and two reconstructions of `n_images` test images (seeded subset), plus one
autoencoder round trip of the normal test images; the reconstruction errors reuse the evaluation's recons.
"""

from __future__ import annotations

import math

import torch

from diad.config import ReconConfig
from diad.models.ddim import make_scheduler, reconstruct
from diad.schema import DIAG_TIMESTEPS, DIAGNOSTICS
from diad.train.batches import DecodedSplit, generator, to_float

NAN = float("nan")


def subset_indices(n_total: int, n: int, seed: int) -> torch.Tensor:
    """A seeded choice of min(n, n_total) test images (the same for every model evaluated with `seed`)."""
    return torch.randperm(n_total, generator=generator(seed, "diag-subset"))[:min(n, n_total)]


@torch.no_grad()
def sg_influence(model, x01: torch.Tensor, t: int, seed: int) -> tuple[float, float]:
    """(rms of eps(SG on) - eps(SG off), eps-MSE with SG on) at timestep t for images x01 (N,3,H,W)."""
    z0 = model.encode(x01)
    noise = torch.randn(z0.shape, generator=generator(seed, "diag-noise", t)).to(z0)
    z_t = make_scheduler().add_noise(z0, noise, torch.tensor([t], device=z0.device))
    eps_on = model.predict_noise(z_t, t, x01)
    mse = float((eps_on - noise).pow(2).mean())
    if getattr(model, "sg", None) is None:
        return 0.0, mse
    eps_off = model.predict_noise(z_t, t, x01, use_sg=False)
    return float((eps_on - eps_off).pow(2).mean().sqrt()), mse


@torch.no_grad()
def hint_sensitivity(model, x01: torch.Tensor, recon: ReconConfig) -> float:
    """Mean L1 between reconstructions with the own hint and with the next image's hint (same z_T)."""
    if len(x01) < 2:
        return NAN
    gens = lambda: [generator(recon.seed, "diag-recon", i) for i in range(len(x01))]  # noqa: E731 (same noise twice)
    settings = recon.model_dump(exclude={"seed"})
    own = reconstruct(model, x01, generator=gens(), **settings)
    other = reconstruct(model, x01, generator=gens(), hint01=x01.roll(1, dims=0), **settings)
    return float((own - other).abs().mean())


def recon_errors(images_u8: torch.Tensor, recons_u8: torch.Tensor, labels: list[int],
                 masks: torch.Tensor | None) -> dict[str, float]:
    """diag_recon_l1_{normal,defect,anomalous} from a split's images and reconstructions (uint8, (N,3,H,W))."""
    err = (images_u8.float() - recons_u8.float()).abs().mean(1) / 255.0  # (N,H,W)
    lab = torch.as_tensor(labels, dtype=torch.bool)

    def mean_over(sel: torch.Tensor) -> float:
        return float(err[sel].mean()) if bool(sel.any()) else NAN

    anomalous = mean_over(lab[:, None, None].expand_as(err))
    if masks is None:
        return {"diag_recon_l1_normal": mean_over((~lab)[:, None, None].expand_as(err)),
                "diag_recon_l1_defect": NAN, "diag_recon_l1_anomalous": anomalous}
    m = masks.bool()
    return {"diag_recon_l1_normal": mean_over(~m), "diag_recon_l1_defect": mean_over(m),
            "diag_recon_l1_anomalous": anomalous}


@torch.no_grad()
def ae_floor(model, normal_u8: torch.Tensor, device: torch.device, batch: int = 32) -> float:
    """Mean L1 of the autoencoder round trip on normal images; NaN without an autoencoder (ddpm)."""
    if getattr(model, "vae", None) is None or len(normal_u8) == 0:
        return NAN
    total = 0.0
    for i in range(0, len(normal_u8), batch):
        x = to_float(normal_u8[i:i + batch], device)
        total += float((model.decode(model.encode(x)) - x).abs().mean(dim=(1, 2, 3)).sum())
    return total / len(normal_u8)


@torch.no_grad()
def diagnose(model, split: DecodedSplit, recons_u8: torch.Tensor, recon: ReconConfig, n_images: int = 8,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Every diad.schema.DIAGNOSTICS figure for a model, a decoded test split and its reconstructions."""
    seed = recon.seed
    was_training = model.training
    model.eval()
    try:
        idx = subset_indices(len(split), n_images, seed)
        x = to_float(split.images[idx], device)
        out: dict[str, float] = {}
        for t in DIAG_TIMESTEPS:
            rms, mse = sg_influence(model, x, t, seed) if len(x) else (NAN, NAN)
            out[f"diag_sg_influence_t{t}"], out[f"diag_eps_mse_t{t}"] = rms, mse
        out["diag_hint_sensitivity"] = hint_sensitivity(model, x, recon)
        out.update(recon_errors(split.images, recons_u8, split.labels, split.masks if split.has_masks else None))
        normal = torch.tensor([i for i, lab in enumerate(split.labels) if lab == 0], dtype=torch.long)
        out["diag_ae_floor_l1"] = ae_floor(model, split.images[normal], torch.device(device))
    finally:
        model.train(was_training)
    # a fixed column set, in a fixed order (diad.schema.DIAGNOSTICS)
    return {k: (out[k] if math.isfinite(out[k]) else NAN) for k in DIAGNOSTICS}
