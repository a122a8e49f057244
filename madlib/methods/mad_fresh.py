"""The Gaussian fresh-data loop of MAD Sec. 5: its limit, the effective sample size, the admissible region.

Reference: Alemohammad et al., "Self-Consuming Generative Models Go MAD" (ICLR 2024), Sec. 5.1-5.3,
Eq. 3-4, Fig. 10-12 and App. G, Fig. 30-31 (``../shared/papers/001_95093755c443ee8d.txt``, lines 268-305
and 466-481).

Setting (MAD Sec. 5.1): P_r = N(0, I_d). Generation 1 fits n_ini real points; generation t >= 2 fits
one Gaussian (sample mean, unbiased covariance, MAD Eq. 1) to n_r fresh real points pooled with n_s
synthetic points from N(mu_{t-1}, lambda Sigma_{t-1}). The loops run on
:func:`madlib.loops.run_loop` with a :class:`madlib.models.gaussian.GaussianFamily` whose samples are
exact sufficient statistics, so a generation costs the same for every n; dist = W2 (closed form).

- :func:`fresh_trajectories`: E[dist(G^t, P_r)] along the loop, runs (and lambdas) batched.
- :func:`fresh_limits`: WD(n_r, n_s, lambda) of MAD Eq. 3 from the tail of the trajectory, after a
  burn-in of several mixing times (:func:`mixing_time`), with a standard error over runs.
- :func:`real_only_baseline`: E[dist(G(n), P_r)] for a model fitted on n real points only.
- :func:`effective_sample_size`, :func:`solve_effective_sample_size`: n_e of MAD Eq. 4.
- :func:`effective_sample_grid`, :func:`admissible_threshold`: n_e / n_r over a grid of cells and the
  largest admissible n_s (MAD Fig. 11-12).
- :func:`growing_trajectories`: the growing dataset with a real fraction p (MAD App. G exp. 2, Fig. 31).

Batch convention: ``w2`` arrays are [G, L, R]: generations, sampling biases lambda, runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq
from scipy.stats import chi2

from madlib._checks import check_int, check_interval
from madlib.loops import LoopSpec, run_loop
from madlib.models.gaussian import GaussianFamily, GaussianModel
from madlib.theory.gaussian import GaussianStats, _standard_wishart, sample_gaussian_stats

__all__ = [
    "w2_to_standard_normal",
    "mixing_time",
    "FreshTrajectory",
    "fresh_trajectories",
    "FreshLimit",
    "tail_average",
    "fresh_limits",
    "RealOnlyBaseline",
    "real_only_baseline",
    "EffectiveSampleSize",
    "solve_effective_sample_size",
    "effective_sample_size",
    "EffectiveSampleGrid",
    "effective_sample_grid",
    "admissible_threshold",
    "admissible_threshold_limit",
    "growing_bias_floor",
    "growing_trajectories",
]


def w2_to_standard_normal(mean, cov) -> np.ndarray:
    """W2(N(mean, cov), N(0, I_d)), batched: mean [..., d], cov [..., d, d] -> [...].

    With P_r = N(0, I) the closed form of :func:`madlib.theory.gaussian.w2_gaussian` reduces to
    W2^2 = |mu|^2 + sum_i (sqrt(s_i) - 1)^2 over the eigenvalues s_i of cov: one eigvalsh per run.
    """
    mean, cov = np.asarray(mean, float), np.asarray(cov, float)
    s = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
    return np.sqrt(np.sum(mean ** 2, axis=-1) + np.sum((np.sqrt(s) - 1.0) ** 2, axis=-1))


def _memory_root(c: float, last_k: int) -> float:
    """Largest |z| solving z^K = (c / K)(z^(K-1) + ... + 1): the per-generation contraction of
    x_t = (c / K)(x_{t-1} + ... + x_{t-K}), the mean dynamics of a loop drawing from the last K models."""
    if last_k == 1 or c == 0.0:
        return float(c)
    return float(np.max(np.abs(np.roots(np.r_[1.0, -np.full(last_k, c / last_k)]))))


def mixing_time(n_r: int, n_s: int, lam: float = 1.0, last_k: int = 1) -> float:
    """Generations for the fresh loop to forget its start: max(1 / (1 - a^2), 1 / (1 - lambda a)).

    a = n_s / (n_r + n_s) is the weight of the synthetic part. Given the past, E[mu_t] = a mu_{t-1}
    (so Var mu_t relaxes like a^(2t)) and E[Sigma_t] ~ (1 - a) I + lambda a Sigma_{t-1} (relaxes like
    (lambda a)^t) (../shared/paper-targets.md MAD-2). With the last K models (MAD App. G exp. 1) a is
    replaced by the largest root of z^K = (a / K)(z^(K-1) + ... + 1). Infinite when n_r = 0 and lambda = 1.
    """
    n_r, n_s = _check_sizes(n_r, n_s)
    lam = check_interval("lam", lam, 0.0, 1.0, low_open=True)
    last_k = check_int("last_k", last_k, minimum=1)
    a = n_s / (n_r + n_s)
    rho_mean, rho_cov = _memory_root(a, last_k), _memory_root(lam * a, last_k)
    if rho_mean >= 1.0 or rho_cov >= 1.0:
        return math.inf
    return max(1.0 / (1.0 - rho_mean ** 2), 1.0 / (1.0 - rho_cov))


def _check_sizes(n_r, n_s) -> tuple[int, int]:
    n_r = check_int("n_r", n_r, minimum=0)
    n_s = check_int("n_s", n_s, minimum=0)
    if n_r + n_s < 2:
        raise ValueError(f"n_r + n_s must be >= 2 (each generation fits a covariance); got n_r + n_s = {n_r + n_s}")
    for name, n in (("n_r", n_r), ("n_s", n_s)):
        if n == 1:
            raise ValueError(f"{name} = 1 is not supported: the exact-statistics family draws parts of 0 or >= 2 points")
    return n_r, n_s


class _BiasBlocksFamily(GaussianFamily):
    """GaussianFamily for P_r = N(0, I_d) whose runs come in L blocks of R, block l sampling with bias lam[l].

    The engine runs with lam = 1 and the bias is applied here (drawing from N(mu, lambda Sigma) is drawing
    from the model with covariance lambda Sigma), so cells that differ only in lambda advance as one batch.
    Real draws skip the identity factor: mean ~ N(0, I / n), scatter ~ Wishart_d(I, n - 1) (MAD Eq. 1).
    """

    def __init__(self, dim: int, lam_values, runs: int):
        lam = np.asarray(lam_values, float)
        super().__init__(np.zeros(dim), np.eye(dim), runs * lam.size)
        self.lam = np.repeat(lam, runs)  # [L * R]

    def sample(self, model: GaussianModel, n: int, lam: float, rng: np.random.Generator):
        scaled = GaussianModel(model.mean, model.cov * (lam * self.lam)[:, None, None])
        return sample_gaussian_stats(scaled.mean, scaled.cov, n, 1.0, rng)

    def draw_real(self, n: int, rng: np.random.Generator):
        n = check_int("n", n, minimum=2, why="the covariance needs two points")
        mean = rng.standard_normal((self.runs, self.dim)) / np.sqrt(n)
        return GaussianStats(n=n, mean=mean, scatter=_standard_wishart(self.runs, self.dim, n - 1, rng))

    def summary(self, model: GaussianModel) -> dict[str, np.ndarray]:
        return {"w2": w2_to_standard_normal(model.mean, model.cov)}


def _lam_tuple(lam) -> tuple[float, ...]:
    values = tuple(float(x) for x in np.atleast_1d(np.asarray(lam, float)))
    if not values:
        raise ValueError("lam must hold at least one sampling bias")
    for x in values:
        check_interval("lam", x, 0.0, 1.0, low_open=True)
    return values


@dataclass(frozen=True)
class FreshTrajectory:
    """W2(G^t, P_r) along fresh-data loops: generation [G] (1..T), lam [L], w2 [G, L, R]."""

    n_ini: int
    n_r: int
    n_s: int
    lam: tuple[float, ...]
    last_k: int
    dim: int
    generation: np.ndarray
    w2: np.ndarray


def fresh_trajectories(n_ini: int, n_r: int, n_s: int, lam=1.0, *, dim: int, generations: int, runs: int,
                       seed: int, last_k: int = 1, progress: bool = False) -> FreshTrajectory:
    """The fresh-data loop (MAD Sec. 5.1) for one (n_ini, n_r, n_s) and one or several lambda, R runs each.

    Generation 1 fits n_ini real points; generation t >= 2 fits n_r fresh real points pooled with n_s
    synthetic points from the last ``last_k`` models (MAD App. G exp. 1). All lambdas and runs advance
    as one batch of :func:`madlib.loops.run_loop`. n_s = 0 is plain fresh-data estimation, run as the
    engine's growing loop with real fraction 1 (its fresh loop needs n_s >= 1).

    Returns W2 to P_r = N(0, I_d) of every generation, [G, L, R].
    """
    n_r, n_s = _check_sizes(n_r, n_s)
    n_ini = check_int("n_ini", n_ini, minimum=2, why="generation 1 fits a covariance")
    dim, runs = check_int("dim", dim, minimum=1), check_int("runs", runs, minimum=1)
    lam = _lam_tuple(lam)
    last_k = check_int("last_k", last_k, minimum=1)
    if n_s == 0:
        if last_k != 1:
            raise ValueError(f"last_k must be 1 when n_s = 0 (there is no synthetic data); got {last_k}")
        spec = LoopSpec("growing", generations=generations, n_synth=0, n_ini=n_ini, real_fraction=1.0,
                        sizes=(n_r,) * generations)
    else:
        if n_s < 2 * last_k:
            raise ValueError(f"n_s must be >= 2 last_k (each of the last K models gives >= 2 points); "
                             f"got n_s = {n_s}, last_k = {last_k}")
        spec = LoopSpec("fresh", generations=generations, n_synth=n_s, n_real=n_r, n_ini=n_ini, lam=1.0,
                        last_k=last_k)
    family = _BiasBlocksFamily(dim, lam, runs)
    res = run_loop(family, spec, seed=seed, progress=progress,
                   desc=f"fresh n_r={n_r} n_s={n_s} n_ini={n_ini}")
    w2 = res.records["w2"].reshape(len(res.generation), len(lam), runs)  # [G, L, R]
    return FreshTrajectory(n_ini=n_ini, n_r=n_r, n_s=n_s, lam=lam, last_k=last_k, dim=dim,
                           generation=res.generation, w2=w2)


@dataclass(frozen=True)
class FreshLimit:
    """WD(n_r, n_s, lambda) of MAD Eq. 3, estimated from the tail of R independent loops.

    wd: mean over runs of each run's time average of W2 over the window; se: its standard error
    (runs are independent, so the autocorrelation along a run needs no model). window: the first and
    last generation averaged; the generations before it (``burn`` of them) are discarded.
    drift_z: z-score of (second half - first half) of the window, a check that the tail is stationary.
    mean_path: the mean over runs of W2(G^t, P_r) for every generation t = 1..T, burn-in included.
    """

    n_r: int
    n_s: int
    lam: float
    last_k: int
    dim: int
    n_ini: int
    runs: int
    mixing_time: float
    window: tuple[int, int]
    wd: float
    se: float
    drift_z: float
    mean_path: np.ndarray = field(repr=False, compare=False, default=None)  # [G] mean W2 over runs, generations 1..T


def tail_average(w2: np.ndarray, generation: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard error and drift z-score over runs of the time average of w2 [G, ..., R] over
    generations >= first. Returns three arrays of shape [...]."""
    tail = np.asarray(w2, float)[np.asarray(generation) >= first]  # [W, ..., R]
    if tail.shape[0] < 2:
        raise ValueError(f"the window from generation {first} holds {tail.shape[0]} generations; it needs >= 2")
    runs = tail.shape[-1]
    per_run = tail.mean(axis=0)  # [..., R]
    half = tail.shape[0] // 2
    diff = tail[half:].mean(axis=0) - tail[:half].mean(axis=0)  # [..., R]
    if runs < 2:
        nan = np.full(per_run.shape[:-1], np.nan)
        return per_run.mean(-1), nan, nan
    se = per_run.std(axis=-1, ddof=1) / np.sqrt(runs)
    diff_se = diff.std(axis=-1, ddof=1) / np.sqrt(runs)
    return per_run.mean(-1), se, diff.mean(-1) / np.where(diff_se > 0, diff_se, np.inf)


