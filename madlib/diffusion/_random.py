"""Random draws on the generator's device, moved to where the tensors live.

A CPU ``torch.Generator`` then drives training and sampling on any device (and gives the same numbers
there); ``generator=None`` draws from the global generator of ``device``.
"""

from __future__ import annotations

import torch


def _source(generator: torch.Generator | None, device) -> torch.device:
    return torch.device(device) if generator is None else generator.device


def randn(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """Standard normal draws of ``shape`` on ``device``."""
    return torch.randn(shape, generator=generator, device=_source(generator, device), dtype=dtype).to(device)


def randint(high: int, shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Integers in [0, high) of ``shape`` on ``device``."""
    return torch.randint(0, high, shape, generator=generator, device=_source(generator, device)).to(device)


def rand(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform draws in [0, 1) of ``shape`` on ``device`` (float32)."""
    return torch.rand(shape, generator=generator, device=_source(generator, device)).to(device)
