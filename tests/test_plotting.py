"""The shared spread band draws what numpy computes for it."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from madlib.plotting import spread_band  # noqa: E402


@pytest.mark.parametrize("spread, low, high", [
    ("std", lambda v: v.mean(0) - v.std(0, ddof=1), lambda v: v.mean(0) + v.std(0, ddof=1)),
    ("range", lambda v: v.min(0), lambda v: v.max(0)),
    ("quantiles", lambda v: np.quantile(v, 0.1, axis=0), lambda v: np.quantile(v, 0.9, axis=0)),
])
def test_spread_band_draws_the_centre_and_the_band(spread, low, high):
    values = np.random.default_rng(0).normal(size=(5, 7))  # [seeds, x]
    fig, ax = plt.subplots()
    line = spread_band(ax, np.arange(7), values, spread=spread)
    np.testing.assert_allclose(line.get_ydata(), values.mean(0))
    vertices = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert vertices.min() == pytest.approx(low(values).min()) and vertices.max() == pytest.approx(high(values).max())
    plt.close(fig)
    with pytest.raises(ValueError, match="spread must be one of"):
        spread_band(ax, np.arange(7), values, spread="sem")
