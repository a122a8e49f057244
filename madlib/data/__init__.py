"""Embedded datasets and exact toy distributions (no downloads, ever).

- :func:`load_images` with the registry :data:`DATASETS` (``mnist5k``, ``digits``, ``mnist``):
  :mod:`madlib.data.images`.
- 2D toy distributions with ``sample`` / ``log_prob`` / ``score``: :func:`sims_gaussian`,
  :func:`grid_mixture`, :class:`Rosenbrock` (registry :data:`TOYS`): :mod:`madlib.data.toy`.
"""

from madlib.data.images import DATASETS, load_images, stratified_holdout
from madlib.data.toy import TOYS, GaussianMixtureToy, GaussianToy, Rosenbrock, grid_mixture, sims_gaussian

__all__ = ["DATASETS", "load_images", "stratified_holdout", "TOYS", "GaussianToy", "GaussianMixtureToy",
           "Rosenbrock", "sims_gaussian", "grid_mixture"]
