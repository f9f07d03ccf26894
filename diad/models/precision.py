"""Mixed precision as a config switch: fp32 (default, exact) or bf16 autocast (GPU speed; also runs on CPU)."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["fp32", "bf16"]


def autocast(device: torch.device | str, precision: Precision):
    """A context in which matmuls and convs run in `precision`; fp32 is a no-op.

    bf16 has fp32's exponent range, so no loss scaling is needed (unlike fp16). Callers keep what must
    stay exact outside it: the loss, the DDIM update and the optimizer step run in fp32.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise ValueError(f"precision {precision!r}: expected fp32 or bf16")
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
