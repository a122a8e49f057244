"""Training losses and preconditioning: DDPM epsilon prediction, EDM's preconditioned denoiser and its loss.

Every loss returns per-member means [R] for a batch [R, B, ...] and passes the labels on as keywords
(``y``: class, ``s``: CASD's second label, the data source), so one signature serves every network.
"""

from __future__ import annotations

import torch

from madlib.diffusion._random import randint, randn
from madlib.diffusion.schedules import DDPMSchedule


def ddpm_eps_loss(net, x0: torch.Tensor, schedule: DDPMSchedule, generator: torch.Generator | None = None,
                  y: torch.Tensor | None = None, **labels) -> torch.Tensor:
    # Ho et al. 2020 Eq. 14 (L_simple): |eps - eps_theta(sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t)|^2
    """Per-member mean loss [R] for a batch x0 [R, B, ...] (points [R, B, d] or images [R, B, C, H, W]).

    t [R, B] is drawn uniformly from 0..T-1 and given to ``net`` as a float; y [R, B] labels or None.
    Sum the result to train all members at once.
    """
    t = randint(schedule.steps, x0.shape[:2], generator, x0.device)
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    ab = _per_sample(schedule.alpha_bar.to(x0.device)[t], x0)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((net(xt, t.to(x0.dtype), y, **labels) - noise) ** 2).mean(dim=tuple(range(1, x0.ndim)))


def _per_sample(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[R, B] -> [R, B, 1, ...] broadcastable against x [R, B, ...]."""
    return value.reshape(value.shape + (1,) * (x.ndim - 2))


def edm_denoise(net, x: torch.Tensor, sigma, y=None, sigma_data: float = 0.5, **labels) -> torch.Tensor:
    # EDM Eq. 7 and Table 1: D(x; sigma) = c_skip x + c_out F(c_in x; c_noise), c_noise = ln(sigma) / 4
    """x [R, B, ...]; sigma a scalar or [R, B]; extra ``labels`` (e.g. ``s``) go to ``net`` as keywords."""
    sigma = torch.broadcast_to(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x.shape[:2])
    s = _per_sample(sigma, x)
    c_skip = sigma_data ** 2 / (s ** 2 + sigma_data ** 2)
    c_out = s * sigma_data / (s ** 2 + sigma_data ** 2).sqrt()
    c_in = 1 / (sigma_data ** 2 + s ** 2).sqrt()
    return c_skip * x + c_out * net(c_in * x, sigma.log() / 4, y, **labels)


class EDMPrecond(torch.nn.Module):
    """D(x; sigma, y, s) of EDM Table 1 around a raw network F (a U-Net or an ensemble MLP).

    Calls ``net(c_in x, c_noise, y, s=...)``; ``members``, ``num_classes`` and ``num_sources`` are the
    wrapped network's (condition dropout and the ensemble axis work as for the raw network). Pixel data
    in [-1, 1] has sigma_data = 0.5 (EDM Sec. 5).
    """

    def __init__(self, net: torch.nn.Module, sigma_data: float = 0.5):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0; got {sigma_data}")
        self.net, self.sigma_data = net, float(sigma_data)

    @property
    def members(self) -> int:
        return getattr(self.net, "members", 1)

    @property
    def num_classes(self) -> int:
        return getattr(self.net, "num_classes", 0)

    @property
    def num_sources(self) -> int:
        return getattr(self.net, "num_sources", 0)

    def forward(self, x: torch.Tensor, sigma, y=None, **labels) -> torch.Tensor:
        return edm_denoise(self.net, x, sigma, y, self.sigma_data, **labels)


def edm_loss(denoiser, x0: torch.Tensor, generator: torch.Generator | None = None, y=None, sigma_data: float = 0.5,
             p_mean: float = -1.2, p_std: float = 1.2, **labels) -> torch.Tensor:
    # EDM Eq. 8 and Table 1: lambda(sigma) |D(x0 + sigma n; sigma) - x0|^2, ln sigma ~ N(P_mean, P_std^2)
    """Per-member mean loss [R] of a preconditioned ``denoiser`` (:class:`EDMPrecond`) on a batch x0 [R, B, ...]."""
    ln_sigma = randn(x0.shape[:2], generator, x0.device, x0.dtype) * p_std + p_mean
    sigma = ln_sigma.exp()
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    weight = _per_sample((sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2, x0)
    denoised = denoiser(x0 + _per_sample(sigma, x0) * noise, sigma, y, **labels)
    return (weight * (denoised - x0) ** 2).mean(dim=tuple(range(1, x0.ndim)))
