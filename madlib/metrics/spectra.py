"""Power spectra of images: the 2D spectrum, its radial profile and ReDiFine's high-frequency power.

ReDiFine App. D.2.1 (``../shared/papers/003_8ee2c13a5868339c.txt``, Eq. 13-14): for an M x N image I,
F(u, v) = sum_x sum_y I(x, y) exp(-2 pi j (u x / M + v y / N)), P(u, v) = |F(u, v)|^2, and the
phenotype S = sum_{u, v} P(u, v) 1[r(u, v) > tau] with r(u, v) = sqrt((u / M)^2 + (v / N)^2) and
tau = 0.02, where the spectrum is *shifted*: u and v are the signed frequencies (-M/2 .. M/2 - 1, as
``fftshift`` orders them), so r runs from 0 to about 1/sqrt(2).

Project choices (the paper leaves them out): the DFT is normalised ``norm="ortho"`` (P sums to the
image's energy sum I^2, Parseval), the images are used as given (e.g. [0, 1] pixels, mean not removed),
and multi-channel images are averaged over channels first. On a 28x28 image the smallest non-zero r is
1/28 ~ 0.036 > tau, so tau = 0.02 removes only the DC term (the image mean), whatever the size up to 50.
``relative=True`` divides S by the total power, a normalised phenotype in [0, 1] (paper-targets RDF-2).
"""

from __future__ import annotations

import math

import torch

from madlib._checks import check_int, check_interval

__all__ = ["power_spectrum", "radial_frequency", "radial_power_spectrum", "high_frequency_power"]


def _gray(images) -> torch.Tensor:
    x = torch.as_tensor(images)
    x = x.double() / 255.0 if x.dtype == torch.uint8 else x.double()
    if x.ndim == 4:
        x = x.mean(1)  # [B, H, W]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"images must be [B, C, H, W], [B, H, W] or [H, W]; got shape {tuple(x.shape)}")
    return x


def power_spectrum(images) -> torch.Tensor:
    """Shifted power spectrum P(u, v) = |F(u, v)|^2 (orthonormal DFT), [B, H, W] (DC at the centre).

    images: [B, C, H, W] / [B, H, W] / [H, W], uint8 (scaled to [0, 1]) or float.
    """
    x = _gray(images)
    f = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))
    return f.real**2 + f.imag**2


def radial_frequency(height: int, width: int, *, device=None) -> torch.Tensor:
    """r(u, v) = sqrt((u / M)^2 + (v / N)^2) on the shifted grid, [H, W] (ReDiFine App. D.2.1)."""
    u = torch.fft.fftshift(torch.fft.fftfreq(check_int("height", height, minimum=1), device=device, dtype=torch.float64))
    v = torch.fft.fftshift(torch.fft.fftfreq(check_int("width", width, minimum=1), device=device, dtype=torch.float64))
    return torch.sqrt(u[:, None] ** 2 + v[None, :] ** 2)  # fftfreq already divides by M and N


def radial_power_spectrum(images, n_bins: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Azimuthally averaged power spectrum: mean of P(u, v) over annuli of r(u, v).

    Bins split [0, 1/sqrt(2)] evenly (default: min(H, W) // 2 bins); empty bins are NaN.

    Returns:
        (bin centres [n_bins], mean power per bin [B, n_bins]).
    """
    p = power_spectrum(images)  # [B, H, W]
    H, W = p.shape[-2:]
    n_bins = check_int("n_bins", n_bins if n_bins is not None else max(min(H, W) // 2, 1), minimum=1)
    r = radial_frequency(H, W, device=p.device).flatten()
    edges = torch.linspace(0.0, 1.0 / math.sqrt(2.0) + 1e-12, n_bins + 1, dtype=torch.float64, device=p.device)
    which = torch.bucketize(r, edges[1:-1], right=True)  # [H*W] bin index
    sums = torch.zeros(p.shape[0], n_bins, dtype=p.dtype, device=p.device).index_add_(1, which, p.flatten(1))
    counts = torch.bincount(which, minlength=n_bins).to(p.dtype)
    mean = sums / counts
    mean[:, counts == 0] = float("nan")
    return 0.5 * (edges[1:] + edges[:-1]), mean


def high_frequency_power(images, tau: float = 0.02, *, relative: bool = False) -> torch.Tensor:
    """ReDiFine's phenotype S_i = sum_{r(u, v) > tau} P_i(u, v) (App. D.2.1, Eq. 14), per image [B].

    Args:
        images: [B, C, H, W] / [B, H, W]; tau: threshold radial frequency (paper: 0.02).
        relative: divide by the total power sum_{u, v} P_i(u, v) (share of power above tau).
    """
    tau = check_interval("tau", tau, 0.0, math.inf)
    p = power_spectrum(images)
    mask = radial_frequency(*p.shape[-2:], device=p.device) > tau
    s = (p * mask).sum((-2, -1))
    return s / p.sum((-2, -1)).clamp_min(1e-300) if relative else s
