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
import functools
import os
from dataclasses import dataclass
from pathlib import Path
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
           "network_evaluations", "check_spec", "base_model", "cached_samples", "auxiliary_set", "chain", "models",
           "run_grid", "run_alignment", "run_cells", "run_groups", "choose_cell", "denoiser_alignment", "FigureSetting",
           "figure_setting"]

PIXEL_RANGE = core.PIXEL_RANGE


@dataclass(frozen=True)
class SIMSConfig(EDMConfig):
    """The network and the training settings the base model and the auxiliary fine-tune share (S:339: "the same
    training hyperparameters"), and the Heun sampler's sigma grid (EDM Eq. 5): :class:`EDMConfig` with a warm-up
    and ``num_classes`` (0: class-unconditional, as SIMS's CIFAR-10 and FFHQ models; > 0: class-conditional, as its
    ImageNet models, sampled without CFG: every model of a SIMS chain sees the same class labels)."""

    warmup: int = 5000
    num_classes: int = 0

    def __post_init__(self):
        super().__post_init__()
        check_int("num_classes", self.num_classes, minimum=0)


def balanced_labels(n: int, config: SIMSConfig) -> torch.Tensor | None:
    """The class labels a conditional SIMS model samples with: 0, 1, ..., C - 1, 0, 1, ... (n of them; every prefix
    is as balanced as it can be); None for an unconditional one."""
    return torch.arange(check_int("n", n, minimum=0)) % config.num_classes if config.num_classes else None


@dataclass
class SIMSModel:
    """A trained denoiser D(x; sigma) (:class:`EDMPrecond` around a U-Net; the EMA weights), its images seen, its
    training stats (None when read from the cache) and its cache key (None when trained without settings)."""

    net: torch.nn.Module
    images_seen: int
    stats: TrainStats | None
    key: str | None = None


def network_evaluations(config: SIMSConfig, guided: bool, guide_from: int = 0) -> int:
    """Network evaluations per image of one Heun chain: 2 * steps - 1 (the last step has no correction), plus one
    auxiliary evaluation per base evaluation from step ``guide_from`` on when guided."""
    n = config.sample_steps
    per_step = [2] * (n - 1) + [1]
    return sum(per_step) + (sum(per_step[check_int("guide_from", guide_from, minimum=0):]) if guided else 0)


def _check_images(name: str, images: torch.Tensor, config: SIMSConfig) -> None:
    core.check_images(name, images, config.image_shape())


def _check_labels(name: str, labels, n: int, config: SIMSConfig) -> torch.Tensor | None:
    # a conditional model needs a label per image, an unconditional one none
    if not config.num_classes:
        if labels is not None:
            raise ValueError(f"{name} must be None for an unconditional config (num_classes = 0)")
        return None
    if labels is None:
        raise ValueError(f"{name} must give a class label per image for a conditional config (num_classes = "
                         f"{config.num_classes})")
    labels = torch.as_tensor(labels).long()
    if labels.shape != (n,) or (n and (int(labels.min()) < 0 or int(labels.max()) >= config.num_classes)):
        raise ValueError(f"{name} must be [{n}] class indices in [0, {config.num_classes}); got shape "
                         f"{tuple(labels.shape)}")
    return labels


