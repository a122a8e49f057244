"""Samplers, one short function per algorithm, with guidance built in as one optional piece.

Each sampler takes the primary prediction function and, optionally, a guide prediction function and
a weight schedule ``weight(i, n) -> w`` (see :mod:`madlib.diffusion.guidance`); the prediction used is
(1 + w) primary - w guide. With no guide, the primary model samples alone.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm import tqdm

from madlib.diffusion._random import randn
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
                           generator: torch.Generator | None = None, clip_x0: tuple[float, float] | None = None,
                           progress: bool = False) -> torch.Tensor:
    # Ho et al. 2020 Algorithm 2 with sigma_t^2 = beta_t
    """x_0 from x_T = ``noise`` [R, B, ...] ~ N(0, I) (points [R, B, d] or images [R, B, C, H, W]).

    eps(x, t) predicts the noise at step index t (a float tensor [R, B]); for a class-conditional
    network and classifier-free guidance see :func:`madlib.diffusion.guidance.cfg_predictors`.
    ``clip_x0`` = (low, high), the data range: each step clips the predicted x_0 to it and moves to
    the posterior mean (:func:`clipped_posterior_mean`), as the DDPM authors' image sampler does; without
    clipping both steps are the same. The step noise is drawn from ``generator`` on its own device and
    moved to ``noise``'s.
    """
    schedule = schedule.to(noise.device)
    x, n = noise, schedule.steps
    for i, t in enumerate(tqdm(range(n - 1, -1, -1), disable=not progress, leave=False, desc="sample")):
        t_in = torch.full(x.shape[:2], float(t), device=x.device, dtype=x.dtype)
        e = _guided(eps, guide, weight, i, n, x, t_in)
        beta, alpha, ab = schedule.betas[t], schedule.alphas[t], schedule.alpha_bar[t]
        if clip_x0 is None:
            x = (x - beta / (1 - ab).sqrt() * e) / alpha.sqrt()
        else:
            x = clipped_posterior_mean(x, e, schedule, t, clip_x0)
        if t > 0:
            x = x + beta.sqrt() * randn(x.shape, generator, x.device, x.dtype)
    return x


def clipped_posterior_mean(x: torch.Tensor, e: torch.Tensor, schedule: DDPMSchedule, t: int,
                           clip_x0: tuple[float, float]) -> torch.Tensor:
    # Ho et al. 2020 Eq. 7: mu_t(x_t, x0), x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t) clipped to the data range
    """The mean of x_{t-1} given x_t [R, B, ...] and the noise prediction e; at t = 0 the clipped x0 itself.

    Unclipped, this equals Algorithm 2's mean (x_t - beta_t / sqrt(1 - ab_t) e) / sqrt(alpha_t); clipping
    keeps the large first steps of a schedule with beta near 1 (cosine, T small) from amplifying the
    network's error.
    """
    beta, alpha, ab = schedule.betas[t], schedule.alphas[t], schedule.alpha_bar[t]
    ab_prev = schedule.alpha_bar[t - 1] if t > 0 else torch.ones_like(ab)
    x0 = ((x - (1 - ab).sqrt() * e) / ab.sqrt()).clamp(*clip_x0)
    return (ab_prev.sqrt() * beta * x0 + alpha.sqrt() * (1 - ab_prev) * x) / (1 - ab)


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
