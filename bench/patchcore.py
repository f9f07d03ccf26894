"""A PatchCore-style nearest-neighbour baseline on the shared frozen backbone (Roth et al. 2022, simplified).

fit: backbone features of the normal training images at `layers`, each locally averaged over 3x3
neighbourhoods, upsampled to the finest chosen layer and concatenated -> one vector per patch;
all patches form the memory bank (optionally a random subset: "random coreset", not PatchCore's greedy one).
predict: per test patch the Euclidean distance to its nearest bank vector -> (h,w) distance map,
upsampled and Gaussian-smoothed to the anomaly map; image score = the largest patch distance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diad.scoring import FeatureExtractor, gaussian_blur

DEFAULT_LAYERS = (2, 3)  # strides 8 and 16: PatchCore's mid-level choice (WRN50 layer2+layer3)


class PatchCore:
    """Memory bank of locally aggregated patch features; nearest-neighbour distance as the anomaly score."""

    def __init__(self, extractor: FeatureExtractor, coreset_fraction: float | None = None, sigma: float = 4.0,
                 batch_size: int = 32, chunk: int = 2048, seed: int = 0):
        self.extractor = extractor
        self.coreset_fraction = coreset_fraction
        self.sigma = sigma
        self.batch_size = batch_size
        self.chunk = chunk  # test patches per cdist block: bounds memory at chunk x bank size
        self.seed = seed
        self.bank: torch.Tensor | None = None  # (M, C)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) in [0,1] -> (N,C,h,w) patch features at the finest chosen layer's resolution."""
        feats = self.extractor(images)
        size = feats[0].shape[-2:]
        out = []
        for f in feats:
            f = F.avg_pool2d(f, kernel_size=3, stride=1, padding=1, count_include_pad=False)  # 3x3 neighbourhood
            out.append(F.interpolate(f, size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size else f)
        return torch.cat(out, dim=1)

    def _embed_all(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or float (N,3,H,W) -> (N,C,h,w), in batches."""
        parts = []
        for i in range(0, len(images), self.batch_size):
            x = images[i:i + self.batch_size]
            parts.append(self.embed(x.float() / 255.0 if x.dtype == torch.uint8 else x))
        return torch.cat(parts)

    def fit(self, images: torch.Tensor) -> "PatchCore":
        """Build the memory bank from normal images (N,3,H,W), uint8 or float [0,1]."""
        emb = self._embed_all(images)  # (N,C,h,w)
        bank = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
        if self.coreset_fraction is not None and self.coreset_fraction < 1.0:
            g = torch.Generator().manual_seed(self.seed)
            keep = max(1, int(round(self.coreset_fraction * len(bank))))
            bank = bank[torch.randperm(len(bank), generator=g)[:keep]]
        self.bank = bank.contiguous()
        return self

    @torch.no_grad()
    def nearest_distances(self, patches: torch.Tensor) -> torch.Tensor:
        """(P,C) -> (P,) Euclidean distance of each patch to its nearest memory-bank vector."""
        out = torch.empty(len(patches))
        for i in range(0, len(patches), self.chunk):
            d = torch.cdist(patches[i:i + self.chunk], self.bank, compute_mode="use_mm_for_euclid_dist")
            out[i:i + self.chunk] = d.min(dim=1).values
        return out

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,3,H,W) -> (anomaly maps (N,H,W) float32, image scores (N,) = max patch distance)."""
        if self.bank is None:
            raise RuntimeError("PatchCore.predict called before fit")
        n, _, h, w = images.shape
        maps, scores = [], []
        for i in range(0, n, self.batch_size):
            emb = self._embed_all(images[i:i + self.batch_size])  # (B,C,h',w')
            b, c, hp, wp = emb.shape
            dist = self.nearest_distances(emb.permute(0, 2, 3, 1).reshape(-1, c)).view(b, 1, hp, wp)
            scores.append(dist.flatten(1).max(dim=1).values)
            up = F.interpolate(dist, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            maps.append(gaussian_blur(up, self.sigma))
        return torch.cat(maps), torch.cat(scores)