def train_base(images: torch.Tensor, config: SIMSConfig, *, images_seen: int, seed: int, labels: torch.Tensor | None = None,
               device: str = "cpu", cache_dir: str | os.PathLike | None = None, progress: bool = False) -> SIMSModel:
    # SIMS Algorithm 1, step 1: train the base model on the real set D
    """An EDM denoiser trained from scratch on uint8 ``images`` [N, C, H, W] (:func:`madlib.diffusion.core.train`):
    class-unconditional, or with ``config.num_classes`` > 0 conditional on ``labels`` [N] (required then; no label
    dropout: the model is sampled without CFG).

    With ``cache_dir``, the EMA weights are kept in ``<cache_dir>/base-<key>.pt`` (:func:`madlib.diffusion.cache.cached_fit`:
    written atomically, keyed by the config, the budget, the seed, madlib's version and the images' bytes): a later
    call with the same inputs reads them instead of training (``stats`` is then None); any other input trains anew.
    """
    _check_images("images", images, config)
    labels = _check_labels("labels", labels, len(images), config)
    images_seen = check_int("images_seen", images_seen, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    device = resolve_device("device", device)
    from madlib import __version__

    settings = {"config": config.settings(), "images_seen": images_seen, "seed": seed, "madlib": __version__}
    fit = core.train(images, config, images_seen=images_seen, seed=seed, labels=labels, num_classes=config.num_classes,
                     cache_dir=cache_dir, role="base", settings=settings, device=device, progress=progress)
    return SIMSModel(fit.net, images_seen, None if fit.loaded else fit.stats, fit.key)


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
    """n uint8 images [n, C, H, W] (CPU) of the SIMS model, deterministic given ``seed`` (its latents); a conditional
    model samples the classes :func:`balanced_labels` (image i has class i mod C) without CFG.

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
        pair = SharedEncoderPair(base.net, aux.net)  # one encoder pass for both models per step
        primary, guide, predictors = None, None, lambda y, s: pair.predictors(y)
    weight = interval_weight(w, guide_from) if guide_from else constant_weight(w)
    return core.sample(primary, n, seed=seed, image_shape=config.image_shape(), labels=balanced_labels(n, config),
                       sigmas=config.sigmas(), guide=guide, weight=weight, predictors=predictors,
                       sample_batch=config.sample_batch, device=device)


def synthesize(base: SIMSModel, n: int, config: SIMSConfig, *, seed: int, device: str = "cpu") -> torch.Tensor:
    # SIMS Algorithm 1, step 2: the internal synthetic set S of n_s samples of the base model
    """n uint8 samples [n, C, H, W] of the base model (Heun, w = 0); a conditional model's are of the classes
    :func:`balanced_labels` (n, config)."""
    return sims_sample(base, None, 0.0, n, config, seed=seed, device=device)


def train_auxiliary(base: SIMSModel, synthetic: torch.Tensor, config: SIMSConfig, *, budgets: Sequence[int],
                    seed: int, device: str = "cpu", trainable: Callable[[torch.nn.Module], None] | None = None,
                    labels: torch.Tensor | None = None, cache_dir: str | os.PathLike | None = None,
                    progress: bool = False) -> dict[int, SIMSModel]:
    # SIMS Algorithm 1, step 3: fine-tune a copy of the base model on S only, for budget B (images seen)
    """{B: auxiliary model after B images seen} for every B of ``budgets``, from one fine-tune of a copy of the
    base model on the uint8 ``synthetic`` set, with the base model's training settings (fresh optimiser, warm-up
    and EMA started at the base weights). The base model is left untouched. ``trainable(net)`` may freeze part of
    the copy before it trains (:func:`freeze_encoder`). A conditional config trains on ``labels`` (default: the
    classes :func:`synthesize` drew the set with, :func:`balanced_labels`). With ``cache_dir`` (and a base read or written with one, so
    that it has a key), the fine-tune and its snapshots are kept in ``<cache_dir>/auxiliary-<key>.pt``, keyed by the
    base's key, the settings, the budgets, ``trainable``'s name and the synthetic set's bytes."""
    _check_images("synthetic", synthetic, config)
    if labels is None and config.num_classes:
        labels = balanced_labels(len(synthetic), config)
    labels = _check_labels("labels", labels, len(synthetic), config)
    budgets = sorted({check_int("budgets[i]", b, minimum=1) for b in budgets})
    if not budgets:
        raise ValueError("budgets must name at least one budget B (images seen)")
    device = resolve_device("device", device)
    if cache_dir is not None and base.key is None:
        raise ValueError("cache_dir needs a base model with a cache key (train_base with cache_dir); got base.key None")
    net = copy.deepcopy(base.net).train().requires_grad_(True)
    if trainable is not None:
        trainable(net)
    batch = min(config.batch_size, len(synthetic))
    steps = core.budget_steps(budgets, len(synthetic), config.batch_size)
    settings = None
    if cache_dir is not None:
        from madlib import __version__

        settings = {"base": base.key, "config": config.settings(), "budgets": budgets, "seed": seed,
                    "trainable": getattr(trainable, "__name__", "all"), "madlib": __version__}
    fit = core.train(synthetic, config, images_seen=budgets[-1], seed=seed, net=net, labels=labels, role="auxiliary",
                     settings=settings, cache_dir=cache_dir, snapshot_steps=list(steps.values()), device=device,
                     progress=progress)
    return {b: SIMSModel(fit.snapshots[steps[b]], steps[b] * batch, fit.stats,
                         None if fit.key is None else f"{fit.key}@{b}") for b in budgets}


