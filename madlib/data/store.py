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

**Settings, not paths.** A set is only as good as the settings that made it, and a path says nothing about
them: two runs of other settings writing into one folder would read each other's sets. So a writer keeps
the settings in ``meta``, a reader passes the settings it expects as ``load_image_set(path, expect=...)``
(a set written with others is refused with a message naming both, never returned), and a caller that
writes the sets of many runs keys their folder by :func:`settings_key` so that runs of other settings never
share one (the MNIST loop notebooks do both, through
:meth:`madlib.models.images.ImageDiffusionFamily.load_stored`).
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

__all__ = ["FORMAT", "StoredImageSet", "save_image_set", "load_image_set", "save_sample_archive", "load_sample_archive",
           "settings_key"]

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


def _plain_json(name: str, value) -> object:
    """``value`` as JSON gives it back (tuples become lists), or ValueError naming ``name``."""
    try:
        return json.loads(json.dumps(value, sort_keys=True, allow_nan=True))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from None


def settings_key(settings: Mapping) -> str:
    """16 hex digits of the SHA-256 of ``settings`` as canonical JSON (sorted keys): a folder or file name that
    differs whenever a setting does, so that sets made with other settings never share it.

    ``settings``: a JSON-serialisable mapping (tuples count as lists; 1 and 1.0 give different keys, so pass
    settings as the code resolved them, e.g. a family's ``settings()``).
    """
    if not isinstance(settings, Mapping):
        raise ValueError(f"settings must be a mapping of setting names to values; got {type(settings).__name__}")
    canonical = json.dumps(_plain_json("settings", dict(settings)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _differences(stored, expected, where: str) -> list[str]:
    """'where: stored X, expected Y' for each leaf that differs (nested dicts compared key by key)."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        out = []
        for key in sorted(set(stored) | set(expected), key=str):
            if key not in stored:
                out.append(f"{where}.{key}: not stored, expected {expected[key]!r}")
            elif key not in expected:
                out.append(f"{where}.{key}: stored {stored[key]!r}, not expected")
            else:
                out += _differences(stored[key], expected[key], f"{where}.{key}")
        return out
    return [] if stored == expected else [f"{where}: stored {stored!r}, expected {expected!r}"]


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


def load_image_set(path: str | os.PathLike, *, expect: Mapping | None = None) -> StoredImageSet:
    """Read a set written by :func:`save_image_set`; a truncated, corrupt or foreign file raises ValueError.

    Args:
        path: the .npz file.
        expect: meta entries the set must hold, as this run would have written them (e.g.
            ``{"family": family.settings()}``); nested dicts are compared entry by entry. A set whose stored
            meta differs in any of them (one written by a run of other settings) raises ValueError naming the
            path and each differing setting with its stored and expected value: it is never returned.
    """
    path = Path(path)
    wanted = _plain_json("expect", dict(expect)) if expect is not None else None
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
    if wanted is not None:
        meta = header.get("meta", {})
        diffs = [d for key in sorted(wanted) for d in
                 (_differences(meta[key], wanted[key], key) if key in meta else
                  [f"{key}: not stored, expected {wanted[key]!r}"])]
        if diffs:
            raise ValueError(f"{path} was written with other settings than expected, so it is not this run's set: "
                             f"{'; '.join(diffs)}. Write this run's sets to a folder of their own (e.g. keyed by "
                             f"madlib.data.settings_key) or delete the file and run again")
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
