"""Small denoiser networks, batched over an ensemble of independent members.

Ensembles lead every tensor: inputs [R, B, d], parameters [R, fan_in, fan_out]. One batched matmul
(torch.baddbmm) per layer trains R independent models at the cost of one larger model, which is
where the speed of many-run experiments (SIMS-1: hundreds of runs) comes from. The image U-Net of
the MNIST experiments is :class:`madlib.diffusion.unet.UNet`.

- :class:`EnsembleMLP`: SiLU MLP with the step index as one more input (madlib's SIMS-1 recipe).
- :class:`EnsembleResidualMLP`: the network of the toy DDPM that SIMS cites (residual LayerNorm blocks,
  the raw step index concatenated into every block).
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


def _uniform(members: int, fan_in: int, fan_out: int, generator, device) -> tuple[nn.Parameter, nn.Parameter]:
    """torch.nn.Linear's initialisation, per member: weight [R, fan_in, fan_out] and bias [R, 1, fan_out]
    uniform in +-1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    w = (torch.rand(members, fan_in, fan_out, generator=generator) * 2 - 1) * bound
    b = (torch.rand(members, 1, fan_out, generator=generator) * 2 - 1) * bound
    return nn.Parameter(w.to(device)), nn.Parameter(b.to(device))


class EnsembleResidualMLP(nn.Module):
    # albarji/toy-diffusion DiffusionModel (SIMS S:574): Linear in, residual blocks with t in each, Linear out
    """R independent copies of the toy DDPM network SIMS cites, eps(x, t) -> [R, B, d].

    h = W_in [x, t] + b_in (width n); then ``blocks`` times
        u = ReLU(LN_2(W_2 ReLU(LN_1(W_1 [h, t] + b_1)) + b_2)),  h <- u + h
    with W_1: (n + 1) -> (n + 1), W_2: (n + 1) -> n, LayerNorms with learned gain and bias (eps 1e-5);
    finally eps = W_out h + b_out. t is the raw step index (0..T-1, a float), concatenated as one more
    feature at the input and in every block. Linear layers are initialised as torch.nn.Linear (drawn
    from ``generator``), LayerNorms as torch.nn.LayerNorm (gain 1, bias 0).
    """

    def __init__(self, members: int, dim: int, *, width: int = 64, blocks: int = 2,
                 generator: torch.Generator | None = None, device=None):
        super().__init__()
        self.members = check_int("members", members, minimum=1)
        self.dim = check_int("dim", dim, minimum=1)
        self.width = check_int("width", width, minimum=1)
        self.blocks = check_int("blocks", blocks, minimum=0)
        self.num_classes = 0
        n = self.width
        self.w_in, self.b_in = _uniform(members, dim + 1, n, generator, device)
        self.w1, self.b1, self.w2, self.b2 = (nn.ParameterList() for _ in range(4))
        self.g1, self.c1, self.g2, self.c2 = (nn.ParameterList() for _ in range(4))  # LayerNorm gains and biases
        for _ in range(self.blocks):
            w, b = _uniform(members, n + 1, n + 1, generator, device)
            self.w1.append(w), self.b1.append(b)
            w, b = _uniform(members, n + 1, n, generator, device)
            self.w2.append(w), self.b2.append(b)
            self.g1.append(nn.Parameter(torch.ones(members, 1, n + 1, device=device)))
            self.c1.append(nn.Parameter(torch.zeros(members, 1, n + 1, device=device)))
            self.g2.append(nn.Parameter(torch.ones(members, 1, n, device=device)))
            self.c2.append(nn.Parameter(torch.zeros(members, 1, n, device=device)))
        self.w_out, self.b_out = _uniform(members, n, dim, generator, device)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # x [R, B, d], t [R, B] or broadcastable (the raw step index); y must be None (no classes)
        if x.ndim != 3 or x.shape[0] != self.members or x.shape[2] != self.dim:
            raise ValueError(f"x must be [members={self.members}, batch, dim={self.dim}]; got {tuple(x.shape)}")
        if y is not None:
            raise ValueError("EnsembleResidualMLP is unconditional: y must be None")
        t = torch.broadcast_to(torch.as_tensor(t, dtype=x.dtype, device=x.device), x.shape[:2])[..., None]  # [R, B, 1]
        h = torch.baddbmm(self.b_in, torch.cat([x, t], dim=-1), self.w_in)  # [R, B, n]
        ln = nn.functional.layer_norm
        for k in range(self.blocks):
            u = torch.baddbmm(self.b1[k], torch.cat([h, t], dim=-1), self.w1[k])  # [R, B, n + 1]
            u = nn.functional.relu(ln(u, u.shape[-1:]) * self.g1[k] + self.c1[k])
            u = torch.baddbmm(self.b2[k], u, self.w2[k])  # [R, B, n]
            h = nn.functional.relu(ln(u, u.shape[-1:]) * self.g2[k] + self.c2[k]) + h
        return torch.baddbmm(self.b_out, h, self.w_out)  # [R, B, d]
