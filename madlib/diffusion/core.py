"""The image core: every image method (MAD's image loops, SIMS, CASD, ReDiFine) trains, samples and evaluates here.

A paper's module keeps only its algorithm (which data, which labels, which guide, which budget); the loop is here,
once:

- :func:`train`: an EDM U-Net (or any denoiser with its loss, e.g. MAD's DDPM) on uint8 images, from scratch or from
  a given network (a fine-tune, LoRA included), with class labels and condition dropout and/or a second label (CASD's
  source), a budget in images seen, warm-up, an EMA, snapshots of the EMA along the budget, checkpoints that resume
  with the same numbers, and an optional disk cache keyed by the settings and the data's bytes
  (:func:`madlib.diffusion.cache.cached_fit`). Returns a :class:`Trained`.
- :func:`sample`: chunked sampling from latents drawn by one seed (Heun, Euler-ancestral or MAD's DDPM through
  :mod:`madlib.diffusion.samplers`), every prediction guided by
  :func:`madlib.diffusion.guidance.guided_prediction` (CFG, another model, or a pair of predictors a method builds),
  returned as uint8 images through :func:`to_uint8_images`.
- :func:`evaluate`: :class:`madlib.metrics.images.HeldOutMetrics` (the one metric bundle: reference features once;
  FID, precision, recall, and with ``protocol`` KID, density, coverage) plus, for class-conditional samples, the
  classifier's accuracy and the mean intensity (:func:`madlib.metrics.images.class_readouts`).
- Pixels: :data:`PIXEL_RANGE`, :func:`to_network_range` (uint8 -> [-1, 1]) and :func:`to_uint8_images` (back).
- Class-balanced subsets: :func:`madlib.data.images.balanced_index` (the data layer, below this module).

Conventions (one for every caller):

- **Seeds.** ``train(seed=s)`` draws everything from ``torch.Generator().manual_seed(s)``; from scratch, the network's
  initial weights come from the first draw of that generator (an integer below 2^31), the batches, noise levels and
  dropout from the draws after it. ``sample(seed=s)`` draws each chunk's latents [1, B, C, H, W] from
  ``torch.Generator().manual_seed(s)`` and then, for the stochastic samplers, that chunk's step noise from the same
  generator; for Heun the latents are those of one draw of all n at once whenever every chunk holds a multiple of
  16 values (torch's normal sampler fills blocks of 16).
- **The EMA.** ``config.ema_decay`` > 0 keeps an EMA copy that is returned (and snapshotted); 0 returns the trained
  network itself.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import nn

from madlib._checks import check_choice, check_int, check_interval, resolve_device
from madlib.data.images import from_uint8, to_uint8
from madlib.diffusion.cache import cache_key, cached_fit
from madlib.diffusion.config import EDMConfig
from madlib.diffusion.guidance import constant_weight
from madlib.diffusion.losses import edm_loss
from madlib.diffusion.samplers import SAMPLERS, ddpm_ancestral_sampler, edm_heun_sampler, euler_ancestral_sampler
from madlib.diffusion.training import PRECISIONS, TrainStats, autocast, train_ensemble

if TYPE_CHECKING:
    from madlib.metrics.images import HeldOutMetrics

__all__ = ["PIXEL_RANGE", "Trained", "train", "sample", "evaluate", "to_network_range",
           "to_uint8_images", "check_images", "budget_steps"]

PIXEL_RANGE = (-1.0, 1.0)  # the networks see images mapped linearly from 0..255 onto [-1, 1]


# ------------------------------------------------------------------------------------------------------- pixels
def to_network_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images 0..255 -> float32 in :data:`PIXEL_RANGE` (what every network trains on)."""
    return from_uint8(images, PIXEL_RANGE)


