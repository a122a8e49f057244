"""Quantitative-trait model of the Chain of Diffusion: truncation selection and the breeder's equation.

Reference: "Model Collapse in the Self-Consuming Chain of Diffusion Finetuning: A Novel Perspective
from Quantitative Trait Modeling" (ReDiFine; anonymous submission), Sec. 4 (Eq. 5, Theorem 1, Fig. 4),
App. D.1 (proof, Eq. 6-12), App. D.2.2 (the CFG ratios), App. D.2.3 (mutation, Eq. 16, and soft
selection, Fig. 25) (``../shared/papers/003_8ee2c13a5868339c.txt``, lines 274-300 and 1033-1206).

The model. Phenotypes of iteration t are N(mu_t, sigma_P,t^2) with sigma_P,t^2 = sigma_G,t^2 +
sigma_E^2 (genetic plus environmental variance). Selection keeps the middle of the distribution
after cutting a share r1 from the left and r2 from the right (Fig. 4a). The mean follows the
breeder's equation mu_{t+1} = mu_t + h_t^2 (mu'_t - mu_t) with heritability h_t^2 = sigma_G,t^2 /
(sigma_G,t^2 + sigma_E^2 + sigma_M^2) (Eq. 5; Eq. 16 adds the mutation variance sigma_M^2), and the
next genetic variance is the variance of the selected set (App. D.1; Sec. 4.1 writes
"sigma_G,t+1^2 = sigma_P,t^2", a slip for the selected set's variance).

Direction. The mean moves up when r1 > r2 (more cut from the left). Theorem 1 writes the
downward case as "(r2 < r1)", a typo for r1 < r2; App. D.1 has it right.

Selection is given as a pair ``(r1, r2)`` or as a name of :data:`CFG_PRESETS`, the mapping of
ReDiFine Sec. 4.2 and Fig. 4a. App. D.2.2 lists the same pairs in the reverse order; Sec. 4.2's
words ("CFG 7.5 selects the upper 5%") and the observed drift fix the mapping used here
(``../shared/paper-targets.md``, RDF-2).

Array convention: independent runs lead, a population is ``[R, N]`` (R runs of N individuals);
trajectories are ``[R, T+1]`` for the simulator and ``[T+1]`` for the deterministic recursion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from madlib._checks import check_choice, check_int, check_interval

__all__ = [
    "CFG_PRESETS",
    "DISTANCE_UNITS",
    "INHERITANCE",
    "FIG4B_START",
    "TraitTrajectory",
    "selection_ratios",
    "truncation_constants",
    "truncated_normal_moments",
    "heritability",
    "breeders_equation",
    "stationary_phenotypic_variance",
    "asymptotic_mean_shift",
    "trait_recursion",
    "truncation_zone",
    "exponential_tail_keep_probability",
    "truncation_selection",
    "breed_next_generation",
    "simulate_population",
]

# ReDiFine Sec. 4.2 / Fig. 4b: CFG scale -> (r1, r2), the share cut from the left and from the right.
# App. D.2.2 prints these pairs in the reverse order (erratum; see the module docstring).
CFG_PRESETS: dict[str, tuple[float, float]] = {
    "cfg7.5": (0.95, 0.0002),  # keep the upper ~5%
    "cfg2.5": (0.5, 0.09),  # keep ~41%, slightly favouring high values
    "cfg1.0": (0.025, 0.675),  # keep the lower ~30%
}

# ReDiFine App. D.2.2: start of the Fig. 4b simulation (power-spectrum phenotype, iteration 0).
FIG4B_START: dict[str, float] = {"mu0": 0.027, "sigma_G0": 0.056, "sigma_E": 0.25}

# Unit of the distance d(x) to the kept zone in the soft selection e^(-alpha d(x)) (App. D.2.3 does
# not state it): "sd" = in standard deviations of the current population's phenotypes,
# "phenotype" = in the phenotype's own unit.
DISTANCE_UNITS = ("sd", "phenotype")
# How offspring genotypes are drawn from the selected set: "gaussian" = N(mu_{t+1}, var(selected))
# (the Gaussian assumption of Theorem 1: the simulator's mean converges to the recursion as N grows);
# "resample" = the selected phenotypes' deviations, resampled with replacement and shifted to
# mu_{t+1} (keeps the selected set's shape; not covered by Theorem 1).
INHERITANCE = ("gaussian", "resample")


@dataclass(frozen=True)
class TraitTrajectory:
    """Mean and variances of the phenotype over iterations t = 0..T.

    mean: mu_t, ``[T+1]`` (recursion) or ``[R, T+1]`` (simulator: mean phenotype of each run).
    var_G: genetic variance sigma_G,t^2, same shape.
    var_P: phenotypic variance sigma_P,t^2 = sigma_G,t^2 + sigma_E^2 (simulator: the sample
    variance of the phenotypes), same shape.
    kept: share of the population selected at iterations 0..T-1, ``[R, T]`` (simulator only).
    """

    mean: np.ndarray
    var_G: np.ndarray
    var_P: np.ndarray
    kept: np.ndarray | None = None

    @property
    def shift(self) -> np.ndarray:
        """Mean shift per iteration mu_{t+1} - mu_t, ``[..., T]``."""
        return np.diff(self.mean, axis=-1)


def selection_ratios(selection) -> tuple[float, float]:
    """(r1, r2) from a pair or a name of :data:`CFG_PRESETS`, checked: 0 <= r1, r2 and r1 + r2 < 1.

    r1 is the share cut from the left tail, r2 the share cut from the right (ReDiFine Fig. 4a);
    r = 1 - r1 - r2 is the share kept.
    """
    if isinstance(selection, str):
        check_choice("selection", selection, CFG_PRESETS)
        selection = CFG_PRESETS[selection]
    try:
        r1, r2 = selection
    except (TypeError, ValueError):
        raise ValueError(f"selection must be a pair (r1, r2) or one of {sorted(CFG_PRESETS)}; "
                         f"got {selection!r}") from None
    r1 = check_interval("r1", r1, 0.0, 1.0, high_open=True)
    r2 = check_interval("r2", r2, 0.0, 1.0, high_open=True)
    if r1 + r2 >= 1.0:
        raise ValueError(f"r1 + r2 must be < 1 (the kept share r = 1 - r1 - r2 must be positive); "
                         f"got r1 = {r1:g}, r2 = {r2:g}")
    return r1, r2


def _check_sigma(name: str, value, *, positive: bool = False) -> float:
    return check_interval(name, value, 0.0, np.inf, low_open=positive)


def _x_pdf(x: float) -> float:
    """x phi(x), with the limit 0 at x = +-inf."""
    return float(x * norm.pdf(x)) if np.isfinite(x) else 0.0


# ReDiFine App. D.1 Eq. 7-9: constants of a Gaussian truncated by r1 (left) and r2 (right).
def truncation_constants(r1: float, r2: float) -> tuple[float, float]:
    """c1 and c2 of Theorem 1: the mean shift and the variance ratio of a truncated standard normal.

    With alpha = Phi^-1(r1), beta = Phi^-1(1 - r2) and Z = Phi(beta) - Phi(alpha) = 1 - r1 - r2:

        c1 = |phi(beta) - phi(alpha)| / Z
        c2 = 1 - (beta phi(beta) - alpha phi(alpha)) / Z - ((phi(beta) - phi(alpha)) / Z)^2

    so the selected part of N(mu, sigma^2) has mean mu +- c1 sigma (+ when r1 > r2) and variance
    c2 sigma^2, 0 < c2 <= 1 (c2 = 1, c1 = 0 when nothing is cut). r1, r2: floats with
    0 <= r1, r2 and r1 + r2 < 1. Returns (c1, c2) as floats.
    Reference: ReDiFine App. D.1, Eq. 7-9 (R:1186-1223).
    """
    r1, r2 = selection_ratios((r1, r2))
    alpha, beta = norm.ppf(r1), norm.ppf(1.0 - r2)
    Z = 1.0 - r1 - r2
    d = (norm.pdf(beta) - norm.pdf(alpha)) / Z
    c1 = abs(d)
    c2 = 1.0 - (_x_pdf(beta) - _x_pdf(alpha)) / Z - d**2
    return float(c1), float(c2)


# ReDiFine App. D.1 Eq. 7-8: mean and variance of the selected (truncated) part of N(mu, sigma^2).
def truncated_normal_moments(mu, sigma, selection) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of N(mu, sigma^2) after cutting r1 from the left and r2 from the right.

        mu' = mu + sign(r1 - r2) c1 sigma,    sigma'^2 = c2 sigma^2

    (Eq. 7 written with the sign made explicit: mu - (phi(beta) - phi(alpha)) / Z * sigma.)
    mu, sigma: arrays of any broadcastable shape; selection: (r1, r2) or a preset name.
    Returns (mu', sigma'^2) with the broadcast shape. Reference: ReDiFine Eq. 7-8 (R:1186-1215).
    """
    r1, r2 = selection_ratios(selection)
    c1, c2 = truncation_constants(r1, r2)
    mu, sigma = np.asarray(mu, float), np.asarray(sigma, float)
    return mu + np.sign(r1 - r2) * c1 * sigma, c2 * sigma**2


