"""Intervals for the numbers a claim compares: the spread between trainings and the noise of a metric.

Two sources of uncertainty, kept apart (the FID literature's traps: FID moves with the sample count and
between latent sets, NVlabs/edm#16, crowsonkb/k-diffusion#51):

- **Between trainings**: a value per seed; :func:`seed_interval` gives Student's t interval of its mean
  (of a paired difference, when the two settings share each seed's data and latents).
- **Between sample sets of one model**: :func:`paired_bootstrap` resamples the sample index jointly for
  every set (samples drawn from common latents are paired: sample i of model A and of model B come from
  the same latent), so the interval of a difference carries the pairing's variance reduction [1].

numpy and scipy only, so claim records can import it without torch. The image metrics to bootstrap
(:func:`madlib.metrics.distances.kid`, :func:`~madlib.metrics.distances.fid_to_reference`) live in metrics.

References:
[1] B. Efron, R. J. Tibshirani, "An Introduction to the Bootstrap", 1993, Ch. 13 (percentile interval).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from scipy import stats

from madlib._checks import check_choice, check_int

__all__ = ["Interval", "seed_interval", "paired_bootstrap", "least_favourable"]


@dataclass(frozen=True)
class Interval:
    """``estimate`` with its two-sided interval [low, high] at ``confidence``; ``method`` says how, ``n`` over what."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


def _confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}")
    return float(confidence)


def seed_interval(values, *, confidence: float = 0.95) -> Interval:
    """Student's t interval of the mean of per-seed values [S] (a paired difference per seed, or one metric).

    With one seed the interval is unbounded (-inf, inf): one training says nothing of the spread between
    trainings, so a claim read on it is inconclusive, never held.
    """
    x = np.asarray(values, float).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"values must be a non-empty array of finite numbers; got {x.tolist()!r}")
    confidence = _confidence(confidence)
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, -np.inf, np.inf, confidence, "t interval over seeds (one seed: unbounded)", 1)
    half = stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return Interval(mean, mean - half, mean + half, confidence, f"t interval over {x.size} seeds", int(x.size))


def paired_bootstrap(statistic: Callable[..., float], *sets, n_boot: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``statistic(*sets)``, resampling one index for all sets at once.

    Args:
        statistic: maps arrays shaped like ``sets`` (rows resampled) to a float, e.g.
            ``lambda a, b: fid(a) - fid(b)`` for two models' features on common latents.
        sets: arrays [n, ...] with the same n; row i of each comes from the same latent (paired).
        n_boot: bootstrap replicates; seed: their draw (same seed, same interval).
    """
    if not sets:
        raise ValueError("paired_bootstrap needs at least one set of samples")
    arrays = [np.asarray(s) for s in sets]
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays) or n < 2:
        raise ValueError(f"sets must share their first dimension (paired samples, n >= 2); got "
                         f"{[a.shape[0] for a in arrays]}")
    n_boot = check_int("n_boot", n_boot, minimum=10)
    confidence = _confidence(confidence)
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    replicates = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        replicates[b] = statistic(*(a[idx] for a in arrays))
    low, high = np.quantile(replicates, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Interval(float(statistic(*arrays)), float(low), float(high), confidence,
                    f"paired percentile bootstrap, {n_boot} replicates", int(n))


def least_favourable(intervals, direction: str) -> Interval:
    """One interval for a claim read on several cells or readouts, each of which must pass: for ``"greater"`` the
    lowest estimate, low and high, for ``"less"`` the highest (held only where every one holds, not held where one
    does not)."""
    intervals = [iv for iv in intervals if iv is not None]
    if not intervals:
        raise ValueError("intervals must hold at least one Interval")
    pick = {"greater": min, "less": max}[check_choice("direction", direction, ("greater", "less"))]
    return Interval(pick(iv.estimate for iv in intervals), pick(iv.low for iv in intervals), pick(iv.high for iv in intervals),
                    intervals[0].confidence, f"least favourable of {len(intervals)}: {intervals[0].method}",
                    min(iv.n for iv in intervals))
