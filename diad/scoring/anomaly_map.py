"""Anomaly map from backbone features of an image and its reconstruction (paper: M^n = 1 - cos, S = sum_n M^n)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diad.errors import DiadError
from diad.scoring.backbones import FeatureExtractor

DEFAULT_SIGMA = 4.0  # the cpu profile's (64 px); the paper profile uses the paper's sigma 5 at 256 px
TRUNCATE = 4.0  # kernel radius = int(TRUNCATE * sigma + 0.5), as scipy.ndimage.gaussian_filter
ALIGN_CORNERS = True  # the authors' cal_anomaly_map upsamples with align_corners=True


@torch.no_grad()
def anomaly_maps(extractor: FeatureExtractor, images: torch.Tensor, recons: torch.Tensor,
                 sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """(N,3,H,W) images and reconstructions in [0,1] -> (N,H,W) float32 map.

    M = G_sigma * sum_n up(1 - cos(F_n(x0), F_n(x_hat))), cosine over channels, up = bilinear to (H,W).
    Runs on the extractor's device; the result is returned on the device of `images`.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape != recons.shape:
        raise DiadError(f"anomaly_maps expects images and recons of one shape (N,3,H,W), got "
                        f"{tuple(images.shape)} and {tuple(recons.shape)}")
    if not sigma >= 0:
        raise DiadError(f"anomaly map sigma {sigma!r}: expected a number >= 0 (0 = no smoothing)")
    device = next(extractor.buffers()).device
    n, _, h, w = images.shape
    both = torch.cat([images, recons]).to(device=device, dtype=torch.float32)
    total = torch.zeros(n, 1, h, w, device=device)
    for feats in extractor(both):
        m = 1.0 - F.cosine_similarity(feats[:n], feats[n:], dim=1)  # (N,h_i,w_i)
        total += F.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=ALIGN_CORNERS)
    return gaussian_blur(total[:, 0], sigma).to(images.device)


def gaussian_kernel1d(sigma: float, truncate: float = TRUNCATE, dtype=torch.float32,
                      device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius int(truncate*sigma + 0.5) (scipy's kernel), shape (2r+1,)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian_blur(maps: torch.Tensor, sigma: float, truncate: float = TRUNCATE) -> torch.Tensor:
    """(N,H,W) -> (N,H,W): separable Gaussian with scipy's mode="reflect" borders; sigma 0 = identity."""
    if sigma == 0:
        return maps
    kernel = gaussian_kernel1d(sigma, truncate, dtype=maps.dtype, device=maps.device)
    radius = (kernel.numel() - 1) // 2
    x = maps[:, None]  # (N,1,H,W)
    x = F.conv2d(_pad_symmetric(x, radius, dim=2), kernel.view(1, 1, -1, 1))
    x = F.conv2d(_pad_symmetric(x, radius, dim=3), kernel.view(1, 1, 1, -1))
    return x[:, 0]


def _pad_symmetric(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Pad `pad` samples on both ends of `dim` by half-sample mirroring (d c b a | a b c d | d c b a).

    This is scipy's "reflect"; torch's own "reflect" mode skips the edge sample, so we build it here.
    Pads longer than the signal are done in rounds, which gives scipy's periodic extension.
    """
    left = right = pad
    while left > 0 or right > 0:
        size = x.shape[dim]
        a, b = min(left, size), min(right, size)
        head = x.narrow(dim, 0, a).flip(dim)
        tail = x.narrow(dim, size - b, b).flip(dim)
        x = torch.cat([head, x, tail], dim=dim)
        left, right = left - a, right - b
    return x

