"""Exact 2D toy distributions of the papers: each has ``sample``, ``log_prob`` and ``score``.

- :func:`sims_gaussian`: P_r = N([0, 0], [[2, 1], [1, 2]]) of SIMS Sec. 4.2.1 (Fig. 4).
- :func:`grid_mixture`: the 25-mode Gaussian mixture of MAD App. B.2 (Fig. 14-15). The paper takes it
  "as in [82]" and does not print the layout; **project choice**: a 5x5 grid of means
  {-2, -1, 0, 1, 2}^2 (spacing 1), isotropic std 0.1 per mode (modes 10 std apart), equal weights.
- :class:`Rosenbrock`: p(x1, x2) ∝ exp(-x1^2 / 2 - (x2 - x1^2)^2) of MAD App. B.4 (Fig. 17).

Conventions: points are torch tensors [..., 2]; ``log_prob`` returns [...] and ``score`` (the gradient
of log p in x) [..., 2], both in float64 unless the input is float32. ``sample(n, seed=... or
generator=...)`` needs an explicit seed or ``torch.Generator`` (on CPU; the result is moved to
``device``), so a draw is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from madlib._checks import check_int, check_interval

__all__ = ["GaussianToy", "GaussianMixtureToy", "Rosenbrock", "sims_gaussian", "grid_mixture", "TOYS"]


def _generator(seed, generator) -> torch.Generator:
    if (seed is None) == (generator is None):
        raise ValueError("pass exactly one of seed (an int) or generator (a torch.Generator on CPU)")
    if generator is not None:
        return generator
    return torch.Generator().manual_seed(check_int("seed", seed, minimum=0))


def _points(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.double()
    if x.shape[-1] != 2:
        raise ValueError(f"x must have shape [..., 2]; got {tuple(x.shape)}")
    return x


@dataclass(frozen=True)
class GaussianToy:
    """N(mean, cov) in 2D: mean [2], cov [2, 2] (float64 tensors)."""

    mean: torch.Tensor
    cov: torch.Tensor

    def sample(self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
               device="cpu") -> torch.Tensor:
        """n points [n, 2]: mean + L z with L L^T = cov, z ~ N(0, I)."""
        g = _generator(seed, generator)
        z = torch.randn(check_int("n", n, minimum=1), 2, generator=g, dtype=torch.float64)
        return (self.mean + z @ torch.linalg.cholesky(self.cov).T).to(device)

    def log_prob(self, x) -> torch.Tensor:
        """log N(x; mean, cov) = -1/2 (x - mu)^T cov^-1 (x - mu) - log(2 pi) - 1/2 log det cov."""
        x = _points(x)
        prec = torch.linalg.inv(self.cov).to(x)
        dev = x - self.mean.to(x)
        quad = torch.einsum("...i,ij,...j->...", dev, prec, dev)
        return -0.5 * quad - math.log(2 * math.pi) - 0.5 * torch.logdet(self.cov).to(x)

    def score(self, x) -> torch.Tensor:
        """grad log p = -cov^-1 (x - mean), [..., 2]."""
        x = _points(x)
        return -(x - self.mean.to(x)) @ torch.linalg.inv(self.cov).to(x).T


@dataclass(frozen=True)
class GaussianMixtureToy:
    """Equal-weight isotropic mixture sum_m (1/M) N(means[m], std^2 I); means [M, 2]."""

    means: torch.Tensor
    std: float

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    def sample(self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
               device="cpu", return_modes: bool = False):
        """n points [n, 2] (and the mode index [n] of each if ``return_modes``)."""
        g = _generator(seed, generator)
        n = check_int("n", n, minimum=1)
        mode = torch.randint(self.n_modes, (n,), generator=g)
        x = self.means[mode] + self.std * torch.randn(n, 2, generator=g, dtype=torch.float64)
        return (x.to(device), mode.to(device)) if return_modes else x.to(device)

    def _log_terms(self, x):  # [..., M]: log(1/M) + log N(x; mu_m, std^2 I)
        d2 = ((x[..., None, :] - self.means.to(x)) ** 2).sum(-1)
        return -0.5 * d2 / self.std**2 - math.log(2 * math.pi * self.std**2) - math.log(self.n_modes)

    def log_prob(self, x) -> torch.Tensor:
        """log p(x) = logsumexp_m [log(1/M) + log N(x; mu_m, std^2 I)], [...]."""
        return torch.logsumexp(self._log_terms(_points(x)), dim=-1)

    def score(self, x) -> torch.Tensor:
        """grad log p = sum_m r_m(x) (mu_m - x) / std^2, r = softmax of the log terms (responsibilities)."""
        x = _points(x)
        r = torch.softmax(self._log_terms(x), dim=-1)  # [..., M]
        return (r @ self.means.to(x) - x) / self.std**2

    def mode_of(self, x) -> torch.Tensor:
        """Index [...] of the nearest mean (the mode a point is assigned to)."""
        x = _points(x)
        return ((x[..., None, :] - self.means.to(x)) ** 2).sum(-1).argmin(-1)


@dataclass(frozen=True)
class Rosenbrock:
    """p(x1, x2) = exp(-x1^2 / 2 - (x2 - x1^2)^2) / Z, Z = sqrt(2 pi) sqrt(pi) = pi sqrt(2) (MAD App. B.4).

    Exact factorisation: x1 ~ N(0, 1), x2 | x1 ~ N(x1^2, 1/2) (the x2 integral of exp(-(x2 - x1^2)^2)
    is sqrt(pi) whatever x1 is), which gives both the sampler and Z in closed form.
    Reference: Pagani, Wiegand & Nadarajah, Scand. J. Statist. 2022 (MAD ref. [85]).
    """

    log_norm: float = math.log(math.pi * math.sqrt(2.0))

    def sample(self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
               device="cpu") -> torch.Tensor:
        g = _generator(seed, generator)
        z = torch.randn(check_int("n", n, minimum=1), 2, generator=g, dtype=torch.float64)
        x1 = z[:, 0]
        x2 = x1**2 + math.sqrt(0.5) * z[:, 1]
        return torch.stack([x1, x2], dim=-1).to(device)

    def log_prob(self, x) -> torch.Tensor:
        x = _points(x)
        x1, x2 = x[..., 0], x[..., 1]
        return -0.5 * x1**2 - (x2 - x1**2) ** 2 - self.log_norm

    def score(self, x) -> torch.Tensor:
        """(d/dx1, d/dx2) log p = (-x1 + 4 x1 (x2 - x1^2), -2 (x2 - x1^2))."""
        x = _points(x)
        x1, x2 = x[..., 0], x[..., 1]
        return torch.stack([-x1 + 4 * x1 * (x2 - x1**2), -2 * (x2 - x1**2)], dim=-1)


def sims_gaussian() -> GaussianToy:
    """P_r = N([0, 0], [[2, 1], [1, 2]]) of SIMS Sec. 4.2.1 (S:574, Fig. 4)."""
    return GaussianToy(torch.zeros(2, dtype=torch.float64),
                       torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64))


def grid_mixture(side: int = 5, spacing: float = 1.0, std: float = 0.1) -> GaussianMixtureToy:
    """side x side grid of modes centred on 0 (default 5x5 = 25 modes, MAD App. B.2; layout a project choice).

    Means [side^2, 2] ordered row by row: (x, y) = spacing * (i - (side-1)/2, j - (side-1)/2).
    """
    side = check_int("side", side, minimum=1)
    spacing = check_interval("spacing", spacing, 0.0, math.inf, low_open=True)
    std = check_interval("std", std, 0.0, math.inf, low_open=True)
    ticks = spacing * (torch.arange(side, dtype=torch.float64) - (side - 1) / 2)
    means = torch.cartesian_prod(ticks, ticks)  # [side^2, 2]
    return GaussianMixtureToy(means, std)


TOYS = {"sims_gaussian": sims_gaussian, "grid_mixture": grid_mixture, "rosenbrock": Rosenbrock}
