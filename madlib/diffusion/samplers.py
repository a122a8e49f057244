"""Samplers, one short function per algorithm, with guidance built in as one optional piece.

Each sampler takes the primary prediction function and, optionally, a guide prediction function and
a weight schedule ``weight(i, n) -> w`` (see :mod:`madlib.diffusion.guidance`); the prediction used is
(1 + w) primary - w guide. With no guide, the primary model samples alone.
"""

from __future__ import annotations

from typing import Callable

import torch

from madlib.diffusion.guidance import constant_weight, extrapolate
from madlib.diffusion.schedules import DDPMSchedule

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _guided(primary: Predict, guide: Predict | None, weight, i: int, n: int, x, t):
    if guide is None:
        return primary(x, t)
    w = weight(i, n)
    if not isinstance(w, torch.Tensor) and w == 0:  # skip the guide's forward pass
        return primary(x, t)
    return extrapolate(primary(x, t), guide(x, t), w)


def ddpm_ancestral_sampler(eps: Predict, noise: torch.Tensor, schedule: DDPMSchedule, *,
                           guide: Predict | None = None, weight=constant_weight(0.0),
                           generator: torch.Generator | None = None) -> torch.Tensor:
    # Ho et al. 2020 Algorithm 2 with sigma_t^2 = beta_t
    """noise: x_T [R, B, d] ~ N(0, I); eps(x, t) predicts the noise at step index t (a [R, B] tensor)."""
    schedule = schedule.to(noise.device)
    x, n = noise, schedule.steps
    for i, t in enumerate(range(n - 1, -1, -1)):
        t_in = torch.full(x.shape[:2], float(t), device=x.device, dtype=x.dtype)
        e = _guided(eps, guide, weight, i, n, x, t_in)
        beta, alpha, ab = schedule.betas[t], schedule.alphas[t], schedule.alpha_bar[t]
        x = (x - beta / (1 - ab).sqrt() * e) / alpha.sqrt()
        if t > 0:
            x = x + beta.sqrt() * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x


def edm_heun_sampler(denoise: Predict, latents: torch.Tensor, sigmas: torch.Tensor, *,
                     guide: Predict | None = None, weight=constant_weight(0.0)) -> torch.Tensor:
    # EDM Algorithm 1 (deterministic 2nd-order Heun), as CASD Algorithm 2 uses it
    """latents [R, B, ...] ~ N(0, I); denoise(x, sigma) -> D(x; sigma); sigmas decreasing, ending at 0."""
    sigmas = sigmas.to(latents.device, latents.dtype)
    n = sigmas.shape[0] - 1
    x = latents * sigmas[0]
    for i in range(n):
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        d_cur = (x - _guided(denoise, guide, weight, i, n, x, s_cur)) / s_cur
        x_next = x + (s_next - s_cur) * d_cur
        if s_next > 0:  # 2nd-order correction
            d_prime = (x_next - _guided(denoise, guide, weight, i, n, x_next, s_next)) / s_next
            x_next = x + (s_next - s_cur) * (d_cur + d_prime) / 2
        x = x_next
    return x


SAMPLERS = {"ddpm": ddpm_ancestral_sampler, "heun": edm_heun_sampler}


def get_sampler(name: str):
    """The sampler registered under ``name``; an unknown name lists the accepted ones."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}; got {name!r}")
    return SAMPLERS[name]
