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


def test_show_images_and_log_ticks_set_what_they_promise():
    from madlib.plotting import class_grid, log_ticks, show_images

    images = np.arange(20 * 4, dtype=np.uint8).reshape(20, 1, 2, 2)
    fig, ax = plt.subplots()
    grid = class_grid(images, np.arange(20) % 10, per_class=2)
    show_images(ax, grid, "samples")
    shown = ax.get_images()[0]
    np.testing.assert_array_equal(shown.get_array(), grid)
    assert shown.get_clim() == (0, 255) and ax.get_title() == "samples" and not len(ax.get_xticks())
    log_ticks(ax, [1.0, 2.5, 7.5])
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["1", "2.5", "7.5"]
    plt.close(fig)
