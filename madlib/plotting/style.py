"""The project's figure style and small panels shared by the notebooks."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns


def apply_style() -> None:
    """Seaborn paper context with a white grid, colour-blind palette and compact fonts."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 110, "axes.titlesize": 9, "axes.labelsize": 8,
                         "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7})


def band(ax, x, center, low, high, *, label=None, color=None, alpha=0.2, **line_kwargs):
    """A line with a shaded band (an error bar or a quantile range); returns the line."""
    (line,) = ax.plot(x, center, label=label, color=color, **line_kwargs)
    ax.fill_between(x, np.asarray(low), np.asarray(high), color=line.get_color(), alpha=alpha, linewidth=0)
    return line


SPREADS = ("std", "quantiles", "range")


def spread_band(ax, x, values, *, axis: int = 0, spread: str = "std", center: str = "mean", quantiles=(0.1, 0.9),
                **kwargs):
    """A centre line and a band over one axis of ``values`` (seeds or runs): ``std`` is mean +- one standard
    deviation (ddof 1), ``quantiles`` the given quantiles, ``range`` min to max; ``center`` mean or median.
    The same band every notebook used to write out; extra keywords go to :func:`band`."""
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {list(SPREADS)}; got {spread!r}")
    if center not in ("mean", "median"):
        raise ValueError(f"center must be one of ['mean', 'median']; got {center!r}")
    v = np.asarray(values, float)
    mid = v.mean(axis) if center == "mean" else np.median(v, axis)
    if spread == "std":
        sd = v.std(axis, ddof=1) if v.shape[axis] > 1 else np.zeros_like(mid)
        low, high = v.mean(axis) - sd, v.mean(axis) + sd
    elif spread == "quantiles":
        low, high = np.quantile(v, quantiles, axis=axis)
    else:
        low, high = v.min(axis), v.max(axis)
    return band(ax, x, mid, low, high, **kwargs)


def scale_caption(fig, profile: str, ours: str, paper: str) -> None:
    """State under the figure which profile made it and how its scale differs from the paper's."""
    text = f"profile: {profile}. This run: {ours} Paper: {paper}"
    fig.text(0.01, -0.01, "\n".join(textwrap.wrap(text, 170)), fontsize=6.5, va="top", ha="left", color="0.3")


def log_ticks(ax, values) -> None:
    """A log x axis ticked at ``values`` (a CFG or w grid), each labelled as written, no minor ticks."""
    ax.set_xscale("log")
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()