def freeze_encoder(net: torch.nn.Module) -> None:
    """Train only the decoder half of an :class:`EDMPrecond` U-Net (SIMS App. A, Fig. 8): the time MLP, stem,
    encoder levels and middle block keep the base model's weights, so base and auxiliary model share the encoder's
    activations for a given (x, sigma)."""
    unet = net.net if isinstance(net, EDMPrecond) else net
    if not isinstance(unet, UNet):
        raise ValueError(f"net must be a UNet or an EDMPrecond around one; got {type(unet).__name__}")
    for module in (unet.time_mlp, unet.class_emb, unet.stem, unet.down, unet.downsample, unet.middle,
                   unet.middle_attention):
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
        for part in ("time_mlp", "class_emb", "stem", "down", "downsample", "middle", "middle_attention"):
            a, b = getattr(unets[0], part), getattr(unets[1], part)
            if (a is None) != (b is None) or (a is not None and not all(
                    torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))):
                raise ValueError(f"aux must share the base model's encoder ({part} differs): fine-tune it with freeze_encoder")
        self._last = None

    def _raw(self, h: torch.Tensor, c_noise, y=None) -> torch.Tensor:
        # h [1, B, C, H, W] -> [2, B, C, H, W]: the base and the auxiliary network outputs F
        base, aux = self.base.net, self.aux.net
        flat = h.reshape((-1,) + tuple(h.shape[-3:]))
        emb = base.embed(h, c_noise, y)
        features = base.encode(flat, emb)
        return torch.stack([base.decode(*features, emb), aux.decode(*features, emb)]).reshape((2,) + tuple(h.shape[1:]))

    def predictors(self, y=None):
        """(base, aux) prediction functions for class labels ``y`` (None: unconditional)."""
        def base_prediction(x, sigma):
            both = edm_denoise(self._raw, x, sigma, y, self.base.sigma_data)  # [2, B, ...]: c_skip x + c_out F
            self._last = (x, sigma, both[1:])
            return both[:1]

        def aux_prediction(x, sigma):
            if self._last is not None and self._last[0] is x and self._last[1] is sigma:
                return self._last[2]
            return self.aux(x, sigma, y)

        return base_prediction, aux_prediction


def sims_grid(base: SIMSModel, auxes: dict[int, SIMSModel], ws: Sequence[float], n: int, config: SIMSConfig,
              measure: Callable[[torch.Tensor], dict], *, seed: int, device: str = "cpu",
              guide_from: int = 0, shared_encoder: bool = False) -> dict[str, np.ndarray]:
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
                                               guide_from=guide_from, shared_encoder=shared_encoder and w != -1)))
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


# --- The image protocol (issue 26): one real set, cached models, plain-data cells for madlib.sweep ------------------
#
# Every SIMS image figure trains its base models on the first ``n_real`` class-balanced images of the dataset (the
# protocol's pool, the same D for every seed: seeds vary training and sampling only) and reads every model against
# every other real image (:func:`madlib.metrics.images.reference_protocol`). A *spec* is the plain dict that names
# one chain of models, base -> synthetic set -> auxiliary fine-tune with snapshots along B:
#
#   settings      SIMSConfig fields (plain)          dataset, n_real, base_images, seed
#   pollution     |D_p| / |D| of base samples added to D (SIMS-3's G2; 0: the clean base G1)
#   n_synthetic   n_s, the auxiliary model's set: the first n_s of ``synthetic_pool`` base samples (SIMS-5's sizes)
#   budgets       the fine-tune's snapshots B (images seen); shift: None, or {"group", "share", "n_pool"} (SIMS-4)
#   trainable     "all" or "decoder" (:func:`freeze_encoder`, sampled with the shared encoder)
#   device, k, cache_dir
#
# Each model is cached on disk by its settings and data, so a figure that runs after another reads its models.

TRAINABLE = {"all": None, "decoder": freeze_encoder}
SPEC_DEFAULTS = {"pollution": 0.0, "n_synthetic": None, "synthetic_pool": None, "budgets": (), "shift": None,
                 "trainable": "all", "auxiliary_data": "synthetic", "device": "cpu", "k": 5, "cache_dir": None}
AUXILIARY_DATA = ("synthetic", "real")  # what the fine-tune of step 3 trains on: S (SIMS), or D itself (the plateau control)
SPEC_REQUIRED = ("settings", "dataset", "n_real", "base_images", "seed")


