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


def seed_spread(values, *, axis: int = 0) -> dict:
    """Mean, standard deviation (ddof 1; 0 for one seed), min and max across seeds along ``axis``, and their count."""
    values = np.asarray(values, float)
    n = values.shape[axis]
    return {"mean": values.mean(axis=axis), "std": values.std(axis=axis, ddof=1) if n > 1 else np.zeros_like(values.mean(axis=axis)),
            "min": values.min(axis=axis), "max": values.max(axis=axis), "seeds": n}


def seeds_agree(differences) -> bool:
    """Whether every seed's paired difference is positive: a claim held by each run, not by an average
    that one lucky seed carries."""
    differences = np.asarray(differences, float)
    return bool(differences.size > 0 and np.all(differences > 0))


def first_last(values, *, per: str = "per_seed") -> dict:
    """The spread over seeds (rows) of the first and last column of ``values`` [S, G] (generation 1 and T), with
    the rows themselves under ``per``: what a loop claim shows of a metric."""
    values = np.asarray(values, float)
    return {"generation_1": seed_spread(values[:, 0]), "generation_T": seed_spread(values[:, -1]), per: values}


def with_spread(values) -> dict:
    """Per-seed values [S] beside their :func:`seed_spread`: what a claim shows of one number per seed."""
    return {"per_seed": values, "spread": seed_spread(values)}


def rounded(values: dict, keys=None, digits: int = 3) -> dict:
    """``{key: round(values[key], digits)}`` for ``keys`` (default all): metric dicts shown in a notebook's output."""
    return {k: round(float(values[k]), digits) for k in (values if keys is None else keys)}
