"""SIMS-1's synthetic augmentation loop on 2D Gaussian data, its premise first, and the loop's readouts.

Reference: Alemohammad et al., "Self-Improving Diffusion Models with Synthetic Data" (SIMS), Sec. 3 (Algorithm 1,
Eq. 5), Sec. 4.2.1, Fig. 4 (``../shared/papers/000_21b426a53d3e3225.txt``, lines 321-366 and 565-660).

The grid cells of ``notebooks/sims_1_gaussian_loop.ipynb`` (plain data in and out, so that :func:`madlib.sweep.sweep`
runs them in one-thread lanes, as Slurm jobs or on Ray with the same numbers as a loop in one process):

- :func:`sims_premise`: SIMS's premise at generation 1 for one *base recipe* (:data:`BASE_RECIPES`): does the
  auxiliary model's difference from the base point along the base's own error?
  (:meth:`madlib.models.diffusion.DiffusionFamily.guidance_decomposition`);
- :func:`sims_gaussian_loop`: one augmentation loop of one |D_s|, its ensemble holding ``runs`` members for every
  guidance weight w (member k * runs + r is run r at w_k). Every |D_s| loop of a figure gets the same ``seed``, so
  run r draws one D_r and trains one generation-1 model in every loop: the loops differ from generation 2 on.

and what the notebook reads from them: :func:`premise_reading` and :func:`choose_loop_recipes` (the premise per
recipe, chosen on the selection bases and read on the report bases; the loop's recipe), :func:`forgetting_window`
(the generation from which E[dist(G_t)] is flat within its noise: the start of the G_inf window),
:func:`loop_readout` (the quantities of the SIMS-1 claims, on one distance and one summary over runs: the mean, or
a trimmed mean that a few blown-up runs cannot drive), :func:`madlib.stats.least_favourable` and :func:`real_floors`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from scipy import stats

from madlib._checks import check_choice, check_int, check_interval
from madlib.stats import Interval, least_favourable, seed_interval  # noqa: F401 - least_favourable: stays importable here

__all__ = ["BASE_RECIPES", "choose_loop_recipes", "describe_recipe", "forgetting_window", "least_favourable",
           "loop_readout", "premise_reading", "real_floors", "recipe_settings", "sims_gaussian_loop", "sims_premise",
           "split_runs"]

# Base recipes of the premise check (issue 26): how the base model is trained (the auxiliary fine-tune follows it:
# SIMS's "same training hyperparameters", S:335). "epochs" multiplies the figure's base_epochs; the rest are
# DiffusionFamily settings. Adam at a constant rate 1e-3 throughout unless named.
BASE_RECIPES: dict[str, dict] = {
    "batch128": {"batch_size": 128},  # the project's reading since issue 17: ~780 steps, the last Adam step
    "batch2048": {"batch_size": 2048},  # the cited notebook's batch: one full-batch step per epoch (100 steps)
    "ema": {"batch_size": 128, "ema_decay": 0.99},  # the base sampled through an EMA of its weights (~100-step memory)
    "long": {"batch_size": 128, "epochs": 3},  # three times the base's epochs
    "small-aux-lr": {"batch_size": 128, "aux_lr": 1e-4},  # the auxiliary fine-tune at a tenth of the base's rate
}


def recipe_settings(name: str, *, base_epochs: int) -> dict:
    """DiffusionFamily settings of base recipe ``name`` (:data:`BASE_RECIPES`) for a figure whose base trains
    ``base_epochs`` epochs: ``{"batch_size", "base_epochs", "ema_decay", "aux_lr"}`` (None: the family's default)."""
    spec = BASE_RECIPES[check_choice("recipe", name, BASE_RECIPES)]
    return {"batch_size": spec["batch_size"], "base_epochs": spec.get("epochs", 1) * check_int("base_epochs", base_epochs, minimum=1),
            "ema_decay": spec.get("ema_decay"), "aux_lr": spec.get("aux_lr")}


def describe_recipe(name: str, *, base_epochs: int, n_real: int, lr: float = 1e-3) -> str:
    """One line for captions: ``"ema: batch 128, 100 epochs (782 steps on |D_r|), EMA 0.99, aux rate 0.001"``."""
    s = recipe_settings(name, base_epochs=base_epochs)
    steps = math.ceil(s["base_epochs"] * n_real / min(s["batch_size"], n_real))
    ema = f"EMA {s['ema_decay']:g}" if s["ema_decay"] is not None else "last Adam step"
    return (f"{name}: batch {s['batch_size']}, {s['base_epochs']} epochs ({steps} steps on |D_r|), {ema}, "
            f"aux rate {s['aux_lr'] if s['aux_lr'] is not None else lr:g}")


def split_runs(runs: int) -> tuple[np.ndarray, np.ndarray]:
    """(selection runs, report runs): the first half of ``runs`` and the rest, disjoint. Whatever a claim chooses
    (a weight w, a budget B, a recipe) is chosen on the selection runs and read on the report runs."""
    runs = check_int("runs", runs, minimum=2)
    return np.arange(runs // 2), np.arange(runs // 2, runs)


# --- the grid cells -----------------------------------------------------------------------------------------------

def sims_premise(name: str, *, seed: int, mean, cov, runs: int, n_real: int, recipe: str, steps: int, max_beta: float,
                 blocks: int, base_epochs: int, n_aux: int, budgets, aux_seeds: int, w_grid, probe_points: int,
                 eval_samples: int, probe_seed: int = 0, device: str = "auto") -> dict:
    """SIMS's premise at generation 1 under base recipe ``name`` (:data:`BASE_RECIPES`), as a sweep cell.

    ``runs`` bases are trained on their own D_r (``n_real`` points of P_r = N(mean, cov), drawn from ``seed``: every
    recipe of a figure sees the same D_r and the same initial weights), and each gets ``aux_seeds`` auxiliary
    fine-tunings snapshotted at ``budgets`` (epochs of ``n_aux`` points) at the recipe's auxiliary rate
    (:meth:`madlib.models.diffusion.DiffusionFamily.guidance_decomposition`). ``recipe`` is the DDPM
    ("toy-diffusion" or "madlib"). Returns that method's arrays (with L = 1 rate) plus ``name``, ``settings``,
    ``seconds`` and the ``device`` used.
    """
    from madlib._checks import resolve_device
    from madlib.models.diffusion import DiffusionFamily

    device = resolve_device("device", device)
    settings = recipe_settings(name, base_epochs=base_epochs)
    family = DiffusionFamily(mean, cov, runs, recipe=recipe, steps=steps, max_beta=max_beta, blocks=blocks, n_aux=n_aux,
                             eval_samples=eval_samples, device=device, **settings)
    clock = time.perf_counter()
    out = family.guidance_decomposition(family.draw_real(n_real, np.random.default_rng(seed)), budgets=budgets,
                                        aux_seeds=aux_seeds, w_grid=w_grid, probe_points=probe_points, probe_seed=probe_seed)
    return out | {"name": name, "settings": settings, "seconds": time.perf_counter() - clock, "device": device}


def sims_gaussian_loop(n_synth: int, *, seed: int, mean, cov, runs: int, w, generations: int, n_real: int,
                       recipe: str, steps: int, max_beta: float, blocks: int, base_epochs: int, aux_epochs: int,
                       n_aux: int, batch_size: int, eval_samples: int, empirical_points: int, ema_decay: float | None = None,
                       aux_lr: float | None = None, device: str = "auto", checkpoint: str | None = None) -> dict:
    """One augmentation loop of SIMS-1 with |D_s| = ``n_synth`` (SIMS Sec. 4.2.1; Algorithm 1 per generation).

    Generation 1 trains on the fixed real set D_r (``n_real`` points of P_r = N(mean, cov)); generation t on
    D_r plus ``n_synth`` guided samples of generation t - 1. D_r and generation 1 depend on ``seed`` and the
    family's settings only, not on ``n_synth``: loops of several |D_s| with one seed share them, array for array.
    ``ema_decay`` and ``aux_lr`` are the base recipe's options (:class:`madlib.models.diffusion.DiffusionFamily`).
    ``device`` is resolved in the worker ("auto": its GPU when it has one). With ``checkpoint`` (a file path)
    every generation is checkpointed and an interrupted cell resumes.

    Returns ``{"w2", "trace", "w2_empirical"}`` as [G, W, runs] arrays (Gaussian-moment W2 to P_r, tr Cov of
    the samples, exact empirical W2 or None when ``empirical_points`` is 0), ``seconds``, ``members`` and the
    ``device`` used.
    """
    from madlib._checks import resolve_device
    from madlib.loops import LoopSpec, run_loop
    from madlib.models.diffusion import DiffusionFamily

    device = resolve_device("device", device)
    family = DiffusionFamily(mean, cov, runs, w=list(w), recipe=recipe, steps=steps, max_beta=max_beta, blocks=blocks,
                             base_epochs=base_epochs, aux_epochs=aux_epochs, n_aux=n_aux, batch_size=batch_size,
                             eval_samples=eval_samples, empirical_points=empirical_points, ema_decay=ema_decay,
                             aux_lr=aux_lr, device=device)
    spec = LoopSpec("augmentation", generations=generations, n_synth=n_synth, n_ini=n_real)
    clock = time.perf_counter()
    result = run_loop(family, spec, seed=seed, checkpoint=None if checkpoint is None else Path(checkpoint),
                      progress=False)
    seconds = time.perf_counter() - clock
    shape = (generations, len(w), runs)
    return {"w2": result.records["w2"].reshape(shape),
            "trace": np.trace(result.records["cov"], axis1=-2, axis2=-1).reshape(shape),
            "w2_empirical": result.records["w2_empirical"].reshape(shape) if empirical_points else None,
            "seconds": seconds, "members": family.members, "device": device}


# --- the premise per recipe ---------------------------------------------------------------------------------------

def premise_reading(decomp: dict, selection, report, *, confidence: float = 0.95) -> dict:
    """SIMS's premise for one base recipe: chosen on the selection bases, read on the report bases.

    From :func:`sims_premise`'s arrays at its (one) auxiliary rate: per base r and budget B,
    w*_r(B) = mean over the base's K auxiliary seeds of w* = <D, e> / |D|^2 (positive iff the auxiliary difference D
    points along the base's error e; guidance can only help then). The budget is the one of largest mean w* over the
    ``selection`` bases; the premise *holds on the selection bases* when the Student t interval (``confidence``) of
    w* over them lies above 0 there. The claim is then read on the ``report`` bases at that budget (``report_w_star``).

    Returns ``{"budget_index", "budget", "held_on_selection", "selection_interval": [low, high],
    "selection_w_star" [B], "selection_cos_sys" [B], "report_w_star" [report], "report_cos_sys",
    "base_w2"}`` (``base_w2``: mean over the bases of the generation-1 Gaussian-moment W2 at w = 0).
    """
    selection, report = np.asarray(selection, int), np.asarray(report, int)
    if not len(selection) or not len(report) or set(selection.tolist()) & set(report.tolist()):
        raise ValueError(f"selection and report must be non-empty disjoint sets of bases; got {selection.tolist()}, "
                         f"{report.tolist()}")
    w_star = np.asarray(decomp["w_star"], float)[0].mean(-1)  # [B, R]: per base, over its auxiliary seeds
    cos = np.asarray(decomp["cos_sys"], float)[0]  # [B, R]
    j = int(np.argmax(w_star[:, selection].mean(-1)))
    chosen = seed_interval(w_star[j, selection], confidence=confidence)
    return {"budget_index": j, "budget": int(np.asarray(decomp["budgets"])[j]), "held_on_selection": bool(chosen.low > 0),
            "selection_interval": [chosen.low, chosen.high], "selection_w_star": w_star[:, selection].mean(-1),
            "selection_cos_sys": cos[:, selection].mean(-1), "report_w_star": w_star[j, report],
            "report_cos_sys": float(cos[j, report].mean()), "base_w2": float(np.asarray(decomp["w2"])[0, 0, 0].mean())}


def choose_loop_recipes(readings: dict, order) -> dict:
    """Which base recipe the loop runs on, chosen before the loop (issue 26).

    ``readings``: recipe -> :func:`premise_reading`; ``order``: the recipes in the order stated before running.
    The loop recipe is the first whose premise holds on the selection bases, and the control the first whose premise
    does not (the same loop where guidance cannot help). When none holds, the loop runs on ``order[0]`` (the figure's
    default recipe) alone. Returns ``{"loop", "control" (None without one), "premise_held_on_selection"}``.
    """
    order = list(order)
    if not order or any(name not in readings for name in order):
        raise ValueError(f"order must name recipes of readings ({sorted(readings)}); got {order}")
    held = [name for name in order if readings[name]["held_on_selection"]]
    if not held:
        return {"loop": order[0], "control": None, "premise_held_on_selection": False}
    control = next((name for name in order if not readings[name]["held_on_selection"]), None)
    return {"loop": held[0], "control": control, "premise_held_on_selection": True}


# --- the loop's readouts ------------------------------------------------------------------------------------------

def forgetting_window(dist, *, z: float | None = None, lags: int = 5) -> dict:
    """Where the loop has forgotten its start: the first generation of the G_inf window, from the selection runs.

    dist [G, C, R]: dist(G_t, P_r) for t = 1..G of C loop settings (weights, |D_s|, distances) on R runs. The
    plateau of a run is its mean over the last half (generations G // 2 + 1..G); dev_t = dist_t - plateau per run,
    so that a run's own level cancels. A setting is *flat from t* when both the mean over the runs of dev_t and that
    of dev averaged over generations t..G // 2 lie within ``z`` standard errors (over the runs) of 0 (None: the
    Student t quantile t(0.975, R - 1), a 5 % test per setting and generation): generation t
    is at the plateau and so, on average, is every generation after it (one late fluctuation past z, which a test
    per generation would meet by chance, does not push the window back). conv_from is the latest of the settings'
    first flat generations, at least 2 and at most G // 2 + 1 (the window keeps at least the last half); with one
    run there is no noise to judge by and it is G // 2 + 1.

    Returns ``{"conv_from", "flat_from" [C], "zscore" [G, C] (mean dev over its standard error), "z", "acf" [C, lags]}``:
    ``acf[:, k - 1]`` is the lag-k autocorrelation of dist over the last-half generations, averaged over runs (how
    long the loop remembers a fluctuation once it is at its plateau).
    """
    d = np.asarray(dist, float)
    if d.ndim != 3 or d.shape[0] < 2:
        raise ValueError(f"dist must be [generations >= 2, settings, runs]; got shape {d.shape}")
    g, c, r = d.shape
    half = g // 2
    cap = half + 1
    dev = d - d[half:].mean(0)  # [G, C, R]
    flat_from = np.full(c, cap)
    if r < 2:
        zscore = np.full((g, c), np.nan)
    else:
        z = stats.t.ppf(0.975, r - 1) if z is None else check_interval("z", z, 0.0, math.inf, low_open=True)
        zscore = _zscore(dev)  # [G, C]
        for t in range(1, half):  # index t = generation t + 1, from generation 2 on
            after = _zscore(dev[t:half].mean(0)[None])[0]  # [C]: dev averaged over generations t + 1..G // 2, per run
            start = (np.abs(zscore[t]) <= z) & (np.abs(after) <= z) & (flat_from == cap)
            flat_from[start] = t + 1
    tail = d[half:] - d[half:].mean(0)
    lags = max(0, min(check_int("lags", lags, minimum=1), tail.shape[0] - 1))
    var = (tail ** 2).mean(0)  # [C, R]
    live = var > 0  # a run that does not move has no autocorrelation: left out of the average
    acf = np.zeros((c, lags))
    for k in range(1, lags + 1):
        rho = np.where(live, (tail[k:] * tail[:-k]).mean(0) / np.where(live, var, 1.0), 0.0)  # [C, R]
        acf[:, k - 1] = np.where(live.any(-1), rho.sum(-1) / np.maximum(live.sum(-1), 1), np.nan)
    return {"conv_from": int(min(cap, max(2, flat_from.max()))), "flat_from": flat_from, "zscore": zscore, "z": z, "acf": acf}


def _zscore(dev: np.ndarray) -> np.ndarray:
    """[..., R] -> [...]: the mean over runs over its standard error (runs that agree exactly: 0 at 0, else inf)."""
    mean, se = dev.mean(-1), dev.std(-1, ddof=1) / np.sqrt(dev.shape[-1])
    return np.where(se > 0, mean / np.where(se > 0, se, 1.0), np.where(mean == 0, 0.0, np.inf))


def _center(x: np.ndarray, trim: float) -> np.ndarray:
    """Mean over the last axis (runs), or the trimmed mean cutting ``trim`` of the runs at each end."""
    return x.mean(-1) if trim == 0 else stats.trim_mean(x, trim, axis=-1)


def _boot_interval(statistic, runs: np.ndarray, picks: np.ndarray, method: str) -> Interval:
    """estimate +- t(0.975, n - 1) x bootstrap s.e., the runs of ``runs`` resampled by ``picks`` [draws, n]."""
    n = len(runs)
    estimate = float(statistic(runs))
    if n < 2:
        return Interval(estimate, -np.inf, np.inf, 0.95, "one run: unbounded", n)
    se = np.std([statistic(runs[p]) for p in picks])
    half = stats.t.ppf(0.975, n - 1) * se
    return Interval(estimate, estimate - half, estimate + half, 0.95,
                    f"{method}, bootstrap over {n} runs, estimate +- t(0.975, {n - 1}) x bootstrap s.e.", n)


def _paired_interval(diff: np.ndarray, trim: float, picks: np.ndarray, method: str) -> Interval:
    """Per-run paired differences: the t interval of their mean, or (trim > 0) the bootstrap-t of their trimmed mean."""
    if trim == 0:
        return seed_interval(diff)
    return _boot_interval(lambda idx: _center(diff[idx], trim), np.arange(len(diff)), picks, method)


def loop_readout(dist: dict, ws, *, conv_from: int, selection, report, trim: float = 0.0, draws: int = 1000,
                 seed: int = 0) -> dict:
    """The quantities of the SIMS-1 claims on one distance and one summary over runs (SIMS Sec. 2 and 4.2.1).

    dist: |D_s| -> [G, W, R] dist(G_t, P_r) per generation, weight (``ws``, holding 0) and run; the loops share their
    runs' D_r and generation 1 (:func:`sims_gaussian_loop`), so run r is the same run in every loop and resamples of
    runs are drawn jointly for every |D_s| and w. Per run, G_1 = dist at t = 1 and G_inf = the mean of dist over
    generations ``conv_from``..G; E[.] over runs is the mean (``trim`` = 0, the paper's expectation) or the mean after
    cutting ``trim`` of the runs at each end (scipy.stats.trim_mean): a few blown-up runs cannot drive it. Ratios and
    their functions read estimate +- t(0.975, n - 1) x bootstrap s.e. (``draws`` resamples of runs, ``seed``).

    Returns a dict of:
      ``e_g1``, ``e_inf``: |D_s| -> [W] absolute E[dist(G_1)], E[dist(G_inf)] (all runs);
      ``ratio_curve`` |D_s| -> [G, W] E[dist(G_t)] / E[dist(G_1)]; ``ratio_conv`` |D_s| -> [W] E[dist(G_inf)] /
      E[dist(G_1)], each w normalised by its own G_1, with ``ratio_conv_q05_q95`` |D_s| -> [2, W] (bootstrap);
      ``ratio_w0`` |D_s| -> Interval (standard training's ratio, all runs); ``growth``: Interval of ratio_w0 at the
      largest |D_s| minus the smallest (paired runs); ``prevention`` |D_s| -> Interval of the guarded ratio
      E[dist(G_inf)](w) / min(E[dist(G_1)](w), E[dist(G_1)](0)) at the w > 0 of least guarded ratio on the
      ``selection`` runs (``w_prev`` its index), read on the ``report`` runs; ``mitigation`` |D_s| -> Interval of
      the per-run paired G_inf(w) - G_inf(0) at the w > 0 of least E[dist(G_inf)] on the selection runs
      (``w_mit``), read on the report runs; ``w3`` |D_s| -> Interval (None without w = 3) of E[dist(G_inf)](3) /
      min(E[dist(G_1)](3) (1 + ratio_w0) / 2, E[dist(G_1)](0)) on all runs; ``self_improvement``: one Interval per
      w > 0 of the per-run paired G_1(w) - G_1(0) (all runs); ``trim``, ``conv_from``.
    """
    ws = np.asarray(ws, float)
    if not np.any(ws == 0) or not np.any(ws > 0):
        raise ValueError(f"ws must hold 0 (standard training) and at least one w > 0; got {ws.tolist()}")
    trim = check_interval("trim", trim, 0.0, 0.5, high_open=True)
    ds_values = sorted(dist)
    d = {ds: np.asarray(dist[ds], float) for ds in ds_values}
    g, n_w, runs = d[ds_values[0]].shape
    conv_from = check_int("conv_from", conv_from, minimum=1)
    if conv_from > g or n_w != len(ws):
        raise ValueError(f"dist must be [G >= conv_from, W = {len(ws)}, R]; got {d[ds_values[0]].shape}, conv_from {conv_from}")
    selection, report = np.asarray(selection, int), np.asarray(report, int)
    k0, pos = int(np.flatnonzero(ws == 0)[0]), np.flatnonzero(ws > 0)
    k3 = int(np.flatnonzero(ws == 3.0)[0]) if np.any(ws == 3.0) else None
    rng = np.random.default_rng(seed)
    picks_all = rng.integers(0, runs, size=(check_int("draws", draws, minimum=2), runs))
    picks_rep = rng.integers(0, len(report), size=(draws, len(report)))
    picks_diff = rng.integers(0, runs, size=(draws, runs))
    c = lambda x: _center(x, trim)  # noqa: E731  over runs, the last axis
    name = "mean" if trim == 0 else f"{trim:.0%}-trimmed mean"
    g1 = {ds: d[ds][0] for ds in ds_values}  # [W, R]
    ginf = {ds: d[ds][conv_from - 1:].mean(0) for ds in ds_values}  # [W, R]: each run's time average over the window

    def ratio0(ds, idx):
        return c(ginf[ds][k0, idx]) / c(g1[ds][k0, idx])

    def guarded(ds, k, idx):
        return c(ginf[ds][k, idx]) / min(c(g1[ds][k, idx]), c(g1[ds][k0, idx]))

    every = np.arange(runs)
    out = {"trim": trim, "conv_from": conv_from, "summary": name, "e_g1": {}, "e_inf": {}, "ratio_curve": {}, "ratio_conv": {},
           "ratio_conv_q05_q95": {}, "ratio_w0": {}, "prevention": {}, "w_prev": {}, "mitigation": {}, "w_mit": {}, "w3": {}}
    for ds in ds_values:
        out["e_g1"][ds], out["e_inf"][ds] = c(g1[ds]), c(ginf[ds])
        out["ratio_curve"][ds] = c(d[ds]) / c(g1[ds])
        out["ratio_conv"][ds] = out["e_inf"][ds] / out["e_g1"][ds]
        boot = np.stack([c(ginf[ds][:, p]) / c(g1[ds][:, p]) for p in picks_all])  # [draws, W]
        out["ratio_conv_q05_q95"][ds] = np.quantile(boot, [0.05, 0.95], axis=0)
        out["ratio_w0"][ds] = _boot_interval(lambda idx, ds=ds: ratio0(ds, idx), every, picks_all, f"ratio of {name}s")
        k = int(pos[np.argmin([guarded(ds, k, selection) for k in pos])])
        out["w_prev"][ds] = k
        out["prevention"][ds] = _boot_interval(lambda idx, ds=ds, k=k: guarded(ds, k, idx), report, picks_rep,
                                               f"guarded ratio of {name}s on the report runs")
        k = int(pos[np.argmin([c(ginf[ds][k, selection]) for k in pos])])
        out["w_mit"][ds] = k
        out["mitigation"][ds] = _paired_interval(ginf[ds][k, report] - ginf[ds][k0, report], trim,
                                                 picks_rep, f"paired {name} on the report runs")
        out["w3"][ds] = None if k3 is None else _boot_interval(
            lambda idx, ds=ds: c(ginf[ds][k3, idx]) / min(c(g1[ds][k3, idx]) * (1 + ratio0(ds, idx)) / 2, c(g1[ds][k0, idx])),
            every, picks_all, f"guarded ratio of {name}s")
    first, last = ds_values[0], ds_values[-1]
    out["growth"] = _boot_interval(lambda idx: ratio0(last, idx) - ratio0(first, idx), every, picks_all,
                                   f"difference of ratios of {name}s, runs paired across |D_s|")
    out["self_improvement"] = [_paired_interval(g1[first][k] - g1[first][k0], trim, picks_diff, f"paired {name}")
                               for k in pos]
    return out


def real_floors(mean, cov, *, n_moment: int, n_empirical: int, draws: int = 20, eval_seed: int = 0, seed: int = 0) -> dict:
    """The distances of a perfect model, as the figure measures them: ``{"moment", "empirical"}`` [draws] arrays.

    ``moment``: the W2 between P_r = N(mean, cov) and the Gaussian fitted to ``n_moment`` fresh points of P_r (the
    figure's Gaussian-moment W2 on ``eval_samples`` samples); ``empirical``: the exact W2 (POT) between
    ``n_empirical`` fresh points and the fixed reference points of P_r that
    :meth:`madlib.models.diffusion.DiffusionFamily.summary` compares with (drawn from ``eval_seed``), or an empty
    array when ``n_empirical`` is 0. The figure's |D_r| floor (1000 real points against P_r) is ``n_moment`` = 1000.
    """
    from madlib.theory.gaussian import fit_gaussian, gaussian_stats, w2_gaussian

    mean, cov = np.atleast_1d(np.asarray(mean, float)), np.atleast_2d(np.asarray(cov, float))
    rng = np.random.default_rng(seed)
    x = rng.multivariate_normal(mean, cov, size=(check_int("draws", draws, minimum=1), check_int("n_moment", n_moment, minimum=2)))
    m, s = fit_gaussian(gaussian_stats(x))
    out = {"moment": np.asarray(w2_gaussian(m, s, mean, cov)), "empirical": np.zeros(0)}
    if check_int("n_empirical", n_empirical, minimum=0):
        from madlib.metrics.distances import w2_empirical

        ref = np.random.default_rng(eval_seed).multivariate_normal(mean, cov, size=n_empirical)
        out["empirical"] = np.array([w2_empirical(rng.multivariate_normal(mean, cov, size=n_empirical), ref).value
                                     for _ in range(draws)])
    return out