def check_spec(spec: dict) -> dict:
    """``spec`` with its defaults filled in, or ValueError naming the missing or unknown key (before any compute)."""
    missing = [k for k in SPEC_REQUIRED if k not in spec]
    unknown = sorted(set(spec) - set(SPEC_REQUIRED) - set(SPEC_DEFAULTS))
    if missing or unknown:
        raise ValueError(f"spec needs {list(SPEC_REQUIRED)} and accepts {sorted(SPEC_DEFAULTS)}; "
                         f"missing {missing}, unknown {unknown}")
    out = {**SPEC_DEFAULTS, **spec}
    out["n_synthetic"] = check_int("n_synthetic", out["n_synthetic"] if out["n_synthetic"] is not None else out["n_real"], minimum=1)
    out["synthetic_pool"] = check_int("synthetic_pool", out["synthetic_pool"] or out["n_synthetic"], minimum=out["n_synthetic"])
    if out["trainable"] not in TRAINABLE:
        raise ValueError(f"trainable must be one of {sorted(TRAINABLE)}; got {out['trainable']!r}")
    if out["auxiliary_data"] not in AUXILIARY_DATA:
        raise ValueError(f"auxiliary_data must be one of {list(AUXILIARY_DATA)}; got {out['auxiliary_data']!r}")
    if out["auxiliary_data"] == "real" and out["shift"] is not None:
        raise ValueError("auxiliary_data 'real' fine-tunes on D itself and takes no shift; got a shift")
    out["pollution"] = float(out["pollution"])
    if not out["pollution"] >= 0:
        raise ValueError(f"pollution must be a share >= 0 of n_real; got {out['pollution']}")
    out["budgets"] = sorted({check_int("budgets[i]", b, minimum=1) for b in out["budgets"]})
    return out


def _protocol(spec: dict):
    from madlib.metrics.images import reference_protocol

    return reference_protocol(spec["dataset"], spec["settings"]["image_size"], spec["n_real"], None,
                              spec["device"], spec["k"])


def cached_samples(model: SIMSModel, n: int, config: SIMSConfig, seed: int, *, cache_dir=None,
                   device: str = "cpu") -> torch.Tensor:
    """n uint8 Heun samples of ``model`` (w = 0) drawn with ``seed``, kept in ``cache_dir`` beside the model (keyed by
    its key, n, seed and the sampler) when both are given."""
    from madlib.diffusion.cache import cached_images

    if model.key is None:
        cache_dir = None  # a model made outside the cache has no identity to key its samples by
    settings = {"model": model.key, "n": int(n), "seed": int(seed),
                "sampler": [config.sample_steps, config.sigma_min, config.sigma_max, config.rho]}
    return cached_images(cache_dir, "samples", settings, lambda: synthesize(model, n, config, seed=seed, device=device))


def base_model(spec: dict, *, progress: bool = False) -> SIMSModel:
    # SIMS Algorithm 1, step 1 on the protocol's real set; SIMS-3's G2 trains on D plus |D_p| samples of G1
    """The base model of ``spec`` (:func:`check_spec`), trained or read from the cache."""
    spec = check_spec(spec)
    config = SIMSConfig(**spec["settings"])
    real, labels = _protocol(spec)[0].first(spec["n_real"])
    if spec["pollution"] > 0:
        g1 = base_model({**spec, "pollution": 0.0})
        n_p = round(spec["pollution"] * spec["n_real"])
        polluted = cached_samples(g1, n_p, config, spec["seed"] + 200, cache_dir=spec["cache_dir"], device=spec["device"])
        real = torch.cat([real, polluted])
        labels = torch.cat([labels, torch.arange(n_p) % max(config.num_classes, 1)])
    return train_base(real, config, images_seen=spec["base_images"], seed=spec["seed"], device=spec["device"],
                      labels=labels if config.num_classes else None, cache_dir=spec["cache_dir"], progress=progress)


def auxiliary_set(spec: dict, base: SIMSModel) -> torch.Tensor:
    # SIMS Algorithm 1, step 2 (n_s samples of the base); SIMS-4: a subset with the complement of the target share
    """The auxiliary model's training set: the first ``n_synthetic`` of ``synthetic_pool`` base samples, or with
    ``shift`` {"group": digits, "share": the group's share, "n_pool": pool size} a :func:`group_shifted_subset` of
    a pool classified by the project's LeNet."""
    spec = check_spec(spec)
    config = SIMSConfig(**spec["settings"])
    shift = spec["shift"]
    n_pool = spec["synthetic_pool"] if shift is None else check_int("shift['n_pool']", shift["n_pool"], minimum=spec["n_synthetic"])
    pool = cached_samples(base, n_pool, config, spec["seed"] + 1, cache_dir=spec["cache_dir"], device=spec["device"])
    if shift is None:
        return pool[:spec["n_synthetic"]]
    if SIMSConfig(**spec["settings"]).num_classes:
        raise ValueError("spec['shift'] needs an unconditional config (num_classes = 0): a conditional model's group share "
                         "is set by the labels it samples")
    from madlib.metrics import predicted_classes

    in_group = torch.isin(predicted_classes(pool, _protocol(spec)[1]), torch.as_tensor(list(shift["group"])))
    return group_shifted_subset(pool, in_group, shift["share"], spec["n_synthetic"], np.random.default_rng(spec["seed"] + 102))[0]


