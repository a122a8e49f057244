"""The MNIST image metrics of MAD-9..12 in one call: FID, precision and recall with LeNet features, and
the classifier accuracy of class-conditional samples; and the evaluation protocol every image claim reads
(:class:`HeldOutMetrics`: FID beside KID and precision / recall / density / coverage against every real image
outside the training set, a real-vs-real floor at the same sizes, and paired-bootstrap intervals of the
difference between two models sampled from common latents).

MAD measures its MNIST DDPMs with FID, precision and recall (k = 5) on LeNet features (Sec. 3.2,
footnote 3); "almost illegible" samples (Fig. 5) are measured here as the share of samples that the
project's LeNet assigns to the class they were generated for.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from madlib._checks import check_int
from madlib.metrics.distances import feature_statistics, fid_to_reference, frechet_distance, kid, polynomial_kernel_sum
from madlib.metrics.lenet import LeNet, lenet_features, lenet_logits
from madlib.metrics.prdc import density_coverage, precision_recall
from madlib.stats import Interval, paired_bootstrap

__all__ = ["image_metrics", "predicted_classes", "class_shares", "class_readouts", "HeldOutMetrics", "EVAL_SAMPLES",
           "reference_protocol"]

# Samples per cell a claim reads (project choice, the verdicts protocol): FID at 300-500 samples moved by
# about 1 between latent sets, as much as the effects; selection may use fewer, on latents disjoint from these.
EVAL_SAMPLES = 2000


def _mean_intensity(images: torch.Tensor) -> float:
    return float(images.double().mean() / (255.0 if images.dtype == torch.uint8 else 1.0))


def predicted_classes(images: torch.Tensor, lenet: LeNet, *, batch_size: int = 1000) -> torch.Tensor:
    """The project classifier's class [n] (CPU int64) of each image [n, C, H, W]."""
    return lenet_logits(images, lenet, batch_size=batch_size).argmax(1).cpu()


def class_shares(images: torch.Tensor, lenet: LeNet, num_classes: int = 10, *, batch_size: int = 1000) -> np.ndarray:
    """Share [num_classes] of the images the classifier assigns to each class (sums to 1): the class histogram
    of an unconditional model's samples (SIMS Sec. 4.3, CASD Fig. 3)."""
    num_classes = check_int("num_classes", num_classes, minimum=1)
    counts = torch.bincount(predicted_classes(images, lenet, batch_size=batch_size), minlength=num_classes)
    return (counts[:num_classes].double() / max(1, images.shape[0])).numpy()


def _accuracy(images: torch.Tensor, labels: torch.Tensor, lenet: LeNet, batch_size: int) -> float:
    return float((predicted_classes(images, lenet, batch_size=batch_size) == torch.as_tensor(labels).cpu()).double().mean())


def class_readouts(images: torch.Tensor, labels: torch.Tensor, lenet: LeNet, *, batch_size: int = 1000) -> dict[str, float]:
    """``accuracy`` (share of ``images`` the classifier assigns to their ``labels`` [n]; MAD Fig. 5's "illegible"
    readout) and ``mean_intensity`` (mean pixel value in [0, 1]), as :func:`image_metrics` reads them."""
    return {"accuracy": _accuracy(images, labels, lenet, batch_size), "mean_intensity": _mean_intensity(images)}


