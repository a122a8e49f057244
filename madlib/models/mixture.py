"""The Gaussian-mixture model family of MAD App. B.2 (Fig. 14-15), batched over independent runs.

Fit = maximum likelihood by EM with K full-covariance components; sampling bias lambda scales
every component covariance by lambda (the mixture analogue of MAD Sec. 2.3's N(mu, lambda Sigma)).
Runs lead every array: weights [R, K], means [R, K, d], covs [R, K, d, d], points [R, N, d], and the
E-step works on [R, N, K] responsibilities at once.

Project choices (the paper states none of them):

- **Initialisation.** ``init="warm"`` (default) starts EM from the model that drew the data, which the
  data object carries (:class:`MixtureData`), so the family holds no state between generations; real
  data carries P_r. ``init="kmeans"`` starts from Lloyd's k-means with a deterministic farthest-point
  seeding (no random generator needed in ``fit``).
- **Stopping.** At most ``max_iter`` EM iterations; a run stops when its mean log-likelihood per point
  changes by less than ``tol`` (scikit-learn's rule and defaults: 100, 1e-3). Each run stops on its own,
  so a run's fit does not depend on the other runs of the batch.
- **Regularisation.** ``reg_covar`` (default 1e-6, scikit-learn's) is added to the diagonal of every fitted
  covariance. A component whose responsibility mass falls below ``10 * eps * N`` is dead: weight 0,
  mean and covariance kept; it never revives under the warm start (a lost mode stays lost).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from madlib._checks import check_choice, check_covariance, check_int, check_interval

INITS = ("warm", "kmeans")


@dataclass(frozen=True)
class MixtureModel:
    """R Gaussian mixtures of K components: weights [R, K], means [R, K, d], covs [R, K, d, d]."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    @property
    def runs(self) -> int:
        return self.weights.shape[0]

    @property
    def n_components(self) -> int:
        return self.weights.shape[1]

    def log_prob(self, x) -> np.ndarray:
        """log density of each run's mixture at x [R, n, d] (or [n, d], shared by all runs) -> [R, n]."""
        x = _as_points(x, self.runs, self.means.shape[-1])
        return _logsumexp(_log_weights(self.weights)[:, None, :] + _log_gauss(x, self.means, self.covs))


@dataclass(frozen=True)
class MixtureData:
    """Training points [R, N, d] and the model that drew them (EM's warm start; None if unknown)."""

    points: np.ndarray
    source: MixtureModel | None = None


def _as_points(x, runs: int, dim: int) -> np.ndarray:
    x = np.asarray(x, float)
    if x.ndim == 2:
        x = np.broadcast_to(x, (runs,) + x.shape)
    if x.ndim != 3 or x.shape[0] != runs or x.shape[2] != dim:
        raise ValueError(f"x must be points [R, n, d] = [{runs}, n, {dim}] or [n, {dim}]; got shape {x.shape}")
    return x


def _log_weights(weights: np.ndarray) -> np.ndarray:
    """log w with log 0 = -inf, without a divide-by-zero warning."""
    out = np.full(weights.shape, -np.inf)
    np.log(weights, out=out, where=weights > 0)
    return out


def _log_gauss(x: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """log N(x_n; mu_k, Sigma_k) for x [R, N, d], means [R, K, d], covs [R, K, d, d] -> [R, N, K].

    The Mahalanobis term is expanded, x'Px - 2 x'P mu + mu'P mu, so that it is two batched matmuls.
    """
    R, N, d = x.shape
    chol = np.linalg.cholesky(covs)  # [R, K, d, d]
    prec = np.linalg.inv(covs)  # [R, K, d, d]
    prec_mu = np.einsum("rkij,rkj->rki", prec, means)  # [R, K, d]
    xx = (x[..., :, None] * x[..., None, :]).reshape(R, N, d * d)  # [R, N, d*d]
    maha = (xx @ prec.reshape(R, -1, d * d).transpose(0, 2, 1)  # [R, N, K]
            - 2.0 * x @ prec_mu.transpose(0, 2, 1) + (prec_mu * means).sum(-1)[:, None, :])
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)  # [R, K]
    return -0.5 * (np.maximum(maha, 0.0) + log_det[:, None, :] + d * np.log(2.0 * np.pi))