def chain(spec: dict, *, progress: bool = False) -> tuple[SIMSModel, torch.Tensor, dict[int, SIMSModel]]:
    """(base, the auxiliary model's training set, {B: auxiliary model}) of ``spec``: Algorithm 1, steps 1-3, each
    step cached. With ``spec["auxiliary_data"] = "real"`` step 3 fine-tunes on D (with its labels) instead of S:
    the base trained further on real data with the auxiliary model's recipe (:func:`run_plateau`)."""
    spec = check_spec(spec)
    if not spec["budgets"]:
        raise ValueError("spec['budgets'] must name at least one budget B (images seen)")
    config = SIMSConfig(**spec["settings"])
    base = base_model(spec, progress=progress)
    if spec["auxiliary_data"] == "real":  # project control (issue 26): the same fine-tune on D, to see the base's plateau
        data, labels = _protocol(spec)[0].first(spec["n_real"])
        labels = labels if config.num_classes else None
    else:
        data, labels = auxiliary_set(spec, base), None
    auxes = train_auxiliary(base, data, config, budgets=spec["budgets"], seed=spec["seed"] + 2, device=spec["device"],
                            trainable=TRAINABLE[spec["trainable"]], labels=labels, cache_dir=spec["cache_dir"],
                            progress=progress)
    return base, data, auxes


def models(spec: dict, *, progress: bool = False) -> tuple[SIMSModel, dict[int, SIMSModel]]:
    """(base, {B: auxiliary model}) of ``spec`` (:func:`chain` without the set)."""
    base, _, auxes = chain(spec, progress=progress)
    return base, auxes


PROTOCOL_KEYS = ("fid", "kid", "precision", "recall", "density", "coverage")


def protocol_metrics(held, images: torch.Tensor) -> dict[str, float]:
    """The :data:`PROTOCOL_KEYS` of ``held.protocol(images)`` (one pass over the features)."""
    read = held.protocol(images)
    return {k: read[k] for k in PROTOCOL_KEYS}


def run_grid(*, spec: dict, ws: Sequence[float], n: int, latent_seed: int, guide_from: int = 0) -> dict:
    """A :func:`madlib.sweep.sweep` cell: the protocol's metrics (FID, KID, precision, recall, density, coverage) of
    n samples at every (B, w) of ``spec['budgets']`` x ``ws``, all from the latents of ``latent_seed`` (paired);
    w = 0 is the base model. Returns {"grid": {metric: [len(budgets), len(ws)]}, "budgets", "ws", "seconds"}."""
    import time

    spec = check_spec(spec)
    ws = [check_sims_weight(f"ws[{i}]", w) for i, w in enumerate(ws)]
    clock = time.perf_counter()
    base, auxes = models(spec)
    held = _protocol(spec)[2]
    trained = time.perf_counter() - clock
    grid = sims_grid(base, auxes, ws, n, SIMSConfig(**spec["settings"]), functools.partial(protocol_metrics, held), seed=latent_seed,
                     device=spec["device"], guide_from=guide_from, shared_encoder=spec["trainable"] == "decoder")
    return {"grid": grid, "budgets": spec["budgets"], "ws": ws,
            "seconds": {"models": trained, "grid": time.perf_counter() - clock - trained}}


def run_alignment(*, spec: dict, n: int, seed: int) -> dict:
    """A :func:`madlib.sweep.sweep` cell: :func:`denoiser_alignment` of every budget's auxiliary model of ``spec`` on
    the first n reference images (never trained on) at the sampler's noise levels (its sigmas but the final 0),
    with noise drawn by ``seed``. Returns {"cosine", "w_star", "mse_base", "mse_reduction": [len(budgets),
    len(sigmas)], "sigmas"}."""
    spec = check_spec(spec)
    config = SIMSConfig(**spec["settings"])
    base, auxes = models(spec)
    protocol = _protocol(spec)[0]
    real = protocol.reference[:check_int("n", n, minimum=1)].to(spec["device"])
    labels = protocol.reference_labels[:n] if config.num_classes else None
    sigmas = config.sigmas()[:-1].tolist()
    rows = [denoiser_alignment(base, auxes[b], real, sigmas, seed=seed, labels=labels) for b in spec["budgets"]]
    return {**{k: np.array([r[k] for r in rows]) for k in ("cosine", "w_star", "mse_base", "mse_reduction")},
            "sigmas": np.array(sigmas)}


