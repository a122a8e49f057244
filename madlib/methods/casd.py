"""CASD: one diffusion model conditioned on the data source, against DM and SDA (CASD Sec. 3.2, Algorithm 1-2).

Paper: "Conditional Augmentation Enables Effective Use of Synthetic Data" (``../shared/papers/002_*.txt``),
Sec. 3.2 (Eq. 4-5), Algorithm 1 (training), Algorithm 2 / App. A.3 (Heun sampling), Sec. 4.1 (baselines),
App. A.2 (network). Experiment IDs CASD-0..3 of ``../shared/paper-targets.md``.

The three methods, one network, one budget, one sampler (Sec. 4.1: "All methods use the same architecture
and follow the EDM training protocol"):

- **DM** (:func:`dm_train`): an unconditional EDM denoiser D(x; sigma) on the real images only.
- **SDA** (:func:`sda_train`): the same unconditional denoiser on real and synthetic images pooled.
- **CASD** (:func:`casd_train`, Algorithm 1): the same denoiser with a second label, the source
  (real 0, synthetic 1: Algorithm 1 line 3), through an embedding and a SiLU MLP into the U-Net's
  conditioning (App. A.2; :class:`madlib.diffusion.unet.UNet` ``num_sources``), trained on the pooled set
  with equal weight 1 / (n + m) per image (Eq. 5): no per-source reweighting, no label dropout, no CFG.
  :func:`casd_sample` (Algorithm 2) fixes the source label to 0 and runs EDM's deterministic 2nd-order
  Heun sampler. Eq. 5 writes a score-matching target while Algorithm 2 treats s_theta as a denoiser
  D(x; sigma, y); paper-targets reads Eq. 5 as EDM's preconditioned denoiser and loss (Algorithm 2 wins).

All three are class-unconditional (Sec. 4.1: DM and SDA are "unconditional"; CASD's only label is the source).
The U-Net is :class:`UNet` with ``num_classes=0`` (project-sized: widths 16 / 32 / 32 at 14x14 on CPUs where
the paper uses a DDPM++ U-Net with 128-256 channels), wrapped in :class:`EDMPrecond` and trained with
:func:`edm_loss`; the budget is counted in images seen (``images_seen``), the same for every method of a cell,
so a method's advantage is the data, not the compute.

**Synthetic sources** (paper-targets, substitutions: the project trains its own in place of EDM / StyleGAN /
SD3 checkpoints): :class:`SourceSpec` names a dataset, an optional class subset and a budget. A *good* source is
an unconditional EDM model trained on the whole MNIST 5k training split (4,000 images, more than any real set
n here, as CASD's EDM sources saw all of CIFAR-10); a *biased* source is trained on scikit-learn's 8x8 digits
upscaled to the same size (an off-style set: thicker, blockier strokes; project choice). CASD-2's mismatched
sources are trained on class subsets (0-9, 2-9, 2-7) of the MNIST 5k training split.

Every fit is :func:`madlib.diffusion.core.train` (initial weights from the first draw of the seed's generator, as
for every image model), every sample :func:`madlib.diffusion.core.sample`, every measurement
:meth:`madlib.metrics.images.HeldOutMetrics.protocol` (:func:`sample_metrics`).

**Disk cache** (:func:`madlib.diffusion.cache.cached_fit`): every trained network (sources and the methods' fits) and every synthetic
set is stored under ``cache_dir`` in a file named by the SHA-256 of everything that changes it (the role, the
training settings, the data's bytes, the seed); the file also holds those settings, and a file whose stored
settings differ from the asked ones is never used. Files are written atomically (:func:`madlib._io.atomic_path`),
so an interrupted build leaves either the whole file or none. ``cache_dir=None`` trains in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from madlib._checks import check_choice, check_int, resolve_device
from madlib.data.images import balanced_index, load_images, to_uint8  # noqa: F401 - to_uint8: casd.to_uint8 stays
from madlib.diffusion import core
from madlib.diffusion.cache import cache_key, cached_fit, cached_images
from madlib.diffusion.config import EDMConfig
from madlib.diffusion.losses import EDMPrecond, edm_loss

__all__ = ["EDMSettings", "SourceSpec", "Fit", "METHODS", "REAL", "SYNTHETIC", "cell_key", "first_n_balanced", "first_n_index",
           "source_labels", "pooled_training_set", "casd_train", "dm_train", "sda_train", "train_method",
           "heun_sample", "casd_sample", "sample_method", "train_source", "synthetic_set", "cached_fit",
           "sample_metrics", "cache_key", "run_method", "oracle_train", "snapshot_steps", "source_fit",
           "cell_training_set", "run_cell", "run_source", "FigureSetting", "figure_setting"]

PIXEL_RANGE = core.PIXEL_RANGE
REAL, SYNTHETIC = 0, 1  # CASD Sec. 3.2: y_r = 0, y_s = 1


@dataclass(frozen=True)
class EDMSettings(EDMConfig):
    """The network, training budget and sampler shared by DM, SDA, CASD and the sources (project-sized).

    :class:`~madlib.diffusion.config.EDMConfig`'s network, optimiser and sampler fields, plus images_seen (the
    training budget per fit; steps = ceil(images_seen / batch)) and device (where the networks train and sample).
    """

    images_seen: int = 24_000
    device: str = "cpu"

    def __post_init__(self):
        super().__post_init__()
        check_int("images_seen", self.images_seen, minimum=1)
        object.__setattr__(self, "device", resolve_device("device", self.device))

    def training(self) -> dict:
        """The settings a fit depends on (the cache key's part; the sampler's and the device's are not)."""
        skip = ("sample_steps", "sigma_min", "sigma_max", "rho", "sample_batch", "device")
        return {k: v for k, v in self.settings().items() if k not in skip}


@dataclass
class Fit:
    """A trained denoiser (its EMA copy, eval mode), whether it is CASD's (takes a source label), its training
    time and throughput (None when loaded from the cache), its cache key, and snapshots of the EMA network along
    the budget ({images seen: Fit}, each with its own key ``<key>@<images seen>``)."""

    net: torch.nn.Module
    conditional: bool
    key: str
    from_cache: bool
    train_seconds: float | None
    images_per_s: float | None
    final_loss: float | None = None
    snapshots: dict[int, "Fit"] = field(default_factory=dict)


# --- Data ----------------------------------------------------------------------------------------------------

def first_n_index(labels: torch.Tensor, n: int, classes=None) -> torch.Tensor:
    # CASD Sec. 4 (paper-targets CASD-0): real data = the first n samples, class-balanced (n / K per class)
    """Indices [n] of the first n // K images of each class in ``classes`` (default: all), in storage order, plus
    one more for the first n mod K classes (:func:`madlib.data.images.balanced_index` without a generator)."""
    return balanced_index(labels, check_int("n", n, minimum=1), classes=classes)


def first_n_balanced(images: torch.Tensor, labels: torch.Tensor, n: int, classes=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [n, ...], labels [n]) at :func:`first_n_index`: the real set D_r of a CASD cell.

    ``images`` [N, ...] and ``labels`` [N] must be paired one to one (ValueError otherwise)."""
    if len(images) != len(labels):
        raise ValueError(f"images and labels must hold one label per image; got {len(images)} images and "
                         f"{len(labels)} labels")
    idx = first_n_index(labels, n, classes)
    return images[idx], labels[idx]


def source_labels(n_real: int, n_synthetic: int) -> torch.Tensor:
    # CASD Algorithm 1 line 3: D~_r = {(x_i^r, y_r = 0)}, D~_s = {(x_j^s, y_s = 1)}
    """int64 [n_real + n_synthetic]: 0 for the real images, then 1 for the synthetic ones."""
    return torch.cat([torch.full((n_real,), REAL, dtype=torch.int64), torch.full((n_synthetic,), SYNTHETIC, dtype=torch.int64)])


def pooled_training_set(real: torch.Tensor, synthetic: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    # CASD Eq. 5: one pool of n + m images, each with weight 1 / (n + m), whatever its source
    """(uint8 images [n + m, C, H, W], source labels [n + m]) of real [n, ...] and synthetic [m, ...] (or None)."""
    if synthetic is None or len(synthetic) == 0:
        return real, source_labels(len(real), 0)
    if real.shape[1:] != synthetic.shape[1:]:
        raise ValueError(f"real and synthetic images must share [C, H, W]; got {tuple(real.shape[1:])} and "
                         f"{tuple(synthetic.shape[1:])}")
    return torch.cat([real, synthetic]), source_labels(len(real), len(synthetic))


# --- Training: Algorithm 1 and the baselines -----------------------------------------------------------------

def _new_denoiser(settings: EDMSettings, conditional: bool, seed: int) -> EDMPrecond:
    # CASD App. A.2 (project-sized): conv stem, source embedding -> SiLU MLP (CASD only), U-Net; EDM Table 1 preconditioning
    return settings.network(seed, settings.device, num_sources=2 if conditional else 0)


def snapshot_steps(snapshot_images, n_images: int, batch_size: int) -> dict[int, int]:
    """{optimiser step: images seen} of EMA snapshots taken after ``snapshot_images`` images seen (rounded up to a
    whole step; the core clips the batch to the set's size)."""
    return {step: b for b, step in core.budget_steps(snapshot_images, n_images, batch_size, name="snapshot_images").items()}


def _fit(role: str, images: torch.Tensor, sources: torch.Tensor | None, settings: EDMSettings, seed: int,
         cache_dir, progress: bool, snapshot_images=()) -> Fit:
    """Train one EDM denoiser (with source labels when ``sources`` is given) from scratch on uint8 ``images``
    (:func:`madlib.diffusion.core.train`: initial weights from the seed's first draw, cached by role, settings,
    seed and the data's bytes)."""
    seed = check_int("seed", seed, minimum=0)
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [N, C, H, W]; got {images.dtype} {tuple(images.shape)}")
    conditional = sources is not None
    # "init": the initial weights are the first draw of the seed's generator (the core's convention; before, the
    # seed itself, so files of that convention are never read as these)
    key_settings = {"role": role, "training": settings.training(), "seed": seed, "conditional": conditional,
                    "init": "first-draw"}
    steps = snapshot_steps(snapshot_images, len(images), settings.batch_size)
    if steps:  # a file with snapshots is another file (a cached fit without them cannot serve them)
        key_settings["snapshot_images"] = sorted(steps.values())
    # CASD Eq. 5 with EDM's loss (Algorithm 2 reading): lambda(sigma) |D(x + sigma n; sigma, y) - x|^2, uniform over
    # the pool; the source label is never dropped (no CFG)
    fit = core.train(images, settings, images_seen=settings.images_seen, seed=seed,
                     net=lambda init: _new_denoiser(settings, conditional, init), sources=sources, loss=edm_loss,
                     snapshot_steps=list(steps), cache_dir=cache_dir, role=role, settings=key_settings,
                     device=settings.device, progress=progress)
    stats = fit.stats
    snapshots = {steps[step]: Fit(net, conditional, f"{fit.key}@{steps[step]}", fit.loaded, None, None)
                 for step, net in sorted(fit.snapshots.items())}
    return Fit(fit.net, conditional, fit.key, fit.loaded, None if fit.loaded else stats.seconds,
               None if fit.loaded else stats.samples_per_s, None if stats is None else float(stats.final_loss[0]),
               snapshots)


def casd_train(real: torch.Tensor, synthetic: torch.Tensor, settings: EDMSettings, seed: int, *, cache_dir=None,
               progress: bool = False, snapshot_images=()) -> Fit:
    # CASD Algorithm 1 lines 2-6 (training stage), Eq. 5
    """One source-conditional denoiser on real (label 0) and synthetic (label 1) uint8 images, pooled."""
    images, sources = pooled_training_set(real, synthetic)
    return _fit("casd", images, sources, settings, seed, cache_dir, progress, snapshot_images)


def dm_train(real: torch.Tensor, settings: EDMSettings, seed: int, *, cache_dir=None, progress: bool = False,
             snapshot_images=()) -> Fit:
    # CASD Sec. 4.1 baseline DM: an unconditional diffusion model trained only on D_r
    """An unconditional denoiser on the real images alone."""
    return _fit("dm", real, None, settings, seed, cache_dir, progress, snapshot_images)


def oracle_train(real: torch.Tensor, settings: EDMSettings, seed: int, *, cache_dir=None, progress: bool = False,
                 snapshot_images=()) -> Fit:
    # project reference (issue 27): DM on n + m *real* images, what m perfect synthetic images could at most buy
    """DM's unconditional denoiser on ``real``: the n real images of the cell plus m more real ones (give
    :meth:`madlib.data.images.ProtocolSets.first` (n + m)); never a synthetic image."""
    return _fit("oracle", real, None, settings, seed, cache_dir, progress, snapshot_images)


def sda_train(real: torch.Tensor, synthetic: torch.Tensor, settings: EDMSettings, seed: int, *, cache_dir=None,
              progress: bool = False, snapshot_images=()) -> Fit:
    # CASD Sec. 4.1 baseline SDA: an unconditional diffusion model trained on D_r union D_s
    """An unconditional denoiser on real and synthetic images pooled, without telling them apart."""
    images, _ = pooled_training_set(real, synthetic)
    return _fit("sda", images, None, settings, seed, cache_dir, progress, snapshot_images)


METHODS = {"dm": dm_train, "oracle": oracle_train, "sda": sda_train, "casd": casd_train}


def train_method(method: str, real: torch.Tensor, synthetic: torch.Tensor | None, settings: EDMSettings, seed: int,
                 *, cache_dir=None, progress: bool = False, snapshot_images=()) -> Fit:
    """:data:`METHODS`[method] on (real, synthetic); DM and the oracle ignore ``synthetic`` (the oracle's ``real``
    holds n + m real images)."""
    check_choice("method", method, METHODS)
    kw = dict(cache_dir=cache_dir, progress=progress, snapshot_images=snapshot_images)
    if method in ("dm", "oracle"):
        return METHODS[method](real, settings, seed, **kw)
    if synthetic is None:
        raise ValueError(f"method {method!r} needs synthetic images; got None")
    return METHODS[method](real, synthetic, settings, seed, **kw)


# --- Sampling: Algorithm 2 -----------------------------------------------------------------------------------

def heun_sample(fit: Fit, n: int, settings: EDMSettings, seed: int, *, source: int | None = None) -> torch.Tensor:
    # CASD Algorithm 2 (EDM Algorithm 1): deterministic 2nd-order Heun on EDM's sigma grid
    """n uint8 images [n, C, H, W] (CPU); ``source`` is the label every network call gets (None: unconditional)."""
    n = check_int("n", n, minimum=1)
    if fit.conditional != (source is not None):
        raise ValueError(f"source must be {'an int (CASD is source-conditional)' if fit.conditional else 'None (an unconditional model)'}; got {source!r}")
    return core.sample(fit.net, n, seed=seed, image_shape=settings.image_shape(),
                       sigmas=settings.sigmas(), sources=source, sample_batch=settings.sample_batch,
                       device=settings.device)


def casd_sample(fit: Fit, n: int, settings: EDMSettings, seed: int) -> torch.Tensor:
    # CASD Algorithm 1 line 8 / Algorithm 2 line 2: fix the source label Y = y_r = 0 (real domain)
    """n uint8 images of a CASD model, every network evaluation with source label 0."""
    if not fit.conditional:
        raise ValueError("casd_sample needs a source-conditional fit (casd_train); DM and SDA sample with heun_sample")
    return heun_sample(fit, n, settings, seed, source=REAL)


def sample_method(method: str, fit: Fit, n: int, settings: EDMSettings, seed: int) -> torch.Tensor:
    """Samples of a :func:`train_method` fit: CASD with source 0, DM and SDA unconditionally; same sampler."""
    check_choice("method", method, METHODS)
    return casd_sample(fit, n, settings, seed) if method == "casd" else heun_sample(fit, n, settings, seed)


# --- Synthetic sources ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceSpec:
    """A synthetic source the project trains itself: an unconditional EDM model on ``dataset``'s whole training
    split (at the settings' image size), restricted to ``classes`` when given, for ``images_seen`` images."""

    name: str
    dataset: str = "mnist5k"
    classes: tuple[int, ...] | None = None
    images_seen: int = 60_000
    description: str = ""
    snapshot_images: tuple[int, ...] = ()  # EMA snapshots kept along the budget (a weaker source at no extra cost)
    per_class: int | None = None  # the first per_class training images of each class only (None: the whole split)

    def plain(self) -> dict:
        """The spec as plain JSON data (a sweep cell's argument; :meth:`from_plain` inverts it)."""
        return {"name": self.name, "dataset": self.dataset, "classes": None if self.classes is None else list(self.classes),
                "images_seen": self.images_seen, "description": self.description,
                "snapshot_images": list(self.snapshot_images), "per_class": self.per_class}

    @classmethod
    def from_plain(cls, plain: dict) -> "SourceSpec":
        classes = plain.get("classes")
        return cls(**{**plain, "classes": None if classes is None else tuple(classes),
                      "snapshot_images": tuple(plain.get("snapshot_images", ()))})

    def training_images(self, image_size: int) -> torch.Tensor:
        """uint8 images the source trains on: the training split in ``classes``, or with ``per_class`` its first
        per_class images of each class (inside every figure's protocol pool of at least that many per class, so
        the source never sees an image of a reference: :func:`madlib.data.images.protocol_sets`)."""
        images, labels = load_images(self.dataset, "train", size=image_size, dtype="uint8")
        classes = sorted(set(labels.tolist())) if self.classes is None else list(self.classes)
        if self.per_class is not None:
            per_class = check_int("per_class", self.per_class, minimum=1)
            return images[balanced_index(labels, per_class * len(classes), classes=classes,
                                         where=f"{self.dataset}'s training split")]
        return images[torch.isin(labels, torch.as_tensor(classes))]


def train_source(spec: SourceSpec, settings: EDMSettings, seed: int, *, cache_dir=None, progress: bool = False) -> Fit:
    """Train (or load from the cache) the source ``spec`` with the shared network and its own budget; its EMA
    snapshots at ``spec.snapshot_images`` are in ``Fit.snapshots``."""
    source_settings = replace(settings, images_seen=spec.images_seen)
    role = f"source-{spec.dataset}-{'all' if spec.classes is None else ''.join(map(str, spec.classes))}"
    return _fit(role, spec.training_images(settings.image_size), None, source_settings, seed, cache_dir, progress,
                spec.snapshot_images)


def source_fit(spec: SourceSpec, settings: EDMSettings, seed: int, *, snapshot: int | None = None, cache_dir=None,
               progress: bool = False) -> Fit:
    """The source ``spec`` (:func:`train_source`), or its EMA snapshot after ``snapshot`` images seen (one of
    ``spec.snapshot_images``)."""
    fit = train_source(spec, settings, seed, cache_dir=cache_dir, progress=progress)
    if snapshot is None:
        return fit
    if snapshot not in fit.snapshots:
        raise ValueError(f"snapshot must be one of the source's snapshot_images {sorted(fit.snapshots)} or None; "
                         f"got {snapshot!r}")
    return fit.snapshots[snapshot]


def synthetic_set(source: Fit, m: int, settings: EDMSettings, seed: int, *, cache_dir=None) -> torch.Tensor:
    """m uint8 samples of a source (Heun), cached beside it (keyed by the source's key, m, seed and sampler)."""
    m = check_int("m", m, minimum=0)
    if m == 0:
        shape = (0, settings.image_channels, settings.image_size, settings.image_size)
        return torch.zeros(shape, dtype=torch.uint8)
    key_settings = {"source": source.key, "m": m, "seed": seed, "sampler": [settings.sample_steps, settings.sigma_min,
                                                                            settings.sigma_max, settings.rho,
                                                                            settings.sample_batch]}
    return cached_images(cache_dir, "synthetic", key_settings, lambda: heun_sample(source, m, settings, seed))


# --- Measurement ---------------------------------------------------------------------------------------------

def sample_metrics(images: torch.Tensor, reference_images, lenet, *, num_classes: int = 10, k: int = 5) -> dict:
    """FID, KID, precision, recall, density and coverage (k = 5) of unconditional samples against a reference set on
    the project's LeNet features (:meth:`madlib.metrics.images.HeldOutMetrics.protocol`), the sizes, and the
    classifier's class shares of the samples (CASD Table 1-3, Fig. 3).

    ``reference_images``: uint8 images [N, C, H, W], or a :class:`HeldOutMetrics` of them on ``lenet`` with this
    ``k`` (its reference features computed once for every call)."""
    from madlib.metrics.images import HeldOutMetrics, class_shares

    held = reference_images
    if not isinstance(held, HeldOutMetrics):
        held = HeldOutMetrics(reference_images, lenet, k=k)
    elif held.lenet is not lenet or held.k != k:
        raise ValueError(f"reference_images, a HeldOutMetrics, must use this lenet and k = {k}; got k = {held.k}"
                         f"{'' if held.lenet is lenet else ' and another lenet'}")
    return core.evaluate(held, images, protocol=True) | {"class_shares": class_shares(images, lenet, num_classes)}


def cell_key(method: str, source: str | None, n: int, m: int) -> str:
    """The name of one cell of a CASD grid, ``"casd/good/n=400/m=2000"``; DM (no synthetic data) always has m = 0,
    and the oracle (m more real images, no source) ``"oracle/none/n=100/m=1000"``."""
    check_choice("method", method, METHODS)
    return f"{method}/{'none' if method in ('dm', 'oracle') else source}/n={n}/m={0 if method == 'dm' else m}"


def run_method(method: str, real: torch.Tensor, synthetic: torch.Tensor | None, settings: EDMSettings, seed: int, *,
               reference, lenet, eval_samples: int, eval_seed: int, cache_dir=None, snapshot_images=(), k: int = 5,
               progress: bool = False) -> dict:
    """One cell of a CASD table: train ``method`` (or load it from the cache; EMA snapshots at ``snapshot_images``),
    draw ``eval_samples`` images with the shared Heun sampler and fixed noise ``eval_seed``, and measure them against
    ``reference`` (:func:`sample_metrics`). Returns ``{"metrics", "images", "fit", "train_seconds", "images_per_s",
    "sample_seconds", "from_cache"}`` (train times are None for a cached fit)."""
    fit = train_method(method, real, synthetic, settings, seed, cache_dir=cache_dir, progress=progress,
                       snapshot_images=snapshot_images)
    start = time.perf_counter()
    images = sample_method(method, fit, eval_samples, settings, eval_seed)
    sample_seconds = time.perf_counter() - start
    return {"metrics": sample_metrics(images, reference, lenet, k=k), "images": images, "fit": fit,
            "train_seconds": fit.train_seconds, "images_per_s": fit.images_per_s, "sample_seconds": sample_seconds,
            "from_cache": fit.from_cache}


# --- One cell of a grid, as a sweep cell (plain data in and out; runs in any lane) ---------------------------

def cell_training_set(method: str, protocol, n: int, m: int, synthetic: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(real, synthetic) a cell's method trains on: D_r = the first n class-balanced real images of ``protocol``
    (a :class:`madlib.data.images.ProtocolSets`) with the first m synthetic images (SDA, CASD), D_r alone (DM), or
    the first n + m real images and nothing synthetic (the oracle)."""
    check_choice("method", method, METHODS)
    if method == "oracle":
        return protocol.first(n + m)[0], None
    real = protocol.first(n)[0]
    if method == "dm":
        return real, None
    if synthetic is None or len(synthetic) < m:
        raise ValueError(f"method {method!r} needs at least m = {m} synthetic images; got "
                         f"{'None' if synthetic is None else len(synthetic)}")
    return real, synthetic[:m]


def _protocol(dataset: str, size: int, pool: int, classes, device: str, k: int):
    from madlib.metrics.images import reference_protocol

    return reference_protocol(dataset, size, pool, classes, device, k)


def run_cell(*, method: str, source: dict | None, n: int, m: int, seed: int, settings: dict, dataset: str,
             pool: int, classes: list | None, eval_samples: int, eval_seed: int, source_seed: int = 1000,
             synthetic_m: int | None = None, synthetic_seed: int = 2000, curve_images: list | tuple = (),
             curve_samples: int = 500, near_copy_ssim: float | None = None, k: int = 5, cache_dir: str | None = None) -> dict:
    """One (method, source, n, m, seed) cell end to end, from plain arguments (a :func:`madlib.sweep.sweep` cell
    that any lane can run): train the method (cached), draw ``eval_samples`` images with noise ``eval_seed`` and
    measure them with the protocol (:func:`sample_metrics`) against the reference of :func:`protocol_sets`
    (``dataset``, ``pool``, ``classes``); FID / KID of ``curve_samples`` images (same latents) of the EMA snapshots at
    ``curve_images`` images seen and of the final network (the FID-against-budget curve; ``curve_samples`` at most
    ``eval_samples``); with ``near_copy_ssim``,
    the nearest-training-image similarity of the samples to the cell's real training images.

    ``source``: None (DM, oracle) or ``{"spec": SourceSpec.plain(), "snapshot": images seen or None}``, trained
    with ``source_seed``; the synthetic set is its first ``synthetic_m`` (default m) Heun samples drawn with
    ``synthetic_seed`` (cached: the sources and sets are drawn once before a grid runs), of which the cell takes m.
    Returns plain data: ``metrics``, ``curve`` {images seen: {fid, kid}}, ``memorization`` (or None), ``images``
    (uint8), ``train_seconds`` / ``images_per_s`` (None from the cache), ``sample_seconds``, ``from_cache``, ``key``.
    """
    from madlib.metrics import lenet_features, memorization

    settings = EDMSettings(**settings)
    if curve_images and check_int("curve_samples", curve_samples, minimum=2) > check_int("eval_samples", eval_samples, minimum=2):
        raise ValueError(f"curve_samples must be at most eval_samples = {eval_samples} (the final point of the curve reads "
                         f"the first curve_samples evaluation images); got {curve_samples}")
    protocol, lenet, held = _protocol(dataset, settings.image_size, pool, None if classes is None else tuple(classes), settings.device, k)
    synthetic = None
    if method in ("sda", "casd"):
        if source is None:
            raise ValueError(f"method {method!r} needs a source; got None")
        fit = source_fit(SourceSpec.from_plain(source["spec"]), settings, source_seed, snapshot=source.get("snapshot"),
                         cache_dir=cache_dir)
        synthetic = synthetic_set(fit, synthetic_m or m, settings, synthetic_seed, cache_dir=cache_dir)
    real, synthetic = cell_training_set(method, protocol, n, m, synthetic)
    budget = [int(b) for b in curve_images if int(b) < settings.images_seen]
    out = run_method(method, real, synthetic, settings, seed, reference=held, lenet=lenet, eval_samples=eval_samples,
                     eval_seed=eval_seed, cache_dir=cache_dir, snapshot_images=budget, k=k)
    fit, images = out.pop("fit"), out["images"]
    curve = {}
    if budget:
        for b, snap in sorted(fit.snapshots.items()):
            read = held.protocol(sample_method(method, snap, curve_samples, settings, eval_seed))
            curve[b] = {"fid": read["fid"], "kid": read["kid"]}
        read = held.protocol(images[:curve_samples])  # the final network on the same latents
        curve[settings.images_seen] = {"fid": read["fid"], "kid": read["kid"]}
    memo = None
    if near_copy_ssim is not None:
        train_real = real if method != "oracle" else protocol.first(n)[0]
        found = memorization(images, train_real, threshold=near_copy_ssim, generated_features=lenet_features(images, lenet),
                             training_features=lenet_features(train_real, lenet))
        memo = {"mean_nearest_ssim": found.mean_nearest_ssim, "near_copy_share": found.near_copy_share,
                "mean_nearest_feature_distance": found.mean_nearest_feature_distance,
                "nearest_ssim": found.nearest_ssim, "nearest_index": found.nearest_index}
    return out | {"curve": curve, "memorization": memo, "key": fit.key, "reference_count": protocol.reference_count}


def run_source(*, spec: dict, settings: dict, seed: int, dataset: str, pool: int, classes: list | None,
               eval_samples: int, eval_seed: int, k: int = 5, cache_dir: str | None = None) -> dict:
    """Train (or load) one source with its snapshots, from plain arguments (a sweep cell), and measure the final
    network and each snapshot on ``eval_samples`` Heun samples with noise ``eval_seed`` against the protocol's
    reference: {images seen: metrics} (the final under ``spec["images_seen"]``), plus the training time."""
    settings = EDMSettings(**settings)
    spec = SourceSpec.from_plain(spec)
    fit = train_source(spec, settings, seed, cache_dir=cache_dir)
    _, lenet, held = _protocol(dataset, settings.image_size, pool, None if classes is None else tuple(classes), settings.device, k)
    reads = {b: sample_metrics(heun_sample(f, eval_samples, settings, eval_seed), held, lenet, k=k)
             for b, f in [*sorted(fit.snapshots.items()), (spec.images_seen, fit)]}
    return {"metrics": reads, "train_seconds": fit.train_seconds, "from_cache": fit.from_cache, "key": fit.key}


@dataclass
class FigureSetting:
    """What every CASD figure reads before its cells (:func:`figure_setting`)."""

    settings: EDMSettings
    cache: Path  # trained sources and fits, per profile
    protocol: object  # :class:`madlib.data.images.ProtocolSets`: the pool and the reference
    lenet: torch.nn.Module
    held: object  # :class:`madlib.metrics.images.HeldOutMetrics` of the reference (k nearest neighbours)
    floor: dict  # real-vs-real: min(eval_samples, pool) pool images against the reference
    seeds: list[int]


def figure_setting(*, seed: int, device: str, profile: str, dataset: str, cache_dir, image_size: int,
                   base_channels: int, images_seen: int, batch_size: int, lr: float, ema_decay: float,
                   sample_steps: int, pool: int, eval_samples: int, n_seeds: int, classes=None,
                   k: int = 5) -> FigureSetting:
    # project protocol (issue 27): the methods train on the pool's first images, every fit is read against the rest
    """The setting of a CASD figure, from its notebook parameters (same names): the fits' settings, the cache
    (``cache_dir``, default ``build/casd_cache/<profile>`` of the repository), the protocol's sets of ``classes``
    (None: every class) with the project's LeNet and the reference metrics, the floor (real images drawn with
    seed + 7) and the ``n_seeds`` seeds from ``seed``."""
    from madlib.figures.record import repo_root

    cache = Path(cache_dir) if cache_dir is not None else repo_root() / "build" / "casd_cache" / profile
    settings = EDMSettings(image_size=image_size, base_channels=base_channels, images_seen=images_seen,
                           batch_size=batch_size, lr=lr, ema_decay=ema_decay, sample_steps=sample_steps, device=device)
    protocol, lenet, held = _protocol(dataset, image_size, pool, None if classes is None else tuple(classes),
                                      settings.device, k)
    return FigureSetting(settings=settings, cache=cache, protocol=protocol, lenet=lenet, held=held,
                         floor=held.floor(protocol.pool_images, min(eval_samples, pool), seed=seed + 7),
                         seeds=[seed + j for j in range(check_int("n_seeds", n_seeds, minimum=1))])
