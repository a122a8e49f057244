"""Noise schedules: DDPM's discrete cosine schedule and EDM's continuous sigma steps.

References: Nichol & Dhariwal 2021 (improved DDPM), Eq. 17; Karras et al. 2022 (EDM), Eq. 5 and
Table 1. The SIMS 2D toy DDPM uses T = 40 cosine steps with s = 0.008 (paper-targets SIMS-1); the toy
notebook SIMS cites evaluates that formula on t = 0..T-1 without clipping (:func:`toy_cosine_schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from madlib._checks import check_int, check_interval


@dataclass(frozen=True)
class DDPMSchedule:
    """Discrete DDPM schedule of T steps: betas[t], alphas[t] = 1 - betas[t], alpha_bar[t] (t = 0..T-1)."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bar: torch.Tensor

    @property
    def steps(self) -> int:
        return self.betas.shape[0]

    def to(self, device) -> "DDPMSchedule":
        return DDPMSchedule(self.betas.to(device), self.alphas.to(device), self.alpha_bar.to(device))


def cosine_schedule(steps: int = 40, s: float = 0.008, max_beta: float = 0.999) -> DDPMSchedule:
    """alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2) (Nichol & Dhariwal Eq. 17).

    Betas are clipped at ``max_beta`` (0.999 in Nichol & Dhariwal). With few steps the last clipped
    step divides by sqrt(1 - max_beta) in the sampler (x32 at 0.999), amplifying the network's error:
    for T = 40 a lower clip (e.g. 0.99) is far more stable (tests/test_diffusion.py, project choice).
    """
    steps = check_int("steps", steps, minimum=1)
    s = check_interval("s", s, 0.0, 1.0)
    max_beta = check_interval("max_beta", max_beta, 0.0, 1.0, low_open=True, high_open=True)
    grid = torch.linspace(0, steps, steps + 1, dtype=torch.float64)
    f = torch.cos(((grid / steps) + s) / (1 + s) * torch.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    alphas = 1 - betas
    return DDPMSchedule(betas.float(), alphas.float(), torch.cumprod(alphas, 0).float())


def edm_sigma_steps(steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                    device=None) -> torch.Tensor:
    """EDM Eq. 5: sigma_i = (sigma_max^(1/rho) + i / (N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, then 0.

    Returns [steps + 1], decreasing, last entry 0.
    """
    steps = check_int("steps", steps, minimum=2)
    i = torch.arange(steps, dtype=torch.float64, device=device)
    inv = 1.0 / rho
    sigmas = (sigma_max ** inv + i / (steps - 1) * (sigma_min ** inv - sigma_max ** inv)) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64, device=device)])


def toy_cosine_schedule(steps: int = 40, s: float = 0.008) -> DDPMSchedule:
    """The cosine schedule of the toy DDPM that SIMS cites (S:574; albarji/toy-diffusion ``swissRoll.ipynb``).

    f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2) evaluated at t = 0..T-1 (not 0..T), then
    alpha_bar[t] = f(t) / f(0),  beta[t] = 1 - alpha_bar[t] / alpha_bar[t-1]  (beta[0] = 0, alpha_bar[0] = 1),
    with no clipping. For T = 40: the last beta is about 0.75 and alpha_bar[T-1] about 0.0015.

    Unlike :func:`cosine_schedule` (Nichol & Dhariwal Eq. 17 on t = 1..T, which reaches alpha_bar = 0
    and needs a clip), step 0 is noise-free and the chain never reaches pure noise; its sampler is
    :func:`madlib.diffusion.samplers.toy_ddpm_sampler`, which stops before t = 0 (where 1 - alpha_bar = 0).
    """
    steps = check_int("steps", steps, minimum=2)
    s = check_interval("s", s, 0.0, 1.0)
    t = torch.arange(steps, dtype=torch.float64)
    f = torch.cos((t / steps + s) / (1 + s) * torch.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1 - alpha_bar / torch.cat([alpha_bar[:1], alpha_bar[:-1]])
    return DDPMSchedule(betas.float(), (1 - betas).float(), alpha_bar.float())
