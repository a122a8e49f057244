"""Small statistics used by claim checks, so that notebooks state conditions, not formulas."""

from __future__ import annotations

import numpy as np


def mean_z_score(samples, expected, *, axis: int = -1, se=None) -> np.ndarray:
    """(mean(samples) - expected) / se along ``axis``; se defaults to the sample standard error.

    Pass ``se`` when a bound on the standard error is known: heavy-tailed samples make the
    sample standard error unreliable.
    """
    samples = np.asarray(samples, float)
    if se is None:
        se = samples.std(axis=axis, ddof=1) / np.sqrt(samples.shape[axis])
    return (samples.mean(axis=axis) - expected) / se


def monotone(values, *, decreasing: bool = True, strict: bool = True) -> bool:
    """Whether a 1-D sequence is monotone (strictly by default)."""
    diff = np.diff(np.asarray(values, float))
    if decreasing:
        diff = -diff
    return bool(np.all(diff > 0) if strict else np.all(diff >= 0))
