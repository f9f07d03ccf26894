"""Spatial-aware Feature Fusion (docs/method.md, SFF): fuse the SGEB3 tensors into each SGEB4 tensor."""

from __future__ import annotations

import torch
from torch import nn

from diad.models.config import SFF_NORMS


def _norm_act(kind: str, channels: int) -> tuple[nn.Module, nn.Module]:
    """The branch normalisation and activation of paper Table 5 (IN+SiLU default, BN+ReLU ablation)."""
    if kind not in SFF_NORMS:  # the config refuses unknown kinds; this guards direct callers
        raise ValueError(f"SFF kind {kind!r} is not one of {', '.join(SFF_NORMS)}")
    norm, act = SFF_NORMS[kind]
    return getattr(nn, norm)(channels), getattr(nn, act)()


class SFFBranch(nn.Sequential):
    """conv3x3 stride 2 (no bias) -> norm -> act: (N, C_in, H, W) -> (N, C_out, H/2, W/2)."""

    def __init__(self, in_ch: int, out_ch: int, kind: str, zero_init: bool):
        norm, act = _norm_act(kind, out_ch)
        conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=2, padding=1, bias=False)
        if zero_init:
            nn.init.zeros_(conv.weight)
        super().__init__(conv, norm, act)


class SFF(nn.Module):
    """out_i = act(base_i + sum_j branch_ij(sgeb3_j)) for i, j over the three SGEB4 / SGEB3 tensors (nine branches).

    base_i: the SGEB4 tensor the fusion joins, when the outer activation covers it (the authors' code,
    sgn/sgn.py: outs[9+i] = silu(outs[9+i] + sum_j down_ji(outs[6+j]))); None = act on the branch sum alone.
    """

    def __init__(
        self,
        in_channels: list[int],
        out_channels: list[int],
        kind: str,
        zero_init: bool,
    ):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.ModuleList(SFFBranch(c_in, c_out, kind, zero_init) for c_in in in_channels)
            for c_out in out_channels
        )
        self.act = _norm_act(kind, 1)[1]

    def forward(self, sgeb3: list[torch.Tensor], base: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """SGEB3 tensors (N, C3_j, H, W) [+ SGEB4 tensors (N, C4_i, H/2, W/2)] -> one fused tensor per SGEB4 output."""
        sums = [sum(b(x) for b, x in zip(row, sgeb3)) for row in self.branches]
        if base is not None:
            sums = [b + s for b, s in zip(base, sums)]
        return [self.act(s) for s in sums]
