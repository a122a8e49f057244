"""Four verdict levels, intervals against margins, the paired bootstrap and KID, each against an independent fact."""

import itertools
import json

import numpy as np
import pytest
import torch
from scipy import stats

from madlib.figures import FigureRecord, Precondition, write_claims_summary
from madlib.figures.gallery import Counts
from madlib.figures.verdicts import Comparison, decide, level_of
from madlib.metrics import fid_to_reference, frechet_distance, kid
from madlib.stats import Interval, paired_bootstrap, seed_interval


def _interval(low, high):
    return Interval((low + high) / 2, low, high, 0.95, "test", 10)


@pytest.mark.parametrize("low, high, greater, less", [
    (0.6, 2.0, "held", "not held"),       # wholly above a margin of 0.5
    (0.2, 0.9, "inconclusive", "inconclusive"),  # straddles it
    (-1.0, 0.4, "not held", "held"),      # wholly below it
])
def test_an_interval_against_its_margin_reads_one_of_three_levels(low, high, greater, less):
    assert Comparison("d", "greater", 0.5, _interval(low, high)).level == greater
    assert Comparison("d", "less", 0.5, _interval(low, high)).level == less


def test_a_failed_precondition_makes_a_claim_not_testable_whatever_its_numbers():
    bar = Precondition("base bar", "FID <= 3 x floor", met=False, measured={"fid": 40.0, "floor": 5.0})
    clear_win = Comparison("d", "greater", 0.0, _interval(5.0, 9.0))
    assert decide(comparison=clear_win, preconditions=[bar]) == "not testable"
    assert decide(held=True, preconditions=[bar]) == "not testable"
    assert decide(held=True, preconditions=[Precondition("bar", "x", met=True)]) == "held"


def test_a_precondition_from_a_check_claim_is_met_only_when_that_claim_reads_held():
    record = FigureRecord(name="t", experiments=["CASD-1"], profile="custom", params={}, seed=0, scale={})
    for values, met in (([3.0, 3.5, 4.0], True), ([-1.0, 2.0, 0.5], False), ([-3.0, -2.0, -2.5], False)):
        check = record.compare(f"check{met}{values[0]}", "headroom", source="s", quantity="q", values=values,
                               direction="greater", margin=0.0)
        pre = Precondition.from_claim(check)
        assert pre.met is met and pre.measured == {"level": check.level} and pre.name == check.id
        assert decide(comparison=Comparison("d", "greater", 0.0, _interval(5.0, 9.0)), preconditions=[pre]) == (
            "held" if met else "not testable")


def test_one_seed_never_reads_held():
    # One training says nothing of the spread between trainings: the interval is unbounded.
    assert Comparison("d", "greater", 0.0, seed_interval([3.0])).level == "inconclusive"


def test_seed_interval_is_students_t():
    x = np.array([1.2, 0.7, 1.9, 1.1, 0.4])
    expected = stats.t.interval(0.9, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    got = seed_interval(x, confidence=0.9)
    assert np.allclose((got.low, got.high), expected) and got.n == 5


def test_paired_bootstrap_of_a_mean_difference_matches_the_normal_closed_form():
    # Paired Gaussians with correlation 0.9: the difference of means has sd sqrt(2 (1 - 0.9) / n).
    rng = np.random.default_rng(0)
    n, rho = 4000, 0.9
    z = rng.standard_normal((n, 2))
    a = z[:, 0]
    b = rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, 1] + 0.05
    got = paired_bootstrap(lambda x, y: x.mean() - y.mean(), a, b, n_boot=2000, seed=1)
    half = stats.norm.ppf(0.975) * np.sqrt(2 * (1 - rho) / n)
    assert (got.high - got.low) / 2 == pytest.approx(half, rel=0.1)
    assert got.estimate == pytest.approx(a.mean() - b.mean())
    # The pairing matters: resampling the two sets apart would give an interval ~sqrt(1 / (1 - rho)) = 3.2x wider.
    assert (got.high - got.low) / 2 < 0.5 * stats.norm.ppf(0.975) * np.sqrt(2 / n)


def test_paired_bootstrap_quantiles_match_the_exhaustive_bootstrap():
    # n = 5: all 5^5 equally likely resamples give the exact bootstrap distribution of the statistic.
    a = np.array([0.3, 1.4, -0.2, 2.2, 0.9])
    b = np.array([0.1, 1.0, 0.3, 1.1, 0.2])
    stat = lambda x, y: np.median(x - y)  # noqa: E731
    exact = np.array([stat(a[list(i)], b[list(i)]) for i in itertools.product(range(5), repeat=5)])
    low, high = np.quantile(exact, [0.1, 0.9])
    got = paired_bootstrap(stat, a, b, n_boot=20000, confidence=0.8, seed=3)
    assert got.low == pytest.approx(low, abs=0.06) and got.high == pytest.approx(high, abs=0.06)


