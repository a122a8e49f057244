"""Argument checks shared by every module: each error names the parameter and what it accepts."""

from __future__ import annotations

import numbers

import numpy as np


def check_int(name: str, value, *, minimum: int | None = None, why: str = "") -> int:
    """Return ``value`` as an int, or raise ValueError naming ``name`` and the accepted range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{reason}; got {value}")
    return value


def check_interval(name: str, value, low: float, high: float, *, low_open: bool = False,
                   high_open: bool = False) -> float:
    """Return ``value`` as a float inside the interval, or raise ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r} ({type(value).__name__})")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high or np.isnan(value):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}; got {value:g}")
    return value


def check_choice(name: str, value, choices) -> str:
    """Raise ValueError naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}; got {value!r}")
    return value


def check_covariance(name: str, cov, *, dim: int | None = None, strict: bool = True) -> np.ndarray:
    """Check a (batch of) symmetric positive-(semi)definite matrices [..., d, d]."""
    cov = np.asarray(cov, dtype=float)
    if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"{name} must be a square matrix [..., d, d]; got shape {cov.shape}")
    if dim is not None and cov.shape[-1] != dim:
        raise ValueError(f"{name} must be {dim}x{dim} to match the mean; got shape {cov.shape}")
    if not np.all(np.isfinite(cov)):
        raise ValueError(f"{name} must be finite")
    scale = max(float(np.abs(cov).max()), 1e-300)
    if not np.allclose(cov, np.swapaxes(cov, -1, -2), atol=1e-10 * scale):
        raise ValueError(f"{name} must be symmetric")
    eig_min = float(np.linalg.eigvalsh(cov).min())
    if (eig_min <= 0.0) if strict else (eig_min < -1e-10 * scale):
        kind = "positive definite" if strict else "positive semi-definite"
        raise ValueError(f"{name} must be {kind}; its smallest eigenvalue is {eig_min:.3g}")
    return cov


def resolve_device(name: str, value: str) -> str:
    """"auto" -> "cuda" when a GPU is present, else "cpu"; "cpu", "cuda", "cuda:N" pass if usable."""
    import torch  # torch is a base dependency, imported here to keep this module light

    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value == "cpu":
        return value
    if isinstance(value, str) and (value == "cuda" or value.startswith("cuda:")):
        if not torch.cuda.is_available():
            raise ValueError(f"{name} = {value!r} but no CUDA device is available; use 'cpu' or 'auto'")
        return value
    raise ValueError(f"{name} must be one of ['auto', 'cpu', 'cuda', 'cuda:N']; got {value!r}")
