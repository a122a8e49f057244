"""Mode coverage and per-mode variance of samples from a known mixture (MAD App. B.2, Fig. 14-15).

Each sample belongs to the *cell* of its nearest mode centre. A sample is *high quality* when it lies
within ``radius_std`` (default 3) mode standard deviations of that centre (the convention of the
25-Gaussian GAN benchmarks). Mode m is *covered* when at least ``min_share * n / M`` of the n samples are
high-quality samples of its cell (default: a tenth of its share under equal weights). The *mode
variance* is the trace of the unbiased covariance of the samples in the cell (0 with fewer than 2),
and the average over all M modes is MAD Fig. 15's "average per-mode variance" (a lost mode counts 0).
The definitions agree with :func:`madlib.models.mixture.mode_statistics` where both exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from madlib._checks import check_interval

__all__ = ["ModeCoverage", "mode_coverage"]


@dataclass(frozen=True)
class ModeCoverage:
    covered: int  # number of covered modes
    n_modes: int
    covered_mask: np.ndarray  # [M] bool
    counts: np.ndarray  # [M] samples per cell
    mode_variance: np.ndarray  # [M] trace of the covariance of each cell's samples
    mean_mode_variance: float
    high_quality: float  # share of samples within radius_std * std of their nearest centre
    n: int


def mode_coverage(samples, means, std: float, *, radius_std: float = 3.0, min_share: float = 0.1) -> ModeCoverage:
    """Covered modes, per-mode variance and sample quality of samples [n, d] from a mixture with means [M, d].

    Args:
        samples: [n, d] points (e.g. a model's samples).
        means: [M, d] mode centres (e.g. ``grid_mixture().means``).
        std: standard deviation of each mode (e.g. ``grid_mixture().std``).
        radius_std: high-quality radius in units of ``std``.
        min_share: a mode is covered with at least ``min_share * n / M`` high-quality samples.
    """
    x = torch.as_tensor(samples).double()
    mu = torch.as_tensor(means).double().to(x.device)
    if x.ndim != 2 or mu.ndim != 2 or x.shape[1] != mu.shape[1]:
        raise ValueError(f"samples must be [n, d] and means [M, d]; got {tuple(x.shape)} and {tuple(mu.shape)}")
    std = check_interval("std", std, 0.0, np.inf, low_open=True)
    radius_std = check_interval("radius_std", radius_std, 0.0, np.inf, low_open=True)
    min_share = check_interval("min_share", min_share, 0.0, 1.0)
    n, M = x.shape[0], mu.shape[0]
    d = torch.cdist(x, mu)  # [n, M]
    dist, cell = d.min(1)
    near = dist <= radius_std * std
    hits = torch.bincount(cell[near], minlength=M)
    counts = torch.bincount(cell, minlength=M)
    var = torch.zeros(M, dtype=torch.float64)
    for m in torch.nonzero(counts >= 2).flatten().tolist():
        pts = x[cell == m]
        var[m] = ((pts - pts.mean(0)) ** 2).sum() / (pts.shape[0] - 1)
    covered = (hits >= min_share * n / M).cpu().numpy()
    return ModeCoverage(covered=int(covered.sum()), n_modes=M, covered_mask=covered, counts=counts.cpu().numpy(),
                        mode_variance=var.numpy(), mean_mode_variance=float(var.mean()),
                        high_quality=float(near.double().mean()), n=n)