def _logsumexp(a: np.ndarray) -> np.ndarray:
    """log sum exp over the last axis; entries may be -inf (dead components), not a whole row."""
    top = a.max(-1, keepdims=True)
    return np.log(np.exp(a - top).sum(-1)) + top[..., 0]


def mixture_moments(model: MixtureModel) -> tuple[np.ndarray, np.ndarray]:
    """Mean [R, d] and covariance [R, d, d] of each run's mixture (law of total covariance)."""
    w = model.weights / model.weights.sum(-1, keepdims=True)
    mean = np.einsum("rk,rkd->rd", w, model.means)
    centred = model.means - mean[:, None, :]  # [R, K, d]
    cov = np.einsum("rk,rkij->rij", w, model.covs + centred[..., :, None] * centred[..., None, :])
    return mean, cov


def sample_mixture(model: MixtureModel, n: int, lam: float, rng: np.random.Generator) -> np.ndarray:
    """n points per run from the mixtures with every covariance scaled by lambda -> [R, n, d]."""
    n = check_int("n", n, minimum=0)
    lam = check_interval("lam", lam, 0.0, 1.0, low_open=True)
    R, K, d = model.means.shape
    cum = np.cumsum(model.weights, axis=1)
    cum = cum / cum[:, -1:]  # the last edge is exactly 1
    u = rng.random((R, n))
    comp = (cum[:, None, :] <= u[:, :, None]).sum(-1)  # [R, n]; dead components have empty intervals
    z = rng.standard_normal((R, n, d))
    rows = np.arange(R)[:, None]
    chol = np.linalg.cholesky(model.covs)[rows, comp]  # [R, n, d, d]
    return model.means[rows, comp] + np.sqrt(lam) * np.einsum("rnij,rnj->rni", chol, z)


def _e_step(x, model: MixtureModel):
    """Per-point log-likelihood [R, N] and responsibilities [R, N, K]."""
    weighted = _log_weights(model.weights)[:, None, :] + _log_gauss(x, model.means, model.covs)  # [R, N, K]
    top = weighted.max(-1, keepdims=True)
    resp = np.exp(weighted - top)
    total = resp.sum(-1, keepdims=True)
    return np.log(total[..., 0]) + top[..., 0], resp / total


def _m_step(x, resp, old: MixtureModel, reg_covar: float) -> MixtureModel:
    """Weighted means and covariances (+ reg_covar I); dead components keep their old parameters."""
    R, N, d = x.shape
    nk = resp.sum(1)  # [R, K]
    alive = nk > 10.0 * np.finfo(float).eps * N
    safe = np.where(alive, nk, 1.0)
    resp_t = resp.transpose(0, 2, 1)  # [R, K, N]
    means = resp_t @ x / safe[..., None]  # [R, K, d]
    xx = (x[..., :, None] * x[..., None, :]).reshape(R, N, d * d)  # [R, N, d*d]
    second = (resp_t @ xx).reshape(R, -1, d, d) / safe[..., None, None]  # [R, K, d, d]
    covs = second - means[..., :, None] * means[..., None, :]
    covs = 0.5 * (covs + np.swapaxes(covs, -1, -2)) + reg_covar * np.eye(d)
    return MixtureModel(np.where(alive, nk / N, 0.0),
                        np.where(alive[..., None], means, old.means),
                        np.where(alive[..., None, None], covs, old.covs))


def kmeans_init(x: np.ndarray, n_components: int, *, iters: int = 20, reg_covar: float = 1e-6) -> MixtureModel:
    """A mixture from Lloyd's k-means on x [R, N, d], seeded by farthest-point traversal from x[:, 0].

    Deterministic given x. Empty clusters get weight 0 and the pooled covariance.
    """
    R, N, d = x.shape
    K = check_int("n_components", n_components, minimum=1)
    if N < K:
        raise ValueError(f"n_components must be <= the number of points N = {N}; got {K}")
    rows = np.arange(R)
    centres = np.empty((R, K, d))
    centres[:, 0] = x[:, 0]
    dist = ((x - x[:, :1]) ** 2).sum(-1)  # [R, N] squared distance to the nearest centre so far
    for k in range(1, K):
        far = dist.argmax(1)
        centres[:, k] = x[rows, far]
        dist = np.minimum(dist, ((x - centres[:, k : k + 1]) ** 2).sum(-1))
    for _ in range(iters):
        label = ((x[:, :, None, :] - centres[:, None, :, :]) ** 2).sum(-1).argmin(-1)  # [R, N]
        onehot = (label[..., None] == np.arange(K)).astype(float)  # [R, N, K]
        count = onehot.sum(1)  # [R, K]
        sums = np.einsum("rnk,rnd->rkd", onehot, x)
        centres = np.where(count[..., None] > 0, sums / np.maximum(count, 1.0)[..., None], centres)
    pooled = np.einsum("rni,rnj->rij", x - x.mean(1, keepdims=True), x - x.mean(1, keepdims=True)) / N
    start = MixtureModel(np.full((R, K), 1.0 / K), centres, np.broadcast_to(pooled[:, None] + reg_covar * np.eye(d), (R, K, d, d)).copy())
    return _m_step(x, onehot, start, reg_covar)