def _window(tau: float, burn_mixing: float, window_mixing: float, min_window: int) -> tuple[int, int]:
    if not math.isfinite(tau):
        raise ValueError("the loop has no limit to estimate: n_r = 0 with lam = 1 never forgets its start "
                         "(mixing time infinite); pass n_r >= 2")
    burn = max(1, math.ceil(burn_mixing * tau))
    window = max(min_window, math.ceil(window_mixing * tau))
    return burn, window


def fresh_limits(n_r: int, n_s: int, lam=1.0, *, dim: int, runs: int, seed: int, n_ini: int | None = None,
                 last_k: int = 1, burn_mixing: float = 5.0, window_mixing: float = 5.0, min_window: int = 20,
                 progress: bool = False) -> list[FreshLimit]:
    """WD(n_r, n_s, lambda) (MAD Eq. 3) for each lambda of ``lam``, from one batched loop.

    The loop runs burn + window generations with burn = ceil(burn_mixing * tau) discarded and
    window = max(min_window, ceil(window_mixing * tau)) averaged, tau = :func:`mixing_time` of the
    largest lambda (the slowest). n_ini defaults to n_r + n_s (project choice: generation 1 fits as many
    points as every later one; the limit does not depend on it, MAD Sec. 5.2).
    """
    n_r, n_s = _check_sizes(n_r, n_s)
    lam = _lam_tuple(lam)
    check_interval("burn_mixing", burn_mixing, 0.0, math.inf, low_open=True)
    check_interval("window_mixing", window_mixing, 0.0, math.inf, low_open=True)
    min_window = check_int("min_window", min_window, minimum=2)
    tau = mixing_time(n_r, n_s, max(lam), last_k)
    burn, window = _window(tau, burn_mixing, window_mixing, min_window)
    n_ini = n_r + n_s if n_ini is None else n_ini
    traj = fresh_trajectories(n_ini, n_r, n_s, lam, dim=dim, generations=burn + window, runs=runs, seed=seed,
                              last_k=last_k, progress=progress)
    wd, se, drift = tail_average(traj.w2, traj.generation, burn + 1)
    return [FreshLimit(n_r=n_r, n_s=n_s, lam=l, last_k=last_k, dim=dim, n_ini=n_ini, runs=runs,
                       mixing_time=mixing_time(n_r, n_s, l, last_k), window=(burn + 1, burn + window),
                       wd=float(wd[i]), se=float(se[i]), drift_z=float(drift[i]), mean_path=traj.w2[:, i].mean(-1))
            for i, l in enumerate(lam)]


