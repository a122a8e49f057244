"""A disk cache of trained networks and sampled sets, keyed by everything that changes them.

Every trained network goes through :func:`madlib.diffusion.core.train` (SIMS's base models, CASD's sources and
DM / SDA / CASD fits, ReDiFine's M_0); sampled sets (CASD's synthetic sets, SIMS's samples) go through
:func:`cached_images`. A file is named by a SHA-256 of the role, the settings and
the data's bytes, holds those settings and a SHA-256 checksum of its payload (:func:`madlib._io.checksum`) beside
the payload, and is used only when its format, key and settings equal the asked ones and its payload matches the
checksum; it is written atomically (:func:`madlib._io.atomic_path`), so an interrupted build leaves either the
whole file or none. It is read with ``torch.load(weights_only=True)``, so a file cannot run code.

A file that is truncated, damaged (checksum mismatch) or of another format (files written before checksums,
``madlib-casd-cache-v1``, included) is named in a :class:`madlib._io.StorageWarning` and rebuilt in place, never
used; one that holds other settings under the same name is rebuilt too (without a warning, as before).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Callable

import torch

from madlib._io import StorageWarning, atomic_path, checksum

__all__ = ["cache_key", "cached_fit", "cached_images", "cache_path", "CACHE_FORMAT"]

CACHE_FORMAT = "madlib-cache-v2"  # v2: a payload checksum (v1, "madlib-casd-cache-v1", had none: rebuilt)


def cache_key(role: str, settings: dict, *arrays: torch.Tensor) -> str:
    """SHA-256 of the role, the settings (JSON, sorted keys) and the arrays' bytes: a fit's identity."""
    h = hashlib.sha256(json.dumps({"role": role, **settings}, sort_keys=True).encode())
    for a in arrays:
        a = torch.as_tensor(a).contiguous()
        h.update(str((a.dtype, tuple(a.shape))).encode())
        h.update(a.numpy().tobytes())
    return h.hexdigest()


def cache_path(cache_dir, role: str, key: str) -> Path | None:
    """The file :func:`cached_fit` keeps ``key`` of ``role`` in: ``<cache_dir>/<role>-<first 20 digits of key>.pt``
    (None without a cache_dir)."""
    return None if cache_dir is None else Path(cache_dir) / f"{role}-{key[:20]}.pt"


def _read(path: Path, key: str, settings: dict) -> tuple[dict | None, str]:
    """(payload, "") from a valid cache file, or (None, what is wrong with it)."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, garbage or a pickle of objects: rebuild it
        first = (str(err).strip().splitlines() or [""])[0][:200]
        return None, f"unreadable ({type(err).__name__}: {first})"
    if not isinstance(stored, dict) or not {"format", "key", "settings", "payload"} <= set(stored):
        return None, "not a madlib cache file"
    if stored["format"] != CACHE_FORMAT or "checksum" not in stored:
        return None, f"in format {stored['format']!r} without a payload checksum (now {CACHE_FORMAT!r})"
    if stored["key"] != key or stored["settings"] != settings:
        return None, ""  # another fit under this name (the name is a hash prefix): replaced without a word, as before
    try:
        ok = checksum(stored["payload"]) == stored["checksum"]
    except TypeError:
        ok = False
    if not ok:
        return None, "damaged (its payload does not match its checksum)"
    return stored["payload"], ""


def cached_fit(cache_dir, role: str, settings: dict, key: str, build: Callable[[], dict]) -> tuple[dict, bool]:
    """The payload (a dict of tensors and numbers) stored under ``key``, or ``build()``'s, written atomically.

    A stored file is used only if its format, key and settings all equal the asked ones and its payload matches
    its checksum; any other file is rebuilt and overwritten, never reused (a truncated, damaged or old-format
    one is named in a StorageWarning).
    ``cache_dir=None`` builds without storing. Returns (payload, loaded_from_cache).
    """
    path = cache_path(cache_dir, role, key)
    settings = json.loads(json.dumps(settings))
    if path is not None and path.exists():
        payload, reason = _read(path, key, settings)
        if payload is not None:
            return payload, True
        if reason:
            warnings.warn(f"cached {role} {path} is {reason}; rebuilding it", StorageWarning, stacklevel=2)
    payload = build()
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save({"format": CACHE_FORMAT, "key": key, "settings": settings, "checksum": checksum(payload),
                        "payload": payload}, tmp)
    return payload, False


def cached_images(cache_dir, role: str, settings: dict, draw: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The images ``draw()`` makes, kept under ``role`` and ``settings`` (which must name everything that changes
    them: the model's key, the count, the seed, the sampler) and read back bit for bit; ``cache_dir=None`` draws."""
    if cache_dir is None:
        return draw()
    payload, _ = cached_fit(cache_dir, role, settings, cache_key(role, settings), lambda: {"images": draw()})
    return payload["images"]
