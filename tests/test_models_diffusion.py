"""The DDPM ensemble family in the loop engine (SIMS Algorithm 1 per generation)."""

import numpy as np
import pytest
import torch

from madlib.loops import LoopSpec, run_loop
from madlib.models.diffusion import DiffusionFamily
from tests.helpers import interrupted_then_resumed

P_MEAN, P_COV = [0.0, 0.0], [[2.0, 1.0], [1.0, 2.0]]  # SIMS-1's P_r


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = dict(width=16, depth=2, steps=10, base_epochs=2, aux_epochs=2, n_aux=64, eval_samples=200)


def _loop(w, seed=0, **kw):
    family = DiffusionFamily(P_MEAN, P_COV, runs=2, w=w, **TINY)
    spec = LoopSpec("augmentation", generations=3, n_synth=40, n_ini=60)
    return run_loop(family, spec, seed=seed, progress=False, **kw)


def test_augmentation_loop_records_and_is_reproducible():
    a, b = _loop(1.5), _loop(1.5)
    assert a.records["w2"].shape == (3, 2) and a.records["cov"].shape == (3, 2, 2, 2)
    np.testing.assert_array_equal(a.records["w2"], b.records["w2"])
    assert not np.array_equal(a.records["w2"], _loop(1.5, seed=1).records["w2"])


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole = _loop(0.0)
    spec = LoopSpec("augmentation", generations=3, n_synth=40, n_ini=60)
    resumed = interrupted_then_resumed(lambda: DiffusionFamily(P_MEAN, P_COV, runs=2, w=0.0, **TINY), spec, tmp_path / "c.pkl")
    np.testing.assert_allclose(resumed.records["w2"], whole.records["w2"], rtol=0, atol=0)


def test_w_zero_trains_no_auxiliary_and_sims_does():
    family = DiffusionFamily(P_MEAN, P_COV, runs=1, w=0.0, **TINY)
    data = family.draw_real(50, np.random.default_rng(0))
    assert family.fit(data).aux is None
    sims = DiffusionFamily(P_MEAN, P_COV, runs=1, w=2.0, **TINY).fit(data)
    assert sims.aux is not None and sims.aux is not sims.base


def test_bad_input_is_named():
    family = DiffusionFamily(P_MEAN, P_COV, runs=1, **TINY)
    with pytest.raises(ValueError, match="set n_ini"):
        run_loop(family, LoopSpec("fully_synthetic", 2, n_synth=10), seed=0, progress=False)
    model = family.fit(family.draw_real(20, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="lam must be 1"):
        family.sample(model, 5, 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="w .*must be finite"):
        DiffusionFamily(P_MEAN, P_COV, runs=1, w=float("inf"))
    with pytest.raises(ValueError, match="cov must be positive definite"):
        DiffusionFamily(P_MEAN, [[1.0, 2.0], [2.0, 1.0]], runs=1)


def test_a_weight_grid_is_one_ensemble_with_paired_real_sets():
    family = DiffusionFamily(P_MEAN, P_COV, runs=2, w=(0.0, 3.0), empirical_points=50, **TINY)
    assert family.members == 4 and family.member_w.tolist() == [0.0, 0.0, 3.0, 3.0]
    data = family.draw_real(30, np.random.default_rng(0))
    assert data.points.shape == (4, 30, 2)
    torch.testing.assert_close(data.points[:2], data.points[2:])  # run r sees one D_r at every weight
    assert not torch.equal(data.points[0], data.points[1])
    model = family.fit(data)
    summary = family.summary(model)
    assert summary["w2"].shape == summary["w2_empirical"].shape == (4,)
    # the w = 0 members of a grid sample their base model exactly: the guide is multiplied by 0
    alone = DiffusionFamily(P_MEAN, P_COV, runs=4, w=0.0, **TINY)
    g = torch.Generator().manual_seed(5)
    grid_draw = family._draw(model, 20, torch.Generator().manual_seed(5))
    base_draw = alone._draw(type(model)(model.base, None), 20, g)
    torch.testing.assert_close(grid_draw[:2], base_draw[:2], rtol=0, atol=0)
    assert not torch.allclose(grid_draw[2:], base_draw[2:])


def test_empirical_points_cannot_exceed_eval_samples():
    with pytest.raises(ValueError, match="empirical_points must be <= eval_samples"):
        DiffusionFamily(P_MEAN, P_COV, runs=1, empirical_points=10_000, eval_samples=100)