@dataclass(frozen=True)
class RealOnlyBaseline:
    """E[dist(G(n), P_r)] for a Gaussian fitted on n real points of P_r = N(0, I_d) (MAD Eq. 4, left).

    n [N] increasing sizes, mean [N] Monte Carlo means of W2 over ``runs`` draws, se [N] their standard
    errors. Between the grid points the curve is a monotone (PCHIP) interpolation in log n - log W2.
    """

    dim: int
    runs: int
    n: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    _interp: PchipInterpolator = field(repr=False, compare=False)
    _interp_se: PchipInterpolator = field(repr=False, compare=False)

    def __call__(self, n) -> np.ndarray:
        """E[dist(G(n), P_r)] interpolated; n within [n.min(), n.max()]."""
        return np.exp(self._interp(np.log(self._inside(n))))

    def se_at(self, n) -> np.ndarray:
        return np.exp(self._interp_se(np.log(self._inside(n))))

    def log_slope(self, n) -> np.ndarray:
        """d log E[dist] / d log n (about -1/2 for large n)."""
        return self._interp.derivative()(np.log(self._inside(n)))

    def _inside(self, n) -> np.ndarray:
        n = np.asarray(n, float)
        if np.any(n < self.n[0] * (1 - 1e-12)) or np.any(n > self.n[-1] * (1 + 1e-12)):
            raise ValueError(f"n must lie in the baseline's range [{self.n[0]}, {self.n[-1]}]; got {n}")
        return np.clip(n, self.n[0], self.n[-1])


