"""SIMS, Self-IMproving diffusion models with Synthetic data (Alemohammad et al. 2024), on images.

Algorithm 1 (S:130-150), one function per step:

1. :func:`train_base`: a diffusion model on the real set D (EDM preconditioning and loss, EDM Table 1);
2. :func:`synthesize`: n_s samples of it, the internal synthetic set S (n_s about |D| works well, S:355);
3. :func:`train_auxiliary`: a copy of the base model fine-tuned on S only, with the base model's own training
   settings, for a budget B in images seen; B has an interior optimum (S:358-366), so the fine-tune keeps
   snapshots along B;
4. :func:`sims_sample`: Heun sampling (EDM Algorithm 1) of s = (1 + w) s_base - w s_aux (Eq. 5) through
   :func:`madlib.diffusion.guidance.guided_prediction`. w = 0 is the base model bit for bit (the auxiliary
   model is never called); w = -1 is the auxiliary model alone.

Around it: :func:`sims_grid` measures the samples over a grid of (B, w) on one set of latents, and
:func:`select_then_report` chooses (B, w) on one set of sampling seeds and reports it on another, so the reported
FID is not the optimum of its own noise (SinaAlemohammad/Neon selects on test seeds and recomputes on fresh ones).
:func:`group_shifted_subset` builds SIMS-4's auxiliary set with a chosen group proportion (Sec. 4.3), and
:func:`freeze_encoder` fine-tunes only the decoder half of the U-Net (App. A).

Models are class-unconditional U-Nets (SIMS's CIFAR-10 and FFHQ models are unconditional; project choice for
MNIST). Training (with its cache and the snapshots along B) and sampling are :func:`madlib.diffusion.core.train` and
:func:`madlib.diffusion.core.sample`; this module holds SIMS's algorithm only. Network evaluations (NFE) per image: 2 * steps - 1 for Heun; SIMS doubles them wherever w != 0.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from madlib._checks import check_int, check_interval, resolve_device
from madlib.diffusion import core
from madlib.diffusion.config import EDMConfig
from madlib.diffusion.guidance import check_weight, constant_weight, interval_weight
from madlib.diffusion.losses import EDMPrecond, edm_denoise
from madlib.diffusion.training import TrainStats
from madlib.diffusion.unet import UNet

__all__ = ["SIMSConfig", "SIMSModel", "train_base", "synthesize", "train_auxiliary", "sims_sample", "check_sims_weight",
           "sims_grid", "select_then_report", "group_shifted_subset", "freeze_encoder", "SharedEncoderPair",
           "network_evaluations"]

PIXEL_RANGE = core.PIXEL_RANGE


@dataclass(frozen=True)
class SIMSConfig(EDMConfig):
    """The network and the training settings the base model and the auxiliary fine-tune share (S:339: "the same
    training hyperparameters"), and the Heun sampler's sigma grid (EDM Eq. 5): :class:`EDMConfig` with a warm-up."""

    warmup: int = 5000


@dataclass
class SIMSModel:
    """A trained denoiser D(x; sigma) (:class:`EDMPrecond` around a U-Net; the EMA weights), its images seen and
    its training stats (None when read from the cache)."""

    net: torch.nn.Module
    images_seen: int
    stats: TrainStats | None


def network_evaluations(config: SIMSConfig, guided: bool, guide_from: int = 0) -> int:
    """Network evaluations per image of one Heun chain: 2 * steps - 1 (the last step has no correction), plus one
    auxiliary evaluation per base evaluation from step ``guide_from`` on when guided."""
    n = config.sample_steps
    per_step = [2] * (n - 1) + [1]
    return sum(per_step) + (sum(per_step[check_int("guide_from", guide_from, minimum=0):]) if guided else 0)


def _check_images(name: str, images: torch.Tensor, config: SIMSConfig) -> None:
    core.check_images(name, images, config.image_shape())


def train_base(images: torch.Tensor, config: SIMSConfig, *, images_seen: int, seed: int, device: str = "cpu",
               cache_dir: str | os.PathLike | None = None, progress: bool = False) -> SIMSModel:
    # SIMS Algorithm 1, step 1: train the base model on the real set D
    """A class-unconditional EDM denoiser trained from scratch on uint8 ``images`` [N, C, H, W]
    (:func:`madlib.diffusion.core.train`).

    With ``cache_dir``, the EMA weights are kept in ``<cache_dir>/base-<key>.pt`` (:func:`madlib.diffusion.cache.cached_fit`:
    written atomically, keyed by the config, the budget, the seed, madlib's version and the images' bytes): a later
    call with the same inputs reads them instead of training (``stats`` is then None); any other input trains anew.
    """
    _check_images("images", images, config)
    images_seen = check_int("images_seen", images_seen, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    device = resolve_device("device", device)
    from madlib import __version__

    settings = {"config": config.settings(), "images_seen": images_seen, "seed": seed, "madlib": __version__}
    fit = core.train(images, config, images_seen=images_seen, seed=seed, cache_dir=cache_dir, role="base",
                     settings=settings, device=device, progress=progress)
    return SIMSModel(fit.net, images_seen, None if fit.loaded else fit.stats)


def check_sims_weight(name: str, w) -> float:
    # SIMS Eq. 5 (S:347, S:816): w = -1 is the auxiliary model alone, w = 0 the base; the paper defines none below -1
    """``w`` as a float, or ValueError naming ``name`` unless it is a finite number >= -1."""
    w = float(check_weight(w))
    if w < -1:
        raise ValueError(f"{name} must be a finite number >= -1 (SIMS Eq. 5: w = -1 samples the auxiliary model "
                         f"alone, w = 0 the base model, w > 0 guides away from the auxiliary model); "
                         f"got {name} = {w:g}")
    return w


def sims_sample(base: SIMSModel, aux: SIMSModel | None, w: float, n: int, config: SIMSConfig, *, seed: int,
                guide_from: int = 0, shared_encoder: bool = False, device: str = "cpu") -> torch.Tensor:
    # SIMS Eq. 5: s = (1 + w) s_base - w s_aux, sampled with Heun (EDM Algorithm 1)
    """n uint8 images [n, C, H, W] (CPU) of the SIMS model, deterministic given ``seed`` (its latents).

    w >= -1 (ValueError below). w = 0 (or ``aux`` None) samples the base model alone: the same images, bit for bit,
    as without an auxiliary model. w = -1 samples the auxiliary model alone (evaluated directly, not as
    base - (base - aux), which rounds differently). ``guide_from``: guidance only from Heun step ``guide_from`` on
    (SIMS App. A skips the first steps; steps count from pure noise). ``shared_encoder``: for an auxiliary model
    fine-tuned with :func:`freeze_encoder`, evaluate the shared encoder once per step (:class:`SharedEncoderPair`).
    """
    w = check_sims_weight("w", w)
    n = check_int("n", n, minimum=1)
    guide_from = check_int("guide_from", guide_from, minimum=0)
    if aux is None and w != 0:
        raise ValueError(f"w must be 0 without an auxiliary model; got w = {w}")
    device = resolve_device("device", device)
    primary, guide, predictors = base.net, aux.net if aux is not None else None, None
    if w == -1 and guide_from == 0:
        primary, guide = aux.net, None
    elif shared_encoder and guide is not None:
        pair = SharedEncoderPair(base.net, aux.net).predictors()  # one encoder pass for both models per step
        primary, guide, predictors = None, None, lambda y, s: pair
    weight = interval_weight(w, guide_from) if guide_from else constant_weight(w)
    return core.sample(primary, n, seed=seed, image_shape=config.image_shape(),
                       sigmas=config.sigmas(), guide=guide, weight=weight, predictors=predictors,
                       sample_batch=config.sample_batch, device=device)


def synthesize(base: SIMSModel, n: int, config: SIMSConfig, *, seed: int, device: str = "cpu") -> torch.Tensor:
    # SIMS Algorithm 1, step 2: the internal synthetic set S of n_s samples of the base model
    """n uint8 samples [n, C, H, W] of the base model (Heun, w = 0)."""
    return sims_sample(base, None, 0.0, n, config, seed=seed, device=device)


def train_auxiliary(base: SIMSModel, synthetic: torch.Tensor, config: SIMSConfig, *, budgets: Sequence[int],
                    seed: int, device: str = "cpu", trainable: Callable[[torch.nn.Module], None] | None = None,
                    progress: bool = False) -> dict[int, SIMSModel]:
    # SIMS Algorithm 1, step 3: fine-tune a copy of the base model on S only, for budget B (images seen)
    """{B: auxiliary model after B images seen} for every B of ``budgets``, from one fine-tune of a copy of the
    base model on the uint8 ``synthetic`` set, with the base model's training settings (fresh optimiser, warm-up
    and EMA started at the base weights). The base model is left untouched. ``trainable(net)`` may freeze part of
    the copy before it trains (:func:`freeze_encoder`)."""
    _check_images("synthetic", synthetic, config)
    budgets = sorted({check_int("budgets[i]", b, minimum=1) for b in budgets})
    if not budgets:
        raise ValueError("budgets must name at least one budget B (images seen)")
    device = resolve_device("device", device)
    net = copy.deepcopy(base.net).train().requires_grad_(True)
    if trainable is not None:
        trainable(net)
    batch = min(config.batch_size, len(synthetic))
    steps = core.budget_steps(budgets, len(synthetic), config.batch_size)
    fit = core.train(synthetic, config, images_seen=budgets[-1], seed=seed, net=net,
                     snapshot_steps=list(steps.values()), device=device, progress=progress)
    return {b: SIMSModel(fit.snapshots[steps[b]], steps[b] * batch, fit.stats) for b in budgets}


def freeze_encoder(net: torch.nn.Module) -> None:
    """Train only the decoder half of an :class:`EDMPrecond` U-Net (SIMS App. A, Fig. 8): the time MLP, stem,
    encoder levels and middle block keep the base model's weights, so base and auxiliary model share the encoder's
    activations for a given (x, sigma)."""
    unet = net.net if isinstance(net, EDMPrecond) else net
    if not isinstance(unet, UNet):
        raise ValueError(f"net must be a UNet or an EDMPrecond around one; got {type(unet).__name__}")
    for module in (unet.time_mlp, unet.stem, unet.down, unet.downsample, unet.middle, unet.middle_attention):
        if module is not None:
            module.requires_grad_(False)


class SharedEncoderPair:
    """The base model and a decoder-only auxiliary model (:func:`freeze_encoder`) in one pass per (x, sigma): the
    encoder half once, both decoders on its features (SIMS App. A: about 1.5x instead of 2x the base cost).

    :meth:`predictors` gives (base, aux) prediction functions for the samplers; the auxiliary one returns what the
    base call just computed for the same x and sigma, so each guided step costs one encoder and two decoders.
    """

    def __init__(self, base: torch.nn.Module, aux: torch.nn.Module):
        unets = [m.net if isinstance(m, EDMPrecond) else None for m in (base, aux)]
        if not all(isinstance(u, UNet) for u in unets):
            raise ValueError("base and aux must be EDMPrecond denoisers around U-Nets")
        self.base, self.aux = base, aux
        for part in ("time_mlp", "stem", "down", "downsample", "middle", "middle_attention"):
            a, b = getattr(unets[0], part), getattr(unets[1], part)
            if (a is None) != (b is None) or (a is not None and not all(
                    torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))):
                raise ValueError(f"aux must share the base model's encoder ({part} differs): fine-tune it with freeze_encoder")
        self._last = None

    def _raw(self, h: torch.Tensor, c_noise, y=None) -> torch.Tensor:
        # h [1, B, C, H, W] -> [2, B, C, H, W]: the base and the auxiliary network outputs F
        base, aux = self.base.net, self.aux.net
        flat = h.reshape((-1,) + tuple(h.shape[-3:]))
        emb = base.embed(h, c_noise)
        features = base.encode(flat, emb)
        return torch.stack([base.decode(*features, emb), aux.decode(*features, emb)]).reshape((2,) + tuple(h.shape[1:]))

    def predictors(self):
        def base_prediction(x, sigma):
            both = edm_denoise(self._raw, x, sigma, None, self.base.sigma_data)  # [2, B, ...]: c_skip x + c_out F
            self._last = (x, sigma, both[1:])
            return both[:1]

        def aux_prediction(x, sigma):
            if self._last is not None and self._last[0] is x and self._last[1] is sigma:
                return self._last[2]
            return self.aux(x, sigma)

        return base_prediction, aux_prediction


def sims_grid(base: SIMSModel, auxes: dict[int, SIMSModel], ws: Sequence[float], n: int, config: SIMSConfig,
              measure: Callable[[torch.Tensor], dict], *, seed: int, device: str = "cpu",
              guide_from: int = 0) -> dict[str, np.ndarray]:
    """Metrics [len(budgets), len(ws)] of n samples at every (B, w), all from the latents of ``seed`` (paired:
    cells differ only in the model). ``measure(images)`` returns a dict of floats (e.g. FID); w = 0 is one chain
    shared by every B (it is the base model). Budgets in ascending order of ``auxes``' keys."""
    ws = [check_sims_weight(f"ws[{i}]", w) for i, w in enumerate(ws)]  # all checked before the first chain
    budgets = sorted(auxes)
    rows, base_metrics = [], None
    for b in budgets:
        row = []
        for w in ws:
            if w == 0:
                if base_metrics is None:
                    base_metrics = measure(sims_sample(base, None, 0.0, n, config, seed=seed, device=device))
                row.append(base_metrics)
            else:
                row.append(measure(sims_sample(base, auxes[b], w, n, config, seed=seed, device=device,
                                               guide_from=guide_from)))
        rows.append(row)
    return {k: np.array([[cell[k] for cell in row] for row in rows]) for k in rows[0][0]}


def select_then_report(select: np.ndarray, report: np.ndarray, *, select_seeds: Sequence[int],
                       report_seeds: Sequence[int]) -> dict:
    """Choose the cell of lowest mean score on the selection seeds and read it on the report seeds.

    select [len(select_seeds), ...cells], report [len(report_seeds), ...cells] (e.g. FID over (B, w)); the two
    seed sets must be disjoint (the report never uses the noise it was chosen on). Returns the chosen index,
    the selected mean (optimistic) and the reported mean and per-seed values at that index.
    """
    select, report = np.asarray(select, float), np.asarray(report, float)
    overlap = set(select_seeds) & set(report_seeds)
    if overlap:
        raise ValueError(f"select_seeds and report_seeds must be disjoint; both hold {sorted(overlap)}")
    if select.shape[0] != len(select_seeds) or report.shape[0] != len(report_seeds):
        raise ValueError(f"select and report lead with one row per seed; got {select.shape[0]} rows for "
                         f"{len(select_seeds)} selection seeds and {report.shape[0]} for {len(report_seeds)}")
    if select.shape[1:] != report.shape[1:]:
        raise ValueError(f"select and report must share their cells; got {select.shape[1:]} and {report.shape[1:]}")
    index = np.unravel_index(np.nanargmin(select.mean(0)), select.shape[1:])
    return {"index": tuple(int(i) for i in index), "selected": float(select.mean(0)[index]),
            "reported": float(report.mean(0)[index]), "reported_per_seed": report[(slice(None),) + index]}


def group_shifted_subset(images: torch.Tensor, in_group: torch.Tensor, share: float, n: int,
                         rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n of ``images`` of which round(share * n) are in the group (``in_group`` [N] bool, e.g. the classifier says
    "digit 0-4"), drawn without replacement: SIMS-4's auxiliary set with the complement of the target proportion
    (Sec. 4.3: target 70%, auxiliary set 30%). Returns (images [n, ...], in_group [n])."""
    share = check_interval("share", share, 0.0, 1.0)
    n = check_int("n", n, minimum=1)
    in_group = torch.as_tensor(in_group, dtype=torch.bool)
    if in_group.shape != images.shape[:1]:
        raise ValueError(f"in_group must be [N] = [{images.shape[0]}]; got {tuple(in_group.shape)}")
    k = round(share * n)
    inside, outside = np.flatnonzero(in_group.numpy()), np.flatnonzero(~in_group.numpy())
    if k > len(inside) or n - k > len(outside):
        raise ValueError(f"n = {n} at share {share} needs {k} images in the group and {n - k} outside; the pool has "
                         f"{len(inside)} and {len(outside)}: synthesize a larger pool")
    pick = np.concatenate([rng.choice(inside, k, replace=False), rng.choice(outside, n - k, replace=False)])
    pick = torch.as_tensor(rng.permutation(pick))
    return images[pick], in_group[pick]
