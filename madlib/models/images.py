"""Class-conditional image DDPMs as a model family of the loop engine (MAD Sec. 3.2-4, MAD-9..12).

One generation, as MAD trains its MNIST DDPMs (Sec. 3.2, 4.1):

1. ``fit``: a fresh U-Net (:class:`madlib.diffusion.unet.UNet`) is trained from scratch on the
   generation's training set with the DDPM epsilon loss and 10% condition dropout (the "no label"
   token trains the unconditional model that classifier-free guidance needs);
2. ``sample``: class-balanced labels (n / 10 per class, the first n mod 10 classes one more), DDPM
   ancestral sampling with classifier-free guidance eps = (1 + w) eps(x, y) - w eps(x) and MAD's
   bias lambda = 1 / (1 + w), i.e. w = 1 / lambda - 1 (lambda = 1: the plain conditional model);
   the images are quantised to uint8, as saving them does, and that is what the next generation
   trains on;
3. ``summary``: ``eval_samples`` class-balanced samples at the family's lambda with a fixed seed
   (the same noise every generation), measured by :func:`madlib.metrics.images.image_metrics`
   against the dataset's held-out split: FID, precision, recall (k = 5) on LeNet features, classifier
   accuracy, mean intensity.

Training, sampling and measuring are :func:`madlib.diffusion.core.train` (the family's U-Net and loss, MAD's DDPM
recipe or EDM's), :func:`madlib.diffusion.core.sample` (CFG through the one guided prediction) and
:func:`madlib.diffusion.core.evaluate` (:class:`madlib.metrics.images.HeldOutMetrics` of the held-out split, its
features computed once per family); the class-balanced draws :func:`madlib.data.images.balanced_index`.

**One run.** Every record has a leading run axis of length 1 (``records["fid"]`` is [G, 1]); for
several runs, call :func:`madlib.loops.run_loop` once per seed.

**Data.** :class:`ImageSet` holds uint8 images [N, C, H, W] and labels [N] on the CPU, the
generation that made each image (``source``: 0 = real, s = sampled from G^s) and the seed that
fitting on it uses (drawn from the loop's generator, so fits are reproducible and resumable). The real
set is fixed by the constructor (``dataset``, ``image_size``, ``root``): ``draw_real`` takes a
class-balanced random subset of its training split.

**Store.** With ``store_dir``, ``fit`` writes the training set of generation t to
``gen_<t:03d>_train.npz`` (real and synthetic images, ``source`` per image) and ``summary`` its
evaluation samples to ``gen_<t:03d>_eval.npz`` (:func:`madlib.data.save_image_set`), so metrics and
t-SNE can be recomputed without retraining. A resumed loop writes the same files again. Each set's meta
holds the family's :meth:`~ImageDiffusionFamily.settings`, and :meth:`~ImageDiffusionFamily.load_stored`
reads a set back only if they are this family's: a set that a family of other settings wrote into the same
folder is refused with both settings named, never read. The family cannot see the loop (its seed, its
sizes), so a caller storing several runs gives each a folder of its own, keyed by everything that makes the
run (:func:`madlib.data.settings_key`; the MNIST loop notebooks do).

**Defaults** follow the paper where it says something (T = 500 steps, 10% condition dropout, lambda
through CFG, MNIST at 28x28, every generation from scratch); the network, the cosine schedule, the
sampler's x0 clipping and the training budget are project choices (the paper gives none). Sampling
costs T network passes per image (2 T with guidance), so on CPUs T and the set sizes dominate.

**A CPU profile** (the shared 2-core development machine, 2 threads; docs/calibration.md has the full
table): ``image_size=14, base_channels=16, steps=50, batch_size=64, lr=2e-3, ema_decay=0.99`` trained
for 60k images seen (``epochs=60`` on n = 1000) takes about 30 s and reaches FID 5.5 +- 0.3 against a
real-vs-real floor of 5.0 (300 samples), precision 0.92, recall 0.95, classifier accuracy 0.90 (MAD-9,
3 seeds); 20k images seen leave it at FID about 31 and accuracy 0.47. Sampling 1000 images takes about
7 s (50 DDPM steps, lambda = 1) and twice that with guidance; ``objective="edm"`` with Heun in 12 steps
samples 2-2.4x faster at a somewhat higher FID for the same budget.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from madlib._checks import check_choice, check_int, check_interval, resolve_device
from madlib.data.images import DATASETS, balanced_counts, balanced_index, load_images
from madlib.data.store import StoredImageSet, load_image_set, save_image_set
from madlib.diffusion import core
from madlib.diffusion.config import EDMConfig, check_sigma_grid
from madlib.diffusion.guidance import w_from_lam
from madlib.diffusion.losses import EDMPrecond, ddpm_eps_loss, edm_loss
from madlib.diffusion.schedules import cosine_schedule, edm_sigma_steps
from madlib.diffusion.training import TrainStats
from madlib.diffusion.unet import UNet
from madlib.loops import LoopSpec, run_loop

__all__ = ["ImageSet", "ImageModel", "ImageDiffusionFamily", "balanced_labels", "run_seed_loops", "PIXEL_RANGE", "OBJECTIVES"]

PIXEL_RANGE = core.PIXEL_RANGE  # the networks see images mapped linearly from 0..255 onto [-1, 1]
# objective -> the samplers it can drive: MAD's DDPM with its ancestral sampler; EDM (Table 1) with Heun or
# Euler-ancestral on EDM's sigma grid
OBJECTIVES = {"ddpm": ("ddpm",), "edm": ("heun", "euler_ancestral")}


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """Class-ordered labels [n]: n // K of every class, one more for the first n mod K classes."""
    n, num_classes = check_int("n", n, minimum=0), check_int("num_classes", num_classes, minimum=1)
    return torch.repeat_interleave(torch.arange(num_classes), torch.as_tensor(balanced_counts(n, num_classes)))


