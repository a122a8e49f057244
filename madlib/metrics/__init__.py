"""Metrics: distances, precision / recall / density / coverage, W2, spectra, memorisation, mode coverage.

Everything here takes torch tensors (or arrays), batches on the tensors' device and returns small
dataclasses or dicts that state the sample sizes. Modules:

- :mod:`~madlib.metrics.distances`: :func:`frechet_distance`, :func:`fid_to_reference` (to bootstrap),
  :func:`kid` (unbiased, all pairs), :func:`w2_empirical` (POT, imported on
  use), :func:`w2_gaussian` (the closed form of :mod:`madlib.theory.gaussian`), :func:`collapse_rate`.
- :mod:`~madlib.metrics.prdc`: :func:`precision_recall` (Kynkäänniemi et al. 2019, k = 5),
  :func:`density_coverage` (Naeem et al. 2020, closed balls).
- :mod:`~madlib.metrics.spectra`: :func:`power_spectrum`, :func:`radial_power_spectrum`,
  :func:`high_frequency_power` (ReDiFine App. D.2.1).
- :mod:`~madlib.metrics.memorization`: :func:`ssim`, :func:`nearest_ssim`, :func:`memorization`.
- :mod:`~madlib.metrics.modes`: :func:`mode_coverage` (25-mode mixture, MAD App. B.2).
- :mod:`~madlib.metrics.lenet`: the project's LeNet classifier (feature extractor), cached on disk:
  :func:`load_lenet`, :func:`lenet_features`, :func:`class_histogram`.
- :mod:`~madlib.metrics.images`: :func:`image_metrics` (FID, precision / recall and classifier accuracy of
  class-conditional samples with LeNet features: the MNIST metrics of MAD-9..12).
- :mod:`~madlib.metrics.fidelity`: FID / KID / precision-recall through torch-fidelity, which only this
  module imports (import it explicitly: ``from madlib.metrics.fidelity import fidelity_metrics``).
"""

from madlib.metrics.distances import (FrechetDistance, W2Distance, collapse_rate, feature_statistics,
                                      fid_to_reference, frechet_distance, kid, total_variation,
                                      w2_empirical, w2_gaussian)
from madlib.metrics.images import EVAL_SAMPLES, HeldOutMetrics, class_dispersion, class_shares, image_metrics, predicted_classes
from madlib.metrics.lenet import (DEFAULT_RECIPE, TINY_RECIPE, CacheWarning, LeNetRecipe, cache_dir,
                                  class_histogram, lenet_features, lenet_logits, load_lenet)
from madlib.metrics.memorization import Memorization, memorization, nearest_feature_distance, nearest_ssim, ssim
from madlib.metrics.modes import ModeCoverage, mode_coverage
from madlib.metrics.prdc import (DensityCoverage, PrecisionRecall, density_coverage, expected_coverage, knn_radii,
                                 precision_recall)
from madlib.metrics.spectra import high_frequency_power, power_spectrum, radial_frequency, radial_power_spectrum

__all__ = [
    "FrechetDistance", "W2Distance", "collapse_rate", "feature_statistics", "frechet_distance", "w2_empirical",
    "w2_gaussian", "fid_to_reference", "kid", "total_variation", "DEFAULT_RECIPE", "TINY_RECIPE", "CacheWarning", "LeNetRecipe", "cache_dir", "class_histogram",
    "lenet_features", "lenet_logits", "load_lenet", "Memorization", "memorization", "nearest_feature_distance",
    "nearest_ssim", "ssim", "ModeCoverage", "mode_coverage", "DensityCoverage", "PrecisionRecall",
    "density_coverage", "expected_coverage", "knn_radii", "precision_recall", "high_frequency_power", "power_spectrum",
    "radial_frequency", "radial_power_spectrum",
    "class_dispersion", "class_shares", "predicted_classes", "EVAL_SAMPLES", "HeldOutMetrics",
    "image_metrics",
]