def run_cells(*, spec: dict, cells: Sequence[dict], n: int, latent_seed: int, keep: int = 0) -> dict:
    """A :func:`madlib.sweep.sweep` cell: the protocol's metrics of n samples of the base model (w = 0) and of each
    cell {"B", "w"[, "guide_from"]} of ``spec``'s models, all from the latents of ``latent_seed``; the first ``keep``
    images of each (uint8) for the sample archive. Returns {"base": metrics, "cells": [metrics], "images": {"base",
    "cell<i>"}, "seconds"}."""
    import time

    spec = check_spec(spec)
    config = SIMSConfig(**spec["settings"])
    base, auxes = models(spec) if cells else (base_model(spec), {})  # the base alone needs no auxiliary model
    held = _protocol(spec)[2]
    clock = time.perf_counter()
    shared = spec["trainable"] == "decoder"
    images = {"base": sims_sample(base, None, 0.0, n, config, seed=latent_seed, device=spec["device"])}
    for i, cell in enumerate(cells):
        if cell["B"] not in auxes:
            raise ValueError(f"cells[{i}]['B'] must be one of spec['budgets'] {spec['budgets']}; got {cell['B']}")
        images[f"cell{i}"] = sims_sample(base, auxes[cell["B"]], cell["w"], n, config, seed=latent_seed,
                                         guide_from=cell.get("guide_from", 0), shared_encoder=shared and cell["w"] != -1,
                                         device=spec["device"])
    read = {name: protocol_metrics(held, x) for name, x in images.items()}
    return {"base": read["base"], "cells": [read[f"cell{i}"] for i in range(len(cells))],
            "images": {name: x[:keep] for name, x in images.items()}, "seconds": time.perf_counter() - clock}


def run_plateau(*, spec: dict, images: int, n: int, latent_seed: int) -> dict:
    # project control (issue 26): does the base still improve with more real training?
    """A :func:`madlib.sweep.sweep` cell: the protocol's metrics of n samples of ``spec``'s base model and of the
    base fine-tuned on D itself for ``images`` more images seen (the auxiliary model's recipe, ``auxiliary_data``
    "real"), both from the latents of ``latent_seed`` (paired). Returns {"base": metrics, "continued": metrics}."""
    images = check_int("images", images, minimum=1)
    read = run_cells(spec={**check_spec(spec), "budgets": [images], "auxiliary_data": "real"},
                     cells=[{"B": images, "w": -1.0}], n=n, latent_seed=latent_seed)
    return {"base": read["base"], "continued": read["cells"][0], "seconds": read["seconds"]}


BAR_RATIO = 1.5  # issue 26: a base within 1.5x the real-vs-real floor is near it
PLATEAU_SHARE = 0.142  # half the smallest relative gain SIMS reports (28.4%, CIFAR-10): more training must not reach it


def base_bar(base_fid, floor_fid: float, continued_fid=None) -> dict:
    # project choice (issue 26): near the floor, or at the plateau that further real training cannot lift
    """The keywords of the base-model bar's :class:`madlib.figures.Precondition` from per-seed FIDs on the report
    latents: met when the mean base FID is at most :data:`BAR_RATIO` x the real-vs-real floor, or (``continued_fid``
    from :func:`run_plateau` on the same latents) when training the base further on D removes on average less than
    :data:`PLATEAU_SHARE` of its excess FID over the floor: a base short of the floor but at its plateau cannot hand
    SIMS a gain that more training alone would give."""
    base = np.asarray(base_fid, float)
    near = bool(base.mean() <= BAR_RATIO * floor_fid)
    measured = {"base_fid": base, "floor": floor_fid, "fid_max": BAR_RATIO * floor_fid, "near_floor": near}
    requirement = (f"mean base FID over seeds (report latents) <= {BAR_RATIO} x the real-vs-real floor at the same sample size, "
                   f"or the base at its plateau: the same fine-tune on D removes on average < {PLATEAU_SHARE} of its excess "
                   "FID over the floor (issue 26; project choice)")
    plateau = False
    if continued_fid is not None:
        continued = np.asarray(continued_fid, float)
        if continued.shape != base.shape:
            raise ValueError(f"continued_fid must hold one FID per seed like base_fid {base.shape}; got {continued.shape}")
        share = (base - continued) / np.maximum(base - floor_fid, 1e-12)
        plateau = bool(share.mean() < PLATEAU_SHARE)
        measured.update(continued_fid=continued, excess_removed_by_more_training=share, at_plateau=plateau)
    return {"name": "base-model bar", "requirement": requirement, "met": near or plateau, "measured": measured}


