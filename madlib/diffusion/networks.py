"""Small denoiser networks, batched over an ensemble of independent members.

Ensembles lead every tensor: inputs [R, B, d], parameters [R, fan_in, fan_out]. One batched matmul
(torch.baddbmm) per layer trains R independent models at the cost of one larger model, which is
where the speed of many-run experiments (SIMS-1: hundreds of runs) comes from. The image U-Net of
the MNIST experiments is :class:`madlib.diffusion.unet.UNet`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from madlib._checks import check_int


class EnsembleMLP(nn.Module):
    """R independent MLPs eps(x, t[, y]) -> [R, B, d].

    Input per member: x [B, d], a scalar time feature t (DDPM: the raw step index, as the SIMS toy
    DDPM does; EDM: c_noise) and, with ``num_classes``, a one-hot label whose extra last slot is the
    "no label" token of condition dropout. Hidden layers: ``depth`` x ``width`` with SiLU.
    Initialisation as torch.nn.Linear (uniform in +-1/sqrt(fan_in)), drawn from ``generator``.
    """

    def __init__(self, members: int, dim: int, *, width: int = 64, depth: int = 4, num_classes: int = 0,
                 generator: torch.Generator | None = None, device=None):
        super().__init__()
        self.members = check_int("members", members, minimum=1)
        self.dim = check_int("dim", dim, minimum=1)
        self.num_classes = check_int("num_classes", num_classes, minimum=0)
        check_int("depth", depth, minimum=1)
        check_int("width", width, minimum=1)
        sizes = [dim + 1 + (num_classes + 1 if num_classes else 0)] + [width] * depth + [dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(members, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(members, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w.to(device)))
            self.biases.append(nn.Parameter(b.to(device)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # x [R, B, d], t [R, B] or broadcastable, y [R, B] int labels (num_classes = no label) or None
        if x.ndim != 3 or x.shape[0] != self.members or x.shape[2] != self.dim:
            raise ValueError(f"x must be [members={self.members}, batch, dim={self.dim}]; got {tuple(x.shape)}")
        parts = [x, torch.broadcast_to(torch.as_tensor(t, dtype=x.dtype, device=x.device), x.shape[:2])[..., None]]
        if self.num_classes:
            labels = torch.full(x.shape[:2], self.num_classes, device=x.device) if y is None else y
            parts.append(nn.functional.one_hot(labels.long(), self.num_classes + 1).to(x.dtype))
        h = torch.cat(parts, dim=-1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # [R, B, fan_out]
            if i < len(self.weights) - 1:
                h = nn.functional.silu(h)
        return h

    def member(self, index: int) -> "EnsembleMLP":
        """A one-member copy of member ``index`` (for tests and for one-at-a-time baselines)."""
        single = EnsembleMLP.__new__(EnsembleMLP)
        nn.Module.__init__(single)
        single.members, single.dim, single.num_classes = 1, self.dim, self.num_classes
        single.weights = nn.ParameterList([nn.Parameter(w[index:index + 1].detach().clone()) for w in self.weights])
        single.biases = nn.ParameterList([nn.Parameter(b[index:index + 1].detach().clone()) for b in self.biases])
        return single