def image_metrics(fake_images: torch.Tensor, fake_labels: torch.Tensor, real_images: torch.Tensor,
                  real_labels: torch.Tensor, lenet: LeNet, *, k: int = 5, batch_size: int = 1000) -> dict[str, float]:
    # MAD Sec. 3.2 and footnote 3: FID and precision / recall (k = 5, Kynkaanniemi et al. 2019) on LeNet features
    """FID, precision, recall, classifier accuracy and mean intensity of generated images against real ones.

    Args:
        fake_images: generated images [M, C, H, W], uint8 0..255 or float in [0, 1] (any size:
            :func:`madlib.metrics.lenet.to_lenet_input` resizes to 28x28).
        fake_labels: [M] the class each image was generated for, or None for an unconditional model's samples
            (then ``accuracy`` is NaN: there is nothing to be accurate to; :func:`class_shares` describes them).
        real_images, real_labels: [N, C, H, W] and [N], the reference set (e.g. the held-out split).
        lenet: the feature extractor and classifier (:func:`madlib.metrics.lenet.load_lenet`).
        k: the precision / recall neighbourhood (MAD: 5).

    Returns:
        ``fid`` (squared Fréchet distance of the 128-d LeNet features), ``precision``, ``recall``,
        ``accuracy`` (share of fake images classified as their label), ``real_accuracy`` (the same for the
        real set: the classifier's ceiling at this image size), ``mean_intensity`` and
        ``real_mean_intensity`` (mean pixel value in [0, 1]), ``n_fake``, ``n_real``.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    for name, images, labels in (("fake", fake_images, fake_labels), ("real", real_images, real_labels)):
        if labels is None and name == "fake":
            labels = torch.zeros(images.shape[:1])
        if images.ndim != 4 or labels.shape != images.shape[:1]:
            raise ValueError(f"{name}_images must be [n, C, H, W] with {name}_labels [n]; got "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
    fake = lenet_features(fake_images, lenet, batch_size=batch_size)
    real = lenet_features(real_images, lenet, batch_size=batch_size)
    precision, recall = precision_recall(real, fake, k=k)
    return {"fid": float(frechet_distance(real, fake)), "precision": precision, "recall": recall,
            "accuracy": math.nan if fake_labels is None else _accuracy(fake_images, fake_labels, lenet, batch_size),
            "real_accuracy": _accuracy(real_images, real_labels, lenet, batch_size),
            "mean_intensity": _mean_intensity(fake_images), "real_mean_intensity": _mean_intensity(real_images),
            "n_fake": int(fake_images.shape[0]), "n_real": int(real_images.shape[0])}


def class_dispersion(features, labels, num_classes: int) -> np.ndarray:
    # MAD Sec. 3.3, Fig. 5/7: how spread each mode is (lambda < 1 collapses modes onto themselves)
    """Per-class trace of the feature covariance [num_classes] (NaN for a class with < 2 samples).

    features [n, D] (e.g. LeNet features), labels [n]. The trace is the mean squared distance of a
    class's points to their centroid times n / (n - 1): 0 when a mode is a single point.
    """
    f = torch.as_tensor(features).double().cpu().numpy()
    y = torch.as_tensor(labels).cpu().numpy()
    if f.ndim != 2 or y.shape != f.shape[:1]:
        raise ValueError(f"features must be [n, D] with labels [n]; got {f.shape} and {y.shape}")
    out = np.full(check_int("num_classes", num_classes, minimum=1), np.nan)
    for c in range(num_classes):
        members = f[y == c]
        if len(members) >= 2:
            out[c] = members.var(axis=0, ddof=1).sum()
    return out


class HeldOutMetrics:
    """Metrics of generated images against one fixed reference set, whose LeNet features are computed once.

    ``metrics(images)`` gives FID, precision and recall and equals the same keys of :func:`image_metrics`
    (tested); :meth:`protocol` adds KID, density and coverage and the sizes, :meth:`floor` reads real images
    the same way, and :meth:`difference` gives the interval of a metric's difference between two models.

    For claims the reference is every real image outside the model's training set, and each cell is read on
    :data:`EVAL_SAMPLES` samples.
    """

    def __init__(self, real_images: torch.Tensor, lenet: LeNet, *, k: int = 5, batch_size: int = 1000):
        self.lenet, self.k, self.batch_size = lenet, check_int("k", k, minimum=1), check_int("batch_size", batch_size, minimum=1)
        self.real = lenet_features(real_images, lenet, batch_size=batch_size)
        self._real64 = self.real.double().cpu().numpy()
        self._mu, self._cov = feature_statistics(self.real)

    @property
    def n_real(self) -> int:
        return int(self.real.shape[0])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """LeNet features [n, 128] of images [n, C, H, W]."""
        if images.ndim != 4:
            raise ValueError(f"fake_images must be [n, C, H, W]; got {tuple(images.shape)}")
        return lenet_features(images, self.lenet, batch_size=self.batch_size)

    def _fid_precision_recall(self, fake: torch.Tensor) -> dict[str, float]:
        precision, recall = precision_recall(self.real, fake, k=self.k)
        return {"fid": float(frechet_distance(self.real, fake)), "precision": precision, "recall": recall}

    def __call__(self, fake_images: torch.Tensor) -> dict[str, float]:
        return self._fid_precision_recall(self.features(fake_images))

    def protocol(self, fake_images: torch.Tensor) -> dict[str, float]:
        """FID, KID (unbiased), precision, recall, density, coverage (k nearest), n_fake and n_real."""
        fake = self.features(fake_images)
        dc = density_coverage(self.real, fake, k=self.k)
        return {**self._fid_precision_recall(fake), "kid": kid(self._real64, fake.double().cpu().numpy()),
                "density": dc.density, "coverage": dc.coverage, "n_fake": int(fake.shape[0]), "n_real": self.n_real}

    def floor(self, real_images: torch.Tensor, n: int, *, seed: int = 0) -> dict[str, float]:
        """The real-vs-real floor at the size a model is read at: :meth:`protocol` of ``n`` images drawn (without
        replacement, by ``seed``) from ``real_images``, which must be real images outside the reference (e.g. the
        training set): the best any model can read with ``n`` samples."""
        n = check_int("n", n, minimum=2)
        if real_images.shape[0] < n:
            raise ValueError(f"n must be at most the {real_images.shape[0]} real images given; got {n}")
        idx = torch.randperm(real_images.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
        return self.protocol(real_images[idx])

    def difference(self, images_a: torch.Tensor, images_b: torch.Tensor, *, metric: str = "fid", n_boot: int = 500,
                   confidence: float = 0.95, seed: int = 0) -> Interval:
        """Interval of ``metric(a) - metric(b)`` (``fid`` or ``kid``) by a paired bootstrap over samples: image i of
        a and of b must come from the same latent (common latents), so both are resampled with one index. The
        reference stays fixed: this is the noise of the sample sets, not of the trainings (use seeds for that)."""
        if metric not in ("fid", "kid"):
            raise ValueError(f"metric must be one of ['fid', 'kid']; got {metric!r}")
        if images_a.shape[0] != images_b.shape[0]:
            raise ValueError(f"images_a and images_b must be paired (same count, common latents); got "
                             f"{images_a.shape[0]} and {images_b.shape[0]}")
        fa, fb = (self.features(x).double().cpu().numpy() for x in (images_a, images_b))
        if metric == "fid":
            return paired_bootstrap(lambda a, b: fid_to_reference(a, self._mu, self._cov)
                                    - fid_to_reference(b, self._mu, self._cov),
                                    fa, fb, n_boot=n_boot, confidence=confidence, seed=seed)
        # KID with the reference fixed: precompute the kernels, so that a replicate only re-indexes them.
        d = fa.shape[1]
        kernels = [((f @ f.T / d + 1) ** 3, ((f @ self._real64.T / d + 1) ** 3).mean(1)) for f in (fa, fb)]
        real_term = polynomial_kernel_sum(self._real64) / (self.n_real * (self.n_real - 1))

        def kid_of(k_ff, k_fr_rows, idx):
            sub, n = k_ff[np.ix_(idx, idx)], len(idx)
            return (sub.sum() - np.trace(sub)) / (n * (n - 1)) + real_term - 2 * k_fr_rows[idx].mean()

        index = np.arange(fa.shape[0])
        return paired_bootstrap(lambda i: kid_of(*kernels[0], i) - kid_of(*kernels[1], i), index,
                                n_boot=n_boot, confidence=confidence, seed=seed)


@functools.lru_cache(maxsize=4)
def reference_protocol(dataset: str, size: int, pool: int, classes: tuple | None = None, device: str = "cpu", k: int = 5):
    # project choice (issue 25): models train on the pool's first images and are read against every other real image
    """(:func:`madlib.data.images.protocol_sets`, the project's LeNet, a :class:`HeldOutMetrics` of the reference) for
    one dataset, image size, pool and class subset: read once per process (a sweep lane reuses them for every cell)."""
    from madlib.data.images import protocol_sets
    from madlib.metrics.lenet import load_lenet

    protocol = protocol_sets(dataset, size=size, pool=pool, classes=None if classes is None else list(classes))
    lenet = load_lenet(device=device)
    return protocol, lenet, HeldOutMetrics(protocol.reference, lenet, k=k)