# ReDiFine Eq. 5, with the mutation variance of Eq. 16.
def heritability(var_G, sigma_E: float, sigma_M: float = 0.0) -> np.ndarray:
    """Narrow-sense heritability h^2 = sigma_G^2 / (sigma_G^2 + sigma_E^2 + sigma_M^2).

    var_G: genetic variance sigma_G^2, any shape; sigma_E: environmental standard deviation;
    sigma_M: mutation standard deviation (0 gives Eq. 5, > 0 Eq. 16). Returns an array of
    var_G's shape. Reference: ReDiFine Eq. 5 (R:282), Eq. 16 (R:1202).
    """
    sigma_E = _check_sigma("sigma_E", sigma_E, positive=True)
    sigma_M = _check_sigma("sigma_M", sigma_M)
    var_G = np.asarray(var_G, float)
    if np.any(var_G < 0):
        raise ValueError(f"var_G must be >= 0 (a variance); got min {var_G.min():g}")
    return var_G / (var_G + sigma_E**2 + sigma_M**2)


# ReDiFine Eq. 5-6 (breeder's equation).
def breeders_equation(mu, mu_selected, h2) -> np.ndarray:
    """Next mean mu_{t+1} = mu_t + h^2 (mu'_t - mu_t); broadcasts. Reference: ReDiFine Eq. 5-6."""
    mu = np.asarray(mu, float)
    return mu + np.asarray(h2, float) * (np.asarray(mu_selected, float) - mu)


