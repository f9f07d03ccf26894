"""Where a run computes and what it cost: device choice, thread count and seed, peak memory."""

from __future__ import annotations

import resource

import torch

from diad.errors import DiadError


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; an explicit cuda without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DiadError("device 'cuda' was asked for but torch sees no GPU; use device=cpu or auto")
    return torch.device(name)


def peak_mem_mb(device: torch.device) -> float:
    """GPU peak allocation on cuda, else the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def set_threads_and_seed(threads: int | None, seed: int) -> None:
    """torch.set_num_threads (None keeps torch's default) and the global seed."""
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