def real_only_baseline(dim: int, *, n_max: int = 10 ** 6, points: int = 64, runs: int = 1000, seed: int = 0,
                       n_values=None) -> RealOnlyBaseline:
    """Monte Carlo of E[W2(G(n), N(0, I_d))] on a log grid of n from 2 to n_max.

    G(n) = N(mean, scatter / (n - 1)) of n real points (MAD Eq. 1), drawn exactly:
    mean ~ N(0, I / n), scatter ~ Wishart_d(I, n - 1). Common random numbers across n (the same normals,
    and the chi-square diagonal of the Bartlett factor by inversion of the same uniforms) make the curve
    smooth in n, so that it can be inverted (:func:`solve_effective_sample_size`).
    """
    dim = check_int("dim", dim, minimum=1)
    runs = check_int("runs", runs, minimum=2)
    if n_values is None:
        n_max = check_int("n_max", n_max, minimum=3)
        n_values = np.unique(np.round(np.geomspace(2, n_max, check_int("points", points, minimum=4))).astype(int))
    n_values = np.unique(np.asarray(n_values, int))
    if n_values[0] < 2 or n_values.size < 2:
        raise ValueError(f"n_values must hold at least 2 sizes, each >= 2; got {n_values}")
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((runs, dim))
    lower = np.tril(rng.standard_normal((runs, dim, dim)), k=-1)
    u = rng.uniform(size=(runs, dim))
    full = rng.standard_normal((runs, dim, dim))  # rows of a singular Wishart when n - 1 < d
    idx = np.arange(dim)
    means, ses = [], []
    for n in n_values:
        df = n - 1
        if df >= dim:
            a = lower.copy()
            a[:, idx, idx] = np.sqrt(chi2.ppf(u, df - idx))
            scatter = a @ np.swapaxes(a, -1, -2)  # [R, d, d]
        else:
            rows = full[:, :df, :]
            scatter = np.swapaxes(rows, -1, -2) @ rows
        w2 = w2_to_standard_normal(z / np.sqrt(n), scatter / df)
        means.append(w2.mean())
        ses.append(w2.std(ddof=1) / np.sqrt(runs))
    mean, se = np.asarray(means), np.asarray(ses)
    log_mean = np.minimum.accumulate(np.log(mean))  # monotone for the inversion (CRN leaves it so)
    log_mean = log_mean - 1e-12 * np.arange(log_mean.size)  # strictly
    x = np.log(n_values.astype(float))
    return RealOnlyBaseline(dim=dim, runs=runs, n=n_values, mean=mean, se=se,
                            _interp=PchipInterpolator(x, log_mean), _interp_se=PchipInterpolator(x, np.log(se)))


