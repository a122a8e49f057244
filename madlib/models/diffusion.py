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
Two recipes (``recipe``, :data:`RECIPES`), both epsilon prediction, Adam at a constant rate, T = 40:

- ``"madlib"`` (the default, the project's first reading): Nichol & Dhariwal's cosine schedule on
  t = 1..T with betas clipped at ``max_beta`` = 0.5 (0.99 inflated the sampled variance x2-3 after 100
  epochs), SiLU MLP ``depth`` x ``width`` with the raw step index as input, DDPM ancestral sampling over
  t = T-1..0, batch 2048 (clipped to the data size: an epoch is one full-batch step). Measured on 8 runs
  at generation 1: full batch gives E W2 = 0.28 at w = 0, as good as batch 64-256 with 16x the steps.
- ``"toy-diffusion"``: the toy DDPM SIMS cites (S:574; albarji/toy-diffusion ``swissRoll.ipynb``) as it
  is written: :func:`toy_cosine_schedule` (the formula on t = 0..T-1 over its t = 0 value, no clip),
  :class:`EnsembleResidualMLP` (``blocks`` residual LayerNorm blocks of ``width``, the raw step index in
  every block), :func:`toy_ddpm_sampler` (t = T-1..1, variance beta_t, noise only for t > 1). The
  notebook's batch of 2048 makes "100 epochs" on <= 2048 points 100 steps and leaves generation 1 badly
  over-dispersed, so the batch is a parameter (SIMS-1 uses 128: about 800-1600 steps per base model).
  One difference stays: batches here are full and drawn from a fresh permutation every epoch
  (``train_ensemble``: ceil(epochs N / batch) steps), where the notebook walks the data in order with a
  smaller last batch.

Two options change how the base is trained, for the SIMS-1 premise check (issue 26), and keep today's numbers
when left out: ``ema_decay`` (an exponential moving average of the base's weights, updated after every Adam step
and started at its initial weights, is the base model that is sampled and fine-tuned; the auxiliary fine-tune,
with the base's settings, keeps its own EMA started at those weights and is sampled through it) and ``aux_lr``
(the auxiliary fine-tune's constant rate; None: the base's, SIMS's "same training hyperparameters", S:335).

:meth:`DiffusionFamily.guidance_decomposition` splits the auxiliary model's difference from the base
into the part shared by independent fine-tunings and their spread, against the base's own error
(exact for Gaussian P_r), over a sweep of fine-tuning budgets.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from madlib._checks import check_choice, check_covariance, check_int, check_interval
from madlib.diffusion._random import randn
from madlib.diffusion.guidance import check_weight, constant_weight
from madlib.diffusion.losses import ddpm_eps_loss
from madlib.diffusion.networks import EnsembleMLP, EnsembleResidualMLP
from madlib.diffusion.samplers import ddpm_ancestral_sampler, toy_ddpm_sampler
from madlib.diffusion.schedules import cosine_schedule, toy_cosine_schedule
from madlib.diffusion.training import train_ensemble
from madlib.theory.gaussian import fit_gaussian, gaussian_stats, w2_gaussian


# recipe -> (schedule, sampler) of the SIMS-1 DDPM; the network follows the recipe too (``_new_net``)
RECIPES = {
    "madlib": (lambda steps, max_beta: cosine_schedule(steps, max_beta=max_beta), ddpm_ancestral_sampler),
    "toy-diffusion": (lambda steps, max_beta: toy_cosine_schedule(steps), toy_ddpm_sampler),
}


@dataclass
class DiffusionData:
    """Training points of R runs, [R, N, d], and the seed that fitting on them uses."""

    points: torch.Tensor
    seed: int


@dataclass
class SimsModel:
    """One generation: the base ensemble and, for w != 0, its auxiliary ensemble."""

    base: torch.nn.Module
    aux: torch.nn.Module | None


class DiffusionFamily:
    """DDPM ensembles fitted and sampled by :func:`madlib.loops.run_loop`; ``w`` is SIMS's guidance.

    Args:
        mean, cov: P_r = N(mean, cov) (SIMS-1: [0, 0], [[2, 1], [1, 2]]).
        runs: independent loops per weight, trained together as one ensemble.
        w: SIMS guidance weight used whenever this family samples (0 = standard training), or a
            sequence of weights: then there are ``len(w) * runs`` members (see ``member_w``).
        recipe: ``"madlib"`` or ``"toy-diffusion"`` (module docstring): schedule, network and sampler.
        steps, max_beta: DDPM steps T and (``"madlib"`` only) the clip of the cosine betas.
        width, depth: the ``"madlib"`` MLP; width, blocks: the ``"toy-diffusion"`` residual MLP.
        base_epochs, aux_epochs, n_aux: SIMS-1's 100 epochs, 50 epochs and n_s = 2000 by default.
        batch_size, lr: Adam's batch (clipped to the data size) and constant rate, base and auxiliary alike.
        ema_decay: None (the default: the base model is the last Adam step), or the decay in [0, 1) of an EMA
            of the weights, theta_ema <- decay theta_ema + (1 - decay) theta after every step, started at the
            initial weights; the EMA is then the model (sampled, and the auxiliary model's start), and the
            auxiliary fine-tune keeps an EMA of its own with the same decay. Decay 0 is the last step itself.
        aux_lr: the auxiliary fine-tune's constant rate (None: ``lr``, the base model's own settings).
        eval_samples, eval_seed: the fixed samples that ``summary`` measures each generation with.
        empirical_points: if > 0, ``summary`` also records the exact empirical W2 (POT) between this many
            of the eval samples and as many fixed points of P_r (biased up at small sizes: a check on
            the Gaussian closed form, not a replacement).
    """

    def __init__(self, mean, cov, runs: int, *, w=0.0, recipe: str = "madlib", steps: int = 40, max_beta: float = 0.5,
                 width: int = 64, depth: int = 4, blocks: int = 2, base_epochs: int = 100, aux_epochs: int = 50,
                 n_aux: int = 2000,
                 batch_size: int = 2048, lr: float = 1e-3, eval_samples: int = 2000, eval_seed: int = 0,
                 empirical_points: int = 0, ema_decay: float | None = None, aux_lr: float | None = None,
                 device: str = "cpu"):
        self.mean = np.atleast_1d(np.asarray(mean, float))
        self.cov = check_covariance("cov", np.atleast_2d(cov), dim=self.mean.shape[0])
        self.runs = check_int("runs", runs, minimum=1)
        grid = [check_weight(v) for v in np.atleast_1d(np.asarray(w, float))]
        if not grid:
            raise ValueError("w must hold at least one guidance weight")
        self.w = grid[0] if np.ndim(w) == 0 else tuple(grid)
        self.member_w = np.repeat(np.asarray(grid), self.runs)  # [members]
        self.members = len(self.member_w)  # runs per weight x weights, trained as one ensemble
        self.recipe = check_choice("recipe", recipe, RECIPES)
        make_schedule, self.sampler = RECIPES[recipe]
        self.schedule = make_schedule(steps, max_beta)
        self.width, self.depth = check_int("width", width, minimum=1), check_int("depth", depth, minimum=1)
        self.blocks = check_int("blocks", blocks, minimum=0)
        self.base_epochs = check_int("base_epochs", base_epochs, minimum=1)
        self.aux_epochs = check_int("aux_epochs", aux_epochs, minimum=1)
        self.n_aux = check_int("n_aux", n_aux, minimum=1)
        self.batch_size, self.lr = check_int("batch_size", batch_size, minimum=1), float(lr)
        self.ema_decay = None if ema_decay is None else check_interval("ema_decay", ema_decay, 0.0, 1.0, high_open=True)
        self.aux_lr = None if aux_lr is None else check_interval("aux_lr", aux_lr, 0.0, math.inf, low_open=True)
        self.eval_samples = check_int("eval_samples", eval_samples, minimum=2)
        self.eval_seed = check_int("eval_seed", eval_seed, minimum=0)
        self.empirical_points = check_int("empirical_points", empirical_points, minimum=0)
        if self.empirical_points > self.eval_samples:
            raise ValueError(f"empirical_points must be <= eval_samples ({self.eval_samples}); got {empirical_points}")
        self.device = device

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def aux_rate(self) -> float:
        """The auxiliary fine-tune's rate: ``aux_lr``, or the base's ``lr`` when it is None."""
        return self.lr if self.aux_lr is None else self.aux_lr

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.mean.tobytes() + self.cov.tobytes()).hexdigest()[:16]
        net = f"{self.width}x{self.depth}" if self.recipe == "madlib" else f"toy-diffusion, {self.blocks} blocks of {self.width}"
        return (f"DiffusionFamily(runs={self.runs}, w={self.w}, T={self.schedule.steps}, {net}, "
                f"epochs={self.base_epochs}/{self.aux_epochs}, n_aux={self.n_aux}, batch={self.batch_size}, "
                f"lr={self.lr}{self._option_text()}, P_r={digest})")

    def _option_text(self) -> str:
        # only the options that are set, so that a default family keeps its fingerprint (and its checkpoints)
        return ((f", ema={self.ema_decay}" if self.ema_decay is not None else "")
                + (f", aux_lr={self.aux_lr}" if self.aux_lr is not None else ""))

    def true_model(self):
        raise ValueError("a diffusion loop starts from real data: set n_ini in the LoopSpec")

    def _loss(self, net, x, **kw):
        return ddpm_eps_loss(net, x, self.schedule, **kw)

    def _new_net(self, members: int, generator: torch.Generator) -> torch.nn.Module:
        if self.recipe == "madlib":
            return EnsembleMLP(members, self.dim, width=self.width, depth=self.depth, generator=generator,
                               device=self.device)
        return EnsembleResidualMLP(members, self.dim, width=self.width, blocks=self.blocks, generator=generator,
                                   device=self.device)

    def _train(self, net: torch.nn.Module, points: torch.Tensor, samples_seen: int, lr: float, generator: torch.Generator,
               after_step=None) -> torch.nn.Module:
        """Train ``net`` in place on points [R, N, d] and return the model this family uses: ``net`` itself, or (with
        ``ema_decay``) its EMA, started at ``net``'s weights before the first step. ``after_step(model)`` sees that model."""
        ema = None if self.ema_decay is None else copy.deepcopy(net)
        model = net if ema is None else ema
        kw = {} if ema is None else dict(ema=ema, ema_decay=self.ema_decay)
        if after_step is not None:
            kw["after_step"] = lambda: after_step(model)
        train_ensemble(net, points, self._loss, samples_seen=samples_seen, batch_size=self.batch_size, lr=lr,
                       generator=generator, **kw)
        return model

    def _draw(self, model: SimsModel, n: int, generator: torch.Generator, member_w=None) -> torch.Tensor:
        member_w = self.member_w if member_w is None else np.asarray(member_w, float)
        noise = randn((len(member_w), n, self.dim), generator, self.device, torch.float32)
        same = np.all(member_w == member_w[0])  # one weight: a float lets the sampler skip w = 0
        w = float(member_w[0]) if same else torch.as_tensor(member_w, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            return self.sampler(model.base, noise, self.schedule, guide=model.aux, weight=constant_weight(w),
                                generator=generator)

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
        base = self._train(self._new_net(self.members, g), data.points, self.base_epochs * n, self.lr, g)
        if not self.member_w.any():
            return SimsModel(base, None)
        synthetic = self._draw(SimsModel(base, None), self.n_aux, g)
        # a copy of the base fine-tuned on S alone with the base's settings (its EMA, if any, starts at the base)
        aux = self._train(copy.deepcopy(base), synthetic, self.aux_epochs * self.n_aux, self.aux_rate, g)
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

    def exact_eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # E[eps | x_t] for x_0 ~ N(mu, Sigma), x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps:
        #   sqrt(1 - ab) (ab Sigma + (1 - ab) I)^-1 (x_t - sqrt(ab) mu)
        """The optimal noise prediction of P_r itself at points x [..., d] and integer steps t [...] (float64)."""
        ab = self.schedule.alpha_bar.double()[t.long()][..., None, None]  # [..., 1, 1]
        cov = torch.as_tensor(self.cov, dtype=torch.float64)
        mean = torch.as_tensor(self.mean, dtype=torch.float64)
        marginal = ab * cov + (1 - ab) * torch.eye(self.dim, dtype=torch.float64)  # [..., d, d]
        centred = x.double() - ab[..., 0].sqrt() * mean  # [..., d]
        return (1 - ab[..., 0]).sqrt() * torch.linalg.solve(marginal, centred)

    def sampled_steps(self) -> list[int]:
        """The step indices the recipe's sampler evaluates the network at (toy-diffusion skips t = 0)."""
        first = 1 if self.recipe == "toy-diffusion" else 0
        return list(range(first, self.schedule.steps))

    def guidance_decomposition(self, data: DiffusionData, *, budgets, aux_seeds: int = 4, lrs=None,
                               w_grid=(0.0, 1.0, 3.0), probe_points: int = 100, probe_seed: int = 0,
                               eval_samples: int | None = None) -> dict:
        """When can SIMS's guidance help? The auxiliary difference against the base model's own error.

        Generation 1 of SIMS-1 (Algorithm 1, steps 1-3), taken apart. For each run r a base model is
        trained on D_r exactly as :meth:`fit` does; ``aux_seeds`` = K auxiliary models are fine-tuned from it,
        each on its own n_aux base samples, and snapshotted after ``budgets`` (epochs of n_aux points; SIMS
        sweeps the budget B, S:358-366) at each learning rate of ``lrs`` (None: the family's auxiliary rate
        :attr:`aux_rate`; with ``ema_decay`` the snapshot is the fine-tune's EMA at that step, which is what a
        fine-tune of that budget gives). The base is trained as :meth:`fit` trains it (its EMA, if any). At probe points
        x_t ~ P_r noised to every sampled step t (``probe_points`` per step), with the exact eps* of P_r:

            e   = eps_base - eps*                      the base model's error
            D_k = eps_aux,k - eps_base                 the auxiliary difference of seed k
            S   = mean_k D_k,  N_k = D_k - S           systematic part and noise part

        Guidance gives eps_base - w D_k, whose error e - w D_k is smallest at w* = <D, e> / |D|^2 and there
        reduces |e|^2 by the fraction cos^2(D, e) = gain (sums over probe points). Guidance can only help
        where D points along e (w* > 0), and only as much as its systematic part outweighs its noise:
        E|D|^2 = |S|^2 + E|N|^2.

        Returns a dict of numpy arrays (L = len(lrs), B = len(budgets), W = len(w_grid), R runs, K seeds):
        ``budgets``, ``lrs``, ``w`` [W], ``steps`` [T'] (the sampled steps),
        ``base_err2`` [R] (mean |e|^2), ``sys2`` [L, B, R] (mean |S|^2, debiased by the K-seed noise),
        ``noise2`` [L, B, R] (mean E|N_k|^2), ``cos_sys`` [L, B, R] (cosine of S with e),
        ``w_star`` [L, B, R, K], ``gain`` [L, B, R, K], per-step profiles ``sys2_t``, ``noise2_t`` [L, B, T']
        and ``base_err2_t`` [T'] (means over runs), and ``w2`` [L, B, W, R, K]: the Gaussian-moment W2 of
        ``eval_samples`` guided samples (fixed noise, the same for every setting) of each (base, auxiliary).
        """
        budgets = [check_int("budget", b, minimum=1) for b in budgets]
        if not budgets:
            raise ValueError("budgets must hold at least one fine-tuning budget (epochs)")
        k_seeds = check_int("aux_seeds", aux_seeds, minimum=2)
        lrs = [self.aux_rate] if lrs is None else [float(v) for v in lrs]
        w_grid = [check_weight(float(v)) for v in w_grid]
        eval_samples = self.eval_samples if eval_samples is None else check_int("eval_samples", eval_samples, minimum=2)
        runs, points = self.runs, data.points[:self.runs]  # the first weight's members: each run's D_r once
        g = torch.Generator().manual_seed(data.seed)
        base = self._train(self._new_net(runs, g), points, self.base_epochs * points.shape[1], self.lr, g)
        tiled = _tile_members(base, k_seeds)  # member k * runs + r = seed k of run r
        synthetic = self._draw(SimsModel(tiled, None), self.n_aux, g, member_w=np.zeros(k_seeds * runs))

        # probe points: x_0 ~ P_r, noised to each sampled step (one set for every member)
        steps = self.sampled_steps()
        pg = torch.Generator().manual_seed(probe_seed)
        t = torch.tensor(steps).repeat_interleave(probe_points)  # [P]
        chol = torch.linalg.cholesky(torch.as_tensor(self.cov, dtype=torch.float64))
        x0 = torch.as_tensor(self.mean) + torch.randn(len(t), self.dim, generator=pg, dtype=torch.float64) @ chol.T
        ab = self.schedule.alpha_bar.double()[t][:, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(x0.shape, generator=pg, dtype=torch.float64)  # [P, d]
        star = self.exact_eps(xt, t).float()  # [P, d]
        xt, tf = xt.float().to(self.device), t.float().to(self.device)

        def predict(net, members):
            with torch.no_grad():
                return net(xt.expand(members, -1, -1), tf.expand(members, -1)).cpu()  # [members, P, d]

        eps_base = predict(base, runs)  # [R, P, d]
        e = eps_base - star  # [R, P, d]
        e2 = (e ** 2).sum(-1)  # [R, P]
        by_step = lambda a: a.reshape(a.shape[:-1] + (len(steps), probe_points)).mean(-1)  # noqa: E731  [..., P] -> [..., T']
        n_l, n_b = len(lrs), len(budgets)
        out = {name: np.zeros((n_l, n_b, runs)) for name in ("sys2", "noise2", "cos_sys")}
        out |= {name: np.zeros((n_l, n_b, runs, k_seeds)) for name in ("w_star", "gain")}
        out |= {name: np.zeros((n_l, n_b, len(steps))) for name in ("sys2_t", "noise2_t")}
        out["w2"] = np.zeros((n_l, n_b, len(w_grid), runs, k_seeds))
        batch = min(self.batch_size, self.n_aux)
        at_step = {math.ceil(b * self.n_aux / batch): j for j, b in enumerate(budgets)}
        if len(at_step) != n_b:
            raise ValueError(f"budgets must be distinct (in optimiser steps of batch {batch}); got {budgets}")
        unguided = None
        for i, lr in enumerate(lrs):
            snapshots = {}
            done = [0]

            def snapshot(model):  # the model after each step: the fine-tune itself, or its EMA
                done[0] += 1
                if done[0] in at_step:
                    snapshots[at_step[done[0]]] = copy.deepcopy(model)

            fg = torch.Generator().manual_seed(data.seed + 1)  # the same batches at every learning rate
            self._train(copy.deepcopy(tiled), synthetic, max(budgets) * self.n_aux, lr, fg, after_step=snapshot)
            for j in range(n_b):
                d = (predict(snapshots[j], k_seeds * runs) - eps_base.repeat(k_seeds, 1, 1)).reshape(
                    k_seeds, runs, -1, self.dim)  # [K, R, P, d]
                sys = d.mean(0)  # [R, P, d]
                noise2 = d.var(0, unbiased=True).sum(-1)  # [R, P]
                sys2 = (sys ** 2).sum(-1) - noise2 / k_seeds  # [R, P], debiased
                out["sys2"][i, j], out["noise2"][i, j] = sys2.mean(-1).numpy(), noise2.mean(-1).numpy()
                out["sys2_t"][i, j], out["noise2_t"][i, j] = by_step(sys2).mean(0).numpy(), by_step(noise2).mean(0).numpy()
                out["cos_sys"][i, j] = ((sys * e).sum((-1, -2)) / ((sys ** 2).sum((-1, -2)) * e2.sum(-1)).sqrt()).numpy()
                de = (d * e).sum((-1, -2))  # [K, R]
                dd = (d ** 2).sum((-1, -2))
                out["w_star"][i, j] = (de / dd).T.numpy()
                out["gain"][i, j] = (de ** 2 / (dd * e2.sum(-1))).T.numpy()
                for m, w in enumerate(w_grid):
                    if w == 0 and unguided is not None:  # w = 0 samples the base alone: the same at every setting
                        out["w2"][i, j, m] = unguided
                        continue
                    x = self._draw(SimsModel(tiled, snapshots[j]), eval_samples, torch.Generator().manual_seed(self.eval_seed),
                                   member_w=np.full(k_seeds * runs, w)).double().cpu().numpy()
                    mean, cov = fit_gaussian(gaussian_stats(x))
                    out["w2"][i, j, m] = w2_gaussian(mean, cov, self.mean, self.cov).reshape(k_seeds, runs).T
                    if w == 0:
                        unguided = out["w2"][i, j, m]
        out |= {"budgets": np.array(budgets), "lrs": np.array(lrs), "w": np.array(w_grid), "steps": np.array(steps),
                "base_err2": e2.mean(-1).numpy(), "base_err2_t": by_step(e2).mean(0).numpy()}
        return out


def _tile_members(net: torch.nn.Module, copies: int) -> torch.nn.Module:
    """A copy of an ensemble with its R members repeated ``copies`` times: member k * R + r = member r.

    Every parameter of the ensembles here leads with the member axis [R, ...]."""
    tiled = copy.deepcopy(net)
    for p in tiled.parameters():
        p.data = p.data.repeat((copies,) + (1,) * (p.ndim - 1))
    tiled.members = net.members * copies
    return tiled
