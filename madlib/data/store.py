"""Image sets on disk: uint8 images, labels, per-image arrays and metadata in one compressed .npz.

Why here: an image set is data, whatever made it (the synthetic training sets and evaluation samples
of the MNIST loops, MAD-9..12; any other image experiment), and notebooks reload it to recompute
metrics or t-SNE without retraining. numpy only.

**Format** ``madlib-image-set-v1`` (``numpy.savez_compressed``, readable with ``allow_pickle=False``):

- ``images``: uint8 [N, C, H, W], the saved grey levels (quantise floats with
  :func:`madlib.data.to_uint8` first: a float array is refused, never rounded silently);
- ``labels``: int64 [N];
- ``array_<name>``: the optional per-image arrays [N, ...] given as ``arrays``;
- ``header``: a JSON string with the format, the caller's ``meta`` and the SHA-256 of every array
  (name, dtype, shape and bytes).

**Whole or refused.** The file is written to a temporary file and renamed (:func:`madlib._io.atomic_path`),
so a crash leaves the old file or none. :func:`load_image_set` raises ``ValueError`` naming the path
for anything that is not a complete set: a truncated or corrupt archive, a missing header, a
checksum that does not match the arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from madlib._io import atomic_path

__all__ = ["FORMAT", "StoredImageSet", "save_image_set", "load_image_set", "save_sample_archive", "load_sample_archive"]

FORMAT = "madlib-image-set-v1"
_PREFIX = "array_"


@dataclass(frozen=True)
class StoredImageSet:
    """A loaded set: images uint8 [N, C, H, W], labels int64 [N], the caller's meta, per-image arrays."""

    images: np.ndarray
    labels: np.ndarray
    meta: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x))


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_image_set(path: str | os.PathLike, images, labels, meta: Mapping | None = None, *,
                   arrays: Mapping[str, object] | None = None) -> Path:
    """Write an image set atomically as a compressed .npz (format in the module docstring).

    Args:
        path: the file (parents are created).
        images: uint8 [N, C, H, W] (numpy array or torch tensor).
        labels: integers [N].
        meta: JSON-serialisable metadata (e.g. generation, lambda, seed).
        arrays: optional per-image arrays [N, ...] (e.g. ``{"source": generation of each image}``).

    Returns:
        the path written.
    """
    images, labels = _numpy(images), _numpy(labels)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0..255 grey levels); got {images.dtype}: quantise float images "
                         f"with madlib.data.to_uint8(images, pixel_range) first")
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W]; got shape {images.shape}")
    if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers [N] with N = {images.shape[0]}; got {labels.dtype} {labels.shape}")
    stored = {"images": images, "labels": labels.astype(np.int64)}
    for name, value in (arrays or {}).items():
        value = _numpy(value)
        if not name.isidentifier() or value.shape[:1] != images.shape[:1]:
            raise ValueError(f"arrays[{name!r}] must be named like a Python identifier and hold one entry per "
                             f"image ({images.shape[0]}); got shape {value.shape}")
        if value.dtype == object:
            raise ValueError(f"arrays[{name!r}] must be numeric, not object")
        stored[_PREFIX + name] = value
    try:
        header = json.dumps({"format": FORMAT, "meta": dict(meta or {}), "sha256": _checksum(stored)}, sort_keys=True)
    except TypeError as err:
        raise ValueError(f"meta must be JSON-serialisable: {err}") from None
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: savez_compressed would append .npz to the temporary name
            np.savez_compressed(f, header=np.array(header), **stored)
    return path


def load_image_set(path: str | os.PathLike) -> StoredImageSet:
    """Read a set written by :func:`save_image_set`; a truncated, corrupt or foreign file raises ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image set at {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {name: f[name] for name in f.files}
        header = json.loads(str(stored.pop("header")))
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path} is not a complete image set ({type(err).__name__}: {err}); "
                         f"delete it and write it again") from None
    if header.get("format") != FORMAT or not {"images", "labels"} <= set(stored):
        raise ValueError(f"{path} is not a {FORMAT} file (format {header.get('format')!r})")
    if header.get("sha256") != _checksum(stored):
        raise ValueError(f"{path} is corrupt: its arrays do not match the stored SHA-256; delete it and write it again")
    arrays = {name[len(_PREFIX):]: value for name, value in stored.items() if name.startswith(_PREFIX)}
    return StoredImageSet(stored["images"], stored["labels"], header["meta"], arrays)


ARCHIVE_FORMAT = "madlib-sample-archive-v1"


def save_sample_archive(path: str | os.PathLike, sets: Mapping[str, tuple], meta: Mapping | None = None, *,
                        per_set: int | None = 100) -> Path:
    """The evaluation samples behind a figure, one uint8 file: ``sets`` maps a key (e.g.
    ``"lam=0.8/seed=1/gen=3"``) to (images uint8 [N, C, H, W], labels [N]).

    Keeps ``per_set`` images of each set (None: all), evenly spaced through it, so that a class-ordered
    set (the image families' evaluation samples) keeps every class.
    Written with :func:`save_image_set` (atomic, checksummed); read back with :func:`load_sample_archive`.
    """
    keys = list(sets)
    if not keys:
        raise ValueError("sets must hold at least one (images, labels) pair")
    images, labels, index = [], [], []
    for k, key in enumerate(keys):
        im, lab = (_numpy(a) for a in sets[key])
        if per_set is not None and len(lab) > per_set:
            keep = np.linspace(0, len(lab) - 1, per_set).round().astype(int)
            im, lab = im[keep], lab[keep]
        images.append(im), labels.append(lab), index.append(np.full(len(lab), k, dtype=np.int64))
    return save_image_set(path, np.concatenate(images), np.concatenate(labels),
                          {"archive": ARCHIVE_FORMAT, "keys": keys, **dict(meta or {})},
                          arrays={"set_index": np.concatenate(index)})


def load_sample_archive(path: str | os.PathLike) -> dict[str, StoredImageSet]:
    """The sets of a :func:`save_sample_archive` file by key, each a :class:`StoredImageSet` whose
    ``meta`` is the archive's (without the key list)."""
    stored = load_image_set(path)
    if stored.meta.get("archive") != ARCHIVE_FORMAT or "set_index" not in stored.arrays:
        raise ValueError(f"{path} is an image set, not a {ARCHIVE_FORMAT} file: read it with load_image_set")
    meta = {k: v for k, v in stored.meta.items() if k not in ("archive", "keys")}
    index = stored.arrays["set_index"]
    return {key: StoredImageSet(stored.images[index == k], stored.labels[index == k], meta)
            for k, key in enumerate(stored.meta["keys"])}