@dataclass(frozen=True)
class EffectiveSampleSize:
    """n_e of MAD Eq. 4 and n_e / n_r, with standard errors from the limit's and the baseline's.

    bound: "" when n_e lies inside the baseline's range, "<" when the limit is farther from P_r than
    G(n_min) (n_e < n_min, reported as n_min), ">" when closer than G(n_max) (n_e > n_max, reported as n_max).
    """

    n_e: float
    se: float
    ratio: float
    ratio_se: float
    bound: str
    limit: FreshLimit | None = None


def solve_effective_sample_size(wd: float, wd_se: float, baseline: RealOnlyBaseline) -> tuple[float, float, str]:
    """Solve E[dist(G(n_e), P_r)] = wd for n_e (MAD Eq. 4) on the monotone baseline.

    Uncertainty by the delta method on the log-log curve: se(log n_e) = sqrt((se_wd / wd)^2 +
    (se_b / b)^2) / |d log b / d log n| at n_e. Returns (n_e, se, bound), bound as in
    :class:`EffectiveSampleSize`.
    """
    lo, hi = float(baseline.n[0]), float(baseline.n[-1])
    if wd >= baseline(lo):
        return lo, math.nan, "<"
    if wd <= baseline(hi):
        return hi, math.nan, ">"
    target = math.log(wd)
    x = brentq(lambda x: float(baseline._interp(x)) - target, math.log(lo), math.log(hi), xtol=1e-12)
    n_e = math.exp(x)
    rel = math.hypot(wd_se / wd, float(baseline.se_at(n_e) / baseline(n_e)))
    return n_e, n_e * rel / abs(float(baseline.log_slope(n_e))), ""