# ReDiFine Thm. 1, App. D.1 Eq. 11-12: the limit of the phenotypic variance.
def stationary_phenotypic_variance(selection, sigma_E: float) -> float:
    """sigma_P^2 -> sigma_E^2 / (1 - c2) (inf when nothing is cut, c2 = 1).

    The recursion sigma_P,t+1^2 = c2 sigma_P,t^2 + sigma_E^2 (Eq. 11) converges geometrically,
    sigma_P,t^2 - limit = c2^t (sigma_P,0^2 - limit) (Eq. 12). Mutation (Eq. 16) does not change it.
    selection: (r1, r2) or a preset name; sigma_E > 0. Reference: ReDiFine Thm. 1, Eq. 11-12.
    """
    sigma_E = _check_sigma("sigma_E", sigma_E, positive=True)
    _, c2 = truncation_constants(*selection_ratios(selection))
    return float(sigma_E**2 / (1.0 - c2)) if c2 < 1.0 else float("inf")


# ReDiFine Thm. 1, App. D.1 Eq. 9-10: the asymptotic mean shift per iteration.
def asymptotic_mean_shift(selection, sigma_E: float, sigma_M: float = 0.0) -> float:
    """Signed mean shift per iteration once the variance is stationary.

        Delta mu -> sign(r1 - r2) c1 c2 sigma_E / sqrt(1 - c2)                 (sigma_M = 0)

    Positive when r1 > r2, negative when r1 < r2, 0 when r1 = r2. With mutation (Eq. 16, our
    extension of the theorem) h^2 = c2 s^2 / (s^2 + sigma_M^2) at the stationary s^2 =
    sigma_E^2 / (1 - c2), so Delta mu -> sign c1 c2 s^3 / (s^2 + sigma_M^2).
    Returns 0.0 when nothing is cut. Reference: ReDiFine Thm. 1 (R:286), Eq. 9-10 (R:1221-1236).
    """
    r1, r2 = selection_ratios(selection)
    sigma_M = _check_sigma("sigma_M", sigma_M)
    c1, c2 = truncation_constants(r1, r2)
    if c2 >= 1.0:
        return 0.0
    var_P = stationary_phenotypic_variance((r1, r2), sigma_E)
    return float(np.sign(r1 - r2) * c1 * c2 * var_P**1.5 / (var_P + sigma_M**2))


