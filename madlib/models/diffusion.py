"""Low-dimensional DDPM ensembles as a model family of the loop engine, with SIMS training.

One generation of the SIMS-1 loop (SIMS Algorithm 1, Sec. 4.2.1), batched over R independent runs:
1. train a base DDPM from scratch on the generation's data D_t (``base_epochs``);
2. if w != 0: sample ``n_aux`` points from the base model and fine-tune a copy of it on them alone
   (``aux_epochs``, the base model's settings) -> the auxiliary model;
3. sample with (1 + w) eps_base - w eps_aux (SIMS Eq. 5). w = 0 is standard training (no auxiliary
   model is trained: both procedures coincide, S:599).

A grid of weights runs in one ensemble: ``w=(0, 1, 3)`` with ``runs=8`` trains 24 members, member
``k * runs + r`` being run r at weight w[k] (``member_w`` lists them), so one loop call covers the
whole SIMS-1 w axis for one |D_s|.

Data are :class:`DiffusionData` (points [R, N, d] and a seed drawn from the loop's generator, so that
fitting is reproducible without hidden state). P_r is a Gaussian N(mean, cov), as in SIMS-1.
Project choices: T = 40 cosine steps with betas clipped at 0.5 (see ``cosine_schedule``: the paper's
notebook is silent; 0.99 inflated the sampled variance x2-3 after 100 epochs), SiLU MLP 4 x 64 with
the raw step index as input, Adam 1e-3, batch 2048 as in the paper's notebook (clipped to the data
size: an epoch is one full-batch step, so 100 epochs are 100 Adam steps). Measured on 8 runs at
generation 1: full batch gives E W2 = 0.28 at w = 0, as good as batch 64-256 with 16x the steps
(0.27-0.49), and SIMS guidance behaves alike in both (notebooks/sims_1_gaussian_loop.ipynb).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from madlib._checks import check_covariance, check_int
from madlib.diffusion._random import randn
from madlib.diffusion.guidance import check_weight, constant_weight
from madlib.diffusion.losses import ddpm_eps_loss
from madlib.diffusion.networks import EnsembleMLP
from madlib.diffusion.samplers import ddpm_ancestral_sampler
from madlib.diffusion.schedules import cosine_schedule
from madlib.diffusion.training import finetune_copy, train_ensemble
from madlib.theory.gaussian import fit_gaussian, gaussian_stats, w2_gaussian


@dataclass
class DiffusionData:
    """Training points of R runs, [R, N, d], and the seed that fitting on them uses."""

    points: torch.Tensor
    seed: int


@dataclass
class SimsModel:
    """One generation: the base ensemble and, for w != 0, its auxiliary ensemble."""

    base: EnsembleMLP
    aux: EnsembleMLP | None


class DiffusionFamily:
    """DDPM ensembles fitted and sampled by :func:`madlib.loops.run_loop`; ``w`` is SIMS's guidance.

    Args:
        mean, cov: P_r = N(mean, cov) (SIMS-1: [0, 0], [[2, 1], [1, 2]]).
        runs: independent loops per weight, trained together as one ensemble.
        w: SIMS guidance weight used whenever this family samples (0 = standard training), or a
            sequence of weights: then there are ``len(w) * runs`` members (see ``member_w``).
        base_epochs, aux_epochs, n_aux: SIMS-1's 100 epochs, 50 epochs and n_s = 2000 by default.
        eval_samples, eval_seed: the fixed samples that ``summary`` measures each generation with.
        empirical_points: if > 0, ``summary`` also records the exact empirical W2 (POT) between this many
            of the eval samples and as many fixed points of P_r (biased up at small sizes: a check on
            the Gaussian closed form, not a replacement).
    """

    def __init__(self, mean, cov, runs: int, *, w=0.0, steps: int = 40, max_beta: float = 0.5,
                 width: int = 64, depth: int = 4, base_epochs: int = 100, aux_epochs: int = 50, n_aux: int = 2000,
                 batch_size: int = 2048, lr: float = 1e-3, eval_samples: int = 2000, eval_seed: int = 0,
                 empirical_points: int = 0, device: str = "cpu"):
        self.mean = np.atleast_1d(np.asarray(mean, float))
        self.cov = check_covariance("cov", np.atleast_2d(cov), dim=self.mean.shape[0])
        self.runs = check_int("runs", runs, minimum=1)
        grid = [check_weight(v) for v in np.atleast_1d(np.asarray(w, float))]
        if not grid:
            raise ValueError("w must hold at least one guidance weight")
        self.w = grid[0] if np.ndim(w) == 0 else tuple(grid)
        self.member_w = np.repeat(np.asarray(grid), self.runs)  # [members]
        self.members = len(self.member_w)  # runs per weight x weights, trained as one ensemble
        self.schedule = cosine_schedule(steps, max_beta=max_beta)
        self.width, self.depth = check_int("width", width, minimum=1), check_int("depth", depth, minimum=1)
        self.base_epochs = check_int("base_epochs", base_epochs, minimum=1)
        self.aux_epochs = check_int("aux_epochs", aux_epochs, minimum=1)
        self.n_aux = check_int("n_aux", n_aux, minimum=1)
        self.batch_size, self.lr = check_int("batch_size", batch_size, minimum=1), float(lr)
        self.eval_samples = check_int("eval_samples", eval_samples, minimum=2)
        self.eval_seed = check_int("eval_seed", eval_seed, minimum=0)
        self.empirical_points = check_int("empirical_points", empirical_points, minimum=0)
        if self.empirical_points > self.eval_samples:
            raise ValueError(f"empirical_points must be <= eval_samples ({self.eval_samples}); got {empirical_points}")
        self.device = device

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.mean.tobytes() + self.cov.tobytes()).hexdigest()[:16]
        return (f"DiffusionFamily(runs={self.runs}, w={self.w}, T={self.schedule.steps}, {self.width}x{self.depth}, "
                f"epochs={self.base_epochs}/{self.aux_epochs}, n_aux={self.n_aux}, batch={self.batch_size}, "
                f"lr={self.lr}, P_r={digest})")

    def true_model(self):
        raise ValueError("a diffusion loop starts from real data: set n_ini in the LoopSpec")

    def _loss(self, net, x, **kw):
        return ddpm_eps_loss(net, x, self.schedule, **kw)

    def _draw(self, model: SimsModel, n: int, generator: torch.Generator) -> torch.Tensor:
        noise = randn((self.members, n, self.dim), generator, self.device, torch.float32)
        same = np.all(self.member_w == self.member_w[0])  # one weight: a float lets the sampler skip w = 0
        w = float(self.member_w[0]) if same else torch.as_tensor(self.member_w, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            return ddpm_ancestral_sampler(model.base, noise, self.schedule, guide=model.aux,
                                          weight=constant_weight(w), generator=generator)

    def draw_real(self, n: int, rng: np.random.Generator) -> DiffusionData:
        # paired design (project choice): run r draws one D_r that every weight's member r trains on,
        # so differences between weights are not differences between real sets
        x = rng.multivariate_normal(self.mean, self.cov, size=(self.runs, n))
        x = np.tile(x, (self.members // self.runs, 1, 1))
        return DiffusionData(torch.as_tensor(x, dtype=torch.float32, device=self.device), int(rng.integers(2**31)))

    def sample(self, model: SimsModel, n: int, lam: float, rng: np.random.Generator) -> DiffusionData:
        if lam != 1.0:
            raise ValueError(f"lam must be 1 for DiffusionFamily: its bias is the SIMS weight w; got lam = {lam}")
        seed = int(rng.integers(2**31))
        return DiffusionData(self._draw(model, n, torch.Generator().manual_seed(seed)), seed)

    def concat(self, parts) -> DiffusionData:
        parts = list(parts)
        return DiffusionData(torch.cat([p.points for p in parts], dim=1), parts[-1].seed)

    def fit(self, data: DiffusionData) -> SimsModel:
        # SIMS Algorithm 1, steps 1-3 (w = 0: standard training, step 1 only)
        g = torch.Generator().manual_seed(data.seed)
        n = data.points.shape[1]
        base = EnsembleMLP(self.members, self.dim, width=self.width, depth=self.depth, generator=g, device=self.device)
        settings = dict(batch_size=self.batch_size, lr=self.lr, generator=g)
        train_ensemble(base, data.points, self._loss, samples_seen=self.base_epochs * n, **settings)
        if not self.member_w.any():
            return SimsModel(base, None)
        synthetic = self._draw(SimsModel(base, None), self.n_aux, g)
        aux, _ = finetune_copy(base, synthetic, self._loss, samples_seen=self.aux_epochs * self.n_aux, **settings)
        return SimsModel(base, aux)

    def summary(self, model: SimsModel) -> dict[str, np.ndarray]:
        """W2 between P_r and the Gaussian fitted to ``eval_samples`` guided samples per member [R], the moments,
        and (``empirical_points`` > 0) the exact empirical W2 ``w2_empirical`` [R]."""
        x = self._draw(model, self.eval_samples, torch.Generator().manual_seed(self.eval_seed)).double().cpu().numpy()
        mean, cov = fit_gaussian(gaussian_stats(x))
        out = {"w2": w2_gaussian(mean, cov, self.mean, self.cov), "mean": mean, "cov": cov}
        if self.empirical_points:
            from madlib.metrics.distances import w2_empirical  # POT, the metrics extra

            m = self.empirical_points
            real = np.random.default_rng(self.eval_seed).multivariate_normal(self.mean, self.cov, size=m)
            out["w2_empirical"] = np.array([w2_empirical(x[r, :m], real).value for r in range(self.members)])
        return out