def _ess(limit: FreshLimit, baseline: RealOnlyBaseline) -> EffectiveSampleSize:
    n_e, se, bound = solve_effective_sample_size(limit.wd, limit.se, baseline)
    return EffectiveSampleSize(n_e=n_e, se=se, ratio=n_e / limit.n_r if limit.n_r else math.inf,
                               ratio_se=se / limit.n_r if limit.n_r else math.nan, bound=bound, limit=limit)


def effective_sample_size(n_r: int, n_s: int, lam: float = 1.0, *, baseline: RealOnlyBaseline, runs: int = 32,
                          seed: int = 0, **limit_options) -> EffectiveSampleSize:
    """n_e(n_r, n_s, lambda) of MAD Eq. 4: the real-only sample size whose expected distance to P_r equals
    the fresh loop's limit WD(n_r, n_s, lambda) (:func:`fresh_limits`; ``limit_options`` go there).
    The dimension is the baseline's."""
    (limit,) = fresh_limits(n_r, n_s, float(lam), dim=baseline.dim, runs=runs, seed=seed, **limit_options)
    return _ess(limit, baseline)


def admissible_threshold(n_s_values, ratio) -> float:
    """The largest n_s with n_e / n_r >= 1 (MAD Sec. 5.3, Fig. 11-12), from n_e / n_r on a grid of n_s.

    Takes the largest grid n_s whose ratio is >= 1 and interpolates, linearly in log n_s, to where the
    ratio crosses 1 before the next grid value. Returns inf when the largest grid n_s is admissible (the
    threshold lies beyond the grid) and 0 when no grid n_s is (n_s = 0 always gives n_e = n_r).
    """
    n_s = np.asarray(n_s_values, float)
    ratio = np.asarray(ratio, float)
    if n_s.shape != ratio.shape or n_s.ndim != 1:
        raise ValueError(f"n_s_values and ratio must be 1-D of one length; got {n_s.shape} and {ratio.shape}")
    if np.any(np.diff(n_s) <= 0) or np.any(n_s <= 0):
        raise ValueError("n_s_values must be positive and strictly increasing")
    ok = np.flatnonzero(ratio >= 1.0)
    if ok.size == 0:
        return 0.0
    j = int(ok[-1])
    if j == n_s.size - 1:
        return math.inf
    x0, x1 = math.log(n_s[j]), math.log(n_s[j + 1])
    r0, r1 = ratio[j], ratio[j + 1]
    return float(math.exp(x0 + (r0 - 1.0) / (r0 - r1) * (x1 - x0)))


def admissible_threshold_limit(dim: int, lam: float) -> float:
    """First-order large-n_r limit of the admissible threshold: n_s* -> (d + 5) / (1 - lambda)^2.

    Project derivation (not in the paper), for n_r -> infinity at fixed n_s, so a = n_s / (n_r + n_s) -> 0:
    real-only fitting gives E W2^2 ~ V / n with V = d + d(d + 1) / 4 (mean, and a quarter of
    E|Sigma - I|_F^2 = d(d + 1) / n). In the loop the synthetic part carries past real data, the variance
    becomes V / (n_r (1 + a)) (Var mu_t = a^2 Var mu_{t-1} + ..., stationary at 1 / (n_r (1 + a)) per
    coordinate), and the bias settles the covariance at c I with c = (1 - a) / (1 - a lambda), adding
    d (1 - sqrt c)^2 ~ d a^2 (1 - lambda)^2 / 4. Then n_e >= n_r iff d a^2 (1 - lambda)^2 / 4 <= V a / n_r,
    i.e. n_s <= 4 V / (d (1 - lambda)^2) = (d + 5) / (1 - lambda)^2, a constant: the threshold levels off
    (MAD Sec. 5.3, Fig. 11). Infinite at lambda = 1.
    """
    dim = check_int("dim", dim, minimum=1)
    lam = check_interval("lam", lam, 0.0, 1.0, low_open=True)
    return math.inf if lam == 1.0 else (dim + 5) / (1.0 - lam) ** 2


