"""One settings class for an EDM-preconditioned U-Net: its network, optimiser and Heun sampler.

SIMS (:class:`madlib.methods.sims.SIMSConfig`) and CASD (:class:`madlib.methods.casd.EDMSettings`) extend it; the
fields here are exactly the ones both had, so the cache keys of either (built from their ``settings()`` /
``training()`` dicts) did not change when they moved here. ReDiFine's M_0 and fine-tunes and the MAD image family
(:class:`madlib.models.images.ImageDiffusionFamily`) hand one to :func:`madlib.diffusion.core.train` too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from madlib._checks import check_choice, check_int, check_interval
from madlib.diffusion.losses import EDMPrecond
from madlib.diffusion.schedules import edm_sigma_steps
from madlib.diffusion.training import LR_DECAYS
from madlib.diffusion.unet import CONDITIONINGS, DECODERS, UNet

__all__ = ["EDMConfig", "check_sigma_grid"]


def check_sigma_grid(sigma_min, sigma_max, rho) -> tuple[float, float, float]:
    """EDM's sigma grid (Eq. 5) as floats, or ValueError naming the argument: 0 < sigma_min < sigma_max, both
    finite (an infinite sigma_max gives NaN sigmas and blank samples), rho finite and > 0."""
    sigma_min = check_interval("sigma_min", sigma_min, 0.0, math.inf, low_open=True, high_open=True)
    sigma_max = check_interval("sigma_max", sigma_max, 0.0, math.inf, low_open=True, high_open=True)
    if not sigma_min < sigma_max:
        raise ValueError(f"sigma_min must be below sigma_max (0 < sigma_min < sigma_max < inf); got sigma_min = "
                         f"{sigma_min:g}, sigma_max = {sigma_max:g}")
    rho = check_interval("rho", rho, 0.0, math.inf, low_open=True, high_open=True)
    return sigma_min, sigma_max, rho


@dataclass(frozen=True)
class EDMConfig:
    """image_size, image_channels: images [C, H, W]; base_channels, channel_mults, num_res_blocks: the U-Net.
    batch_size, lr (Adam), warmup (images seen of linear warm-up), lr_decay (after the warm-up: "constant", or
    "cosine" to 0 at the end of the budget), ema_decay (the EMA copy samples), ema_rampup (EDM's EMA ramp-up: the
    average's half-life at most ema_rampup x the images seen; 0 = a constant decay).
    sample_steps, sigma_min, sigma_max, rho: EDM's sigma grid (EDM Eq. 5; 0 < sigma_min < sigma_max, both finite,
    rho finite and > 0); sample_batch: images per sampler call. conditioning, decoder: :class:`UNet`'s options
    (issue 24's levers; the defaults are the U-Net every committed figure trained). Every field is checked on
    construction: a value outside its range raises ValueError naming it.
    """

    image_size: int = 14
    image_channels: int = 1
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 0
    lr_decay: str = "constant"
    ema_decay: float = 0.99
    ema_rampup: float = 0.0
    sample_steps: int = 12
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sample_batch: int = 500
    conditioning: str = "add"
    decoder: str = "full"

    def __post_init__(self):
        check_int("image_size", self.image_size, minimum=4)
        check_int("image_channels", self.image_channels, minimum=1)
        check_int("base_channels", self.base_channels, minimum=8, why="GroupNorm(8) needs 8 channels")
        check_int("num_res_blocks", self.num_res_blocks, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_interval("lr", self.lr, 0.0, 1.0, low_open=True)
        check_int("warmup", self.warmup, minimum=0)
        check_choice("lr_decay", self.lr_decay, LR_DECAYS)
        check_interval("ema_decay", self.ema_decay, 0.0, 1.0, high_open=True)
        check_interval("ema_rampup", self.ema_rampup, 0.0, math.inf, high_open=True)
        check_int("sample_steps", self.sample_steps, minimum=2)
        check_sigma_grid(self.sigma_min, self.sigma_max, self.rho)
        check_int("sample_batch", self.sample_batch, minimum=1)
        check_choice("conditioning", self.conditioning, CONDITIONINGS)
        check_choice("decoder", self.decoder, DECODERS)
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        if not self.channel_mults:
            raise ValueError("channel_mults must hold at least one multiplier (an integer >= 1 per level); got ()")
        for i, mult in enumerate(self.channel_mults):
            check_int(f"channel_mults[{i}]", mult, minimum=1)

    def settings(self) -> dict:
        """Every field as plain JSON data (channel_mults as a list); ema_rampup, lr_decay, conditioning and decoder only
        when set, so that the cache keys of fits made before they existed stay the same."""
        out = {**asdict(self), "channel_mults": list(self.channel_mults)}
        if not self.ema_rampup:
            del out["ema_rampup"]
        for name, default in (("lr_decay", "constant"), ("conditioning", "add"), ("decoder", "full")):
            if out[name] == default:
                del out[name]
        return out

    def sigmas(self) -> torch.Tensor:
        return edm_sigma_steps(self.sample_steps, self.sigma_min, self.sigma_max, self.rho)

    def network_evaluations(self) -> int:
        """Network evaluations per image of one unguided Heun chain: 2 * steps - 1 (no correction at the last
        step; CASD Algorithm 2). SIMS's guided count is :func:`madlib.methods.sims.network_evaluations`."""
        return 2 * self.sample_steps - 1

    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_channels, self.image_size, self.image_size)

    def network(self, seed: int, device="cpu", num_sources: int = 0, num_classes: int = 0) -> EDMPrecond:
        """A fresh U-Net (initialised from ``seed``) in EDM preconditioning (EDM Table 1): class-unconditional, or
        with ``num_classes`` class labels (and the "no label" token condition dropout trains; ReDiFine's M_0);
        ``num_sources`` > 0 adds CASD's second label, the data source."""
        return EDMPrecond(UNet(self.image_channels, self.image_size, self.base_channels, self.channel_mults,
                               num_classes=num_classes, num_sources=num_sources, num_res_blocks=self.num_res_blocks,
                               conditioning=self.conditioning, decoder=self.decoder, seed=seed, device=device))
