"""WGAN-GP ensembles on images as a model family of the loop engine (MAD App. B.1, Fig. 13; MAD-13).

MAD trains Wasserstein GANs with gradient penalty (Gulrajani et al. 2017) on MNIST in a fully synthetic
loop and reports FID rising, precision and recall falling over 100 generations. The paper gives no
architecture or budget; here (project choices, sized for CPUs):

- **Networks.** MLPs batched over R independent runs (``[R, B, ...]``, one batched matmul per layer as
  :class:`madlib.diffusion.networks.EnsembleMLP`): generator z (``latent_dim``) -> ``depth`` x ``width``
  ReLU -> C*H*W tanh; critic C*H*W -> ``depth`` x ``width`` LeakyReLU(0.2) -> 1, without normalisation
  (WGAN-GP Sec. 4: no batch norm in the critic). Images are mapped from 0..255 onto [-1, 1].
- **Training** (WGAN-GP Algorithm 1): ``n_critic`` critic steps per generator step, penalty weight
  ``gp_weight`` = 10, Adam with ``lr`` and betas (0, 0.9), budget ``iterations`` generator steps per
  generation, every generation from scratch (MAD Sec. 3 trains each generation anew).
- **Samples** are quantised to uint8 (what the next generation trains on, as saving them does).
- **Metrics** (``summary``): FID, precision and recall (k = 5) on LeNet features of ``eval_samples``
  samples (fixed latents) against the held-out split, as MAD's MNIST figures use; an unconditional GAN
  has no labels, so the LeNet's predicted classes give a diversity readout only: the normalised entropy of
  the predicted-class histogram (1 = uniform over the 10 digits) and the share of the commonest class.

Runs: each member r of the ensemble is one independent loop (its own real subset, initialisation and
samples), so ``records["fid"]`` is [G, R] and claims can ask that every run agrees.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from madlib._checks import check_choice, check_int, check_interval, resolve_device
from madlib.data.images import DATASETS, from_uint8, load_images, to_uint8

__all__ = ["EnsembleNet", "GanData", "GanModel", "WGANFamily", "gradient_penalty", "wgan_gp_critic_loss"]

PIXEL_RANGE = (-1.0, 1.0)


class EnsembleNet(nn.Module):
    """R independent MLPs x [R, B, sizes[0]] -> [R, B, sizes[-1]]; hidden ``activation``, optional ``output``.

    Weights [R, fan_in, fan_out], biases [R, 1, fan_out], initialised as torch.nn.Linear (uniform in
    +-1/sqrt(fan_in)) from ``generator``."""

    def __init__(self, members: int, sizes, activation, output=None, *, generator: torch.Generator | None = None,
                 device=None):
        super().__init__()
        self.members = check_int("members", members, minimum=1)
        self.sizes = [check_int("layer size", s, minimum=1) for s in sizes]
        if len(self.sizes) < 2:
            raise ValueError(f"sizes must hold an input and an output size; got {sizes}")
        self.activation, self.output = activation, output
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(((torch.rand(members, fan_in, fan_out, generator=generator) * 2 - 1)
                                              * bound).to(device)))
            self.biases.append(nn.Parameter(((torch.rand(members, 1, fan_out, generator=generator) * 2 - 1)
                                             * bound).to(device)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[0] != self.members or x.shape[2] != self.sizes[0]:
            raise ValueError(f"x must be [members={self.members}, batch, {self.sizes[0]}]; got {tuple(x.shape)}")
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # [R, B, fan_out]
            if i < len(self.weights) - 1:
                h = self.activation(h)
        return h if self.output is None else self.output(h)


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    # WGAN-GP Algorithm 1, lines 6-7: x_hat = eps x + (1 - eps) x_tilde; penalty (|grad_x_hat D(x_hat)|_2 - 1)^2
    """Per-member mean penalty [R] for real, fake [R, B, D] and eps [R, B, 1] in [0, 1].

    The gradient of each critic output with respect to its own input: members and samples are independent,
    so one backward pass of the sum gives every per-sample gradient. ``create_graph`` keeps it differentiable
    for the critic's update."""
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)  # [R, B, D]
    return ((grad.norm(dim=-1) - 1) ** 2).mean(dim=1)