@dataclass(frozen=True)
class EffectiveSampleGrid:
    """n_e / n_r over a grid (MAD Fig. 11-12). Arrays are [L, Nr, Ns] over lam, n_r_values, n_s_values;
    threshold [L, Nr] is :func:`admissible_threshold` per (lambda, n_r) and threshold_low / threshold_high
    the same on n_e / n_r minus / plus one standard error (a 1-sigma range); window_* are the generations
    averaged for each cell's limit."""

    dim: int
    runs: int
    lam: np.ndarray
    n_r: np.ndarray
    n_s: np.ndarray
    wd: np.ndarray
    wd_se: np.ndarray
    n_e: np.ndarray
    n_e_se: np.ndarray
    ratio: np.ndarray
    ratio_se: np.ndarray
    bound: np.ndarray
    drift_z: np.ndarray
    mixing_time: np.ndarray
    window_first: np.ndarray
    window_last: np.ndarray
    threshold: np.ndarray
    threshold_low: np.ndarray
    threshold_high: np.ndarray
    sweep: dict | None = None  # how the cells ran (:meth:`madlib.sweep.SweepResult.summary`)


def effective_sample_grid(n_r_values, n_s_values, lam_values, *, baseline: RealOnlyBaseline, runs: int, seed: int,
                          last_k: int = 1, burn_mixing: float = 5.0, window_mixing: float = 5.0, min_window: int = 20,
                          progress: bool = False, executor: str = "local", sweep_dir=None,
                          sweep_options: dict | None = None) -> EffectiveSampleGrid:
    """n_e / n_r for every (lambda, n_r, n_s) of the grid (MAD Sec. 5.3, Fig. 11-12).

    One batched loop per (n_r, n_s) carries all lambdas (:func:`fresh_limits`); the baseline is computed
    once by the caller and reused by every cell. Cell (i, j) uses the seed ``seed`` spawned at (i, j).
    The cells are mapped through :func:`madlib.sweep.sweep` on ``executor`` ("local": in process, in order;
    "submitit", "ray"); with ``sweep_dir`` each cell's limits are stored there and a rerun skips them.
    """
    from madlib.sweep import sweep

    n_r_values = np.asarray([check_int("n_r", n, minimum=0) for n in n_r_values])
    n_s_values = np.asarray([check_int("n_s", n, minimum=0) for n in n_s_values])
    lam = np.asarray(_lam_tuple(lam_values))
    shape = (lam.size, n_r_values.size, n_s_values.size)
    out = {k: np.full(shape, np.nan) for k in ("wd", "wd_se", "n_e", "n_e_se", "ratio", "ratio_se", "drift_z",
                                               "mixing_time", "window_first", "window_last")}
    bound = np.full(shape, "", dtype=object)
    index = [(i, j) for i in range(n_r_values.size) for j in range(n_s_values.size)]
    cells = [dict(n_r=int(n_r_values[i]), n_s=int(n_s_values[j]), lam=[float(x) for x in lam], dim=baseline.dim,
                  runs=runs, seed=int(np.random.SeedSequence([seed, i, j]).generate_state(1)[0]), last_k=last_k,
                  burn_mixing=burn_mixing, window_mixing=window_mixing, min_window=min_window) for i, j in index]
    swept = sweep(fresh_limits, cells, executor=executor, result_dir=sweep_dir, options=sweep_options,
                  progress=progress, desc="MAD-3/4 cells")
    for (i, j), limits in zip(index, swept.values):
        for l, limit in enumerate(limits):
            ess = _ess(limit, baseline)
            for key, value in (("wd", limit.wd), ("wd_se", limit.se), ("n_e", ess.n_e), ("n_e_se", ess.se),
                               ("ratio", ess.ratio), ("ratio_se", ess.ratio_se), ("drift_z", limit.drift_z),
                               ("mixing_time", limit.mixing_time), ("window_first", limit.window[0]),
                               ("window_last", limit.window[1])):
                out[key][l, i, j] = value
            bound[l, i, j] = ess.bound
    se = np.nan_to_num(out["ratio_se"])
    threshold = {name: np.asarray([[admissible_threshold(n_s_values, ratio[l, i]) if np.all(n_s_values > 0)
                                    else math.nan for i in range(n_r_values.size)] for l in range(lam.size)])
                 for name, ratio in (("threshold", out["ratio"]), ("threshold_low", out["ratio"] - se),
                                     ("threshold_high", out["ratio"] + se))}
    return EffectiveSampleGrid(dim=baseline.dim, runs=runs, lam=lam, n_r=n_r_values, n_s=n_s_values, bound=bound,
                               **threshold, **out, sweep=swept.summary())


