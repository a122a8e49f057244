"""SIMS-1's cells and readouts (madlib.methods.sims_gaussian) and the EMA / auxiliary-rate options of the toy DDPM family.

Each test compares with something independent: arrays captured where they are drawn, an EMA computed by hand from the
recorded weights, a loop claim recomputed on constructed distances, the real-vs-real floor of SIMS-1's review."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from madlib.diffusion.training import train_ensemble
from madlib.methods.sims_gaussian import (BASE_RECIPES, choose_loop_recipes, forgetting_window, loop_readout,
                                          premise_reading, real_floors, recipe_settings, sims_gaussian_loop, split_runs)
from madlib.models.diffusion import DiffusionFamily
from madlib.stats import Interval, least_favourable, seed_interval

pytestmark = pytest.mark.usefixtures("one_thread")

P_MEAN, P_COV = [0.0, 0.0], [[2.0, 1.0], [1.0, 2.0]]  # SIMS-1's P_r
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "sims_1_gaussian_loop.ipynb"
TINY = dict(recipe="toy-diffusion", steps=10, blocks=1, base_epochs=2, aux_epochs=2, n_aux=64, batch_size=32, eval_samples=60)


def _params(net):
    return [p.detach().clone() for p in net.parameters()]


# --- one D_r and one generation 1 per run, shared by every |D_s| loop ----------------------------------------------

def test_every_ds_loop_shares_its_real_set_and_generation_1(monkeypatch):
    drawn = []
    original = DiffusionFamily.draw_real

    def capture(self, n, rng):  # the real sets exactly as the loop draws them
        data = original(self, n, rng)
        drawn.append((n, data.points.clone(), data.seed))
        return data

    monkeypatch.setattr(DiffusionFamily, "draw_real", capture)
    cell = dict(seed=7, mean=P_MEAN, cov=P_COV, runs=2, w=[0.0, 1.0], generations=2, n_real=50, max_beta=0.5,
                eval_samples=60, empirical_points=20, device="cpu", **{k: v for k, v in TINY.items() if k != "eval_samples"})
    small, large = sims_gaussian_loop(20, **cell), sims_gaussian_loop(80, **cell)
    assert len(drawn) == 2 and drawn[0][0] == drawn[1][0] == 50
    assert torch.equal(drawn[0][1], drawn[1][1]) and drawn[0][2] == drawn[1][2]  # the same D_r and fitting seed
    for key in ("w2", "trace", "w2_empirical"):  # generation 1: the same arrays, bit for bit
        assert np.array_equal(small[key][0], large[key][0]), key
    assert not np.array_equal(small["w2"][1], large["w2"][1])  # generation 2 trains on |D_s| = 20 or 80 points more


# --- the base recipe's options --------------------------------------------------------------------------------------

def test_ema_decay_zero_is_the_last_adam_step_bit_for_bit():
    plain = DiffusionFamily(P_MEAN, P_COV, 2, w=[0.0, 1.0], **TINY)
    ema0 = DiffusionFamily(P_MEAN, P_COV, 2, w=[0.0, 1.0], ema_decay=0.0, **TINY)
    data = plain.draw_real(60, np.random.default_rng(0))
    a, b = plain.fit(data), ema0.fit(data)
    for x, y in ((a.base, b.base), (a.aux, b.aux)):
        assert all(torch.equal(p, q) for p, q in zip(x.parameters(), y.parameters()))
    np.testing.assert_array_equal(plain.summary(a)["w2"], ema0.summary(b)["w2"])
    kw = dict(budgets=[1, 2], aux_seeds=2, w_grid=(0.0, 1.0), probe_points=5, eval_samples=30)
    da, db = plain.guidance_decomposition(data, **kw), ema0.guidance_decomposition(data, **kw)
    for key in ("w_star", "cos_sys", "sys2", "noise2", "w2"):
        np.testing.assert_array_equal(da[key], db[key], err_msg=key)
    assert plain.fingerprint() != ema0.fingerprint()  # a checkpoint of one is never read as the other's


def test_the_ema_base_is_the_average_of_the_recorded_weights():
    # theta_ema after k steps = d^k theta_0 + sum_i (1 - d) d^(k - i) theta_i, computed here from the raw weights
    decay = 0.9
    family = DiffusionFamily(P_MEAN, P_COV, 2, ema_decay=decay, **TINY)
    points = family.draw_real(40, np.random.default_rng(1)).points
    net = family._new_net(2, torch.Generator().manual_seed(3))
    raw = copy.deepcopy(net)
    trajectory = [_params(raw)]
    train_ensemble(raw, points, family._loss, samples_seen=5 * 40, batch_size=32, lr=1e-3,
                   generator=torch.Generator().manual_seed(4), after_step=lambda: trajectory.append(_params(raw)))
    ema = family._train(net, points, 5 * 40, 1e-3, torch.Generator().manual_seed(4))
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), raw.parameters()))  # the EMA does not touch training
    by_hand = [p.double() for p in trajectory[0]]
    for step in trajectory[1:]:
        by_hand = [decay * h + (1 - decay) * p.double() for h, p in zip(by_hand, step)]
    for p, h in zip(ema.parameters(), by_hand):
        torch.testing.assert_close(p.double(), h, rtol=1e-5, atol=1e-6)
    assert len(trajectory) == 1 + 7  # ceil(5 * 40 / 32) steps


def test_an_ema_of_unchanging_weights_is_those_weights():
    family = DiffusionFamily(P_MEAN, P_COV, 2, ema_decay=0.99, lr=0.0, **TINY)  # Adam at rate 0: the weights stay, bit for bit
    net = family._new_net(2, torch.Generator().manual_seed(0))
    start = _params(net)
    ema = family._train(net, family.draw_real(40, np.random.default_rng(0)).points, 3 * 40, family.lr, torch.Generator().manual_seed(1))
    assert all(torch.equal(p, q) for p, q in zip(ema.parameters(), start))


def test_the_auxiliary_rate_changes_the_fine_tune_alone():
    data = DiffusionFamily(P_MEAN, P_COV, 2, **TINY).draw_real(60, np.random.default_rng(2))
    same = [DiffusionFamily(P_MEAN, P_COV, 2, w=1.0, aux_lr=v, **TINY).fit(data) for v in (None, 1e-3)]
    slow = DiffusionFamily(P_MEAN, P_COV, 2, w=1.0, aux_lr=1e-5, **TINY).fit(data)
    for part in ("base", "aux"):  # aux_lr = lr is the default, bit for bit
        assert all(torch.equal(p, q) for p, q in zip(getattr(same[0], part).parameters(), getattr(same[1], part).parameters()))
    assert all(torch.equal(p, q) for p, q in zip(same[0].base.parameters(), slow.base.parameters()))
    moved = lambda m: sum(float((p - q).detach().abs().sum()) for p, q in zip(m.aux.parameters(), m.base.parameters()))  # noqa: E731
    assert 0 < moved(slow) < 0.1 * moved(same[0])


def test_recipes_are_family_settings():
    assert recipe_settings("batch128", base_epochs=100) == {"batch_size": 128, "base_epochs": 100, "ema_decay": None, "aux_lr": None}
    assert recipe_settings("long", base_epochs=100)["base_epochs"] == 300
    assert recipe_settings("batch2048", base_epochs=7)["batch_size"] == 2048
    for name in BASE_RECIPES:  # every recipe builds a family
        DiffusionFamily(P_MEAN, P_COV, 2, **{**TINY, **recipe_settings(name, base_epochs=2)})
    with pytest.raises(ValueError, match="recipe"):
        recipe_settings("adamw", base_epochs=2)


# --- the premise, the window, the readouts -----------------------------------------------------------------------

def _decomp(w_star, cos):
    """A guidance_decomposition-shaped dict: w_star [B, R] (one auxiliary seed repeated twice), cos [B, R]."""
    w_star, cos = np.asarray(w_star, float), np.asarray(cos, float)
    return {"w_star": np.repeat(w_star[None, ..., None], 2, -1), "cos_sys": cos[None], "budgets": np.arange(1, len(w_star) + 1),
            "w2": np.full((1, len(w_star), 2, w_star.shape[1], 2), 0.5)}


def test_the_premise_is_chosen_on_the_selection_bases_and_read_on_the_others():
    sel, rep = split_runs(6)
    assert sel.tolist() == [0, 1, 2] and rep.tolist() == [3, 4, 5]
    # budget 2 is best on the selection bases (w* > 0 there); on the report bases budget 1 would have been
    w_star = [[-0.5, -0.4, -0.6, 0.9, 0.8, 0.9], [0.30, 0.31, 0.29, -0.30, -0.32, -0.31]]
    r = premise_reading(_decomp(w_star, np.ones((2, 6))), sel, rep)
    assert r["budget"] == 2 and r["held_on_selection"] and r["selection_interval"][0] > 0
    np.testing.assert_array_equal(r["report_w_star"], [-0.30, -0.32, -0.31])
    assert seed_interval(r["report_w_star"]).high < 0  # so the claim, read on the report bases, is not held
    with pytest.raises(ValueError, match="disjoint"):
        premise_reading(_decomp(w_star, np.ones((2, 6))), [0, 1], [1, 2])


def test_the_loop_recipe_is_the_first_whose_premise_holds_and_the_control_the_first_whose_does_not():
    readings = {name: {"held_on_selection": held} for name, held in (("a", False), ("b", True), ("c", True), ("d", False))}
    assert choose_loop_recipes(readings, ["a", "b", "c", "d"]) == {"loop": "b", "control": "a", "premise_held_on_selection": True}
    assert choose_loop_recipes(readings, ["c", "b", "d"]) == {"loop": "c", "control": "d", "premise_held_on_selection": True}
    assert choose_loop_recipes(readings, ["d", "a"]) == {"loop": "d", "control": None, "premise_held_on_selection": False}


def test_the_window_starts_after_the_transient():
    rng = np.random.default_rng(0)
    t = np.arange(1, 41)[:, None, None]
    level = 1.0 + np.where(t < 8, 2.0 * (8 - t) / 7, 0.0)  # 3 at t = 1, falling to the plateau 1 at t = 8
    dist = level + 0.05 * rng.standard_normal((40, 3, 8))
    win = forgetting_window(dist)
    assert 7 <= win["conv_from"] <= 10 and win["zscore"].shape == (40, 3) and win["acf"].shape == (3, 5)
    assert abs(win["acf"][:, 0]).max() < 0.5  # white noise at the plateau
    assert forgetting_window(dist[..., :1])["conv_from"] == 21  # one run: no noise to judge by, the last half
    flat = 1.0 + 0.05 * rng.standard_normal((40, 2, 8))
    assert forgetting_window(flat)["conv_from"] <= 5


def _loop_dist(g1, ginf, runs=8, generations=6, noise=0.01, seed=0):
    """dist [G, W, R]: g1[w] at generation 1, ginf[w] from generation 2 on (per run: scalars or [R] arrays), small noise."""
    rng = np.random.default_rng(seed)
    g1, ginf = (np.broadcast_to(np.asarray(v, float)[:, None] if np.ndim(v) == 1 else np.asarray(v, float), (len(g1), runs)) for v in (g1, ginf))
    d = np.concatenate([g1[None], np.repeat(ginf[None], generations - 1, 0)])
    return d * (1 + noise * rng.standard_normal(d.shape))


def test_w_is_chosen_on_the_selection_runs_and_read_on_the_report_runs():
    ws = [0.0, 1.0, 3.0]
    sel, rep = split_runs(8)
    ginf = np.array([[0.8] * 8, [0.3] * 4 + [0.9] * 4, [0.5] * 4 + [0.35] * 4])  # w = 1 best on selection, w = 3 on report
    dist = {250: _loop_dist([0.4, 0.4, 0.4], ginf)}
    r = loop_readout(dist, ws, conv_from=2, selection=sel, report=rep)
    assert r["w_mit"][250] == 1 and r["w_prev"][250] == 1
    report_diff = dist[250][1:, 1][:, rep].mean(0) - dist[250][1:, 0][:, rep].mean(0)
    assert r["mitigation"][250] == seed_interval(report_diff)  # read on the report runs only
    assert r["mitigation"][250].low > 0  # where w = 1 is worse than standard training
    guarded = dist[250][1:, 1][:, rep].mean() / dist[250][0, :, rep].mean(0)[[0, 1]].min()
    assert np.isclose(r["prevention"][250].estimate, guarded)


def test_the_trimmed_readout_is_not_driven_by_a_few_blown_up_runs():
    ws = [0.0, 3.0]
    ginf = np.array([[0.8] * 8, [0.5] * 7 + [40.0]])  # one run of eight blows up at w = 3
    dist = {250: _loop_dist([0.5, 0.5], ginf)}
    mean, trimmed = (loop_readout(dist, ws, conv_from=2, selection=[0, 1, 2, 3], report=[4, 5, 6, 7], trim=t) for t in (0.0, 0.25))
    assert mean["e_inf"][250][1] > 5 and trimmed["e_inf"][250][1] < 0.6
    assert mean["mitigation"][250].estimate > 0 > trimmed["mitigation"][250].estimate


def test_least_favourable():
    a, b = Interval(1.0, 0.5, 1.5, 0.95, "x", 4), Interval(2.0, 1.2, 2.8, 0.95, "x", 6)
    assert (least_favourable([a, b], "greater").low, least_favourable([a, b], "greater").high) == (0.5, 1.5)
    assert (least_favourable([a, b, None], "less").low, least_favourable([a, b], "less").high) == (1.2, 2.8)


def test_the_real_vs_real_floor_of_the_review():
    # review of SIMS (2026-12): 1000 real points against P_r at W2 0.079 +- 0.029 (Gaussian-moment W2)
    floor = real_floors(P_MEAN, P_COV, n_moment=1000, n_empirical=0, draws=400, seed=1)["moment"]
    assert 0.07 < floor.mean() < 0.09 and 0.02 < floor.std() < 0.04


# --- the claims cell on constructed numbers ------------------------------------------------------------------------

def _claims(dist_moment, dist_robust, ws, *, premise_held=True, ds_values=(250, 1000), runs=8, conv=2, shared=True):
    from tests.figures.levels import run_claims_cell

    ws = np.asarray(ws, float)
    sel, rep = split_runs(runs)
    name = "batch128"
    readings = {name: {"budget": 3, "budget_index": 1, "held_on_selection": premise_held, "selection_interval": [0.1, 0.3],
                       "selection_w_star": np.array([0.1, 0.2]), "selection_cos_sys": np.array([0.1, 0.2]),
                       "report_w_star": np.array([0.2, 0.25, 0.3, 0.22]) if premise_held else np.array([-0.2, -0.25, -0.3, -0.22]),
                       "report_cos_sys": 0.1, "base_w2": 0.5}}
    readout = {name: {"moment": loop_readout(dist_moment, ws, conv_from=conv, selection=sel, report=rep),
                      "robust": loop_readout(dist_robust, ws, conv_from=conv, selection=sel, report=rep, trim=0.25)}}
    decomp = {"w2": np.full((1, 2, 2, 4, 2), 0.5), "w_star": np.zeros((1, 2, 4, 2)), "gain": np.zeros((1, 2, 4, 2))}
    namespace = dict(premise_recipes=[name], readings=readings, recipe_text={name: name}, decomp_epochs=[1, 3], floor_dr=np.array([0.08]),
                     choice={"loop": name, "control": None, "premise_held_on_selection": premise_held}, loop_plan={name: 3}, readout=readout,
                     ws=ws, ds_values=list(ds_values), shared_start=shared, conv=conv, generations=6, sel_runs=sel, rep_runs=rep,
                     decomp_by={name: decomp}, decomp_seeds=2, decomp_w=[0.0, 1.0], PAPER_BEST={}, PAPER_W0={},
                     Interval=Interval, least_favourable=least_favourable, seed_interval=seed_interval)
    return run_claims_cell(NOTEBOOK, "s1-claims", namespace, ("SIMS-0", "SIMS-1"))


def test_a_ratio_that_passes_because_generation_1_got_worse_does_not_read_held():
    # w = 3 halves its own ratio (G_1 2.0 -> G_inf 1.0) but ends far worse than standard training's G_1 (0.4) and G_inf (0.8)
    ws = [0.0, 3.0]
    dist = {ds: _loop_dist([0.4, 2.0], [0.8, 1.0], seed=i) for i, ds in enumerate((250, 1000))}
    claims = _claims(dist, dist, ws)
    r = loop_readout(dist, ws, conv_from=2, selection=[0, 1, 2, 3], report=[4, 5, 6, 7])
    assert r["ratio_conv"][250][1] < 0.55  # the bare ratio would read "prevented"
    assert claims["SIMS-0.aux-along-base-error.batch128"].level == "held"
    assert claims["SIMS-1.prevention"].level == "not held"  # the guarded ratio is 1.0 / 0.4 = 2.5
    assert claims["SIMS-1.mitigation"].level == "not held"  # absolute: 1.0 > 0.8
    assert claims["SIMS-1.w3"].level == "not held"
    assert claims["SIMS-1.madness-standard"].level == "held"  # 0.8 / 0.4 = 2 on both readouts
    assert list(claims)[0] == "SIMS-0.aux-along-base-error.batch128"  # the premise comes first
    # the same loop where guidance really helps in absolute terms: w = 3 reaches below standard training's G_1
    good = {ds: _loop_dist([0.4, 0.38], [0.8, 0.36], seed=i) for i, ds in enumerate((250, 1000))}
    claims = _claims(good, good, ws)
    assert claims["SIMS-1.prevention"].level == "held" and claims["SIMS-1.mitigation"].level == "held"


def test_the_loop_claims_need_the_premise_and_read_the_least_favourable_readout():
    ws = [0.0, 3.0]
    good = {ds: _loop_dist([0.4, 0.38], [0.8, 0.36], seed=i) for i, ds in enumerate((250, 1000))}
    claims = _claims(good, good, ws, premise_held=False)
    assert claims["SIMS-0.aux-along-base-error.batch128"].level == "not held"
    for cid in ("SIMS-1.prevention", "SIMS-1.mitigation", "SIMS-1.w3", "SIMS-1.self-improvement"):
        assert claims[cid].level == "not testable", cid
    assert claims["SIMS-1.madness-standard"].level == "held"  # standard training needs no premise
    # the robust readout disagrees (w = 3 worse in absolute terms there): the claim cannot read held
    bad = {ds: _loop_dist([0.4, 2.0], [0.8, 1.0], seed=i) for i, ds in enumerate((250, 1000))}
    assert _claims(good, bad, ws)["SIMS-1.mitigation"].level == "not held"
    assert _claims(good, good, ws, shared=False)["SIMS-1.madness-grows-with-ds"].level == "not testable"
