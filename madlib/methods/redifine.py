"""ReDiFine's Chain of Diffusion, ReDiFine itself, its diagnostics and the trait fit (RDF-4..RDF-7).

Reference: "Model Collapse in the Self-Consuming Chain of Diffusion Finetuning" (ReDiFine), Sec. 3
(Eq. 1-3), Sec. 4.2, Sec. 5, App. A-C, E, G (``../shared/papers/003_8ee2c13a5868339c.txt``).

The chain (Sec. 3.1)::

    M_{k+1} = Finetune(M_0, D_k, P)        (Eq. 1; always from the same M_0)
    D_{k+1} = Generate(M_{k+1}, P)          (Eq. 2; one image per prompt, fully synthetic)
    collapse rate = (FID_K - FID_1) / (K - 1)   (Eq. 3; FID_k between D_k and D_0, K = 6)

Here (project choices, the paper's Stable Diffusion being out of reach on CPUs):

- **M_0** (:func:`pretrain_m0`): a class-conditional U-Net (:class:`madlib.diffusion.unet.UNet`) pretrained on
  MNIST 5k with 10% label dropout, so that classifier-free guidance exists, cached on disk keyed by its
  settings (:func:`madlib.diffusion.core.train`, as every other network; the fine-tunes too, and
  :func:`generate_one_per_prompt` samples through :func:`madlib.diffusion.core.sample`). The objective is EDM's
  (Table 1 preconditioning and loss), because ReDiFine samples with Euler-ancestral ("Euler A", App. A.1
  Table 1) and the project's Euler-ancestral sampler runs on EDM's sigma grid
  (:data:`madlib.models.images.OBJECTIVES`); at 14x14, width 16, 120k images seen EDM reaches FID 4.9 against a
  floor of 3.1 (docs/calibration.md).
- **Prompts P** are the class labels of D_0, one per image, or (``pretrain_m0(prompts="attributes")``, the analogue
  of the paper's near-unique captions) the class plus the terciles of three image attributes (ink mass, slant,
  width; :func:`image_attributes`, terciles on M_0's training set), 10 x 27 = 270 prompts through the U-Net's second
  label (:class:`AttributePromptNet`; condition dropout drops both). **D_0** is another style of the same classes
  (scikit-learn's 8x8 digits upscaled, or MNIST dilated, blurred or pixelated, :func:`restyle`), never seen by M_0.
- **Finetune** (:func:`finetune_from_m0`): a LoRA adapter on the U-Net (rank 32, peft ``lora_alpha`` 8,
  AdamW; :mod:`madlib.diffusion.lora`) or full fine-tuning, with condition dropout p (ReDiFine: 0.2;
  the baseline: 0, App. A.1 Table 1 "Caption Dropout Rate 0.0"). Not reproduced: min-SNR weighting,
  gradient clipping, horizontal flips, weight decay (the EDM loss has its own weighting; digits are not
  flip-symmetric; decay would move the unused no-label embedding).
- **The unconditional branch without condition dropout.** With p = 0 the "no label" input never appears in
  training, so fine-tuning gives it no signal: the no-label embedding row gets zero gradients, but a
  shared adapter still changes the unconditional prediction as a side effect of the layers both branches
  share. In the paper the LoRA is active on the empty prompt too (kohya-ss) and a text-encoder LoRA trains
  as well (App. A), so ``untrained_uncond="shared"`` (default, issue 28) keeps the adapter on both branches;
  ``"m0"`` (the ablation) makes the unconditional branch M_0 exactly (:class:`BranchedDenoiser`), the reading
  of "update[s] both the conditional and unconditional scores" (Sec. 5) as "without condition drop the
  unconditional score stays the pretrained one". With the frozen branch CFG amplifies the style gap between
  M_0 and D_0 (:func:`guidance_decomposition` measures the style share). With p > 0 both branches are the
  fine-tuned network.
- **Generate** (:func:`generate_one_per_prompt`): Euler-ancestral with ``steps`` = 30, guided by
  CFG = 1 + w (``paper-targets.md``: total = uncond + CFG (cond - uncond)); a constant scale, or
  ReDiFine's decay s = s0 exp(-alpha t / T) (:func:`cfg_schedule`).
- **FID_k** on the project's LeNet features (trained on MNIST; :class:`madlib.metrics.HeldOutMetrics` of D_0),
  between D_k and D_0 (the same prompts), with the real-vs-real floors of :func:`real_floors`.

Diagnostics (App. G, :func:`chain_of_diffusion` records them per iteration): the norm of the difference
between the conditional and unconditional noise predictions per sampling step, |eps_c - eps_u| =
|D_c - D_u| / sigma per image (Fig. 38b; SD predicts noise, so the noise space is the paper's); the mean
radial power spectrum (Fig. 39a; :func:`madlib.metrics.radial_power_spectrum`); pixel-intensity
histograms in place of Fig. 38a's latent histograms; ReDiFine's high-frequency phenotype (App. D.2.1).

Claim readouts and preconditions (project choices shared by the ReDiFine figures): :func:`m0_quality` and
:func:`m0_bar` (M_0's CFG-1 samples: accuracy >= 0.85 and FID <= 2 x the real-vs-real floor on its held-out split);
:func:`iteration_one_bar` (FID_1 <= 3 x the floor: the first fine-tune is usable); the blank cap (:func:`blank_cap`:
the FID of an all-white set against D_0, where high-CFG chains end), :meth:`ChainResult.at_cap` (FID_k within 2% of
it, or half of D_k blank, :func:`blank_share`) and :func:`below_cap`; :func:`collapses` (a positive rate before a
ratio to it); :meth:`ChainResult.readouts` (power above radial frequency 0.25, pixel sd, extreme-pixel and blank
shares of D_0..D_K; :func:`seed_readouts` stacks them over seeds).

The CFG axis (issue 28): :func:`cfg_fid_sweep` (sample-only FID against CFG, e.g. of M_0),
:func:`iteration_one_sweep` (FID_1 against CFG after one fine-tune) and :func:`calibrated_high_cfg` (the baseline
"high CFG" = the largest CFG whose FID_1 is within 1.25 x the best); a collapse claim then needs FID_1 at that CFG
within the iteration-1 bar. Beside Eq. 3's rate, :func:`fid_auc` (area under FID_k); saturation is read on the
images (:meth:`ChainResult.saturated`: half the images blank or half the pixels white). :func:`calibrate_cfg_axis`
runs the sweeps and the rule on a figure's own D_0 and :func:`calibration_bar` is that precondition.

Trait fit (Sec. 4.2, Fig. 4b; :func:`fit_truncation_ratios`): the per-image phenotype (:func:`phenotype`) is the
absolute power above radial frequency r > 0.25 cycles/pixel (App. D.2.1 Eq. 14 with tau = 0.25, project
choice), the relative one (share of power above the paper's tau = 0.02; at 14x14 every non-zero frequency has
r >= 1/14 > tau, so 1 - (DC power / total power), a brightness readout) kept beside it; standardised by D_0's
mean and standard deviation (:func:`standardised_phenotype`); its mean over D_0..D_K is fitted with the
truncation recursion :func:`madlib.theory.traits.trait_recursion` from mu_0 = 0, sigma_G,0 = 1 and
sigma_E = 0.25 / 0.056 (the paper's ratio of sigma_E to sigma_G,0, App. D.2.2).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from madlib._checks import check_choice, check_int, check_interval
from madlib.data.images import balanced_index, load_images
from madlib.diffusion import core
from madlib.diffusion.cache import cache_path
from madlib.diffusion.config import EDMConfig
from madlib.diffusion.guidance import constant_weight, exponential_cfg_weight, w_from_cfg_scale
from madlib.diffusion.losses import EDMPrecond, edm_loss
from madlib.diffusion.schedules import edm_sigma_steps
from madlib.diffusion.training import TrainStats
from madlib.diffusion.unet import UNet
from madlib.figures.verdicts import Precondition
from madlib.sweep import source_digest, sweep

__all__ = ["PIXEL_RANGE", "SCHEDULES", "METHODS", "UNTRAINED_UNCOND", "PAPER_SIGMA_RATIO", "PretrainedM0",
           "FinetunedModel", "BranchedDenoiser", "ChainResult", "TraitFit", "pretrain_m0", "m0_cache_path",
           "finetune_from_m0", "cfg_schedule", "generate_one_per_prompt", "chain_of_diffusion", "weights_digest",
           "standardised_phenotype", "fit_truncation_ratios", "balanced_subset", "real_floors", "saturated_share",
           "BLANK_SD", "blank_share", "blank_cap", "seed_readouts", "m0_quality", "m0_bar", "iteration_one_bar",
           "collapses", "below_cap", "HF_CUTOFF", "RELATIVE_TAU", "PHENOTYPES", "phenotype", "white_share",
           "SATURATED_WHITE", "fid_auc", "guidance_decomposition", "cfg_fid_sweep", "iteration_one_sweep",
           "calibrated_high_cfg", "CALIBRATION_FACTOR", "BASELINE_RULES", "calibrate_cfg_axis", "calibration_bar",
           "PROMPT_KINDS", "ATTRIBUTES", "NUM_ATTRIBUTE_PROMPTS",
           "image_attributes", "attribute_cuts", "attribute_prompts", "AttributePromptNet", "prompt_classes",
           "D0_STYLES", "restyle", "ChainSetting", "chain_setting", "REDIFINE_AXES", "redifine_settings"]

PIXEL_RANGE = core.PIXEL_RANGE  # 0..255 maps linearly onto [-1, 1]
SCHEDULES = ("constant", "exponential", "linear")  # CFG scale over the sampling steps (ReDiFine Sec. 5, App. F.2)
METHODS = ("lora", "full")  # how M_0 is fine-tuned
UNTRAINED_UNCOND = ("shared", "m0")  # the unconditional branch when condition dropout is 0 (module docstring)
PAPER_SIGMA_RATIO = 0.25 / 0.056  # sigma_E / sigma_G,0 of ReDiFine App. D.2.2
BLANK_SD = 1.0  # an image whose pixel standard deviation is below one grey level is blank (:func:`blank_share`)
HF_CUTOFF = 0.25  # cycles/pixel: the absolute phenotype is the power at r > 0.25 (project choice, issue 28)
RELATIVE_TAU = 0.02  # App. D.2.1's tau, kept for the relative phenotype (share of power above tau)
PHENOTYPES = ("absolute", "relative")  # :func:`phenotype`
WHITE_MARGIN = 7  # a pixel within 7 grey levels of 255 is white (saturated; :func:`white_share`)
SATURATED_WHITE = 0.5  # a set whose pixels are at least half white is saturated (:meth:`ChainResult.saturated`)
CALIBRATION_FACTOR = 1.25  # baseline high CFG: the largest CFG with iteration-1 FID <= 1.25 x the best (project choice)


# --------------------------------------------------------------------------------------------------- M_0
@dataclass
class PretrainedM0:
    """M_0: the EMA denoiser D(x; sigma, y) (:class:`EDMPrecond` around a UNet; eval mode, frozen), the settings it
    was trained with, its cache file, the training seconds (of the run that made it) and whether it was loaded."""

    net: nn.Module
    settings: dict
    path: Path | None
    seconds: float
    cached: bool

    def prompts_for(self, images: torch.Tensor, labels) -> torch.Tensor:
        """The prompts [N] M_0 reads for images [N, C, H, W] of classes ``labels`` [N]: the labels (class prompts), or
        the codes class x 27 + :func:`attribute_prompts` with M_0's terciles (attribute prompts)."""
        labels = torch.as_tensor(labels).long()
        if self.settings.get("prompts", "class") == "class":
            return labels
        return labels * NUM_ATTRIBUTE_PROMPTS + attribute_prompts(images, self.settings["attribute_cuts"])


