"""SIMS's yardsticks of a loop (Sec. 2, S:291-307): distance ratios to generation 1, and their spread over runs."""

from __future__ import annotations

import numpy as np

from madlib._checks import check_int


def madness_ratios(dist, conv_from: int) -> tuple[np.ndarray, np.ndarray]:
    # SIMS Sec. 2: prevention iff E[dist(G_inf)] <= E[dist(G_1)]; E[dist(G_inf)] = mean over t >= conv_from (S:640)
    """dist [G, ..., runs] with generation 1 first -> (E[dist(G_t)] / E[dist(G_1)] [G, ...], the mean of that
    ratio over generations conv_from..G [...]); expectations are means over the last axis (runs)."""
    dist = np.asarray(dist, float)
    conv_from = check_int("conv_from", conv_from, minimum=1)
    if dist.ndim < 2 or conv_from > dist.shape[0]:
        raise ValueError(f"dist must be [generations, ..., runs] with conv_from <= generations; got shape "
                         f"{dist.shape} and conv_from = {conv_from}")
    expected = dist.mean(-1)
    curve = expected / expected[0]
    return curve, curve[conv_from - 1:].mean(0)


def bootstrap_runs(statistic, dist, *, draws: int = 1000, rng: np.random.Generator) -> np.ndarray:
    """``statistic`` of ``dist`` [..., runs] with the runs resampled with replacement: [draws, ...]."""
    dist = np.asarray(dist, float)
    runs = dist.shape[-1]
    picks = rng.integers(0, runs, size=(check_int("draws", draws, minimum=1), runs))
    return np.stack([statistic(dist[..., p]) for p in picks])