# ReDiFine Thm. 1, App. D.1 Eq. 5-12 (Eq. 16 when sigma_M > 0): the deterministic recursion.
def trait_recursion(selection, iterations: int, *, mu0: float, sigma_G0: float, sigma_E: float,
                    sigma_M: float = 0.0) -> TraitTrajectory:
    """Moments of the Gaussian trait model over iterations t = 0..T.

        sigma_P,t^2 = sigma_G,t^2 + sigma_E^2
        (mu'_t, s'^2) = truncated moments of N(mu_t, sigma_P,t^2)          (Eq. 7-8)
        mu_{t+1} = mu_t + h_t^2 (mu'_t - mu_t),  h_t^2 from Eq. 5 / 16      (Eq. 6, 9-10)
        sigma_G,t+1^2 = s'^2 = c2 sigma_P,t^2                               (Eq. 11)

    selection: (r1, r2) or a preset name; iterations: T >= 0; mu0, sigma_G0, sigma_E, sigma_M:
    start mean, start genetic sd, environmental sd (> 0) and mutation sd. Returns a
    :class:`TraitTrajectory` with arrays ``[T+1]``. Reference: ReDiFine Sec. 4.1, App. D.1.
    """
    selection = selection_ratios(selection)
    T = check_int("iterations", iterations, minimum=0)
    mu0 = check_interval("mu0", mu0, -np.inf, np.inf)
    sigma_G0 = _check_sigma("sigma_G0", sigma_G0)
    sigma_E = _check_sigma("sigma_E", sigma_E, positive=True)
    sigma_M = _check_sigma("sigma_M", sigma_M)
    mean, var_G = np.empty(T + 1), np.empty(T + 1)
    mean[0], var_G[0] = mu0, sigma_G0**2
    for t in range(T):
        var_P = var_G[t] + sigma_E**2
        mu_sel, var_sel = truncated_normal_moments(mean[t], np.sqrt(var_P), selection)
        mean[t + 1] = breeders_equation(mean[t], mu_sel, heritability(var_G[t], sigma_E, sigma_M))
        var_G[t + 1] = var_sel
    return TraitTrajectory(mean=mean, var_G=var_G, var_P=var_G + sigma_E**2)


def _as_population(phenotypes) -> np.ndarray:
    p = np.asarray(phenotypes, float)
    if p.ndim not in (1, 2):
        raise ValueError(f"phenotypes must be [N] or [R, N]; got shape {p.shape}")
    check_int("population", p.shape[-1], minimum=2, why="a population needs two individuals")
    if not np.all(np.isfinite(p)):
        raise ValueError("phenotypes must be finite")
    return p


def _cut_counts(n: int, r1: float, r2: float) -> tuple[int, int]:
    k1, k2 = int(np.floor(r1 * n + 0.5)), int(np.floor(r2 * n + 0.5))
    if n - k1 - k2 < 2:
        raise ValueError(f"population = {n} keeps {n - k1 - k2} individual(s) after cutting r1 = {r1:g} "
                         f"and r2 = {r2:g}: a selection must keep at least 2 (raise population)")
    return k1, k2