def wgan_gp_critic_loss(critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                        gp_weight: float = 10.0) -> torch.Tensor:
    # WGAN-GP Algorithm 1, line 7: L = D(x_tilde) - D(x) + lambda (|grad D(x_hat)| - 1)^2, averaged over the batch
    """Per-member critic loss [R] (real, fake [R, B, D]; fake detached from the generator)."""
    return (critic(fake).mean(dim=(1, 2)) - critic(real).mean(dim=(1, 2))
            + gp_weight * gradient_penalty(critic, real, fake, eps))


@dataclass
class GanData:
    """Training images of R runs, uint8 [R, N, C, H, W] on the CPU, and the seed that fitting on them uses."""

    images: torch.Tensor
    seed: int


@dataclass
class GanModel:
    """One generation: the generator ensemble, its generation index and training statistics."""

    generator: EnsembleNet
    generation: int
    stats: dict


class WGANFamily:
    """R independent WGAN-GP loops on an image dataset, fitted and sampled by :func:`madlib.loops.run_loop`.

    Args:
        dataset: a key of :data:`madlib.data.DATASETS`; ``image_size`` the height = width (MNIST: 28).
        runs: independent loops, trained together as one ensemble.
        latent_dim, width, depth: the MLPs (module docstring).
        iterations: generator steps per generation; ``n_critic`` critic steps each (WGAN-GP: 5).
        gp_weight: lambda of the penalty (WGAN-GP: 10); ``lr``, ``beta1``, ``beta2``: Adam (WGAN-GP: 1e-4, 0, 0.9).
        batch_size: images per step and member.
        eval_samples, eval_seed: the samples ``summary`` measures (the same latents every generation).
        keep_samples: the first this many of them are returned by ``summary`` as ``samples`` (uint8
            [R, k, C, H, W]), so a figure can show and archive them.
        lenet: the metrics' classifier recipe (:func:`madlib.metrics.load_lenet`).
    """

    def __init__(self, dataset: str = "mnist5k", *, runs: int = 3, image_size: int = 14,
                 root: str | os.PathLike | None = None, latent_dim: int = 32, width: int = 256, depth: int = 2,
                 iterations: int = 2000, n_critic: int = 5, gp_weight: float = 10.0, batch_size: int = 64,
                 lr: float = 1e-4, beta1: float = 0.0, beta2: float = 0.9, eval_samples: int = 500,
                 eval_seed: int = 0, keep_samples: int = 0, lenet="default", device: str = "cpu"):
        self.dataset = check_choice("dataset", dataset, DATASETS)
        self.runs = check_int("runs", runs, minimum=1)
        self.image_size = check_int("image_size", image_size, minimum=4)
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.width, self.depth = check_int("width", width, minimum=1), check_int("depth", depth, minimum=1)
        self.iterations = check_int("iterations", iterations, minimum=1)
        self.n_critic = check_int("n_critic", n_critic, minimum=1)
        self.gp_weight = check_interval("gp_weight", gp_weight, 0.0, math.inf, high_open=True)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.lr = check_interval("lr", lr, 0.0, math.inf, low_open=True, high_open=True)
        self.betas = (check_interval("beta1", beta1, 0.0, 1.0, high_open=True),
                      check_interval("beta2", beta2, 0.0, 1.0, high_open=True))
        self.eval_samples = check_int("eval_samples", eval_samples, minimum=6,
                                      why="precision and recall use the 5th nearest neighbour")
        self.eval_seed = check_int("eval_seed", eval_seed, minimum=0)
        self.keep_samples = check_int("keep_samples", keep_samples, minimum=0)
        if self.keep_samples > self.eval_samples:
            raise ValueError(f"keep_samples must be <= eval_samples ({self.eval_samples}); got {keep_samples}")
        self.lenet = lenet
        self.device = resolve_device("device", device)
        self.train_images, _ = load_images(dataset, "train", size=self.image_size, dtype="uint8", root=root)
        self.test_images, self.test_labels = load_images(dataset, "test", size=self.image_size, dtype="uint8", root=root)
        self.shape = tuple(self.train_images.shape[1:])  # (C, H, W)
        self.pixels = int(np.prod(self.shape))
        self._classifier = self._real_features = None

    def settings(self) -> dict:
        return {"dataset": self.dataset, "runs": self.runs, "image_size": self.image_size, "latent_dim": self.latent_dim,
                "width": self.width, "depth": self.depth, "iterations": self.iterations, "n_critic": self.n_critic,
                "gp_weight": self.gp_weight, "batch_size": self.batch_size, "lr": self.lr, "betas": list(self.betas),
                "eval_samples": self.eval_samples, "eval_seed": self.eval_seed, "lenet": str(self.lenet)}

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.train_images.numpy().tobytes()).hexdigest()[:16]
        return f"WGANFamily({self.settings()}, data={digest})"

    def true_model(self):
        raise ValueError("a GAN loop starts from real data: set n_ini in the LoopSpec")

    def networks(self, generator: torch.Generator) -> tuple[EnsembleNet, EnsembleNet]:
        """A fresh (generator, critic) pair of ensembles, drawn from ``generator``."""
        hidden = [self.width] * self.depth
        gen = EnsembleNet(self.runs, [self.latent_dim] + hidden + [self.pixels], nn.functional.relu, torch.tanh,
                          generator=generator, device=self.device)
        critic = EnsembleNet(self.runs, [self.pixels] + hidden + [1], lambda h: nn.functional.leaky_relu(h, 0.2),
                             generator=generator, device=self.device)
        return gen, critic

    def draw_real(self, n: int, rng: np.random.Generator) -> GanData:
        """n training images per run, drawn without replacement, independently for every run."""
        n = check_int("n", n, minimum=1)
        if n > len(self.train_images):
            raise ValueError(f"n must be <= {len(self.train_images)} (the training split of {self.dataset}); got {n}")
        idx = np.stack([rng.choice(len(self.train_images), n, replace=False) for _ in range(self.runs)])  # [R, n]
        return GanData(self.train_images[torch.as_tensor(idx)], int(rng.integers(2**31)))

    def generate(self, model: GanModel, n: int, generator: torch.Generator) -> torch.Tensor:
        """uint8 images [R, n, C, H, W] (CPU), latents drawn from ``generator`` (CPU)."""
        z = torch.randn(self.runs, n, self.latent_dim, generator=generator).to(self.device)
        with torch.no_grad():
            x = model.generator(z)  # [R, n, C*H*W] in [-1, 1]
        return to_uint8(x.reshape((self.runs, n) + self.shape), PIXEL_RANGE).cpu()

    def sample(self, model: GanModel, n: int, lam: float, rng: np.random.Generator) -> GanData:
        if lam != 1.0:
            raise ValueError(f"lam must be 1 for WGANFamily (MAD-13 is an unbiased loop); got lam = {lam}")
        seed = int(rng.integers(2**31))
        return GanData(self.generate(model, check_int("n", n, minimum=1), torch.Generator().manual_seed(seed)), seed)

    def concat(self, parts) -> GanData:
        parts = list(parts)
        return GanData(torch.cat([p.images for p in parts], dim=1), parts[-1].seed)

    def fit(self, data: GanData) -> GanModel:
        # WGAN-GP Algorithm 1 (Gulrajani et al. 2017), every generation from scratch (MAD App. B.1)
        """Train a new (generator, critic) ensemble on ``data`` (reproducible from ``data.seed``)."""
        if data.images.ndim != 5 or data.images.shape[0] != self.runs:
            raise ValueError(f"data.images must be [runs={self.runs}, N, C, H, W]; got {tuple(data.images.shape)}")
        g = torch.Generator().manual_seed(data.seed)
        gen, critic = self.networks(g)
        x = from_uint8(data.images, PIXEL_RANGE).reshape(self.runs, -1, self.pixels).to(self.device)  # [R, N, D]
        n, batch = x.shape[1], min(self.batch_size, x.shape[1])
        opt_g = torch.optim.Adam(gen.parameters(), lr=self.lr, betas=self.betas)
        opt_c = torch.optim.Adam(critic.parameters(), lr=self.lr, betas=self.betas)
        rows = torch.arange(self.runs, device=self.device)[:, None]
        start = time.perf_counter()
        for _ in range(self.iterations):
            for _ in range(self.n_critic):
                idx = torch.randint(0, n, (self.runs, batch), generator=g).to(self.device)
                z = torch.randn(self.runs, batch, self.latent_dim, generator=g).to(self.device)
                eps = torch.rand(self.runs, batch, 1, generator=g).to(self.device)
                with torch.no_grad():
                    fake = gen(z)
                loss_c = wgan_gp_critic_loss(critic, x[rows, idx], fake, eps, self.gp_weight)
                opt_c.zero_grad(set_to_none=True)
                loss_c.sum().backward()
                opt_c.step()
            z = torch.randn(self.runs, batch, self.latent_dim, generator=g).to(self.device)
            loss_g = -critic(gen(z)).mean(dim=(1, 2))  # [R]
            opt_g.zero_grad(set_to_none=True)
            loss_g.sum().backward()  # the critic's gradients are cleared before its next step
            opt_g.step()
        seconds = time.perf_counter() - start
        gen.eval().requires_grad_(False)
        stats = {"seconds": seconds, "generator_steps": self.iterations, "critic_steps": self.iterations * self.n_critic,
                 "images_per_s": self.iterations * (self.n_critic + 1) * batch * self.runs / max(seconds, 1e-9),
                 "critic_loss": loss_c.detach().cpu().numpy(), "generator_loss": loss_g.detach().cpu().numpy()}
        return GanModel(gen, int(getattr(data, "generation", 0)), stats)

    def _lenet(self):
        if self._classifier is None:
            from madlib.metrics.lenet import load_lenet

            self._classifier = load_lenet(self.lenet, device=self.device)
        return self._classifier

    def scores(self, images: torch.Tensor) -> dict[str, float]:
        """FID, precision, recall (k = 5, LeNet features) of uint8 images [n, C, H, W] against the held-out split,
        with the predicted-class entropy (normalised by log 10) and the share of the commonest predicted class."""
        from madlib.metrics.distances import frechet_distance
        from madlib.metrics.lenet import lenet_features, lenet_logits
        from madlib.metrics.prdc import precision_recall

        lenet = self._lenet()
        if self._real_features is None:
            self._real_features = lenet_features(self.test_images, lenet)
        fake = lenet_features(images, lenet)
        precision, recall = precision_recall(self._real_features, fake, k=5)
        counts = torch.bincount(lenet_logits(images, lenet).argmax(1).cpu(), minlength=10).double()
        p = counts / counts.sum()
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum() / math.log(len(p)))
        return {"fid": float(frechet_distance(self._real_features, fake)), "precision": float(precision),
                "recall": float(recall), "class_entropy": entropy, "top_class_share": float(p.max())}

    def predicted_labels(self, images: torch.Tensor) -> torch.Tensor:
        """The LeNet's classes [n] of uint8 images [n, C, H, W] (labels for archives and grids; not ground truth)."""
        from madlib.metrics.lenet import lenet_logits

        return lenet_logits(images, self._lenet()).argmax(1).cpu()

    def summary(self, model: GanModel) -> dict[str, np.ndarray]:
        """Per-run metrics [R] of ``eval_samples`` samples (fixed latents), the last training losses [R] and
        (``keep_samples`` > 0) the first samples."""
        images = self.generate(model, self.eval_samples, torch.Generator().manual_seed(self.eval_seed))
        per_run = [self.scores(images[r]) for r in range(self.runs)]
        out = {key: np.array([s[key] for s in per_run]) for key in per_run[0]}
        out |= {"critic_loss": model.stats["critic_loss"], "generator_loss": model.stats["generator_loss"],
                "fit_seconds": np.full(self.runs, model.stats["seconds"])}
        if self.keep_samples:
            out["samples"] = images[:, :self.keep_samples].numpy()
        return out