def fit_mixture(x, init: MixtureModel, *, max_iter: int = 100, tol: float = 1e-3,
                reg_covar: float = 1e-6) -> tuple[MixtureModel, dict[str, np.ndarray]]:
    """EM for R Gaussian mixtures at once from ``init``; each run stops on its own.

    Args:
        x: [R, N, d] training points.
        init: the starting mixtures (K components each).
        max_iter: at most this many EM iterations.
        tol: a run stops once its mean log-likelihood per point changes by less than tol between
            iterations (scikit-learn's ``GaussianMixture`` rule).
        reg_covar: added to the diagonal of each fitted covariance.

    Returns:
        The fitted mixtures and ``{"n_iter": [R], "converged": [R], "log_lik": [R]}`` (log_lik: the mean
        log-likelihood per point of the parameters before the last M-step, as scikit-learn's lower bound).
    """
    x = np.asarray(x, float)
    if x.ndim != 3 or x.shape[0] != init.runs or x.shape[2] != init.means.shape[-1]:
        raise ValueError(f"x must be [R, N, d] = [{init.runs}, N, {init.means.shape[-1]}]; got shape {x.shape}")
    max_iter = check_int("max_iter", max_iter, minimum=1)
    tol = check_interval("tol", tol, 0.0, np.inf)
    reg_covar = check_interval("reg_covar", reg_covar, 0.0, np.inf)
    R = x.shape[0]
    model = init
    active = np.ones(R, bool)
    prev = np.full(R, -np.inf)
    n_iter = np.zeros(R, int)
    for _ in range(max_iter):
        log_norm, resp = _e_step(x, model)
        ll = log_norm.mean(1)  # [R]
        new = _m_step(x, resp, model, reg_covar)
        model = MixtureModel(np.where(active[:, None], new.weights, model.weights),
                             np.where(active[:, None, None], new.means, model.means),
                             np.where(active[:, None, None, None], new.covs, model.covs))
        n_iter += active
        done = active & (np.abs(ll - prev) < tol)
        prev = np.where(active, ll, prev)
        active &= ~done
        if not active.any():
            break
    return model, {"n_iter": n_iter, "converged": ~active, "log_lik": prev}