M0_ROLE = "redifine-m0"  # the cache role: files <cache_dir>/redifine-m0-<key>.pt


def _m0_settings(dataset, image_size, base_channels, channel_mults, images_seen, batch_size, lr, warmup,
                 label_dropout, ema_decay, seed, prompts="class") -> dict:
    images, labels = load_images(dataset, "train", size=image_size, dtype="uint8")
    data = hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()[:16]
    # v2: trained by madlib.diffusion.core.train (initial weights from the seed's first draw; v1 used the seed itself)
    settings = {"format": "redifine-m0-v2", "objective": "edm", "dataset": dataset, "image_size": image_size,
                "base_channels": base_channels, "channel_mults": list(channel_mults), "images_seen": images_seen,
                "batch_size": batch_size, "lr": lr, "warmup": warmup, "label_dropout": label_dropout,
                "ema_decay": ema_decay, "seed": seed, "train_data_sha256": data}
    if prompts == "class":  # the settings (and so the cache key) of class-prompted M_0s stay as they were
        return settings
    cuts = attribute_cuts(image_attributes(images))  # terciles on M_0's own training set
    return settings | {"prompts": prompts, "attribute_cuts": np.round(cuts, 12).tolist()}


def _m0_key(settings: dict) -> str:
    # the settings hold a digest of the training images and labels: a content key of 16 hex digits
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def m0_cache_path(settings: dict, cache_dir: str | Path | None = None) -> Path:
    """Where the M_0 of ``settings`` is cached: ``<cache_dir>/redifine-m0-<hash>.pt`` (default: madlib's cache,
    ``$MADLIB_CACHE`` or ``~/.cache/madlib``)."""
    return cache_path(_m0_cache_dir(cache_dir), M0_ROLE, _m0_key(settings))


def _m0_cache_dir(cache_dir: str | Path | None) -> Path:
    from madlib.metrics.lenet import cache_dir as default_cache_dir

    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def _new_m0(settings: dict, seed: int, device) -> EDMPrecond:
    if settings.get("prompts", "class") == "class":
        unet = UNet(1, settings["image_size"], settings["base_channels"], tuple(settings["channel_mults"]),
                    num_classes=10, seed=seed, device=device)
        return EDMPrecond(unet)
    unet = UNet(1, settings["image_size"], settings["base_channels"], tuple(settings["channel_mults"]), num_classes=10,
                num_sources=NUM_ATTRIBUTE_PROMPTS, seed=seed, device=device)
    return EDMPrecond(AttributePromptNet(unet))


def pretrain_m0(*, dataset: str = "mnist5k", image_size: int = 14, base_channels: int = 16,
                channel_mults: tuple[int, ...] = (1, 2, 2), images_seen: int = 120_000, batch_size: int = 64,
                lr: float = 2e-3, warmup: int = 5_000, label_dropout: float = 0.1, ema_decay: float = 0.99,
                prompts: str = "class", seed: int = 0, cache_dir: str | Path | None = None, use_cache: bool = True,
                device: str = "cpu", progress: bool = False) -> PretrainedM0:
    # ReDiFine Sec. 3.1: the pretrained model M_0 (Stable Diffusion there; a class-conditional U-Net here)
    """Train (or load from the cache) M_0: a class-conditional EDM U-Net on ``dataset``'s training split
    (:func:`madlib.diffusion.core.train`).

    Label dropout ``label_dropout`` trains the "no label" token (the unconditional branch CFG needs). ``prompts``:
    ``"class"`` (the class label) or ``"attributes"`` (class + the terciles of ink, slant and width on the training
    set, 270 prompts through the U-Net's second label, :class:`AttributePromptNet`; dropout drops both labels;
    :meth:`PretrainedM0.prompts_for` gives a set's prompts). The cache
    file (:func:`m0_cache_path`) is keyed by every setting and a digest of the training images and labels, kept by
    :func:`madlib.diffusion.cache.cached_fit` (written atomically, with a checksum of the weights; a truncated,
    damaged or stale file is named in a warning and trained again); ``use_cache=False`` trains without reading or
    writing it.
    """
    image_size = check_int("image_size", image_size, minimum=4)
    base_channels = check_int("base_channels", base_channels, minimum=1)
    images_seen = check_int("images_seen", images_seen, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_interval("lr", lr, 0.0, 1.0, low_open=True)
    warmup = check_int("warmup", warmup, minimum=0)
    label_dropout = check_interval("label_dropout", label_dropout, 0.0, 1.0, low_open=True, high_open=True)
    ema_decay = check_interval("ema_decay", ema_decay, 0.0, 1.0, high_open=True)
    seed = check_int("seed", seed, minimum=0)
    check_choice("prompts", prompts, PROMPT_KINDS)
    settings = _m0_settings(dataset, image_size, base_channels, tuple(channel_mults), images_seen, batch_size, lr,
                            warmup, label_dropout, ema_decay, seed, prompts)
    optimiser = EDMConfig(batch_size=batch_size, lr=lr, warmup=warmup, ema_decay=ema_decay)  # Adam, EMA
    images, labels = load_images(dataset, "train", size=image_size, dtype="uint8")
    if prompts == "attributes":
        labels = labels.long() * NUM_ATTRIBUTE_PROMPTS + attribute_prompts(images, settings["attribute_cuts"])
    folder = _m0_cache_dir(cache_dir) if use_cache else None
    fit = core.train(images, optimiser, images_seen=images_seen, seed=seed,
                     net=lambda init: _new_m0(settings, init, device), labels=labels, label_dropout=label_dropout,
                     cache_dir=folder, role=M0_ROLE, settings=settings, key=_m0_key(settings), device=device,
                     progress=progress)
    seconds = float(fit.stats.seconds) if fit.stats is not None else math.nan
    return PretrainedM0(fit.net, settings, cache_path(folder, M0_ROLE, fit.key), seconds, fit.loaded)


# ------------------------------------------------------------------------------------- prompts with attributes
PROMPT_KINDS = ("class", "attributes")  # M_0's prompts: the class label, or class + quantised attributes
ATTRIBUTES = ("ink", "slant", "width")  # :func:`image_attributes`
NUM_ATTRIBUTE_PROMPTS = 27  # 3 attributes x 3 terciles: 3^3 values of the second label (10 x 27 = 270 prompts)


def image_attributes(images) -> np.ndarray:
    # project analogue of ReDiFine's near-unique captions (R:577-581): deterministic image statistics
    """[N, 3] attributes of images [N, C, H, W] (uint8 0..255 or float 0..1; channels averaged), from the ink
    w(x, y) (x the column, y the row): ``ink`` = mean of w (ink mass per pixel), ``slant`` = -cov_w(x, y) /
    var_w(y) (columns moved per row up the image: > 0 leans right), ``width`` = sd_w(x) / W (the horizontal spread
    of the ink), with mean, cov and sd weighted by w. A blank image reads (0, 0, 0)."""
    x = torch.as_tensor(images)
    x = x.double() / 255.0 if x.dtype == torch.uint8 else x.double()
    if x.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W]; got shape {tuple(x.shape)}")
    w = x.mean(1)  # [N, H, W]
    n, H, W = w.shape
    rows = torch.arange(H, dtype=torch.float64)[None, :, None]
    cols = torch.arange(W, dtype=torch.float64)[None, None, :]
    mass = w.sum((1, 2))  # [N]
    safe = mass.clamp_min(1e-12)
    mx = (w * cols).sum((1, 2)) / safe
    my = (w * rows).sum((1, 2)) / safe
    dx, dy = cols - mx[:, None, None], rows - my[:, None, None]
    var_x = (w * dx**2).sum((1, 2)) / safe
    var_y = (w * dy**2).sum((1, 2)) / safe
    cov = (w * dx * dy).sum((1, 2)) / safe
    slant = torch.where(var_y > 1e-12, -cov / var_y.clamp_min(1e-12), torch.zeros_like(cov))
    out = torch.stack([mass / (H * W), slant, var_x.sqrt() / W], 1)
    return torch.where((mass > 0)[:, None], out, torch.zeros_like(out)).numpy()


def attribute_cuts(attributes) -> np.ndarray:
    """[3, 2] the terciles (1/3 and 2/3 quantiles) of each attribute over a reference set ([N, 3], e.g. M_0's
    training images through :func:`image_attributes`): the vocabulary of the quantised prompts."""
    a = np.asarray(attributes, float)
    if a.ndim != 2 or a.shape[1] != len(ATTRIBUTES) or len(a) < 3:
        raise ValueError(f"attributes must be [N >= 3, {len(ATTRIBUTES)}]; got shape {a.shape}")
    return np.quantile(a, [1 / 3, 2 / 3], axis=0).T


def attribute_prompts(images, cuts) -> torch.Tensor:
    """The second label s [N] in 0..26 of images [N, C, H, W]: s = 9 t_ink + 3 t_slant + t_width, t the tercile
    (0, 1, 2) of each attribute (:func:`image_attributes`) against ``cuts`` [3, 2] (:func:`attribute_cuts`; a value
    on a cut goes to the upper tercile). A deterministic function of the image."""
    cuts = np.asarray(cuts, float)
    if cuts.shape != (len(ATTRIBUTES), 2):
        raise ValueError(f"cuts must be [{len(ATTRIBUTES)}, 2] (attribute_cuts); got shape {cuts.shape}")
    a = image_attributes(images)
    t = np.stack([np.searchsorted(cuts[j], a[:, j], side="right") for j in range(len(ATTRIBUTES))], 1)
    return torch.as_tensor(t @ np.array([9, 3, 1]), dtype=torch.long)