@dataclass
class ImageSet:
    """A training set: images uint8 [N, C, H, W], labels int64 [N], source int64 [N] (0 = real, s = from
    G^s), all on the CPU, and the seed that ``fit`` draws with."""

    images: torch.Tensor
    labels: torch.Tensor
    source: torch.Tensor
    seed: int


@dataclass
class ImageModel:
    """One generation: the trained network (its EMA copy when ``ema_decay`` > 0; a U-Net predicting the noise for
    ``objective="ddpm"``, an :class:`EDMPrecond` denoiser for ``"edm"``), its generation and training stats."""

    net: torch.nn.Module
    generation: int
    stats: TrainStats


class ImageDiffusionFamily:
    """Class-conditional DDPMs on an image dataset, fitted and sampled by :func:`madlib.loops.run_loop`.

    Args:
        dataset: a key of :data:`madlib.data.DATASETS` (``"mnist5k"``, ``"digits"``, ``"mnist"``).
        image_size: images are resized to this height = width (MNIST: 28).
        root: torchvision's MNIST folder, for ``dataset="mnist"`` only.
        lam: MAD's sampling bias in (0, 1]; guidance weight w = 1 / lam - 1. The loop's ``LoopSpec.lam``
            must equal it (``sample`` refuses another value), so that ``summary`` measures what the loop
            trains on.
        objective: ``"ddpm"`` (MAD's model: epsilon loss on a cosine schedule of ``steps`` steps, DDPM
            ancestral sampling) or ``"edm"`` (EDM preconditioning and loss, Table 1; a project choice beside
            MAD's model): :data:`OBJECTIVES`.
        sampler: ``"ddpm"`` for the DDPM objective; ``"heun"`` (EDM Alg. 1, 2 * sample_steps - 1 network
            evaluations) or ``"euler_ancestral"`` for EDM. None: the first of the objective's.
        sample_steps, sigma_min, sigma_max, rho: EDM's sigma grid (Eq. 5; EDM's defaults 18, 0.002, 80, 7).
        steps: DDPM steps T (MAD: 500); ``max_beta``: the cosine schedule's clip.
        clip_x0: sample with the predicted x_0 clipped to the pixel range (the DDPM authors' image sampler;
            without it, few steps of the cosine schedule diverge).
        base_channels, channel_mults, num_res_blocks, attention: the U-Net (:class:`UNet`).
        epochs: training budget per generation, in passes over that generation's training set
            (samples seen = ceil(epochs * N)); ``batch_size``, ``lr`` (Adam), ``cond_dropout`` (MAD: 0.1);
            ``warmup``: images seen of linear learning-rate warm-up; ``lr_decay``: after it ``"constant"`` or
            ``"cosine"`` to 0 at the end of the budget (:class:`EDMConfig`).
        ema_decay: 0 (off) or the decay of an exponential moving average of the weights, which then samples;
            ``ema_rampup``: EDM's ramp-up of it (the average's half-life at most this x the images seen; 0: off).
        eval_samples, eval_seed: the samples ``summary`` measures (class-balanced, fixed noise).
        sample_batch: images per sampler call (bounds memory; the draws depend on it).
        lenet: the classifier recipe of the metrics (:func:`madlib.metrics.load_lenet`: ``"default"``,
            ``"tiny"`` for tests, or a ``LeNetRecipe``).
        store_dir: folder for the per-generation image sets (module docstring; read them back with
            :meth:`load_stored`), or None.
        fit_cache: a dict shared by families that train alike (e.g. the lambda loops of one seed, which train
            the same generation 1 on the same real set): a fit whose training images, labels, seed and
            training settings (:meth:`training_settings`; lambda and the sampler are not among them) match
            an earlier one returns that network instead of training it again. In memory only, so a new
            process always trains.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; amp (bf16 autocast) and channels_last
            are meant for CUDA.
        progress: tqdm bars for training and sampling.
    """

    def __init__(self, dataset: str = "mnist5k", *, image_size: int = 28, root: str | os.PathLike | None = None,
                 lam: float = 1.0, objective: str = "ddpm", sampler: str | None = None, steps: int = 500,
                 max_beta: float = 0.999, clip_x0: bool = True, sample_steps: int = 18, sigma_min: float = 0.002,
                 sigma_max: float = 80.0, rho: float = 7.0, warmup: int = 0,
                 base_channels: int = 32, channel_mults: tuple[int, ...] = (1, 2, 2), num_res_blocks: int = 1,
                 attention: bool = False,
                 epochs: float = 20.0, batch_size: int = 128, lr: float = 1e-3, cond_dropout: float = 0.1,
                 ema_decay: float = 0.0, lr_decay: str = "constant", ema_rampup: float = 0.0, eval_samples: int = 1000, eval_seed: int = 0, sample_batch: int = 1000,
                 lenet="default", store_dir: str | os.PathLike | None = None, fit_cache: dict | None = None,
                 device: str = "cpu",
                 amp: bool = False, channels_last: bool = False, progress: bool = False):
        self.dataset = check_choice("dataset", dataset, DATASETS)
        self.image_size = check_int("image_size", image_size, minimum=4)
        self.lam = check_interval("lam", lam, 0.0, 1.0, low_open=True)
        self.objective = check_choice("objective", objective, OBJECTIVES)
        self.sampler = OBJECTIVES[objective][0] if sampler is None else sampler
        if self.sampler not in OBJECTIVES[objective]:
            raise ValueError(f"sampler must be one of {list(OBJECTIVES[objective])} for objective {objective!r}; "
                             f"got {sampler!r}")
        self.schedule = cosine_schedule(check_int("steps", steps, minimum=1), max_beta=max_beta)
        sigma_min, sigma_max, rho = check_sigma_grid(sigma_min, sigma_max, rho)
        self.sigmas = edm_sigma_steps(check_int("sample_steps", sample_steps, minimum=2), sigma_min, sigma_max, rho)
        self.sample_steps, self.sigma_range, self.rho = sample_steps, (sigma_min, sigma_max), rho
        self.warmup = check_int("warmup", warmup, minimum=0)
        self.max_beta, self.clip_x0 = float(max_beta), bool(clip_x0)
        self.unet_kwargs = dict(base_channels=base_channels, channel_mults=tuple(channel_mults),
                                num_res_blocks=num_res_blocks, attention=bool(attention))
        self.epochs = check_interval("epochs", epochs, 0.0, math.inf, low_open=True, high_open=True)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.lr = check_interval("lr", lr, 0.0, math.inf, low_open=True, high_open=True)
        self.cond_dropout = check_interval("cond_dropout", cond_dropout, 0.0, 1.0)
        self.ema_decay = check_interval("ema_decay", ema_decay, 0.0, 1.0, high_open=True)
        self.eval_samples = check_int("eval_samples", eval_samples, minimum=6,
                                      why="precision and recall use the 5th nearest neighbour")
        self.eval_seed = check_int("eval_seed", eval_seed, minimum=0)
        self.sample_batch = check_int("sample_batch", sample_batch, minimum=1)
        self.lenet = lenet
        self.store_dir = Path(store_dir) if store_dir is not None else None
        if fit_cache is not None and not isinstance(fit_cache, dict):
            raise ValueError(f"fit_cache must be a dict (shared between families) or None; got {type(fit_cache).__name__}")
        self.fit_cache = fit_cache
        self.device = resolve_device("device", device)
        self.amp, self.channels_last, self.progress = bool(amp), bool(channels_last), bool(progress)
        self.train_images, self.train_labels = load_images(dataset, "train", size=self.image_size, dtype="uint8",
                                                           root=root)
        self.test_images, self.test_labels = load_images(dataset, "test", size=self.image_size, dtype="uint8",
                                                         root=root)
        self.num_classes = int(self.train_labels.max()) + 1
        self.image_channels = int(self.train_images.shape[1])
        self._new_unet(seed=0)  # checks the network settings now, not at the first fit
        # the optimiser settings the core trains with (Adam, warm-up, EMA; the network is the family's own U-Net)
        self._optimiser = EDMConfig(batch_size=self.batch_size, lr=self.lr, warmup=self.warmup,
                                    ema_decay=self.ema_decay, lr_decay=lr_decay, ema_rampup=ema_rampup)
        self._classifier = self._held = self._real_readouts = None

    def settings(self) -> dict:
        """Every setting that changes the numbers (the checkpoint identity and the stored sets' meta)."""
        return {"dataset": self.dataset, "image_size": self.image_size, "lam": self.lam, "objective": self.objective,
                "sampler": self.sampler, "sample_steps": self.sample_steps, "sigma_range": list(self.sigma_range),
                "rho": self.rho, "warmup": self.warmup, "steps": self.schedule.steps, "max_beta": self.max_beta, "clip_x0": self.clip_x0, **self.unet_kwargs,
                "channel_mults": list(self.unet_kwargs["channel_mults"]), "epochs": self.epochs,
                "batch_size": self.batch_size, "lr": self.lr, "cond_dropout": self.cond_dropout,
                "ema_decay": self.ema_decay, "eval_samples": self.eval_samples, "eval_seed": self.eval_seed,
                "sample_batch": self.sample_batch, "lenet": str(self.lenet), "device": self.device,
                "amp": self.amp, "channels_last": self.channels_last,
                **{k: v for k, v in self._optimiser.settings().items() if k in ("lr_decay", "ema_rampup")}}  # when set

    def training_settings(self) -> dict:
        """The settings a fit depends on: everything but lambda, the sampler and the evaluation."""
        sampling = ("lam", "sampler", "sample_steps", "sigma_range", "rho", "eval_samples", "eval_seed", "sample_batch",
                    "lenet", "clip_x0")
        return {k: v for k, v in self.settings().items() if k not in sampling}

    def _fit_key(self, data: "ImageSet") -> str:
        h = hashlib.sha256(json.dumps(self.training_settings(), sort_keys=True).encode())
        for array in (data.images, data.labels, data.source):
            h.update(array.numpy().tobytes())
        h.update(str(data.seed).encode())
        return h.hexdigest()

    def fingerprint(self) -> str:
        return f"ImageDiffusionFamily({json.dumps(self.settings(), sort_keys=True)})"

    def true_model(self):
        raise ValueError("an image loop starts from real data: set n_ini in the LoopSpec")

    def _new_unet(self, seed: int) -> torch.nn.Module:
        net = UNet(self.image_channels, self.image_size, num_classes=self.num_classes, amp=self.amp,
                   channels_last=self.channels_last, seed=seed, device=self.device, **self.unet_kwargs)
        return EDMPrecond(net) if self.objective == "edm" else net

    def _loss(self, net, x, **kw):
        if self.objective == "edm":
            return edm_loss(net, x, **kw)
        return ddpm_eps_loss(net, x, self.schedule, **kw)

    def network_evaluations(self, lam: float | None = None) -> int:
        """Network evaluations per image of one sampling chain (twice as many with guidance, lam < 1)."""
        lam = self.lam if lam is None else lam
        chain = self.schedule.steps if self.sampler == "ddpm" else (
            2 * self.sample_steps - 1 if self.sampler == "heun" else self.sample_steps)
        return chain * (1 if lam == 1 else 2)

    def draw_real(self, n: int, rng: np.random.Generator) -> ImageSet:
        """A class-balanced random subset of n images of the training split (without replacement)."""
        n = check_int("n", n, minimum=1)
        counts = balanced_counts(n, self.num_classes)
        labels = self.train_labels.numpy()
        available = np.bincount(labels, minlength=self.num_classes)
        if (counts > available).any():
            raise ValueError(f"n must be <= {self.num_classes * available.min()} for a class-balanced subset of "
                             f"{self.dataset}'s training split at {self.image_size}x{self.image_size} (its smallest "
                             f"class holds {available.min()} images); got n = {n}")
        idx = balanced_index(self.train_labels, n, classes=range(self.num_classes), rng=rng)
        return ImageSet(self.train_images[idx], self.train_labels[idx], torch.zeros(len(idx), dtype=torch.int64),
                        int(rng.integers(2**31)))

    def generate(self, model: ImageModel, labels: torch.Tensor, lam: float, generator: torch.Generator) -> torch.Tensor:
        # MAD Sec. 2.3: classifier-free guidance with lambda = 1 / (1 + w); Ho et al. 2020 Algorithm 2
        """uint8 images [n, C, H, W] (CPU) of the given labels [n], drawn with noise from ``generator`` (CPU)."""
        w = w_from_lam(check_interval("lam", lam, 0.0, 1.0, low_open=True))
        return core.sample(model.net, len(labels), seed=generator,
                           image_shape=(self.image_channels, self.image_size, self.image_size),
                           sampler=self.sampler, sigmas=self.sigmas, schedule=self.schedule, labels=labels,
                           guide="cfg", weight=w, sample_batch=self.sample_batch, device=self.device,
                           clip_x0=PIXEL_RANGE if self.clip_x0 else None, progress=self.progress)

    def sample(self, model: ImageModel, n: int, lam: float, rng: np.random.Generator) -> ImageSet:
        """n class-balanced samples of ``model`` at bias ``lam`` (which must be the family's), as uint8."""
        n = check_int("n", n, minimum=1)
        check_interval("lam", lam, 0.0, 1.0, low_open=True)
        if lam != self.lam:
            raise ValueError(f"lam must equal the family's lam ({self.lam}) so that summary measures what the loop "
                             f"trains on; got lam = {lam}: construct the family with lam={lam}")
        labels = balanced_labels(n, self.num_classes)
        seed = int(rng.integers(2**31))
        images = self.generate(model, labels, lam, torch.Generator().manual_seed(seed))
        return ImageSet(images, labels, torch.full((n,), model.generation, dtype=torch.int64), seed)

    def concat(self, parts) -> ImageSet:
        parts = list(parts)
        return ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                        torch.cat([p.source for p in parts]), parts[-1].seed)

    def fit(self, data: ImageSet) -> ImageModel:
        # MAD Sec. 3.2: every generation is a fresh model trained from scratch on its training set
        """Train a new network on ``data`` (reproducible from ``data.seed``); generation = newest source + 1.

        With a ``fit_cache``, an identical earlier fit (same data, seed and training settings) is reused.
        """
        key = self._fit_key(data) if self.fit_cache is not None else None
        if key is not None and key in self.fit_cache:
            model = self.fit_cache[key]
        else:
            model = self._train(data)
            if key is not None:
                self.fit_cache[key] = model
        if self.store_dir is not None:
            self._store("train", data.images, data.labels, model.generation,
                        {"seed": data.seed}, source=data.source)
        return model

    def _train(self, data: ImageSet) -> ImageModel:
        # from scratch (MAD Sec. 3.2), initial weights from the first draw of data.seed (madlib.diffusion.core.train)
        fit = core.train(data.images, self._optimiser, images_seen=math.ceil(self.epochs * len(data.images)),
                         seed=data.seed, net=self._new_unet, labels=data.labels, label_dropout=self.cond_dropout,
                         loss=self._loss, device=self.device, progress=self.progress)
        return ImageModel(fit.net.requires_grad_(False), int(data.source.max()) + 1, fit.stats)

    def store_path(self, generation: int, kind: str = "eval") -> Path:
        """The file of generation ``generation``'s training set (``kind="train"``) or evaluation samples (``"eval"``)."""
        if self.store_dir is None:
            raise ValueError("store_dir is None: this family stores no image sets; construct it with store_dir=...")
        check_choice("kind", kind, ("train", "eval"))
        return self.store_dir / f"gen_{check_int('generation', generation, minimum=1):03d}_{kind}.npz"

    def load_stored(self, generation: int, kind: str = "eval") -> StoredImageSet:
        """The stored set of :meth:`store_path`, refused (ValueError naming each differing setting, stored and
        expected) unless this family's settings wrote it: another family's set in the same folder is never read."""
        path = self.store_path(generation, kind)
        return load_image_set(path, expect={"family": self.settings(), "generation": int(generation)})

    def _store(self, kind: str, images, labels, generation: int, meta: dict, **arrays) -> None:
        save_image_set(self.store_path(generation, kind), images, labels,
                       {"generation": generation, **meta, "family": self.settings()}, arrays=arrays)

    def _lenet(self):
        if self._classifier is None:
            from madlib.metrics.lenet import load_lenet

            self._classifier = load_lenet(self.lenet, device=self.device)
        return self._classifier

    def measure(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        """The metrics of :func:`madlib.metrics.images.image_metrics` (same keys and values) of uint8 ``images``
        [n, C, H, W] with ``labels`` [n] against the held-out split, on the family's LeNet, through
        :func:`madlib.diffusion.core.evaluate` (the held-out split's features computed once per family): what
        :meth:`summary` reports of its samples."""
        if self._held is None:
            from madlib.metrics.images import HeldOutMetrics, class_readouts

            self._held = HeldOutMetrics(self.test_images, self._lenet())
            self._real_readouts = class_readouts(self.test_images, self.test_labels, self._lenet())
        return core.evaluate(self._held, images, labels, real=self._real_readouts)

    def real_floor(self, n: int, seed: int) -> dict:
        """:meth:`measure` of n training images drawn at random (without replacement) with ``seed``: the
        real-vs-real floor a generation's n samples are compared with."""
        pick = np.random.default_rng(seed).choice(len(self.train_labels), check_int("n", n, minimum=6), replace=False)
        pick = torch.as_tensor(pick)
        return self.measure(self.train_images[pick], self.train_labels[pick])

    def summary(self, model: ImageModel) -> dict[str, np.ndarray]:
        """Metrics [1] of ``eval_samples`` samples at the family's lam against the held-out split.

        Keys: ``fid``, ``precision``, ``recall``, ``accuracy``, ``mean_intensity`` (of the samples),
        ``real_accuracy``, ``real_mean_intensity`` (of the held-out split: the reference levels) and
        ``train_loss`` (the last training batch's loss).
        """
        labels = balanced_labels(self.eval_samples, self.num_classes)
        images = self.generate(model, labels, self.lam, torch.Generator().manual_seed(self.eval_seed))
        if self.store_dir is not None:
            self._store("eval", images, labels, model.generation,
                        {"seed": self.eval_seed, "lam": self.lam})
        metrics = self.measure(images, labels)
        keys = ("fid", "precision", "recall", "accuracy", "mean_intensity", "real_accuracy", "real_mean_intensity")
        return {key: np.array([metrics[key]]) for key in keys} | {"train_loss": np.array(model.stats.final_loss)}


def run_seed_loops(*, dataset: str, seed: int, loops: list[dict], family: dict, store_dir: str,
                   checkpoint_prefix: str | None = None, progress: bool = False) -> dict:
    """Every loop of one seed, in order, sharing one generation-1 fit: a :func:`madlib.sweep.sweep` cell.

    MAD-12 runs one such cell per seed, one seed per lane; a loop's numbers do not depend on the lane or on the
    order of the seeds (each loop draws from its own ``seed``).

    Args:
        dataset: the real images (:data:`madlib.data.images.DATASETS`).
        seed: the seed of every loop of the cell.
        loops: one dict per loop: ``label``, ``store`` (its subfolder of ``store_dir``) and the
            :class:`madlib.loops.LoopSpec` fields (``kind``, ``generations``, ``n_synth``, ``lam``, ``n_ini``, ...).
        family: the :class:`ImageDiffusionFamily` keywords shared by the loops (plain values).
        store_dir: folder of the loops' stored image sets (the caller reads them back with ``load_stored``).
        checkpoint_prefix: path prefix of per-loop checkpoints (``<prefix>_<store>_seed<seed>.npz``), or None.

    Returns:
        ``{label: {"records": {name: [G, 1] array}, "seconds": wall seconds}}``.
    """
    fit_cache: dict = {}  # the loops of one seed train the same generation 1 on the same D_r: fit it once
    out = {}
    for loop in loops:
        loop = dict(loop)
        label, sub = loop.pop("label"), loop.pop("store")
        spec = LoopSpec(**loop)
        fam = ImageDiffusionFamily(dataset, lam=spec.lam, store_dir=Path(store_dir) / sub / f"seed_{seed}", fit_cache=fit_cache,
                                   **family)
        ckpt = None if checkpoint_prefix is None else f"{checkpoint_prefix}_{sub}_seed{seed}.npz"
        clock = time.perf_counter()
        run = run_loop(fam, spec, seed=seed, checkpoint=ckpt, progress=progress, desc=f"{label}, seed {seed}")
        out[label] = {"records": run.records, "seconds": time.perf_counter() - clock}
    return out