def run_groups(*, spec: dict, ws: Sequence[float], n: int, latent_seed: int, group: Sequence[int], per_group: int,
               keep: int = 0) -> dict:
    """A :func:`madlib.sweep.sweep` cell for SIMS-4 (Sec. 4.3): at each w, n samples of ``spec``'s SIMS model at its
    one budget, the share the project's LeNet puts in ``group``, and each group's FID and KID on its first
    ``per_group`` samples against the reference images of that group (a fixed count at every w, so FID's
    small-sample bias is the same in every cell; NaN where a group has fewer). Returns {"share": [W], "fid" /
    "kid": {"group" / "rest": [W]}, "count": {...}, "images": {w: (uint8 [keep], in-group [keep])},
    "auxiliary_set_share", "real_share"} (the last two by the same classifier, on the auxiliary set and on D)."""
    from madlib.metrics import predicted_classes
    from madlib.metrics.images import HeldOutMetrics

    spec = check_spec(spec)
    if len(spec["budgets"]) != 1:
        raise ValueError(f"spec['budgets'] must hold one budget for run_groups; got {spec['budgets']}")
    per_group = check_int("per_group", per_group, minimum=2)
    config = SIMSConfig(**spec["settings"])
    base, aux_set, auxes = chain(spec)
    protocol, lenet, _ = _protocol(spec)
    group_t = torch.as_tensor(list(group))
    in_ref = torch.isin(protocol.reference_labels, group_t)
    held = {"group": HeldOutMetrics(protocol.reference[in_ref], lenet, k=spec["k"]),
            "rest": HeldOutMetrics(protocol.reference[~in_ref], lenet, k=spec["k"])}
    share_of = lambda x: float(torch.isin(predicted_classes(x, lenet), group_t).double().mean())  # noqa: E731 - by the classifier
    out = {"share": [], "fid": {"group": [], "rest": []}, "kid": {"group": [], "rest": []},
           "count": {"group": [], "rest": []}, "images": {}, "auxiliary_set_share": share_of(aux_set),
           "real_share": share_of(protocol.first(spec["n_real"])[0])}
    for w in ws:
        images = sims_sample(base, auxes[spec["budgets"][0]], w, n, config, seed=latent_seed, device=spec["device"])
        inside = torch.isin(predicted_classes(images, lenet), group_t)
        out["share"].append(float(inside.double().mean()))
        for part, mask in (("group", inside), ("rest", ~inside)):
            chosen = images[mask][:per_group]
            out["count"][part].append(int(mask.sum()))
            read = held[part].protocol(chosen) if len(chosen) == per_group else {"fid": float("nan"), "kid": float("nan")}
            out["fid"][part].append(read["fid"])
            out["kid"][part].append(read["kid"])
        out["images"][f"{w:g}"] = (images[:keep], inside[:keep].long())
    return out


def choose_cell(fid: np.ndarray, budgets: Sequence[int], ws: Sequence[float]) -> tuple[int, float]:
    """(B, w) of lowest mean FID over seeds among the guided cells (w > 0) of selection grids fid [S, B, W]: the
    choice that every report of it must read on other latents (SIMS selects on one set of seeds and recomputes)."""
    fid = np.asarray(fid, float)
    if fid.ndim != 3 or fid.shape[1:] != (len(budgets), len(ws)):
        raise ValueError(f"fid must be [seeds, {len(budgets)} budgets, {len(ws)} ws]; got {fid.shape}")
    guided = [j for j, w in enumerate(ws) if w > 0]
    if not guided:
        raise ValueError(f"ws must hold a guidance weight > 0; got {list(ws)}")
    b, j = np.unravel_index(np.nanargmin(fid.mean(0)[:, guided]), (len(budgets), len(guided)))
    return int(budgets[b]), float(ws[guided[j]])