def growing_bias_floor(dim: int, real_fraction: float, lam: float) -> float:
    """W2 to P_r that the growing loop cannot go below as n_t -> infinity: sqrt(d) (1 - sqrt(c)).

    Without estimation noise the loop maps Sigma to p I + (1 - p) lambda Sigma and mu to (1 - p) mu, whose
    fixed point is mu = 0, Sigma = c I with c = p / (1 - (1 - p) lambda) (project derivation from MAD Eq. 1-2
    and App. G exp. 2; 0 when lambda = 1 or p = 1, and the loop collapses, c = 0, when p = 0 and lambda < 1).
    """
    dim = check_int("dim", dim, minimum=1)
    p = check_interval("real_fraction", real_fraction, 0.0, 1.0)
    lam = check_interval("lam", lam, 0.0, 1.0, low_open=True)
    c = 1.0 if p == 0.0 and lam == 1.0 else p / (1.0 - (1.0 - p) * lam)
    return math.sqrt(dim) * (1.0 - math.sqrt(c))


def growing_trajectories(real_fraction: float, sizes, lam=1.0, *, dim: int, runs: int, seed: int,
                         progress: bool = False) -> FreshTrajectory:
    """A growing dataset with a real fraction p (MAD App. G exp. 2, Fig. 31): generation t fits
    n_t = sizes[t-1] points, round(p n_t) fresh real and the rest drawn from G^{t-1} with bias lambda
    (the engine's ``growing`` loop). The chain starts at G^0 = P_r, so generation 1 fits n_1 points of P_r.
    Returns W2 to P_r [G, L, R] (``n_ini``, ``n_r`` and ``n_s`` of the result are 0: they change with t).
    """
    dim, runs = check_int("dim", dim, minimum=1), check_int("runs", runs, minimum=1)
    lam = _lam_tuple(lam)
    sizes = tuple(int(n) for n in sizes)
    spec = LoopSpec("growing", generations=len(sizes), n_synth=0, lam=1.0, n_ini=None,
                    real_fraction=real_fraction, sizes=sizes)
    for t in range(1, len(sizes) + 1):
        for name, n in zip(("real", "synthetic"), spec.counts(t)):
            if n == 1:
                raise ValueError(f"sizes[{t - 1}] = {sizes[t - 1]} with real_fraction = {real_fraction} gives 1 "
                                 f"{name} point; the exact-statistics family draws parts of 0 or >= 2 points")
    family = _BiasBlocksFamily(dim, lam, runs)
    res = run_loop(family, spec, seed=seed, progress=progress, desc=f"growing p={real_fraction}")
    w2 = res.records["w2"][1:].reshape(len(sizes), len(lam), runs)  # drop G^0 = P_r; [G, L, R]
    return FreshTrajectory(n_ini=0, n_r=0, n_s=0, lam=lam, last_k=1, dim=dim, generation=res.generation[1:], w2=w2)