class MixtureFamily:
    """Gaussian-mixture model family for :func:`madlib.loops.run_loop`; P_r is a Gaussian mixture.

    Args:
        weights: [M] mixture weights of P_r (normalised here).
        means: [M, d] component means of P_r.
        covs: [M, d, d] component covariances of P_r.
        runs: number of independent loops simulated together (R).
        n_components: K of the fitted mixtures (default M; ``init="warm"`` needs K = M).
        init: ``"warm"`` (EM starts from the model that drew the data) or ``"kmeans"``.
        max_iter, tol, reg_covar: EM settings (:func:`fit_mixture`).
    """

    def __init__(self, weights, means, covs, runs: int, *, n_components: int | None = None,
                 init: str = "warm", max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6):
        means = np.asarray(means, float)
        if means.ndim != 2:
            raise ValueError(f"means must be [M, d]; got shape {means.shape}")
        weights = np.asarray(weights, float)
        if weights.shape != means.shape[:1] or np.any(weights < 0) or not np.isfinite(weights).all() or weights.sum() <= 0:
            raise ValueError(f"weights must be {means.shape[0]} non-negative numbers with a positive sum; got {weights}")
        self.weights = weights / weights.sum()
        self.means = means
        self.covs = check_covariance("covs", covs, dim=means.shape[1])
        if self.covs.shape[0] != means.shape[0]:
            raise ValueError(f"covs must be [M, d, d] with M = {means.shape[0]}; got shape {self.covs.shape}")
        self.runs = check_int("runs", runs, minimum=1)
        self.init = check_choice("init", init, INITS)
        M = means.shape[0]
        self.n_components = M if n_components is None else check_int("n_components", n_components, minimum=1)
        if self.init == "warm" and self.n_components != M:
            raise ValueError(f"n_components must equal the {M} components of P_r with init='warm' "
                             f"(EM starts from the model that drew the data); got {self.n_components}")
        self.max_iter = check_int("max_iter", max_iter, minimum=1)
        self.tol = check_interval("tol", tol, 0.0, np.inf)
        self.reg_covar = check_interval("reg_covar", reg_covar, 0.0, np.inf)

    @classmethod
    def from_toy(cls, toy, runs: int, **kwargs) -> "MixtureFamily":
        """P_r = an equal-weight isotropic mixture with ``toy.means`` [M, d] and ``toy.std`` (e.g.
        :func:`madlib.data.grid_mixture`); keyword arguments as the constructor's."""
        means = np.asarray(toy.means, float)
        M, d = means.shape
        return cls(np.full(M, 1.0 / M), means, np.broadcast_to(float(toy.std) ** 2 * np.eye(d), (M, d, d)).copy(),
                   runs, **kwargs)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def fingerprint(self) -> str:
        """Identifies P_r, the runs and the EM settings (for checkpoints)."""
        digest = hashlib.sha256(self.weights.tobytes() + self.means.tobytes() + self.covs.tobytes()).hexdigest()[:16]
        return (f"MixtureFamily(d={self.dim}, runs={self.runs}, K={self.n_components}, init={self.init}, "
                f"max_iter={self.max_iter}, tol={self.tol}, reg_covar={self.reg_covar}, P_r={digest})")

    def true_model(self) -> MixtureModel:
        R = self.runs
        return MixtureModel(np.broadcast_to(self.weights, (R,) + self.weights.shape).copy(),
                            np.broadcast_to(self.means, (R,) + self.means.shape).copy(),
                            np.broadcast_to(self.covs, (R,) + self.covs.shape).copy())

    def sample(self, model: MixtureModel, n: int, lam: float, rng: np.random.Generator) -> MixtureData:
        return MixtureData(sample_mixture(model, n, lam, rng), model)

    def draw_real(self, n: int, rng: np.random.Generator) -> MixtureData:
        return self.sample(self.true_model(), n, 1.0, rng)

    def concat(self, parts) -> MixtureData:
        """Pool the points; the warm start is the source of the last part that has one (the newest model)."""
        parts = list(parts)
        sources = [p.source for p in parts if p.source is not None]
        return MixtureData(np.concatenate([p.points for p in parts], axis=1), sources[-1] if sources else None)

    def fit(self, data: MixtureData) -> MixtureModel:
        x = data.points
        if self.init == "warm" and data.source is not None:
            start = data.source
        else:
            start = kmeans_init(x, self.n_components, reg_covar=self.reg_covar)
        model, _ = fit_mixture(x, start, max_iter=self.max_iter, tol=self.tol, reg_covar=self.reg_covar)
        return model

    def summary(self, model: MixtureModel) -> dict[str, np.ndarray]:
        """Per-run records: the fitted parameters, total variance tr Cov (closed form) [R], live components [R]."""
        _, cov = mixture_moments(model)
        return {"weights": model.weights, "means": model.means, "covs": model.covs,
                "total_variance": np.trace(cov, axis1=-2, axis2=-1),
                "live_components": (model.weights > 0).sum(-1)}


def rank_correlation(a, b) -> np.ndarray:
    """Spearman's rank correlation of a and b along axis 0 (ties get average ranks) -> one value per column.

    a, b: [G, ...] series (e.g. a measure and the number of covered modes over G evaluated generations).
    A column in which either series is constant has no rank correlation: NaN, without a warning.
    """
    from scipy.stats import rankdata

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.shape[0] < 2:
        raise ValueError(f"a and b must have the same shape [G >= 2, ...]; got {a.shape} and {b.shape}")
    ra, rb = rankdata(a, axis=0), rankdata(b, axis=0)
    ra, rb = ra - ra.mean(0), rb - rb.mean(0)
    den = np.sqrt((ra**2).sum(0) * (rb**2).sum(0))
    num = (ra * rb).sum(0)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)
