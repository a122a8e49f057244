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


def scale_caption(fig, profile: str, ours: str, paper: str) -> None:
    """State under the figure which profile made it and how its scale differs from the paper's."""
    text = f"profile: {profile}. This run: {ours} Paper: {paper}"
    fig.text(0.01, -0.01, "\n".join(textwrap.wrap(text, 170)), fontsize=6.5, va="top", ha="left", color="0.3")