def test_paired_bootstrap_is_reproducible_and_checks_its_input():
    a, b = np.arange(10.0), np.arange(10.0)[::-1]
    f = lambda x, y: float(np.mean(x - y))  # noqa: E731
    assert paired_bootstrap(f, a, b, seed=4) == paired_bootstrap(f, a, b, seed=4)
    with pytest.raises(ValueError, match="first dimension"):
        paired_bootstrap(f, a, b[:9])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(f, a, b, confidence=95)


def test_kid_equals_torch_fidelitys_on_one_full_subset():
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 16))
    fake = rng.normal(0.3, 1.1, size=(60, 16))
    # One subset of the full size is a permutation of all samples, which the statistic does not see.
    theirs = kid_features_to_metric(torch.tensor(fake), torch.tensor(real), kid_subsets=1, kid_subset_size=60,
                                    verbose=False, rng_seed=0)["kernel_inception_distance_mean"]
    assert kid(real, fake) == pytest.approx(theirs, rel=1e-9)


def test_kid_is_unbiased_for_one_distribution_at_small_sizes():
    rng = np.random.default_rng(1)
    values = [kid(rng.normal(size=(20, 8)), rng.normal(size=(30, 8))) for _ in range(400)]
    assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values))


def test_fid_to_reference_equals_frechet_distance():
    rng = np.random.default_rng(2)
    ref, x = rng.normal(size=(500, 6)), rng.normal(0.2, 1.3, size=(400, 6))
    mu, cov = ref.mean(0), np.cov(ref, rowvar=False)
    assert fid_to_reference(x, mu, cov) == pytest.approx(float(frechet_distance(x, ref)), rel=1e-8)


def test_figure_record_stores_levels_intervals_and_counts(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = FigureRecord("toy", ["MAD-1"], "smoke", {}, 0, {"ours": "toy"})
    record.compare("MAD-1.gap", "A beats B", source="test", quantity="FID(B) - FID(A)", values=[1.1, 0.9, 1.3],
                   direction="greater", margin=0.5)
    record.compare("MAD-1.straddle", "A beats B by a lot", source="test", quantity="FID(B) - FID(A)",
                   values=[1.1, 0.2, 1.9], direction="greater", margin=0.5)
    record.claim("MAD-1.bar", "exact", source="test", condition="x", measured={}, held=True,
                 preconditions=[Precondition("bar", "FID <= 3 x floor", False, 12.0)])
    with pytest.raises(ValueError, match="not both"):
        record.claim("MAD-1.x", "t", source="s", condition="c", measured={}, held=True,
                     comparison=Comparison("d", "less", 0.0, _interval(-1, 1)))
    fig = plt.figure()
    path = record.save(fig, tmp_path)
    plt.close(fig)
    claims = json.loads(path.read_text())["claims"]
    assert [c["level"] for c in claims] == ["held", "inconclusive", "not testable"]
    assert [c["held"] for c in claims] == [True, False, False]
    assert claims[0]["comparison"]["interval"]["low"] > 0.5
    assert Counts(claims).levels == {"held": 1, "not held": 0, "inconclusive": 1, "not testable": 1}
    text = write_claims_summary(tmp_path).read_text()
    assert "1/3 held, 1 inconclusive, 1 not testable" in text and "bar (FID <= 3 x floor; measured 12)" in text
    # JSONs written before the levels carry only `held`.
    assert level_of({"held": False}) == "not held"


def test_kid_blocks_equal_one_matrix():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(30, 4))
    from madlib.metrics.distances import polynomial_kernel_sum

    full = (x @ x.T / 4 + 1) ** 3
    assert polynomial_kernel_sum(x, rows=7) == pytest.approx(full.sum() - np.trace(full), rel=1e-12)
    assert polynomial_kernel_sum(x, y, rows=7) == pytest.approx(((x @ y.T / 4 + 1) ** 3).sum(), rel=1e-12)


def test_a_precondition_may_fail_as_inconclusive_but_not_testable_wins():
    # SIMS-5's cost ablations: where full SIMS shows no gain there is nothing to keep, so the cost is undecided
    comparison = Comparison("gain kept", "greater", 0.0, Interval(1.0, 0.5, 1.5, 0.95, "t", 3))
    soft = Precondition("full SIMS beats the base", "gain > 0", met=False, fails_as="inconclusive")
    hard = Precondition("base bar", "FID <= 1.5 x floor", met=False)
    assert decide(preconditions=[soft], comparison=comparison) == "inconclusive"
    assert decide(preconditions=[soft, hard], comparison=comparison) == "not testable"
    assert decide(preconditions=[Precondition("ok", "x", met=True, fails_as="inconclusive")], comparison=comparison) == "held"
    with pytest.raises(ValueError, match="fails_as"):
        Precondition("p", "x", met=False, fails_as="not held")