class AttributePromptNet(nn.Module):
    """A U-Net with a second label (:class:`madlib.diffusion.unet.UNet` ``num_sources``) called with one prompt code
    y = class x S + s (S = ``unet.num_sources``): it splits y into the class label and the second label s. The code
    ``num_classes`` = 10 S is the "no prompt" token and drops both labels (condition dropout, CFG's unconditional
    branch); y = None likewise. So the trainers, samplers and guidance see one label, as for class prompts."""

    members = 1

    def __init__(self, unet: UNet):
        super().__init__()
        if not (unet.num_classes and unet.num_sources):
            raise ValueError("unet must have class labels and a second label (num_classes > 0, num_sources > 0)")
        self.unet = unet

    @property
    def num_classes(self) -> int:
        return self.unet.num_classes * self.unet.num_sources

    @property
    def image_size(self) -> int:
        return self.unet.image_size

    def split(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class labels, second labels) of prompt codes y; the "no prompt" code gives both "no label" tokens."""
        S = self.unet.num_sources
        none = y == self.num_classes
        return (torch.where(none, torch.full_like(y, self.unet.num_classes), y // S),
                torch.where(none, torch.full_like(y, S), y % S))

    def forward(self, x, t, y=None, s=None):
        if y is None:
            return self.unet(x, t, None, None)
        cls, src = self.split(y.long())
        return self.unet(x, t, cls, src)


def prompt_classes(net: nn.Module, prompts) -> torch.Tensor:
    """The class labels of ``prompts`` [N] for ``net``: the prompts themselves, or code // S when ``net`` holds an
    :class:`AttributePromptNet` (what accuracy and class-balanced readouts read)."""
    prompts = torch.as_tensor(prompts).long()
    for m in net.modules():
        if isinstance(m, AttributePromptNet):
            return prompts // m.unet.num_sources
    return prompts


# ---------------------------------------------------------------------------------------------- Finetune
class BranchedDenoiser(nn.Module):
    """D(x; sigma, y) that answers labelled inputs with ``cond`` and the "no label" token with ``uncond``.

    What a fine-tune without condition dropout samples with (``untrained_uncond="m0"``): the conditional branch
    is the fine-tuned network, the unconditional one M_0 exactly. y [R, B] labels (``num_classes`` = no label)
    or None (every sample unconditional).
    """

    def __init__(self, cond: nn.Module, uncond: nn.Module):
        super().__init__()
        self.cond, self.uncond = cond, uncond

    @property
    def num_classes(self) -> int:
        return self.uncond.num_classes

    @property
    def members(self) -> int:
        return 1

    def forward(self, x, sigma, y=None):
        if y is None:
            return self.uncond(x, sigma, None)
        none = y == self.num_classes  # [R, B]
        if not none.any():
            return self.cond(x, sigma, y)
        out = self.cond(x, sigma, torch.where(none, torch.zeros_like(y), y))
        mask = none.reshape(none.shape + (1,) * (x.ndim - none.ndim))
        return torch.where(mask, self.uncond(x, sigma, None), out)


@dataclass
class FinetunedModel:
    """M_{k+1}: ``net`` samples (D(x; sigma, y) with its unconditional branch, see :class:`BranchedDenoiser`);
    ``tuned`` is the trained network (a peft model for LoRA, a full copy otherwise), which continual
    fine-tuning continues; digests of the effective weights before and after training (:func:`weights_digest`)."""

    net: nn.Module
    tuned: nn.Module
    start_digest: str
    end_digest: str
    stats: TrainStats


def _effective(net: nn.Module) -> nn.Module:
    """The plain network whose weights ``net`` computes with (LoRA merged into a copy)."""
    from madlib.diffusion.lora import _import_peft, merge_lora

    try:
        peft = _import_peft()
    except ImportError:
        return net
    return merge_lora(net) if isinstance(net, peft.PeftModel) else net


def weights_digest(net: nn.Module) -> str:
    """sha256 (16 hex digits) of the effective weights of ``net`` (a LoRA model's adapters merged): equal digests
    mean networks that compute the same function with the same parameters."""
    h = hashlib.sha256()
    for name, value in sorted(_effective(net).state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def finetune_from_m0(m0: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, start: nn.Module | None = None,
                     method: str = "lora", cond_dropout: float = 0.0, untrained_uncond: str = "shared",
                     epochs: float = 40.0, batch_size: int = 32, lr: float = 1e-3, rank: int = 32,
                     lora_alpha: float = 8.0, p_mean: float = -1.2, p_std: float = 1.2, seed: int = 0,
                     progress: bool = False) -> FinetunedModel:
    # ReDiFine Eq. 1 with App. A.1 Table 1: M_{k+1} = Finetune(M_0, D_k, P); LoRA rank 32, weight scaling 8, AdamW
    """Fine-tune M_0 (``m0``, left unchanged) on uint8 ``images`` [N, 1, H, W] with their prompts ``labels`` [N].

    Args:
        start: None (Eq. 1: from M_0's weights, a fresh adapter) or the ``tuned`` network of the previous
            iteration, whose training continues (continual fine-tuning, App. E.4).
        method: ``"lora"`` (an adapter on the U-Net, :func:`madlib.diffusion.lora.lora_copy`) or ``"full"``.
        cond_dropout: probability p of replacing a prompt by the "no label" token (0: the baseline; ReDiFine 0.2).
        untrained_uncond: with p = 0, ``"shared"`` (default) samples the unconditional branch from the fine-tuned
            network (the adapter is active on the empty prompt, as kohya-ss's LoRA), ``"m0"`` (the ablation) from
            M_0 exactly (module docstring).
        epochs: passes over the N images (samples seen = ceil(epochs N)); batch_size, lr (AdamW, no weight decay).
        rank, lora_alpha: the adapter (ReDiFine: 32 and 8, i.e. updates scaled by 8 / 32; rank 4 is small against
            the 16-32-channel layers here, project option).
        p_mean, p_std: the fine-tune's noise levels, ln sigma ~ N(p_mean, p_std^2) (EDM Eq. 8; default EDM's -1.2,
            1.2; a larger p_mean / p_std spends more of the fine-tune at high noise, as SD's uniform timesteps do).
        seed: the adapter's initial A matrices, the batches, the noise levels and the dropout draws.
    """
    check_choice("method", method, METHODS)
    check_choice("untrained_uncond", untrained_uncond, UNTRAINED_UNCOND)
    cond_dropout = check_interval("cond_dropout", cond_dropout, 0.0, 1.0, high_open=True)
    p_std = check_interval("p_std", p_std, 0.0, math.inf, low_open=True, high_open=True)
    p_mean = check_interval("p_mean", p_mean, -math.inf, math.inf, low_open=True, high_open=True)
    epochs = check_interval("epochs", epochs, 0.0, math.inf, low_open=True, high_open=True)
    seed = check_int("seed", seed, minimum=0)
    if images.dtype != torch.uint8 or images.ndim != 4 or labels.shape != images.shape[:1]:
        raise ValueError(f"images must be uint8 [N, C, H, W] with labels [N]; got {images.dtype} "
                         f"{tuple(images.shape)} and {tuple(labels.shape)}")
    device = next(m0.parameters()).device
    if start is None:
        if method == "lora":
            from madlib.diffusion.lora import lora_copy

            model = lora_copy(m0, rank=rank, alpha=lora_alpha, seed=seed)
        else:
            model = copy.deepcopy(m0).requires_grad_(True)
    else:
        model = copy.deepcopy(start)
    model.train()
    start_digest = weights_digest(model)
    # the fine-tune's optimiser: AdamW without weight decay, no warm-up, no EMA (the trained weights sample)
    config = EDMConfig(batch_size=batch_size, lr=lr, warmup=0, ema_decay=0.0)
    loss = edm_loss if (p_mean, p_std) == (-1.2, 1.2) else functools.partial(edm_loss, p_mean=p_mean, p_std=p_std)
    stats = core.train(images, config, images_seen=math.ceil(epochs * len(images)), seed=seed, net=model,
                       labels=labels, label_dropout=cond_dropout, optimizer="adamw", weight_decay=0.0,
                       loss=loss, device=device, progress=progress).stats
    sampler_net = BranchedDenoiser(model, m0) if cond_dropout == 0 and untrained_uncond == "m0" else model
    return FinetunedModel(sampler_net, model, start_digest, weights_digest(model), stats)


# ---------------------------------------------------------------------------------------------- Generate
def cfg_schedule(schedule: str = "constant", *, cfg_scale: float = 7.5, s0: float = 7.5, alpha: float = 2.0):
    # ReDiFine Sec. 5: s = s0 exp(-alpha t / T); CFG = 1 + w (paper-targets); App. F.2: linear decay beside it
    """The guidance weight w_i = s_i - 1 at sampling step i of n (i = 0: pure noise), a ``weight(i, n)`` schedule.

    ``"constant"``: s_i = ``cfg_scale``. ``"exponential"``: s_i = s0 exp(-alpha i / (n - 1)), i.e. t = i and
    T = n - 1 in the paper's formula, so that the first step has s0 and the last s0 e^-alpha (7.5 -> 1.015
    at the defaults; :func:`madlib.diffusion.guidance.exponential_cfg_weight` evaluated at T = n - 1).
    ``"linear"``: s_i from s0 to s0 e^-alpha linearly (the same end points).
    """
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "constant":
        return constant_weight(w_from_cfg_scale(check_interval("cfg_scale", cfg_scale, 0.0, math.inf,
                                                               high_open=True)))
    s0 = check_interval("s0", s0, 0.0, math.inf, high_open=True)
    alpha = check_interval("alpha", alpha, 0.0, math.inf, high_open=True)
    if schedule == "exponential":
        decay = exponential_cfg_weight(s0, alpha)
        return lambda i, n: decay(i, max(n - 1, 1))
    end = s0 * math.exp(-alpha)
    return lambda i, n: s0 + (end - s0) * i / max(n - 1, 1) - 1.0


REDIFINE_AXES = ("calibrated", "paper")  # :func:`redifine_settings`


def redifine_settings(high_cfg: float, *, axis: str = "calibrated", s0: float = 7.5, alpha: float = 2.0,
                      p: float = 0.2, schedule: str = "exponential") -> dict:
    # ReDiFine Sec. 5 (condition dropout p, s = s0 exp(-alpha t / T)) on a figure's CFG axis; the mapping is a project choice
    """The chain settings (:func:`chain_of_diffusion` keywords) of ReDiFine: condition dropout ``p`` and the decaying
    CFG ``schedule`` from s0 with rate alpha.

    ``axis="paper"``: s0 and alpha as given (7.5 and 2: CFG 7.5 -> 1.015, the paper's baseline CFG decaying to no
    guidance). ``axis="calibrated"``: the same schedule on the figure's calibrated CFG axis, whose baseline is
    ``high_cfg`` instead of the paper's 7.5: log CFG scaled by kappa = ln(high_cfg) / ln(s0), so the decay starts
    at the baseline's CFG and ends where the paper's does, near CFG 1 (s0' = high_cfg, alpha' = kappa alpha). On
    an axis where CFG 7.5 already ruins the first iteration, the paper's literal s0 would compare ReDiFine's
    worst-calibrated start with a calibrated baseline."""
    check_choice("axis", axis, REDIFINE_AXES)
    check_choice("schedule", schedule, ("exponential", "linear"))
    high_cfg = check_interval("high_cfg", high_cfg, 1.0, math.inf, high_open=True)
    s0 = check_interval("s0", s0, 1.0, math.inf, low_open=True, high_open=True)
    alpha = check_interval("alpha", alpha, 0.0, math.inf, high_open=True)
    p = check_interval("p", p, 0.0, 1.0, high_open=True)
    kappa = math.log(high_cfg) / math.log(s0) if axis == "calibrated" else 1.0
    return dict(schedule=schedule, s0=high_cfg if axis == "calibrated" else s0, alpha=kappa * alpha, cond_dropout=p)


def generate_one_per_prompt(net: nn.Module, prompts: torch.Tensor, *, weight=constant_weight(6.5), steps: int = 30,
                            seed: int = 0, sample_batch: int = 1000, image_size: int | None = None,
                            diff_norms: bool = False, sigma_min: float = 0.002, sigma_max: float = 80.0,
                            rho: float = 7.0) -> tuple[torch.Tensor, np.ndarray | None]:
    # ReDiFine Eq. 2 and App. A.1 Table 1: D_{k+1} = Generate(M_{k+1}, P), Euler A, 30 steps, 1 image per prompt
    """One uint8 image [N, 1, H, W] per prompt of ``prompts`` [N] (same order), Euler-ancestral on EDM's grid.

    ``weight``: the guidance schedule (:func:`cfg_schedule`); ``seed``: the initial and step noise. With
    ``diff_norms``, also the mean over images of |eps_c - eps_u| (per-image L2 norm; eps = (x - D) / sigma) at
    each of the ``steps`` steps (App. G.2, Fig. 38b), evaluating the unconditional branch where w = 0 too.
    """
    steps = check_int("steps", steps, minimum=2)
    prompts = torch.as_tensor(prompts).long()
    if prompts.ndim != 1:
        raise ValueError(f"prompts must be a 1-D tensor of labels; got shape {tuple(prompts.shape)}")
    device = next(net.parameters()).device
    size = image_size or net_image_size(net)
    sigmas = edm_sigma_steps(steps, sigma_min, sigma_max, rho)
    diff_sum = np.zeros(steps)

    def recording(y, s):  # per chunk: the CFG pair, recording |eps_c - eps_u| at each step (App. G.2, Fig. 38b)
        cache, state = {}, {"i": 0}

        def primary(x, t):  # also evaluates the unconditional branch, kept for the guide
            c, u = net(x, t, y), net(x, t, None)
            cache["u"] = u
            diff_sum[state["i"]] += float(((c - u) / t).flatten(2).norm(dim=2).sum())
            state["i"] += 1
            return c

        return primary, lambda x, t: cache.pop("u")

    images = core.sample(None if diff_norms else net, len(prompts), seed=seed,
                         image_shape=(1, size, size), sampler="euler_ancestral", sigmas=sigmas, labels=prompts,
                         guide="cfg", weight=weight, predictors=recording if diff_norms else None,
                         sample_batch=check_int("sample_batch", sample_batch, minimum=1), device=device)
    return images, (diff_sum / max(len(prompts), 1) if diff_norms else None)


def net_image_size(net: nn.Module) -> int:
    for m in net.modules():
        if isinstance(m, UNet):
            return m.image_size
    raise ValueError("net holds no UNet: pass image_size")


# --------------------------------------------------------------------------------------------------- chain
@dataclass
class ChainResult:
    """One Chain of Diffusion. Iteration k = 1..K: M_k = Finetune(M_0, D_{k-1}), D_k = Generate(M_k, P).

    fid, accuracy: [K] of D_k against D_0 (LeNet features; accuracy = share of D_k the LeNet assigns to its
    prompt); collapse_rate: Eq. 3; sets: uint8 D_0..D_K [K+1] x [N, 1, H, W]; prompts [N];
    diff_norm [K, steps] (:func:`generate_one_per_prompt`); phenotype [K+1, N] (absolute power above r = 0.25,
    :func:`phenotype`), phenotype_relative [K+1, N] (share of power above tau = 0.02) or None;
    radial [K+1, bins] mean radial power spectrum at radial_freq [bins]; histogram [K+1, 32] pixel densities;
    start_digest / end_digest [K] of each fine-tune; seconds: fine-tune and sampling time per iteration.
    """

    fid: np.ndarray
    accuracy: np.ndarray
    collapse_rate: float
    sets: list
    prompts: torch.Tensor
    diff_norm: np.ndarray
    phenotype: np.ndarray
    radial: np.ndarray
    radial_freq: np.ndarray
    histogram: np.ndarray
    start_digest: list
    end_digest: list
    seconds: dict
    settings: dict = field(default_factory=dict)
    phenotype_relative: np.ndarray | None = None

    @property
    def fid_auc(self) -> float:
        """Area under FID_k over k = 1..K (:func:`fid_auc`), the readout beside Eq. 3's rate."""
        return fid_auc(self.fid)

    @property
    def seconds_total(self) -> float:
        """The chain's fine-tuning and sampling seconds, wherever it ran."""
        return float(sum(np.sum(v) for v in self.seconds.values()))

    def summary(self, *, detail: bool = False) -> dict:
        """What a figure's JSON keeps of the chain: FID, accuracy, Eq. 3's rate, the area under FID_k, the mean
        absolute and relative phenotypes per iteration, the fine-tunes' start digests, the times and settings; the
        mean |eps_c - eps_u| per iteration, or with ``detail`` the whole [K, steps] array, the radial spectra and
        the pixel histograms."""
        out = {"settings": self.settings, "fid": self.fid, "accuracy": self.accuracy, "collapse_rate": self.collapse_rate,
               "fid_auc": self.fid_auc, "phenotype_mean": self.phenotype.mean(1),
               "phenotype_relative_mean": None if self.phenotype_relative is None else self.phenotype_relative.mean(1),
               "start_digest": self.start_digest, "seconds": self.seconds}
        if detail:
            return out | {"diff_norm": self.diff_norm, "radial": self.radial, "histogram": self.histogram}
        return out | {"diff_norm_mean": self.diff_norm.mean(1)}

    def spectrum_gap(self, floor_share: float = 1e-6) -> float:
        # ReDiFine App. D.2.1 (project readout): how far D_K's radial power spectrum moved from D_0's
        """Mean over frequencies of |log((P_K + f) / (P_0 + f))| for the radial power P of D_K and D_0; the floor
        f = ``floor_share`` x mean(P_0) keeps a blank D_K (zero power) finite."""
        floor = floor_share * float(np.mean(self.radial[0]))
        return float(np.nanmean(np.abs(np.log((self.radial[-1] + floor) / (self.radial[0] + floor)))))

    def blank_shares(self) -> np.ndarray:
        """[K+1] the share of blank images (:func:`blank_share`) of D_0..D_K."""
        return np.array([blank_share(s) for s in self.sets])

    def white_shares(self) -> np.ndarray:
        """[K+1] the share of white pixels (:func:`white_share`) of D_0..D_K."""
        return np.array([white_share(s) for s in self.sets])

    def saturated(self, blank: float = 0.5, white: float = SATURATED_WHITE) -> np.ndarray:
        # project readout (issue 28): a blank or saturated set is detected on its images, not through an FID cap
        """[K] bool: whether D_k (k = 1..K) is blank or saturated: a share >= ``blank`` of its images blank
        (:func:`blank_share`) or a share >= ``white`` of its pixels white (:func:`white_share`; half by default)."""
        return (self.blank_shares()[1:] >= blank) | (self.white_shares()[1:] >= white)

    def at_cap(self, cap: float, tol: float = 0.02, blank: float = 0.5, white: float = SATURATED_WHITE) -> np.ndarray:
        # project readout: a saturated chain ends in blank images, whose FID against D_0 (the cap) pins FID_k
        """[K] bool: whether D_k (k = 1..K) is at the blank cap ``cap`` (:func:`blank_cap`), i.e. FID_k >= (1 - ``tol``)
        x cap (within 2% of it by default), or blank or saturated (:meth:`saturated` with ``blank`` and ``white``).
        There FID reads the cap or the saturation, not the chain."""
        return (self.fid >= (1 - tol) * cap) | self.saturated(blank, white)

    def readouts(self, cap: float | None = None) -> dict:
        # ReDiFine Sec. 3.2 Obs. 3, App. G (project readouts): blur, saturation and blank sets without the phenotype
        """Image readouts of D_0..D_K, each [K+1]: ``power_above_0.25`` (mean absolute power above radial frequency
        0.25, :func:`phenotype`: fine detail, which blur removes and high CFG raises), ``relative_power`` (mean share
        of power above tau = 0.02, App. D.2.1's normalised phenotype, beside it), ``pixel_sd`` (pixel standard
        deviation over the whole set), ``extreme_share`` (:func:`saturated_share`: pixels within 7 grey levels of
        black or white), ``white_share`` (:meth:`white_shares`), ``blank_share`` (:meth:`blank_shares`);
        ``saturated`` [K] (:meth:`saturated`); with ``cap`` also ``at_cap`` [K] (:meth:`at_cap`)."""
        out = {"power_above_0.25": np.array([float(phenotype(s).mean()) for s in self.sets]),
               "relative_power": np.array([float(phenotype(s, "relative").mean()) for s in self.sets]),
               "pixel_sd": np.array([float(s.double().std()) for s in self.sets]),
               "extreme_share": np.array([saturated_share(s) for s in self.sets]),
               "white_share": self.white_shares(), "blank_share": self.blank_shares(), "saturated": self.saturated()}
        return out if cap is None else out | {"at_cap": self.at_cap(cap)}


def seed_readouts(chains, cap: float | None = None) -> dict:
    """:meth:`ChainResult.readouts` of one setting's chains (one per seed, the same K) stacked with seeds leading:
    each readout [S, K+1], ``at_cap`` [S, K]."""
    per_seed = [c.readouts(cap) for c in chains]
    return {key: np.stack([r[key] for r in per_seed]) for key in per_seed[0]}


def phenotype(images, kind: str = "absolute") -> np.ndarray:
    # ReDiFine App. D.2.1 Eq. 14: S = sum_{r(u, v) > tau} |F(u, v)|^2; absolute at tau = HF_CUTOFF, relative / total
    """ReDiFine's high-frequency phenotype per image [N] of images [N, C, H, W] (uint8 scaled to [0, 1]).

    ``"absolute"`` (the RDF-2/4/6 phenotype here): the power above radial frequency r > :data:`HF_CUTOFF` = 0.25
    cycles/pixel (orthonormal DFT, :func:`madlib.metrics.high_frequency_power`), fine detail that blur removes and
    high CFG's patterns add. ``"relative"``: the share of power above tau = 0.02 (the paper's tau; at 14x14 every
    non-zero frequency is above it, so this is 1 - the DC share, a brightness readout), kept beside it.
    """
    from madlib.metrics.spectra import high_frequency_power

    check_choice("kind", kind, PHENOTYPES)
    if kind == "absolute":
        return high_frequency_power(images, tau=HF_CUTOFF).numpy()
    return high_frequency_power(images, tau=RELATIVE_TAU, relative=True).numpy()


def white_share(images: torch.Tensor, margin: int = WHITE_MARGIN) -> float:
    # project readout (issue 28): CFG extrapolates brightness here, so saturation is the share of white pixels
    """Share of uint8 pixels within ``margin`` grey levels of white (>= 255 - margin): saturated pixels."""
    margin = check_int("margin", margin, minimum=0)
    return float((torch.as_tensor(images) >= 255 - margin).double().mean())


def fid_auc(fid) -> float | np.ndarray:
    # project readout (issue 28) beside Eq. 3: the area under the FID_k curve, k = 1..K (trapezoid, unit steps)
    """Area under FID_1..FID_K (trapezoid rule, one unit per iteration; unit FID x iterations): [K] -> a number,
    [S, K] -> [S]. Unlike Eq. 3's rate it counts every iteration, so a chain that starts bad and stays bad (a rate
    near 0) reads large."""
    fid = np.asarray(fid, float)
    if fid.ndim not in (1, 2) or fid.shape[-1] < 2:
        raise ValueError(f"fid must be [K] or [S, K] with K >= 2; got shape {fid.shape}")
    area = (fid[..., 1:] + fid[..., :-1]).sum(-1) / 2
    return float(area) if fid.ndim == 1 else area


def saturated_share(images: torch.Tensor, margin: int = 7) -> float:
    """Share of uint8 pixels within ``margin`` grey levels of black or white: how far CFG pushed samples to the ends."""
    return float(((images <= margin) | (images >= 255 - margin)).double().mean())


def blank_share(images: torch.Tensor, sd: float = BLANK_SD) -> float:
    """Share of the images [N, C, H, W] (uint8) whose pixel standard deviation (over C, H, W) is below ``sd`` grey
    levels: blank images (all one value), which have no detail and no spread."""
    return float((images.flatten(1).double().std(1) < sd).double().mean())


def blank_cap(d0_images: torch.Tensor, prompts: torch.Tensor, lenet) -> float:
    # project readout: the FID a saturated chain ends at, whatever its collapse
    """The blank cap: FID (:func:`madlib.metrics.image_metrics`) of an all-white set (every pixel 255, D_0's shape
    and prompts) against D_0 [N, C, H, W] with its ``prompts`` [N]. High-CFG chains end in all-white images; a chain
    whose FID_k sits at this value reads the cap, not its collapse (:meth:`ChainResult.at_cap`)."""
    from madlib.metrics.images import image_metrics

    return image_metrics(torch.full_like(d0_images, 255), prompts, d0_images, prompts, lenet)["fid"]


def m0_quality(m0_net: nn.Module, prompts: torch.Tensor, lenet, *, dataset: str, image_size: int, steps: int,
               seed: int, n: int) -> tuple[torch.Tensor, dict, dict]:
    # project bar (issue 13): M_0 must be a good model of its own data before a chain is read
    """M_0 before any chain: (samples, metrics, floor). ``samples``: its plain conditional samples (CFG 1, one per
    prompt of ``prompts`` [N], Euler-ancestral with ``steps`` steps, seed ``seed``); ``metrics``: their
    :func:`madlib.metrics.image_metrics` against ``dataset``'s held-out split at ``image_size``; ``floor``: the
    real-vs-real floor there, ``n`` training images (drawn with seed + 7) against the same held-out split."""
    from madlib.metrics.images import image_metrics

    test, test_labels = load_images(dataset, "test", size=image_size, dtype="uint8")
    train, train_labels = load_images(dataset, "train", size=image_size, dtype="uint8")
    samples, _ = generate_one_per_prompt(m0_net, prompts, weight=cfg_schedule(cfg_scale=1.0), steps=steps, seed=seed)
    metrics = image_metrics(samples, prompt_classes(m0_net, prompts), test, test_labels, lenet)
    pick = torch.as_tensor(np.random.default_rng(seed + 7).choice(len(train_labels), n, replace=False))
    floor = image_metrics(train[pick], train_labels[pick], test, test_labels, lenet)
    return samples, metrics, floor


def m0_bar(m0_metrics: dict, m0_floor: dict, *, accuracy_min: float = 0.85, fid_factor: float = 2.0) -> Precondition:
    # project bar (issue 13), the first precondition of every ReDiFine claim
    """The M_0 bar: M_0's CFG-1 samples (``m0_metrics``, :func:`m0_quality`) reach accuracy >= ``accuracy_min`` and
    FID <= ``fid_factor`` x the real-vs-real floor (``m0_floor["fid"]``) on its held-out split. ``measured`` holds
    the accuracy and FID beside the bar (``accuracy_min``, ``fid_max``)."""
    fid_max = fid_factor * m0_floor["fid"]
    return Precondition("M0 bar", f"M0's CFG-1 samples: accuracy >= {accuracy_min:g} and FID <= {fid_factor:g} x the "
                        "real-vs-real floor on its held-out split",
                        met=m0_metrics["accuracy"] >= accuracy_min and m0_metrics["fid"] <= fid_max,
                        measured={"accuracy": m0_metrics["accuracy"], "fid": m0_metrics["fid"],
                                  "accuracy_min": accuracy_min, "fid_max": fid_max})


def iteration_one_bar(name: str, fid_1, floor: float, k: float = 3) -> Precondition:
    # project bar: a chain's collapse is read only when its first fine-tune is a usable model
    """The iteration-1 bar of chain ``name``: FID_1 <= ``k`` x the real-vs-real ``floor``. ``fid_1``: FID_1 of one
    chain (a number), or of one chain per seed ([S]: the bar reads their mean)."""
    per_seed = np.ndim(fid_1) > 0
    value = np.asarray(fid_1).mean() if per_seed else fid_1
    return Precondition(f"iteration-1 bar ({name})",
                        f"{'mean over seeds of ' if per_seed else ''}FID_1 <= {k:g} x the real-vs-real floor "
                        f"({k * floor:.1f}): the first fine-tune is a usable model",
                        met=value <= k * floor, measured={"fid_1": fid_1, "floor": floor})


def collapses(name: str, rate) -> Precondition:
    # project precondition: a ratio to a collapse rate means nothing unless that rate is positive
    """Chain ``name`` collapses: its collapse rate (Eq. 3) > 0. ``rate``: one chain's (a number), or one per seed
    ([S]: every seed must collapse)."""
    per_seed = np.ndim(rate) > 0
    return Precondition(f"{name} collapses", f"the {name}'s collapse rate > 0{' in every seed' if per_seed else ''} "
                        "(a ratio to a rate that is not positive means nothing)",
                        met=bool(np.all(np.asarray(rate) > 0)), measured={"collapse_rate": rate})


def below_cap(name: str, chains, cap: float, *, tol: float = 0.02, blank: float = 0.5,
              white: float = SATURATED_WHITE) -> Precondition:
    # project precondition: rates, ratios and spectra are read only on chains that never reach the blank cap
    """Chain ``name`` never reaches the blank cap ``cap`` (:func:`blank_cap`) nor saturates: no D_k (k = 1..K) is at
    the cap (:meth:`ChainResult.at_cap` with ``tol``, ``blank`` and ``white``). ``chains``: one :class:`ChainResult`,
    or a list of them (one per seed: no seed may reach it). ``measured``: the largest FID_k, blank share and white
    share of D_1..D_K, and the cap."""
    per_seed = not isinstance(chains, ChainResult)
    runs = list(chains) if per_seed else [chains]
    capped = any(bool(np.any(r.at_cap(cap, tol, blank, white))) for r in runs)
    half = "half" if blank == 0.5 else f"{blank:.0%}"
    return Precondition(f"below the blank cap ({name})",
                        f"no D_k (k = 1..K){' of any seed' if per_seed else ''} within {tol:.0%} of the blank cap "
                        f"(FID {cap:.1f}, an all-white set against D_0), {half} blank or {white:.0%} of its pixels "
                        "white: there FID reads the cap or the saturation, not the chain", met=not capped,
                        measured={"fid_max": np.max([r.fid.max() for r in runs]),
                                  "blank_share_max": np.max([r.blank_shares()[1:].max() for r in runs]),
                                  "white_share_max": np.max([r.white_shares()[1:].max() for r in runs]), "cap": cap})


def balanced_subset(dataset: str, n: int, *, split: str = "train", image_size: int = 14, seed: int = 0,
                    exclude: torch.Tensor | None = None,
                    style: str = "plain") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A class-balanced random subset (uint8 images [n, 1, H, W], labels [n], indices into the split [n]) of
    ``dataset``'s ``split``, ordered by class, in ``style`` (:func:`restyle`); ``exclude``: indices not to draw
    (e.g. D_0, for a floor)."""
    check_choice("style", style, D0_STYLES)
    images, labels = load_images(dataset, split, size=image_size, dtype="uint8")
    n = check_int("n", n, minimum=10)
    idx = balanced_index(labels, n, classes=range(10), rng=np.random.default_rng(seed), exclude=exclude, sort=True,
                         where=f"{dataset} ({split})")
    return restyle(images[idx], style), labels[idx], idx


def real_floors(d0_images, d0_labels, other_images, other_labels, lenet, *, seed: int = 0) -> dict:
    """The real-vs-real FID floors of a chain: ``halves`` (D_0 split in two class-balanced halves, as the issue
    asks) and ``fresh`` (as many other real images of the same style against D_0: the floor at FID_k's n)."""
    from madlib.metrics.images import HeldOutMetrics, class_readouts

    def measured(fake, fake_labels, real, real_labels):  # image_metrics's keys, through the one metric bundle
        return core.evaluate(HeldOutMetrics(real, lenet), fake, fake_labels,
                             real=class_readouts(real, real_labels, lenet))

    rng = np.random.default_rng(seed)
    first = np.concatenate([rng.permutation(np.flatnonzero(d0_labels.numpy() == c))[: (d0_labels == c).sum() // 2]
                            for c in range(10)])
    second = np.setdiff1d(np.arange(len(d0_labels)), first)
    halves = measured(d0_images[first], d0_labels[first], d0_images[second], d0_labels[second])
    fresh = measured(other_images, other_labels, d0_images, d0_labels)
    return {"halves": halves, "fresh": fresh}


def chain_of_diffusion(m0: nn.Module, d0_images: torch.Tensor, prompts: torch.Tensor, *, lenet, iterations: int = 6,
                       schedule: str = "constant", cfg_scale: float = 7.5, s0: float = 7.5, alpha: float = 2.0,
                       cond_dropout: float = 0.0, method: str = "lora", continual: bool = False,
                       real_mix: float = 0.0, untrained_uncond: str = "shared", epochs: float = 40.0,
                       batch_size: int = 32, lr: float = 1e-3, rank: int = 32, lora_alpha: float = 8.0,
                       p_mean: float = -1.2, p_std: float = 1.2, steps: int = 30, sigma_max: float = 80.0,
                       sample_batch: int = 1000, seed: int = 0, progress: bool = False,
                       desc: str = "chain") -> ChainResult:
    # ReDiFine Sec. 3.1, Eq. 1-3 (K = 6); Sec. 5 (ReDiFine: cond_dropout 0.2, schedule "exponential"); App. C.3, E.4
    """K = ``iterations`` rounds of M_k = Finetune(M_0, D_{k-1}), D_k = Generate(M_k, P) from uint8 ``d0_images``
    [N, 1, H, W] and their ``prompts`` [N]; measured against D_0 with ``lenet``.

    ``continual``: fine-tune M_{k-1}'s network instead of M_0 (App. E.4). ``real_mix``: the share of each D_k
    (k >= 1) replaced by the D_0 images of the same prompts before fine-tuning, drawn afresh every iteration
    (App. C.3); FID_k is measured on the generated D_k. The guidance: :func:`cfg_schedule` (``schedule``,
    ``cfg_scale``, ``s0``, ``alpha``); the fine-tune: :func:`finetune_from_m0` (``untrained_uncond``, ``p_mean``,
    ``p_std`` there); the sampler's largest noise level ``sigma_max`` (EDM's 80 by default; about 7-10 puts a share of
    steps above 10 sigma_data like SD's schedule, project option). ``prompts`` may be attribute codes
    (:class:`AttributePromptNet`); accuracy then reads their classes (:func:`prompt_classes`). ``seed`` fixes every
    draw (each iteration's fine-tune and sampling seeds derive from it).
    """
    from madlib.metrics.images import HeldOutMetrics
    from madlib.metrics.spectra import radial_power_spectrum

    K = check_int("iterations", iterations, minimum=2)
    real_mix = check_interval("real_mix", real_mix, 0.0, 1.0, high_open=True)
    weight = cfg_schedule(schedule, cfg_scale=cfg_scale, s0=s0, alpha=alpha)
    prompts = torch.as_tensor(prompts).long()
    if d0_images.dtype != torch.uint8 or len(d0_images) != len(prompts):
        raise ValueError("d0_images must be uint8 [N, C, H, W] with one prompt each")
    check_choice("untrained_uncond", untrained_uncond, UNTRAINED_UNCOND)
    sigma_max = check_interval("sigma_max", sigma_max, 0.002, math.inf, low_open=True, high_open=True)
    classes = prompt_classes(m0, prompts)
    settings = dict(iterations=K, schedule=schedule, cfg_scale=cfg_scale, s0=s0, alpha=alpha,
                    cond_dropout=cond_dropout, method=method, continual=bool(continual), real_mix=real_mix,
                    untrained_uncond=untrained_uncond, epochs=epochs, batch_size=batch_size, lr=lr, rank=rank,
                    lora_alpha=lora_alpha, p_mean=p_mean, p_std=p_std, steps=steps, sigma_max=sigma_max, seed=seed,
                    n=len(prompts))
    seeds = np.random.SeedSequence(check_int("seed", seed, minimum=0)).generate_state(2 * K + 1)
    mix_rng = np.random.default_rng(int(seeds[-1]))
    sets, fid, acc, diff, starts, ends = [d0_images], [], [], [], [], []
    seconds = {"finetune": [], "sample": []}
    against_d0 = HeldOutMetrics(d0_images, lenet)  # FID_k of D_k against D_0: D_0's features once
    previous = None
    train_images = d0_images
    for k in tqdm(range(1, K + 1), disable=not progress, leave=False, desc=desc):
        clock = time.perf_counter()
        model = finetune_from_m0(m0, train_images, prompts, start=previous.tuned if continual and previous else None,
                                 method=method, cond_dropout=cond_dropout, untrained_uncond=untrained_uncond,
                                 epochs=epochs, batch_size=batch_size, lr=lr, rank=rank, lora_alpha=lora_alpha,
                                 p_mean=p_mean, p_std=p_std, seed=int(seeds[2 * k - 2] % 2**31))
        seconds["finetune"].append(time.perf_counter() - clock)
        clock = time.perf_counter()
        images, norms = generate_one_per_prompt(model.net, prompts, weight=weight, steps=steps,
                                                seed=int(seeds[2 * k - 1] % 2**31), sample_batch=sample_batch,
                                                diff_norms=True, sigma_max=sigma_max)
        seconds["sample"].append(time.perf_counter() - clock)
        metrics = core.evaluate(against_d0, images, classes)
        sets.append(images)
        fid.append(metrics["fid"])
        acc.append(metrics["accuracy"])
        diff.append(norms)
        starts.append(model.start_digest)
        ends.append(model.end_digest)
        previous = model
        train_images = images
        if real_mix > 0:
            replace = torch.as_tensor(mix_rng.random(len(prompts)) < real_mix)
            train_images = torch.where(replace[:, None, None, None], d0_images, images)
    stacked = torch.stack(sets)  # [K+1, N, 1, H, W]
    absolute = phenotype(stacked.flatten(0, 1)).reshape(K + 1, -1)  # [K+1, N]
    relative = phenotype(stacked.flatten(0, 1), "relative").reshape(K + 1, -1)  # [K+1, N]
    freq, radial = radial_power_spectrum(stacked.flatten(0, 1))
    hist = np.stack([np.histogram(s.numpy(), bins=32, range=(0, 256), density=True)[0] for s in sets])
    fid = np.array(fid)
    return ChainResult(fid=fid, accuracy=np.array(acc), collapse_rate=float((fid[-1] - fid[0]) / (K - 1)),
                       sets=sets, prompts=prompts, diff_norm=np.stack(diff), phenotype=absolute,
                       radial=radial.reshape(K + 1, len(prompts), -1).mean(1).numpy(), radial_freq=freq.numpy(),
                       histogram=hist, start_digest=starts, end_digest=ends,
                       seconds={k: np.array(v) for k, v in seconds.items()}, settings=settings,
                       phenotype_relative=relative)


# ------------------------------------------------------------------------------- guidance and the CFG axis
def guidance_decomposition(net: nn.Module, images: torch.Tensor, prompts, *, sigmas=(0.5, 1.0, 2.0, 5.0),
                           seed: int = 0) -> dict:
    # ReDiFine Eq. 4 / App. G.2 (Fig. 38b): the guidance difference eps_c - eps_u, split into style and prompt parts
    """How much of the guidance difference d_p = eps(x; sigma, p) - eps(x; sigma, none) is style and how much prompt.

    At each noise level sigma of ``sigmas`` and each noisy input x_i = x0_i + sigma n_i (x0_i the uint8 ``images``
    [N, C, H, W] on the network's range, n_i from ``seed``), d is evaluated for every prompt p of ``prompts`` [P]
    (eps = (x - D) / sigma, so d = -(D_c - D_u) / sigma). Its mean over prompts dbar_i is what every prompt shares at
    (x, sigma): the style part; d_p - dbar_i is the prompt (class) part. Per sigma, with |.| the per-image L2 norm:
    ``mean_norm`` = mean |d|, ``total_sq`` = mean |d|^2 = ``style_sq`` (mean_i |dbar_i|^2) + ``prompt_sq``
    (mean |d_p - dbar_i|^2), exactly; ``style_share`` = style_sq / total_sq. Arrays [len(sigmas)], with ``sigma``.
    """
    prompts = torch.as_tensor(prompts).long()
    if prompts.ndim != 1 or len(prompts) < 2:
        raise ValueError(f"prompts must be [P] with P >= 2 prompts to average over; got shape {tuple(prompts.shape)}")
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [N, C, H, W]; got {images.dtype} {tuple(images.shape)}")
    sigmas = [check_interval("sigmas[i]", s, 0.0, math.inf, low_open=True, high_open=True) for s in sigmas]
    seed = check_int("seed", seed, minimum=0)
    params = list(net.parameters())
    device = params[0].device if params else torch.device("cpu")
    x0 = core.to_network_range(images).to(device)[None]  # [1, N, C, H, W]
    g = torch.Generator().manual_seed(seed)
    out = {k: [] for k in ("sigma", "mean_norm", "total_sq", "style_sq", "prompt_sq", "style_share")}
    n = x0.shape[1]
    with torch.no_grad():
        for sigma in sigmas:
            x = x0 + sigma * torch.randn(x0.shape, generator=g).to(device)
            t = torch.full((1, n), sigma, device=device)
            uncond = net(x, t, None)
            d = torch.stack([(uncond - net(x, t, torch.full((1, n), int(p), device=device)))[0] / sigma
                             for p in prompts]).flatten(2).double()  # [P, N, C*H*W]
            mean = d.mean(0, keepdim=True)  # [1, N, D]: the style part
            total = float((d**2).sum(-1).mean())
            style = float((mean[0] ** 2).sum(-1).mean())
            out["sigma"].append(sigma)
            out["mean_norm"].append(float(d.norm(dim=-1).mean()))
            out["total_sq"].append(total)
            out["style_sq"].append(style)
            out["prompt_sq"].append(float(((d - mean) ** 2).sum(-1).mean()))
            out["style_share"].append(style / total if total > 0 else math.nan)
    return {k: np.array(v) for k, v in out.items()}


def cfg_fid_sweep(net: nn.Module, prompts, reference: torch.Tensor, reference_labels, lenet, *, cfg_grid,
                  steps: int = 30, sigma_max: float = 80.0, seed: int = 0, sample_batch: int = 1000) -> dict:
    # ReDiFine Sec. 3.2 / R:255 (FID_1 against CFG); project calibration of the CFG axis (issue 28)
    """Sample-only FID against the CFG scale: one image per prompt of ``prompts`` [N] at every CFG of ``cfg_grid``
    (constant schedule, :func:`generate_one_per_prompt`, the same ``seed`` for every value: common latents), each
    set's :func:`madlib.metrics.image_metrics` against ``reference`` [M, C, H, W] with ``reference_labels`` [M].
    Returns ``cfg`` [C], ``fid``, ``accuracy``, ``white_share`` and ``blank_share`` [C] (plain arrays)."""
    from madlib.metrics.images import HeldOutMetrics

    grid = [check_interval("cfg_grid[i]", c, 0.0, math.inf, high_open=True) for c in cfg_grid]
    if not grid:
        raise ValueError("cfg_grid must hold at least one CFG scale")
    classes = prompt_classes(net, prompts)
    held = HeldOutMetrics(reference, lenet)
    out = {k: [] for k in ("fid", "accuracy", "white_share", "blank_share")}
    for c in grid:
        images, _ = generate_one_per_prompt(net, prompts, weight=cfg_schedule(cfg_scale=c), steps=steps, seed=seed,
                                            sample_batch=sample_batch, sigma_max=sigma_max)
        metrics = core.evaluate(held, images, classes)
        out["fid"].append(metrics["fid"])
        out["accuracy"].append(metrics["accuracy"])
        out["white_share"].append(white_share(images))
        out["blank_share"].append(blank_share(images))
    return {"cfg": np.array(grid)} | {k: np.array(v) for k, v in out.items()}


def iteration_one_sweep(m0: nn.Module, d0_images: torch.Tensor, prompts, lenet, *, cfg_grid, steps: int = 30,
                        sigma_max: float = 80.0, seed: int = 0, sample_batch: int = 1000, guidance_images: int = 0,
                        guidance_prompts: int = 30, **finetune) -> dict:
    # ReDiFine Eq. 1-2 at k = 1: M_1 = Finetune(M_0, D_0), then D_1 at each CFG; project calibration (issue 28)
    """FID_1 against the CFG scale: one fine-tune M_1 = Finetune(M_0, D_0) (:func:`finetune_from_m0` with ``finetune``
    keyword arguments, seed ``seed``), then :func:`cfg_fid_sweep` of M_1 against D_0 (``d0_images`` [N] with the
    classes of ``prompts``, sampling seed ``seed + 1``). Returns the sweep's arrays and ``finetune_seconds``; with
    ``guidance_images`` > 0 also ``guidance`` = {"m0": ..., "m1": ...}, :func:`guidance_decomposition` of M_0 and M_1
    (before and after the fine-tune) on the first ``guidance_images`` D_0 images over at most ``guidance_prompts``
    of the distinct prompts (evenly spaced), seed ``seed``."""
    guidance_images = check_int("guidance_images", guidance_images, minimum=0)
    guidance_prompts = check_int("guidance_prompts", guidance_prompts, minimum=2)
    clock = time.perf_counter()
    model = finetune_from_m0(m0, d0_images, torch.as_tensor(prompts).long(), seed=seed, **finetune)
    seconds = time.perf_counter() - clock
    sweep = cfg_fid_sweep(model.net, prompts, d0_images, prompt_classes(m0, prompts), lenet, cfg_grid=cfg_grid,
                          steps=steps, sigma_max=sigma_max, seed=seed + 1, sample_batch=sample_batch)
    out = sweep | {"finetune_seconds": seconds}
    if guidance_images:
        distinct = torch.unique(torch.as_tensor(prompts).long())
        pick = distinct[np.unique(np.linspace(0, len(distinct) - 1, min(guidance_prompts, len(distinct))).round()
                                  .astype(int))]
        images = d0_images[:guidance_images]
        out["guidance"] = {name: guidance_decomposition(net, images, pick, seed=seed)
                           for name, net in (("m0", m0), ("m1", model.net))}
    return out


def calibrated_high_cfg(cfg_grid, fid, factor: float = CALIBRATION_FACTOR) -> float:
    # project rule (issue 28): the baseline "high CFG" is the edge of the FID_1-vs-CFG plateau, not the paper's 7.5
    """The largest CFG of ``cfg_grid`` [C] whose FID (``fid`` [C], e.g. FID_1 of :func:`iteration_one_sweep`) is
    within ``factor`` x the best (lowest) FID of the grid (default 1.25, a project choice)."""
    grid, fid = np.asarray(cfg_grid, float), np.asarray(fid, float)
    if grid.ndim != 1 or grid.shape != fid.shape or len(grid) == 0:
        raise ValueError(f"cfg_grid and fid must be [C] of the same length; got {grid.shape} and {fid.shape}")
    factor = check_interval("factor", factor, 1.0, math.inf, high_open=True)
    if not np.all(np.isfinite(fid)):
        raise ValueError("fid must be finite")
    return float(grid[fid <= factor * fid.min()].max())


BASELINE_RULES = ("calibrated", "fixed")  # :func:`calibrate_cfg_axis`


def calibrate_cfg_axis(m0: nn.Module, d0_images: torch.Tensor, prompts, lenet, *, cfg_grid,
                       factor: float = CALIBRATION_FACTOR, baseline: str = "calibrated", baseline_cfg: float = 7.5,
                       m0_dataset: str | None = None, steps: int = 30, sigma_max: float = 80.0, seed: int = 0,
                       **finetune) -> dict:
    # project calibration (issue 28): the figures' baseline "high CFG" from FID_1 against CFG on their own D_0
    """The CFG axis of one D_0, calibrated to M_0: the sweeps and the baseline CFG a ReDiFine figure reads.

    ``iteration_1``: :func:`iteration_one_sweep` of M_0 fine-tuned once on ``d0_images`` [N] with ``prompts`` [N]
    (``finetune`` keyword arguments, seed ``seed``) over ``cfg_grid``; ``m0``: with ``m0_dataset``,
    :func:`cfg_fid_sweep` of M_0 itself (the prompts of D_0) against that dataset's held-out split, else None.
    ``baseline_cfg``: :func:`calibrated_high_cfg` of the iteration-1 FID with ``factor`` when ``baseline`` is
    ``"calibrated"``, the given ``baseline_cfg`` when it is ``"fixed"``. Returns {"grid", "factor", "rule",
    "baseline_cfg", "m0", "iteration_1"} (the layout of the figures' JSON ``calibration`` entry)."""
    check_choice("baseline", baseline, BASELINE_RULES)
    grid = [float(c) for c in cfg_grid]
    m0_sweep = None
    if m0_dataset is not None:
        reference, reference_labels = load_images(m0_dataset, "test", size=net_image_size(m0), dtype="uint8")
        m0_sweep = cfg_fid_sweep(m0, prompts, reference, reference_labels, lenet, cfg_grid=grid, steps=steps,
                                 sigma_max=sigma_max, seed=seed)
    sweep = iteration_one_sweep(m0, d0_images, prompts, lenet, cfg_grid=grid, steps=steps, sigma_max=sigma_max,
                                seed=seed, **finetune)
    if baseline == "calibrated":
        high = calibrated_high_cfg(grid, sweep["fid"], factor)
    else:
        high = float(check_interval("baseline_cfg", baseline_cfg, 1.0, math.inf, high_open=True))
    return {"grid": grid, "factor": factor, "rule": baseline, "baseline_cfg": high, "m0": m0_sweep,
            "iteration_1": sweep}


def calibration_bar(calibration: dict, floor: float, fid_1=None, k: float = 3) -> Precondition:
    # project precondition (issue 28): every collapse claim needs good iteration-1 images at the baseline CFG
    """The iteration-1 bar (:func:`iteration_one_bar`) at the baseline CFG of ``calibration``
    (:func:`calibrate_cfg_axis`): its FID_1 in the iteration-1 sweep when the sweep's grid holds that CFG, else the
    mean of ``fid_1`` (the baseline chains' FID_1, one per seed), <= ``k`` x the real-vs-real ``floor``. Named
    "iteration-1 bar (baseline CFG <c> calibrated)", as in every ReDiFine figure."""
    high, grid = calibration["baseline_cfg"], list(calibration["grid"])
    if high in grid:
        value = float(np.asarray(calibration["iteration_1"]["fid"])[grid.index(high)])
    elif fid_1 is not None:
        value = float(np.mean(fid_1))
    else:
        raise ValueError(f"the baseline CFG {high:g} is not on the calibration grid {grid}: pass the chains' fid_1")
    return iteration_one_bar(f"baseline CFG {high:g} calibrated", value, floor, k)


# ------------------------------------------------------------------------------------- a figure's setting
@dataclass
class ChainSetting:
    """What every ReDiFine figure reads before its chains (:func:`chain_setting`): the classifier, M_0 and its bar,
    D_0 with its prompts and floors, the blank cap, the calibrated CFG axis, and the keyword arguments of every
    fine-tune (``finetune``) and chain (``chain``)."""

    lenet: nn.Module
    m0: "PretrainedM0"
    d0: torch.Tensor  # uint8 [N, 1, H, W], ordered by class
    prompts: torch.Tensor  # D_0's class labels [N]
    codes: torch.Tensor  # what M_0 reads for D_0 [N]: the labels, or class x 27 + the attribute terciles
    d0_index: torch.Tensor  # D_0's indices into its split [N]
    other: torch.Tensor  # N other real images of D_0's style (the fresh floor's), and their labels
    other_prompts: torch.Tensor
    floors: dict  # :func:`real_floors`
    cap: float  # :func:`blank_cap`
    m0_samples: torch.Tensor  # :func:`m0_quality`
    m0_metrics: dict
    m0_floor: dict
    m0_vs_d0: dict  # M_0's CFG-1 samples against D_0: the style gap the first fine-tune closes
    calibration: dict  # :func:`calibrate_cfg_axis`
    finetune: dict  # :func:`finetune_from_m0` keyword arguments
    chain: dict  # :func:`chain_of_diffusion` keyword arguments (``finetune`` included)
    spec: dict = field(default_factory=dict)  # the plain arguments :func:`chain_cell` rebuilds M_0, D_0 and the LeNet from

    @property
    def high_cfg(self) -> float:
        """The baseline's CFG scale (calibrated, or as given)."""
        return float(self.calibration["baseline_cfg"])

    @property
    def chain_cache(self) -> Path | None:
        """Where finished chains are kept (:meth:`run_all`'s ``result_dir``): ``redifine-chains/`` beside M_0's cache;
        None for a setting without a ``spec``."""
        return _m0_cache_dir(self.spec["m0"]["cache_dir"]) / "redifine-chains" if self.spec else None

    @property
    def floor(self) -> float:
        """The fresh real-vs-real FID floor: N other real images against D_0, the least FID_k can read at this N."""
        return float(self.floors["fresh"]["fid"])

    def run(self, *, seed: int, desc: str = "chain", **settings) -> "ChainResult":
        """One :func:`chain_of_diffusion` of M_0 on D_0 with this setting, ``settings`` overriding its keywords."""
        return chain_of_diffusion(self.m0.net, self.d0, self.codes, seed=seed, desc=desc, **(self.chain | settings))

    def run_all(self, runs: dict, *, lanes: int = 1, result_dir=None, progress: bool = False) -> dict:
        """The chains ``runs`` = {name: {"seed": s, **settings}} of this setting, as {name: :class:`ChainResult`}.

        Each chain is a :func:`madlib.sweep.sweep` cell (:func:`chain_cell`, from :attr:`spec`): ``lanes`` > 1 runs
        them in that many one-thread processes, and a chain's numbers do not depend on its lane (issue 28, item 8).
        With ``result_dir`` every finished chain is stored there under a key of its arguments, so an interrupted
        figure resumes and figures that run the same chain (same M_0, D_0, settings and seed) share it. Runs with
        equal settings and seed run once and share one :class:`ChainResult`. A setting without a ``spec`` (built by
        hand) runs its chains in this process, one after another."""
        lanes = check_int("lanes", lanes, minimum=1)
        # runs with the same seed and settings (e.g. two variants at one CFG) run once and share the chain
        same = {name: json.dumps(kw, sort_keys=True, default=float) for name, kw in runs.items()}
        first = {}
        for name, key in same.items():
            first.setdefault(key, name)
        unique = {name: runs[name] for name in first.values()}
        if self.spec:
            cells = [dict(spec=self.spec, run=dict(kw)) for kw in unique.values()]
            done = dict(zip(unique, sweep(chain_cell, cells, options={"lanes": lanes}, result_dir=result_dir,
                                          progress=progress, desc="chains").values))
        elif lanes > 1 or result_dir is not None:
            raise ValueError("this ChainSetting has no spec (chain_setting builds one): run it with lanes = 1 and no result_dir")
        else:
            done = {name: self.run(desc=str(name), **kw) for name, kw in unique.items()}
        return {name: done[first[key]] for name, key in same.items()}


def chain_cell(*, spec: dict, run: dict) -> "ChainResult":
    # one Chain of Diffusion as a madlib.sweep cell (issue 28, item 8): plain arguments in, so any lane can run it
    """:func:`chain_of_diffusion` from plain arguments: M_0 read from its cache (``spec["m0"]``, :func:`pretrain_m0`'s
    keywords; the process that built the setting trained it), D_0 drawn again (``spec["d0"]``, :func:`balanced_subset`'s),
    the LeNet ``spec["lenet"]`` on ``spec["device"]``, and the chain's keywords ``spec["chain"] | run`` (``run`` holds
    its ``seed``); ``spec["code"]`` (:func:`madlib.sweep.source_digest`) only keys a stored result. The same numbers
    as :meth:`ChainSetting.run` at the same thread count."""
    from madlib.metrics import load_lenet

    device = spec["device"]
    m0 = pretrain_m0(**spec["m0"], device=device)
    d0, labels, _ = balanced_subset(**spec["d0"])
    return chain_of_diffusion(m0.net, d0, m0.prompts_for(d0, labels), lenet=load_lenet(spec["lenet"], device=device),
                              **(spec["chain"] | run))


def chain_setting(*, seed: int, device: str, m0_dataset: str, m0_images_seen: int, m0_cache_dir, prompt_kind: str,
                  image_size: int, base_channels: int, d0_dataset: str, n_d0: int, iterations: int, steps: int,
                  sigma_max: float, calibration_grid, calibration_factor: float, baseline: str, baseline_cfg: float,
                  method: str, untrained_uncond: str, epochs: float, batch_size: int, lr: float, rank: int,
                  lora_alpha: float, d0_split: str = "train", d0_style: str = "plain", guidance_images: int = 0,
                  progress: bool = False) -> ChainSetting:
    # ReDiFine Sec. 3.1 (M_0, D_0, Eq. 1's fine-tune) with the project's bars, floors and CFG calibration (issue 28)
    """The setting of a ReDiFine figure, from its notebook parameters (same names): M_0 pretrained or read from the
    cache (:func:`pretrain_m0`); D_0 = ``n_d0`` class-balanced images of ``d0_dataset``'s ``d0_split`` in
    ``d0_style`` drawn with ``seed``, and as many others (seed + 1) for the fresh floor; M_0's bar read on the
    prompts of its own held-out images (:func:`m0_quality`); the blank cap; and the CFG axis calibrated on D_0
    (:func:`calibrate_cfg_axis`, with the style / prompt split of the guidance on ``guidance_images`` images)."""
    from madlib.metrics import image_metrics, load_lenet

    lenet = load_lenet(device=device)
    m0 = pretrain_m0(dataset=m0_dataset, image_size=image_size, base_channels=base_channels, images_seen=m0_images_seen,
                     prompts=prompt_kind, seed=seed, cache_dir=m0_cache_dir, device=device, progress=progress)
    d0, prompts, d0_index = balanced_subset(d0_dataset, n_d0, split=d0_split, image_size=image_size, seed=seed,
                                            style=d0_style)
    codes = m0.prompts_for(d0, prompts)
    own, own_labels, _ = balanced_subset(m0_dataset, n_d0, split="test", image_size=image_size, seed=seed)
    m0_samples, m0_metrics, m0_floor = m0_quality(m0.net, m0.prompts_for(own, own_labels), lenet, dataset=m0_dataset,
                                                  image_size=image_size, steps=steps, seed=seed, n=n_d0)
    other, other_prompts, _ = balanced_subset(d0_dataset, n_d0, split=d0_split, image_size=image_size, seed=seed + 1,
                                              exclude=d0_index, style=d0_style)
    finetune = dict(method=method, untrained_uncond=untrained_uncond, epochs=epochs, batch_size=batch_size, lr=lr,
                    rank=rank, lora_alpha=lora_alpha)
    calibration = calibrate_cfg_axis(m0.net, d0, codes, lenet, cfg_grid=calibration_grid, factor=calibration_factor,
                                     baseline=baseline, baseline_cfg=baseline_cfg, m0_dataset=m0_dataset, steps=steps,
                                     sigma_max=sigma_max, seed=seed, guidance_images=guidance_images, **finetune)
    chain = dict(sigma_max=sigma_max, iterations=iterations, steps=steps, **finetune)
    spec = dict(device=str(device), lenet="default", code=source_digest(),  # stored chains never outlive a code change
                m0=dict(dataset=m0_dataset, image_size=image_size, base_channels=base_channels, images_seen=m0_images_seen,
                        prompts=prompt_kind, seed=seed, cache_dir=None if m0_cache_dir is None else str(m0_cache_dir)),
                d0=dict(dataset=d0_dataset, n=n_d0, split=d0_split, image_size=image_size, seed=seed, style=d0_style),
                chain=chain)
    return ChainSetting(lenet=lenet, m0=m0, d0=d0, prompts=prompts, codes=codes, d0_index=d0_index, other=other,
                        other_prompts=other_prompts, floors=real_floors(d0, prompts, other, other_prompts, lenet, seed=seed),
                        cap=blank_cap(d0, prompts, lenet), m0_samples=m0_samples, m0_metrics=m0_metrics, m0_floor=m0_floor,
                        m0_vs_d0=image_metrics(m0_samples, prompts, d0, prompts, lenet), calibration=calibration,
                        finetune=finetune, chain=chain | dict(lenet=lenet, progress=progress), spec=spec)


# ----------------------------------------------------------------------------------------------- D_0 styles
D0_STYLES = ("plain", "dilate", "blur", "pixelate")  # :func:`restyle`


def restyle(images: torch.Tensor, style: str = "plain") -> torch.Tensor:
    # project choice (issue 28, item 6): a second D_0 style that is not M_0's thin-stroke MNIST
    """uint8 images [N, C, H, W] in another style: ``"plain"`` as given; ``"dilate"`` thick strokes (3x3 grey
    dilation, a max over each pixel's 3x3 neighbourhood); ``"blur"`` soft strokes (the 3x3 binomial kernel
    [1, 2, 1]^T [1, 2, 1] / 16, zero padding); ``"pixelate"`` blocky strokes (mean over 2x2 blocks, then each
    block's value repeated: an upscaled low-resolution digit, as the 8x8 digits are)."""
    from torch.nn import functional as F

    check_choice("style", style, D0_STYLES)
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [N, C, H, W]; got {images.dtype} {tuple(images.shape)}")
    if style == "plain":
        return images.clone()
    x = images.double()
    if style == "dilate":
        y = F.max_pool2d(x, 3, stride=1, padding=1)
    elif style == "blur":
        k = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
        kernel = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3)
        y = F.conv2d(x, kernel, padding=1, groups=x.shape[1])
    else:
        H, W = x.shape[-2:]
        y = F.interpolate(F.avg_pool2d(x, 2, ceil_mode=True), scale_factor=2, mode="nearest")[..., :H, :W]
    return y.round().clamp(0, 255).to(torch.uint8)


# ------------------------------------------------------------------------------------------------ trait fit
def standardised_phenotype(phenotype, reference) -> np.ndarray:
    """(S - mean(S_ref)) / sd(S_ref): a phenotype in units of D_0's spread, D_0 at mean 0, sd 1 (any shape)."""
    ref = np.asarray(reference, float)
    return (np.asarray(phenotype, float) - ref.mean()) / ref.std(ddof=1)


@dataclass(frozen=True)
class TraitFit:
    """(r1, r2) of the truncation recursion fitted to a measured mean trajectory [T+1], the fitted trajectory and
    the root-mean-square error over iterations 1..T; ``sigma_E`` as used."""

    r1: float
    r2: float
    rmse: float
    fitted: np.ndarray
    sigma_E: float


FIT_GRID = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6,
            0.675, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)


def fit_truncation_ratios(measured_mean, *, mu0: float = 0.0, sigma_G0: float = 1.0,
                          sigma_E: float = PAPER_SIGMA_RATIO, grid=FIT_GRID) -> TraitFit:
    # ReDiFine Sec. 4.2, Fig. 4b, App. D.2.2: the truncation ratios that reproduce a measured phenotype trajectory
    """Least-squares (r1, r2) of :func:`madlib.theory.traits.trait_recursion` against ``measured_mean`` [T+1]
    (iterations 0..T; entry 0 is D_0, matched by ``mu0``), over every pair of ``grid`` with r1 + r2 < 1, refined
    by Nelder-Mead on logit(r1), logit(r2). ``sigma_G0`` and ``sigma_E`` as in the recursion (default: the
    standardised phenotype, sigma_G,0 = 1, and the paper's ratio sigma_E / sigma_G,0 = 0.25 / 0.056).
    """
    from scipy.optimize import minimize

    from madlib.theory.traits import trait_recursion

    measured = np.asarray(measured_mean, float)
    if measured.ndim != 1 or measured.shape[0] < 2 or not np.all(np.isfinite(measured)):
        raise ValueError(f"measured_mean must be a finite [T+1] trajectory with T >= 1; got shape {measured.shape}")
    T = measured.shape[0] - 1

    def loss(r1, r2):
        if not (0 <= r1 and 0 <= r2 and r1 + r2 < 0.999):
            return np.inf
        mean = trait_recursion((r1, r2), T, mu0=mu0, sigma_G0=sigma_G0, sigma_E=sigma_E).mean
        return float(np.mean((mean[1:] - measured[1:]) ** 2))

    pairs = [(a, b) for a in grid for b in grid if a + b < 0.999]
    r1, r2 = min(pairs, key=lambda p: loss(*p))
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    expit = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    best = minimize(lambda z: loss(expit(z[0]), expit(z[1])), [logit(r1), logit(r2)], method="Nelder-Mead",
                    options={"xatol": 1e-3, "fatol": 1e-8, "maxiter": 400})
    if best.fun < loss(r1, r2):
        r1, r2 = expit(best.x[0]), expit(best.x[1])
    fitted = trait_recursion((r1, r2), T, mu0=mu0, sigma_G0=sigma_G0, sigma_E=sigma_E).mean
    return TraitFit(float(r1), float(r2), float(math.sqrt(loss(r1, r2))), fitted, float(sigma_E))