def to_uint8_images(x: torch.Tensor) -> torch.Tensor:
    """Network-range images (a sampler's output) -> uint8 0..255 on the CPU, as saving them does; the one conversion
    every sampled set goes through (NaN raises: a diverged sampler)."""
    return to_uint8(x, PIXEL_RANGE).cpu()


def check_images(name: str, images: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """``images`` if uint8 [n >= 1, C, H, W] (of ``shape`` [C, H, W] when given), else ValueError naming ``name``."""
    ok = isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4 and len(images) >= 1
    if not ok or (shape is not None and tuple(images.shape[1:]) != tuple(shape)):
        want = "C, H, W" if shape is None else ", ".join(map(str, shape))
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be uint8 images [n >= 1, {want}]; got {got}")
    return images


# -------------------------------------------------------------------------------------------------------- train
@dataclass
class Trained:
    """What :func:`train` returns.

    net: the EMA network (the trained one itself when ``ema_decay`` = 0), in eval mode; the EMA copy is frozen
    (``requires_grad`` False), the trained network keeps its flags (a LoRA adapter can train on).
    stats: this run's :class:`TrainStats`; when loaded from the cache, those of the run that wrote the file (None for
    a file written without them). snapshots: {optimiser step: frozen copy of the EMA network}. key: the cache key
    (None without ``settings``). loaded: read from the cache instead of trained.
    """

    net: nn.Module
    stats: TrainStats | None
    snapshots: dict[int, nn.Module] = field(default_factory=dict)
    key: str | None = None
    loaded: bool = False


def _check_labels(name: str, labels, n: int) -> torch.Tensor | None:
    if labels is None:
        return None
    labels = torch.as_tensor(labels)
    if labels.shape != (n,) or labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"{name} must be integer labels [{n}] (one per image); got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    return labels.long()


def budget_steps(budgets, n_images: int, batch_size: int, *, name: str = "budgets") -> dict[int, int]:
    """{budget: optimiser step} for budgets in images seen, as :func:`train` counts them: ceil(budget / batch), the
    batch clipped to the ``n_images`` of the set (the ``snapshot_steps`` that keep a snapshot after each budget)."""
    batch = min(check_int("batch_size", batch_size, minimum=1), check_int("n_images", n_images, minimum=1))
    return {int(b): math.ceil(check_int(f"{name}[i]", b, minimum=1) / batch) for b in budgets}


def _cpu_state(net: nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def train(images: torch.Tensor, config: EDMConfig, *, images_seen: int, seed: int,
          net: nn.Module | Callable[[int], nn.Module] | None = None, labels: torch.Tensor | None = None,
          label_dropout: float = 0.0, sources: torch.Tensor | None = None, num_classes: int = 0, num_sources: int = 0,
          loss: Callable = edm_loss, optimizer: str = "adam", weight_decay: float = 0.0,
          snapshot_steps: Sequence[int] = (), cache_dir=None, role: str | None = None, settings: dict | None = None,
          key: str | None = None, checkpoint=None, checkpoint_every: int = 200, device: str | None = None,
          precision: str = "fp32", progress: bool = False) -> Trained:
    # EDM Sec. 5 / Table 1 (preconditioning and loss), budget in images seen; the trainer is train_ensemble
    """Train one denoiser on uint8 ``images`` [N, C, H, W] (mapped onto :data:`PIXEL_RANGE`).

    Args:
        config: the optimiser settings (``batch_size``, ``lr``, ``warmup``, ``lr_decay``, ``ema_decay``,
            ``ema_rampup``) and, for ``net`` None,
            the network's (:meth:`EDMConfig.network`); with a given network or builder only the optimiser's are read.
        images_seen: the budget; steps = ceil(images_seen / batch), the batch clipped to N.
        seed: every draw (module docstring: from scratch the initial weights are the generator's first draw).
        net: None trains from scratch ``config.network(init_seed, device, num_sources=, num_classes=)``; a function
            ``init_seed -> network`` trains from scratch another network (e.g. MAD's DDPM U-Net); a module is
            trained in place from its weights (a fine-tune: pass a copy when the original must stay).
        labels: class labels [N] (``num_classes`` of them; the network's "no label" token replaces one with
            probability ``label_dropout``); sources: a second label [N] (CASD's source; never dropped).
        loss: ``loss(net, x0, generator=, y=[, s=])`` -> per-member losses (default :func:`edm_loss`, EDM Eq. 8).
        optimizer, weight_decay: ``"adam"`` or ``"adamw"`` (ReDiFine's fine-tune) on the trainable parameters.
        snapshot_steps: optimiser steps after which a frozen copy of the EMA network is kept (SIMS's budgets B).
        cache_dir, role, settings: with ``settings`` (everything but the data that changes the fit, as plain JSON),
            the key is :func:`cache_key` of ``role``, ``settings``, the images and the labels / sources given; with
            ``cache_dir`` too, the result is stored there (:func:`cached_fit`) and a later call with the same key
            and settings reads it instead of training (``loaded`` True). ``key``: another key for the file (one
            that already covers the data, as ReDiFine's M_0 keeps its name format).
        checkpoint, checkpoint_every: a file that keeps the training state every ``checkpoint_every`` steps and at
            the end (:func:`train_ensemble`): an interrupted call resumes from it with the same numbers (not with
            ``snapshot_steps``).
        device: where a network built here lives and trains (default CPU); a given network trains where it is.
        precision: ``"fp32"`` or ``"bf16"`` (the forward pass under bf16 autocast; a GPU option, part of the cache
            key when not fp32).
    """
    check_images("images", images)
    n = len(images)
    images_seen = check_int("images_seen", images_seen, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    labels, sources = _check_labels("labels", labels, n), _check_labels("sources", sources, n)
    label_dropout = check_interval("label_dropout", label_dropout, 0.0, 1.0)
    snapshot_steps = sorted({check_int("snapshot_steps[i]", s, minimum=1) for s in snapshot_steps})
    check_choice("precision", precision, PRECISIONS)
    if precision != "fp32" and settings is not None:
        settings = {**settings, "precision": precision}
    if snapshot_steps and checkpoint is not None:
        raise ValueError("snapshot_steps and checkpoint cannot be combined: the snapshots taken before an "
                         "interruption are not in the checkpoint; train without a checkpoint")
    if cache_dir is not None and (settings is None or role is None):
        raise ValueError("cache_dir needs role and settings (the fit's identity besides its data); got "
                         f"role={role!r}, settings={'None' if settings is None else '...'}")
    if isinstance(net, nn.Module):
        given, builder = net, None
        device = torch.device(device) if device is not None else next(net.parameters()).device
    else:
        device = resolve_device("device", "cpu" if device is None else device)
        given = None
        builder = net if net is not None else (
            lambda s: config.network(s, device, num_sources=num_sources, num_classes=num_classes))
    if key is None and settings is not None:
        key = cache_key(role or "fit", settings, images, *(a for a in (labels, sources) if a is not None))

    def fit() -> tuple[nn.Module, TrainStats, dict]:
        g = torch.Generator().manual_seed(seed)
        model = given if given is not None else builder(int(torch.randint(2**31, (1,), generator=g)))
        model.train()
        average = copy.deepcopy(model) if config.ema_decay > 0 else None
        kept = model if average is None else average
        snapshots, count, wanted = {}, [0], set(snapshot_steps)

        def after_step():  # a frozen copy of the EMA network at each asked step
            count[0] += 1
            if count[0] in wanted:
                snapshots[count[0]] = copy.deepcopy(kept).eval().requires_grad_(False)

        x = to_network_range(images).to(device)[None]  # [1, N, C, H, W]
        stats = train_ensemble(model, x, loss, samples_seen=images_seen, batch_size=config.batch_size, lr=config.lr,
                               labels=None if labels is None else labels.to(device)[None],
                               sources=None if sources is None else sources.to(device)[None],
                               cond_dropout=label_dropout, generator=g, optimizer=optimizer,
                               weight_decay=weight_decay, warmup=config.warmup, lr_decay=config.lr_decay, ema=average,
                               ema_decay=config.ema_decay, ema_rampup=config.ema_rampup, checkpoint=checkpoint,
                               checkpoint_every=checkpoint_every,
                               after_step=after_step if wanted else None, precision=precision,
                               progress=progress)
        out = model.eval() if average is None else average.eval().requires_grad_(False)
        return out, stats, snapshots

    if cache_dir is None:
        out, stats, snapshots = fit()
        return Trained(out, stats, snapshots, key, False)
    built = {}

    def build() -> dict:
        built["fit"] = fit()
        out, stats, snapshots = built["fit"]
        payload = {"state": _cpu_state(out), "stats": asdict(stats)}
        if snapshots:
            payload["snapshots"] = {int(k): _cpu_state(v) for k, v in snapshots.items()}
        return payload

    payload, loaded = cached_fit(cache_dir, role, settings, key, build)
    if not loaded:
        return Trained(*built["fit"], key, False)

    def restore(state: dict) -> nn.Module:
        skeleton = copy.deepcopy(given) if given is not None else builder(0)
        skeleton.load_state_dict(state)
        return skeleton.eval().requires_grad_(False)

    stats = TrainStats(**payload["stats"]) if isinstance(payload.get("stats"), dict) else None
    snapshots = {int(k): restore(v) for k, v in payload.get("snapshots", {}).items()}
    return Trained(restore(payload["state"]), stats, snapshots, key, True)


# ------------------------------------------------------------------------------------------------------- sample
def _predictors(net, guide, y, s):
    labels = {} if s is None else {"s": s}
    primary = lambda x, t: net(x, t, y, **labels)  # noqa: E731
    if guide is None:
        return primary, None
    if isinstance(guide, str):
        if guide != "cfg":
            raise ValueError(f"guide must be None, 'cfg' or a denoiser; got {guide!r}")
        return primary, lambda x, t: net(x, t, None, **labels)  # CFG: the "no label" branch of the same network
    return primary, lambda x, t: guide(x, t, y, **labels)


def sample(net: nn.Module | None, n: int, *, seed: int | torch.Generator, image_shape: Sequence[int],
           sampler: str = "heun", sigmas: torch.Tensor | None = None, schedule=None,
           labels: torch.Tensor | None = None, sources: int | None = None, guide=None, weight=0.0,
           predictors: Callable | None = None, sample_batch: int = 500, device=None,
           clip_x0: tuple[float, float] | None = None, precision: str = "fp32", progress: bool = False) -> torch.Tensor:
    # EDM Algorithm 1 (Heun; CASD Alg. 2, SIMS), Euler-ancestral (ReDiFine), DDPM (MAD); (1 + w) primary - w guide
    """n uint8 images [n, C, H, W] (CPU) of ``net`` from latents drawn by ``seed`` (an int, or a CPU generator that
    the draws then continue), ``sample_batch`` at a time.

    Args:
        net: the primary denoiser, called ``net(x, t, y[, s=])``; None when ``predictors`` builds the predictions.
        sampler: ``"heun"`` or ``"euler_ancestral"`` on the sigma grid ``sigmas``, or ``"ddpm"`` on ``schedule``
            (``clip_x0``: the data range the predicted x_0 is clipped to; ``progress``: its step bar).
        labels: class labels [n] (each chunk's slice is the y of every call) or None; sources: the second label every
            call gets (CASD samples with the real source, 0) or None.
        guide: None, ``"cfg"`` (the same network with the "no label" token) or another denoiser (SIMS's auxiliary
            model, autoguidance); weight: a number or a schedule ``weight(i, n)`` (w = 0: the primary alone, the
            guide never evaluated).
        predictors: ``predictors(y, s) -> (primary, guide)`` prediction functions for one chunk (y [1, B] or None,
            s [1, B] or None), for a method whose guided pair shares work or records it (SIMS's shared encoder,
            ReDiFine's |eps_c - eps_u|); replaces ``net`` and ``guide``.
        precision: ``"fp32"`` or ``"bf16"`` (network evaluations under bf16 autocast; the sampler's own steps stay
            float32; a GPU option).
    """
    n = check_int("n", n, minimum=1)
    check_choice("sampler", sampler, SAMPLERS)
    sample_batch = check_int("sample_batch", sample_batch, minimum=1)
    check_choice("precision", precision, PRECISIONS)
    if (net is None) == (predictors is None):
        raise ValueError("give exactly one of net and predictors")
    if sampler == "ddpm" and schedule is None:
        raise ValueError("sampler 'ddpm' needs schedule (a DDPMSchedule)")
    if sampler != "ddpm" and sigmas is None:
        raise ValueError(f"sampler {sampler!r} needs sigmas (a decreasing grid ending at 0)")
    if labels is not None:
        labels = torch.as_tensor(labels).long()
        if labels.shape != (n,):
            raise ValueError(f"labels must be [n] = [{n}] (one per image); got {tuple(labels.shape)}")
    if isinstance(seed, torch.Generator):
        g = seed
    else:
        g = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    if device is None:
        device = next(net.parameters()).device if net is not None and any(True for _ in net.parameters()) else "cpu"
    weight = weight if callable(weight) else constant_weight(weight)
    shape = tuple(int(v) for v in image_shape)
    chunks = []
    for start in range(0, n, sample_batch):
        b = min(sample_batch, n - start)
        y = None if labels is None else labels[start:start + b].to(device)[None]  # [1, B]
        s = None if sources is None else torch.full((1, b), int(sources), dtype=torch.int64, device=device)
        latents = torch.randn((1, b) + shape, generator=g).to(device)  # [1, B, C, H, W]
        primary, guide_fn = predictors(y, s) if predictors is not None else _predictors(net, guide, y, s)
        with torch.no_grad(), autocast(precision, device):
            if sampler == "heun":
                x = edm_heun_sampler(primary, latents, sigmas, guide=guide_fn, weight=weight)
            elif sampler == "euler_ancestral":
                x = euler_ancestral_sampler(primary, latents, sigmas, guide=guide_fn, weight=weight, generator=g)
            else:
                x = ddpm_ancestral_sampler(primary, latents, schedule, guide=guide_fn, weight=weight, generator=g,
                                           clip_x0=clip_x0, progress=progress)
        chunks.append(to_uint8_images(x[0]))
    return torch.cat(chunks)


# ----------------------------------------------------------------------------------------------------- evaluate
def evaluate(held: "HeldOutMetrics", images: torch.Tensor, labels: torch.Tensor | None = None, *,
             protocol: bool = False, real: dict | None = None) -> dict:
    """The metrics of uint8 ``images`` against ``held``'s reference: FID, precision, recall (``protocol``: also KID,
    density, coverage; :meth:`HeldOutMetrics.protocol`), ``n_fake`` and ``n_real``; with ``labels`` [n] the
    :func:`madlib.metrics.images.class_readouts` of the images; with ``real`` (the reference's own) those as
    ``real_accuracy`` and ``real_mean_intensity``. With labels and real, the keys and values of
    :func:`madlib.metrics.image_metrics` (tested), from reference features computed once."""
    from madlib.metrics.images import class_readouts

    out = dict(held.protocol(images) if protocol else held(images))
    out |= {"n_fake": int(images.shape[0]), "n_real": held.n_real}
    if labels is not None:
        out |= class_readouts(images, labels, held.lenet)
    if real is not None:
        out |= {f"real_{k}": v for k, v in real.items()}
    return out
