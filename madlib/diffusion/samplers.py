"""Samplers, one short function per algorithm, with guidance built in as one optional piece.

Each sampler takes the primary prediction function and, optionally, a guide prediction function and
a weight schedule ``weight(i, n) -> w``, and makes every prediction through
:func:`madlib.diffusion.guidance.guided_prediction`: (1 + w_i) primary - w_i guide, step i counted from
pure noise. With no guide, the primary model samples alone.

- :func:`ddpm_ancestral_sampler`: DDPM (Ho et al. Alg. 2) on a discrete schedule; MAD's sampler.
- :func:`toy_ddpm_sampler`: the same steps as the toy DDPM SIMS cites runs them: t = T-1 .. 1, no step at t = 0.
- :func:`edm_heun_sampler`: EDM Alg. 1, deterministic 2nd-order Heun (SIMS, CASD Alg. 2).
- :func:`euler_ancestral_sampler`: Euler steps of the probability-flow ODE plus fresh noise (what
  ReDiFine samples Stable Diffusion with); EDM sigma grids from :func:`madlib.diffusion.schedules.edm_sigma_steps`.

No sampler waits on the device inside its loop: the control flow (is this the last step?) reads the sigma grid
as host numbers taken once from the grid as given (a CPU tensor, as the schedules make it), so a GPU runs the
steps without a host round trip, which CUDA graphs and compilation need (tested on the meta device, where any
such read raises).
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm import tqdm

from madlib.diffusion._random import randn
from madlib.diffusion.guidance import constant_weight, guided_prediction
from madlib.diffusion.schedules import DDPMSchedule

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
        e = guided_prediction(eps, guide, weight, i, n, x, t_in)
        beta, alpha, ab = schedule.betas[t], schedule.alphas[t], schedule.alpha_bar[t]
        if clip_x0 is None:
            x = (x - beta / (1 - ab).sqrt() * e) / alpha.sqrt()
        else:
            x = clipped_posterior_mean(x, e, schedule, t, clip_x0)
        if t > 0:
            x = x + beta.sqrt() * randn(x.shape, generator, x.device, x.dtype)
    return x


def toy_ddpm_sampler(eps: Predict, noise: torch.Tensor, schedule: DDPMSchedule, *,
                     guide: Predict | None = None, weight=constant_weight(0.0),
                     generator: torch.Generator | None = None) -> torch.Tensor:
    # albarji/toy-diffusion sample_ddpm (SIMS S:574): Ho et al. Alg. 2 for t = T-1 .. 1, sigma_t^2 = beta_t
    """x from x_{T-1} = ``noise`` [R, B, ...] ~ N(0, I), for :func:`madlib.diffusion.schedules.toy_cosine_schedule`.

    Each step t = T-1, ..., 1 moves x <- (x - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t) and adds
    sqrt(beta_t) N(0, I) only while t > 1; step t = 0 (beta_0 = 0, alpha_bar_0 = 1) is never taken, so
    the network is evaluated T - 1 times (step i of n = T - 1, counted from noise, for the weight schedule).
    """
    schedule = schedule.to(noise.device)
    x, n = noise, schedule.steps - 1
    for i, t in enumerate(range(schedule.steps - 1, 0, -1)):
        t_in = torch.full(x.shape[:2], float(t), device=x.device, dtype=x.dtype)
        e = guided_prediction(eps, guide, weight, i, n, x, t_in)
        beta, alpha, ab = schedule.betas[t], schedule.alphas[t], schedule.alpha_bar[t]
        x = (x - beta / (1 - ab).sqrt() * e) / alpha.sqrt()
        if t > 1:
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


def _host_levels(sigmas) -> list[float]:
    """The sigma grid as Python floats, read once before the loop (no device sync for a CPU grid)."""
    return torch.as_tensor(sigmas).detach().cpu().tolist()


def edm_heun_sampler(denoise: Predict, latents: torch.Tensor, sigmas: torch.Tensor, *,
                     guide: Predict | None = None, weight=constant_weight(0.0)) -> torch.Tensor:
    # EDM Algorithm 1 (deterministic 2nd-order Heun), as CASD Algorithm 2 uses it
    """latents [R, B, ...] ~ N(0, I); denoise(x, sigma) -> D(x; sigma); sigmas decreasing, ending at 0."""
    levels = _host_levels(sigmas)
    sigmas = sigmas.to(latents.device, latents.dtype)
    n = sigmas.shape[0] - 1
    x = latents * sigmas[0]
    for i in range(n):
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        d_cur = (x - guided_prediction(denoise, guide, weight, i, n, x, s_cur)) / s_cur
        x_next = x + (s_next - s_cur) * d_cur
        if levels[i + 1] > 0:  # 2nd-order correction
            d_prime = (x_next - guided_prediction(denoise, guide, weight, i, n, x_next, s_next)) / s_next
            x_next = x + (s_next - s_cur) * (d_cur + d_prime) / 2
        x = x_next
    return x


def euler_ancestral_sampler(denoise: Predict, latents: torch.Tensor, sigmas: torch.Tensor, *,
                            guide: Predict | None = None, weight=constant_weight(0.0), eta: float = 1.0,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    # Euler-ancestral (Song et al. 2021 reverse SDE discretised on EDM's sigma grid; "euler_a" of k-diffusion)
    """latents [R, B, ...] ~ N(0, I); denoise(x, sigma) -> D(x; sigma); sigmas decreasing, ending at 0.

    Each step splits sigma_{i+1}^2 = sigma_down^2 + sigma_up^2 with
    sigma_up = min(sigma_{i+1}, eta sqrt(sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2)):
    an Euler step of dx/dsigma = (x - D) / sigma down to sigma_down, then fresh noise of std sigma_up.
    ``eta`` = 0 is the deterministic Euler (DDIM) sampler; 1 the ancestral one. Noise comes from
    ``generator`` on its own device.
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1]; got {eta}")
    levels = _host_levels(sigmas)
    sigmas = sigmas.to(latents.device, latents.dtype)
    n = sigmas.shape[0] - 1
    x = latents * sigmas[0]
    for i in range(n):
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        d = (x - guided_prediction(denoise, guide, weight, i, n, x, s_cur)) / s_cur
        s_up = torch.minimum(s_next, eta * (s_next ** 2 * (s_cur ** 2 - s_next ** 2) / s_cur ** 2).sqrt())
        s_down = (s_next ** 2 - s_up ** 2).sqrt()
        x = x + (s_down - s_cur) * d
        if levels[i + 1] > 0 and eta > 0:
            x = x + s_up * randn(x.shape, generator, x.device, x.dtype)
    return x


SAMPLERS = {"ddpm": ddpm_ancestral_sampler, "heun": edm_heun_sampler, "euler_ancestral": euler_ancestral_sampler}


def get_sampler(name: str):
    """The sampler registered under ``name``; an unknown name lists the accepted ones."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}; got {name!r}")
    return SAMPLERS[name]