@torch.no_grad()
def denoiser_alignment(base: SIMSModel, aux: SIMSModel, images: torch.Tensor, sigmas: Sequence[float], *, seed: int,
                       labels: torch.Tensor | None = None) -> dict:
    # project choice (issue 26): SIMS's premise in an exact quantity, the denoisers' errors on held-out real images
    """How the auxiliary model's difference from the base relates to the base's own error, at each noise level.

    For real images x0 (uint8, never trained on) and noise n ~ N(0, I) drawn by ``seed``: the base's error
    e = D_base(x0 + sigma n) - x0 and the guidance direction d = D_base - D_aux at the same input, so that SIMS's
    denoiser D_w = D_base + w d (Eq. 5) has the error e + w d. Per sigma: ``cosine`` = <d, e> / (|d| |e|) (negative:
    d points against the error, so w > 0 reduces it: SIMS's premise), ``w_star`` = -<d, e> / <d, d> (the w of least
    squared error), ``mse_base`` = mean |e|^2 per pixel and ``mse_reduction`` = the share of it that w_star removes."""
    x0 = core.to_network_range(images)
    config_labels = None if labels is None else torch.as_tensor(labels).long().to(x0.device)
    g = torch.Generator().manual_seed(int(seed))
    out = {"sigmas": [float(s) for s in sigmas], "cosine": [], "w_star": [], "mse_base": [], "mse_reduction": []}
    for sigma in sigmas:
        x = x0 + float(sigma) * torch.randn(x0.shape, generator=g).to(x0.device)
        y = None if config_labels is None else config_labels[None]
        d_base = base.net(x[None], float(sigma), y)[0]
        e, d = (d_base - x0).flatten(1), (d_base - aux.net(x[None], float(sigma), y)[0]).flatten(1)
        ed, dd, ee = (e * d).sum(), (d * d).sum(), (e * e).sum()
        w = float(-ed / dd) if dd > 0 else 0.0
        out["cosine"].append(float(((e * d).sum(1) / (e.norm(dim=1) * d.norm(dim=1)).clamp_min(1e-12)).mean()))
        out["w_star"].append(w)
        out["mse_base"].append(float(ee / e.numel()))
        out["mse_reduction"].append(float(1 - ((e + w * d) ** 2).sum() / ee) if ee > 0 else 0.0)
    return out


@dataclass
class FigureSetting:
    """What every SIMS image figure reads before its cells (:func:`figure_setting`)."""

    config: SIMSConfig
    cache: Path  # trained models and finished cells, shared by every SIMS image figure
    protocol: object  # :class:`madlib.metrics.images.ProtocolSets`: D and the reference
    lenet: torch.nn.Module
    held: object  # :class:`madlib.metrics.images.HeldOutMetrics` of the reference
    floor: dict  # real-vs-real at ``eval_samples``
    seeds: list[int]  # training seeds
    chain: dict  # the keys of a spec (:func:`check_spec`) shared by every seed: {**chain, "seed": s, ...}
    lane_options: dict  # :func:`madlib.sweep.sweep` keywords: lanes, the cells' folder, progress


def figure_setting(*, seed: int, device: str, lanes: int, dataset: str, cache_dir, image_size: int, n_real: int,
                   base_images: int, base_channels: int, batch_size: int, lr: float, warmup: int, ema_decay: float,
                   ema_rampup: float, sample_steps: int, n_synthetic: int, eval_samples: int, n_seeds: int,
                   num_classes: int = 0, progress: bool = False) -> FigureSetting:
    # project protocol (issue 26): one real set D, every model read against the rest on eval_samples samples
    """The setting of a SIMS image figure, from its notebook parameters (same names): the models' settings, the
    cache (``cache_dir``, default ``build/cache/sims`` of the repository), the protocol's sets with the project's
    LeNet and the reference metrics, the floor at ``eval_samples`` (real images drawn with seed + 7), the
    ``n_seeds`` training seeds from ``seed``, and the chain every spec shares."""
    from madlib.figures.record import repo_root
    from madlib.metrics.images import reference_protocol

    if check_int("eval_samples", eval_samples, minimum=2) > n_real:
        raise ValueError(f"eval_samples must be at most n_real = {n_real} (the floor reads that many real images); "
                         f"got {eval_samples}")
    cache = Path(cache_dir) if cache_dir is not None else repo_root() / "build" / "cache" / "sims"
    config = SIMSConfig(image_size=image_size, base_channels=base_channels, batch_size=batch_size, lr=lr, warmup=warmup,
                        ema_decay=ema_decay, ema_rampup=ema_rampup, sample_steps=sample_steps, num_classes=num_classes)
    protocol, lenet, held = reference_protocol(dataset, image_size, n_real, None, device, 5)
    return FigureSetting(config=config, cache=cache, protocol=protocol, lenet=lenet, held=held,
                         floor=held.floor(protocol.pool_images, eval_samples, seed=seed + 7),
                         seeds=[seed + k for k in range(check_int("n_seeds", n_seeds, minimum=1))],
                         chain=dict(settings=config.settings(), dataset=dataset, n_real=n_real, base_images=base_images,
                                    n_synthetic=n_synthetic, device=device, cache_dir=str(cache)),
                         lane_options=dict(options={"lanes": lanes}, result_dir=cache / "cells", progress=progress))
