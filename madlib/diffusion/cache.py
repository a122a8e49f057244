"""A disk cache of trained networks and sampled sets, keyed by everything that changes them.

Used by :mod:`madlib.methods.casd` (sources, DM / SDA / CASD fits, synthetic sets) and :mod:`madlib.methods.sims`
(base models). A file is named by a SHA-256 of the role, the settings and the data's bytes, holds those settings
beside its payload, and is used only when they equal the asked ones; it is written atomically
(:func:`madlib._io.atomic_path`), so an interrupted build leaves either the whole file or none.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch

from madlib._io import atomic_path

__all__ = ["cache_key", "cached_fit", "CACHE_FORMAT"]

CACHE_FORMAT = "madlib-casd-cache-v1"  # the format CASD's caches were first written in; unchanged so they stay valid


def cache_key(role: str, settings: dict, *arrays: torch.Tensor) -> str:
    """SHA-256 of the role, the settings (JSON, sorted keys) and the arrays' bytes: a fit's identity."""
    h = hashlib.sha256(json.dumps({"role": role, **settings}, sort_keys=True).encode())
    for a in arrays:
        a = torch.as_tensor(a).contiguous()
        h.update(str((a.dtype, tuple(a.shape))).encode())
        h.update(a.numpy().tobytes())
    return h.hexdigest()


def _cache_file(cache_dir, role: str, key: str) -> Path | None:
    return None if cache_dir is None else Path(cache_dir) / f"{role}-{key[:20]}.pt"


def cached_fit(cache_dir, role: str, settings: dict, key: str, build: Callable[[], dict]) -> tuple[dict, bool]:
    """The payload (a dict of tensors and numbers) stored under ``key``, or ``build()``'s, written atomically.

    A stored file is used only if its format, key and settings all equal the asked ones (a file with other
    settings is rebuilt and overwritten, never reused). ``cache_dir=None`` builds without storing. Returns
    (payload, loaded_from_cache).
    """
    path = _cache_file(cache_dir, role, key)
    if path is not None and path.exists():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a foreign or damaged file: rebuild it
            stored = None
        if (isinstance(stored, dict) and stored.get("format") == CACHE_FORMAT and stored.get("key") == key
                and stored.get("settings") == json.loads(json.dumps(settings))):
            return stored["payload"], True
    payload = build()
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save({"format": CACHE_FORMAT, "key": key, "settings": json.loads(json.dumps(settings)),
                        "payload": payload}, tmp)
    return payload, False