# ReDiFine Fig. 4a: the kept zone of a finite population (cut round(r1 N) lowest, round(r2 N) highest).
def truncation_zone(phenotypes, selection) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest kept phenotype of each run, ``([R], [R])`` (or scalars for ``[N]``).

    The round(r1 N) smallest and the round(r2 N) largest individuals are cut; the zone is
    [low, high] of what remains (ties at a boundary are all kept). phenotypes: ``[N]`` or ``[R, N]``.
    """
    p = _as_population(phenotypes)
    r1, r2 = selection_ratios(selection)
    n = p.shape[-1]
    k1, k2 = _cut_counts(n, r1, r2)
    part = np.partition(p, [k1, n - k2 - 1], axis=-1)  # [R, N], order statistics k1 and N-k2-1 in place
    return part[..., k1], part[..., n - k2 - 1]


# ReDiFine App. D.2.3: soft selection, kept with probability e^(-alpha d(x)) outside the zone.
def exponential_tail_keep_probability(phenotypes, low, high, alpha: float, distance_unit: str = "sd") -> np.ndarray:
    """Keep probability 1 inside [low, high] and e^(-alpha d(x)) outside.

    d(x) = max(low - x, 0) + max(x - high, 0), the distance to the kept zone, measured in the
    phenotype's unit (``distance_unit="phenotype"``) or in standard deviations of each run's
    phenotypes (``"sd"``; App. D.2.3 does not state the unit). phenotypes ``[R, N]`` or ``[N]``;
    low, high ``[R]`` or scalars; alpha >= 0 (0 keeps everyone). Returns ``[R, N]`` (or ``[N]``).
    """
    p = _as_population(phenotypes)
    alpha = check_interval("alpha", alpha, 0.0, np.inf)
    check_choice("distance_unit", distance_unit, DISTANCE_UNITS)
    low, high = np.asarray(low, float)[..., None], np.asarray(high, float)[..., None]
    d = np.maximum(low - p, 0.0) + np.maximum(p - high, 0.0)  # [R, N]
    if distance_unit == "sd":
        d = d / np.maximum(p.std(axis=-1, keepdims=True), np.finfo(float).tiny)
    return np.exp(-alpha * d)


# ReDiFine Fig. 4a (hard truncation) and App. D.2.3 (exponential tails): one selection step.
def truncation_selection(phenotypes, selection, *, alpha: float | None = None, distance_unit: str = "sd",
                         rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Which individuals of a population are selected: a boolean mask of phenotypes' shape.

    alpha=None: hard truncation, keep the zone of :func:`truncation_zone` (a share 1 - r1 - r2).
    alpha >= 0: soft selection, keep the zone and each individual outside it independently with
    probability e^(-alpha d(x)) (:func:`exponential_tail_keep_probability`); needs ``rng``.
    phenotypes: ``[N]`` or ``[R, N]``, any measured per-individual values (simulated traits, or a
    per-image statistic such as a power-spectrum sum); selection: (r1, r2) or a preset name.
    """
    p = _as_population(phenotypes)
    low, high = truncation_zone(p, selection)
    inside = (p >= low[..., None]) & (p <= high[..., None])
    if alpha is None:
        return inside
    keep_p = exponential_tail_keep_probability(p, low, high, alpha, distance_unit)
    rng = np.random.default_rng(rng)
    return inside | (rng.random(p.shape) < keep_p)


