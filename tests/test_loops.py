"""The loop engine's bookkeeping (MAD Sec. 2.2), checkpoints and seeds."""

from collections import Counter

import numpy as np
import pytest

from madlib.loops import LoopSpec, run_loop
from madlib.models.gaussian import GaussianFamily


class TagFamily:
    """A family whose data are tags naming where each point came from; a model is its generation number.

    It makes the engine's protocol visible: who trains on what, each generation.
    """

    def __init__(self):
        self.fitted = []  # the training set of each generation, as a Counter of sources
        self.real_draws = 0

    def true_model(self):
        return 0

    def draw_real(self, n, rng):
        self.real_draws += 1
        return [f"real{self.real_draws}"] * n

    def sample(self, model, n, lam, rng):
        return [f"G{model}"] * n

    def concat(self, parts):
        return [x for p in parts for x in p]

    def fit(self, data):
        self.fitted.append(Counter(data))
        return len(self.fitted)

    def summary(self, model):
        return {"generation": np.array([model])}


def _run(spec):
    family = TagFamily()
    run_loop(family, spec, seed=0, progress=False)
    return family.fitted


def test_fully_synthetic_from_truth_follows_mad_eq1():
    fitted = _run(LoopSpec("fully_synthetic", generations=3, n_synth=5))
    assert fitted == [Counter(G0=5), Counter(G1=5), Counter(G2=5)]


def test_augmentation_reuses_one_real_set():
    fitted = _run(LoopSpec("augmentation", generations=3, n_synth=4, n_ini=6))
    assert fitted == [Counter(real1=6), Counter(real1=6, G1=4), Counter(real1=6, G2=4)]


def test_fresh_draws_new_real_data_each_generation():
    fitted = _run(LoopSpec("fresh", generations=3, n_synth=4, n_ini=6, n_real=2))
    assert fitted == [Counter(real1=6), Counter(real2=2, G1=4), Counter(real3=2, G2=4)]


def test_accumulate_and_last_k():
    fitted = _run(LoopSpec("fully_synthetic", generations=4, n_synth=4, accumulate=True))
    assert fitted[-1] == Counter(G0=4, G1=4, G2=4, G3=4)
    fitted = _run(LoopSpec("fully_synthetic", generations=4, n_synth=7, last_k=2))
    assert fitted[:2] == [Counter(G0=7), Counter(G0=3, G1=4)]
    assert fitted[3] == Counter(G2=3, G3=4)


def test_records_and_generation_index():
    family = TagFamily()
    res = run_loop(family, LoopSpec("fresh", 3, n_synth=2, n_ini=4, n_real=2), seed=0, progress=False)
    np.testing.assert_array_equal(res.generation, [1, 2, 3])
    np.testing.assert_array_equal(res.records["generation"][:, 0], [1, 2, 3])


def test_same_seed_same_numbers():
    spec = LoopSpec("fresh", 6, n_synth=30, n_ini=20, n_real=10, lam=0.9)
    a = run_loop(GaussianFamily(np.zeros(3), np.eye(3), 50), spec, seed=11, progress=False)
    b = run_loop(GaussianFamily(np.zeros(3), np.eye(3), 50), spec, seed=11, progress=False)
    c = run_loop(GaussianFamily(np.zeros(3), np.eye(3), 50), spec, seed=12, progress=False)
    np.testing.assert_array_equal(a.records["w2"], b.records["w2"])
    assert not np.array_equal(a.records["w2"], c.records["w2"])


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path):
    spec = LoopSpec("augmentation", 8, n_synth=15, n_ini=10, lam=0.95, accumulate=True)
    family = GaussianFamily(np.zeros(2), np.eye(2), 40)
    whole = run_loop(family, spec, seed=3, progress=False)

    calls = []

    def record_then_crash(model):
        calls.append(1)
        if len(calls) == 5:  # dies while recording generation 5
            raise Interrupt
        return family.summary(model)

    ckpt = tmp_path / "loop.ckpt"
    with pytest.raises(Interrupt):
        run_loop(family, spec, seed=3, record=record_then_crash, checkpoint=ckpt, progress=False)
    resumed = run_loop(family, spec, seed=3, checkpoint=ckpt, progress=False)
    np.testing.assert_array_equal(resumed.generation, whole.generation)
    for key in whole.records:
        np.testing.assert_array_equal(resumed.records[key], whole.records[key])
    with pytest.raises(ValueError, match="belongs to another run"):
        run_loop(family, spec, seed=4, checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match="belongs to another run"):
        run_loop(GaussianFamily(np.ones(2), np.eye(2), 40), spec, seed=3, checkpoint=ckpt, progress=False)
    assert not list(tmp_path.glob("*.tmp"))  # no half-written checkpoint left behind


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="fresh_data"), "kind must be one of"),
    (dict(generations=0), "generations must be an integer >= 1"),
    (dict(n_synth=1), "at least 2 training points"),
    (dict(n_synth=-1), "n_synth must be an integer >= 0"),
    (dict(lam=0.0), r"lam must lie in \(0, 1\]"),
    (dict(lam=1.2), r"lam must lie in \(0, 1\]"),
    (dict(last_k=0), "last_k must be an integer >= 1"),
    (dict(kind="augmentation"), "n_ini must be set"),
    (dict(n_real=5), "n_real is for the fresh loop only"),
    (dict(n_ini=1), "n_ini must be an integer >= 2"),
])
def test_loop_spec_errors_name_the_parameter(kwargs, match):
    base = dict(kind="fully_synthetic", generations=3, n_synth=10)
    with pytest.raises(ValueError, match=match):
        LoopSpec(**{**base, **kwargs})
