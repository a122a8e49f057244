"""Embedded datasets and exact toy distributions (no downloads, ever).

- :func:`load_images` with the registry :data:`DATASETS` (``mnist5k``, ``digits``, ``mnist``), and
  :func:`to_uint8` / :func:`from_uint8` (float <-> 0..255 grey levels): :mod:`madlib.data.images`.
- :func:`save_image_set` / :func:`load_image_set`: uint8 image sets on disk (compressed .npz with a
  checksum and the settings that made them, checked on load; :func:`settings_key` names a folder after
  settings), e.g. the synthetic sets of the image loops, and :func:`save_sample_archive` /
  :func:`load_sample_archive`: the evaluation samples committed beside each image figure: :mod:`madlib.data.store`.
- 2D toy distributions with ``sample`` / ``log_prob`` / ``score``: :func:`sims_gaussian`,
  :func:`grid_mixture`, :class:`Rosenbrock` (registry :data:`TOYS`): :mod:`madlib.data.toy`.
"""

from madlib.data.images import DATASETS, from_uint8, load_images, stratified_holdout, to_uint8
from madlib.data.store import (StoredImageSet, load_image_set, load_sample_archive, save_image_set, save_sample_archive,
                                settings_key)
from madlib.data.toy import TOYS, GaussianMixtureToy, GaussianToy, Rosenbrock, grid_mixture, sims_gaussian

__all__ = ["DATASETS", "load_images", "stratified_holdout", "to_uint8", "from_uint8", "StoredImageSet",
           "load_image_set", "save_image_set", "save_sample_archive", "load_sample_archive", "settings_key", "TOYS", "GaussianToy", "GaussianMixtureToy",
           "Rosenbrock", "sims_gaussian", "grid_mixture"]