# ReDiFine Eq. 5/16 and App. D.1 (sigma_G,t+1^2 = variance of the selected set): offspring genotypes.
def breed_next_generation(phenotypes, keep, h2, *, inheritance: str = "gaussian",
                          rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Genotypes of the next iteration from the selected individuals, ``[R, N]`` (or ``[N]``).

    Mean: the breeder's equation mu_{t+1} = mu_t + h^2 (mu'_t - mu_t), mu_t the population's mean
    phenotype and mu'_t the selected set's. Spread: the variance of the selected phenotypes
    (App. D.1). ``inheritance="gaussian"`` draws N(mu_{t+1}, var(selected)); ``"resample"`` draws
    selected phenotypes with replacement and shifts them by mu_{t+1} - mu'_t.
    phenotypes, keep: ``[R, N]`` (or ``[N]``), keep boolean with >= 2 selected per run;
    h2: heritability, scalar or ``[R]``.
    """
    p = _as_population(phenotypes)
    keep = np.asarray(keep, bool)
    if keep.shape != p.shape:
        raise ValueError(f"keep must have the phenotypes' shape {p.shape}; got {keep.shape}")
    check_choice("inheritance", inheritance, INHERITANCE)
    rng = np.random.default_rng(rng)
    squeeze = p.ndim == 1
    p, keep = np.atleast_2d(p), np.atleast_2d(keep)  # [R, N]
    n_kept = keep.sum(-1)  # [R]
    if np.any(n_kept < 2):
        raise ValueError(f"keep must select at least 2 individuals per run; got min {n_kept.min()}")
    mu = p.mean(-1)  # [R]
    mu_sel = np.where(keep, p, 0.0).sum(-1) / n_kept  # [R]
    var_sel = np.where(keep, (p - mu_sel[:, None]) ** 2, 0.0).sum(-1) / (n_kept - 1)  # [R]
    mu_next = breeders_equation(mu, mu_sel, np.broadcast_to(np.asarray(h2, float), mu.shape))  # [R]
    if inheritance == "gaussian":
        g = mu_next[:, None] + np.sqrt(var_sel)[:, None] * rng.standard_normal(p.shape)
    else:
        order = np.argsort(~keep, axis=-1, kind="stable")  # [R, N], selected indices first
        j = np.floor(rng.random(p.shape) * n_kept[:, None]).astype(int)  # [R, N], uniform in [0, n_kept)
        parents = np.take_along_axis(order, j, axis=-1)
        g = np.take_along_axis(p, parents, axis=-1) + (mu_next - mu_sel)[:, None]
    return g[0] if squeeze else g


# ReDiFine Sec. 4, App. D.2.2-D.2.3: Monte Carlo population with truncation or soft selection.
def simulate_population(selection, iterations: int, *, mu0: float, sigma_G0: float, sigma_E: float,
                        sigma_M: float = 0.0, population: int = 10_000, runs: int = 1,
                        alpha: float | None = None, distance_unit: str = "sd", inheritance: str = "gaussian",
                        seed: np.random.Generator | int | None = None) -> TraitTrajectory:
    """R independent finite populations of N individuals, phenotype = genotype + environment.

    Each iteration t: phenotypes p = g + e with e ~ N(0, sigma_E^2) fresh ``[R, N]``;
    selection (:func:`truncation_selection`, hard when alpha is None, exponential tails otherwise);
    h_t^2 = var(g) / (var(g) + sigma_E^2 + sigma_M^2) (Eq. 5 / 16, var(g) the run's sample genetic
    variance); offspring genotypes by :func:`breed_next_generation`. Iteration 0 starts from
    g ~ N(mu0, sigma_G0^2). With hard truncation and Gaussian inheritance the mean trajectory
    converges to :func:`trait_recursion` as N grows. Mutation enters only through h^2 (Eq. 16).

    Returns a :class:`TraitTrajectory` with mean, var_G, var_P ``[R, T+1]`` (sample moments of
    each run's phenotypes and genotypes) and kept ``[R, T]``. ``seed``: an int or a numpy
    Generator; the same seed gives the same numbers for every setting (common random numbers).
    """
    selection = selection_ratios(selection)
    T = check_int("iterations", iterations, minimum=0)
    N = check_int("population", population, minimum=2, why="a population needs two individuals")
    R = check_int("runs", runs, minimum=1)
    mu0 = check_interval("mu0", mu0, -np.inf, np.inf)
    sigma_G0 = _check_sigma("sigma_G0", sigma_G0)
    sigma_E = _check_sigma("sigma_E", sigma_E, positive=True)
    sigma_M = _check_sigma("sigma_M", sigma_M)
    if alpha is not None:
        check_interval("alpha", alpha, 0.0, np.inf)
    check_choice("distance_unit", distance_unit, DISTANCE_UNITS)
    check_choice("inheritance", inheritance, INHERITANCE)
    _cut_counts(N, *selection)  # a clear error before any work when N is too small
    rng = np.random.default_rng(seed)

    mean, var_G, var_P = np.empty((R, T + 1)), np.empty((R, T + 1)), np.empty((R, T + 1))
    kept = np.empty((R, T))
    g = mu0 + sigma_G0 * rng.standard_normal((R, N))  # genotypes [R, N]
    for t in range(T + 1):
        p = g + sigma_E * rng.standard_normal((R, N))  # phenotypes [R, N]
        mean[:, t], var_P[:, t] = p.mean(-1), p.var(-1, ddof=1)
        var_G[:, t] = g.var(-1, ddof=1)
        if t == T:
            break
        keep = truncation_selection(p, selection, alpha=alpha, distance_unit=distance_unit, rng=rng)  # [R, N]
        kept[:, t] = keep.mean(-1)
        h2 = heritability(var_G[:, t], sigma_E, sigma_M)  # [R]
        g = breed_next_generation(p, keep, h2, inheritance=inheritance, rng=rng)
    return TraitTrajectory(mean=mean, var_G=var_G, var_P=var_P, kept=kept)
