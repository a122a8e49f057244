"""WGAN-GP ensembles on images as a model family of the loop engine (MAD App. B.1, Fig. 13; MAD-13).

MAD trains Wasserstein GANs with gradient penalty (Gulrajani et al. 2017) on MNIST in a fully synthetic
loop and reports FID rising, precision and recall falling over 100 generations. The paper gives no
architecture or budget; here (project choices, sized for CPUs):

- **Networks** (``architecture``), batched over R independent runs (``[R, B, ...]``):
  ``"mlp"``: one batched matmul per layer (as :class:`madlib.diffusion.networks.EnsembleMLP`): generator
  z (``latent_dim``) -> ``depth`` x ``width`` ReLU -> C*H*W tanh; critic C*H*W -> ``depth`` x ``width``
  LeakyReLU(0.2) -> 1, without normalisation.
  ``"conv"``: DCGAN-style (Radford et al. 2016; the WGAN-GP MNIST networks, Gulrajani et al. 2017 App.),
  the R members as groups of grouped convolutions (:class:`ConvGenerator`, :class:`ConvCritic`, ``width`` =
  channels of the last generator / first critic layer): generator z -> linear -> [2^k width, H/2^k, W/2^k],
  k x (4x4 stride-2 transposed conv, batch norm, ReLU) -> 3x3 conv -> tanh; critic: 4x4 stride-2 convs
  (width, 2 width, ...) with LeakyReLU(0.2) down to 3-5 pixels, then one linear output. WGAN-GP Sec. 4:
  no batch norm in the critic (``critic_norm`` "none", or "layer": layer norm over each member's
  [C, H, W], as WGAN-GP's own critics use it). Images are mapped from 0..255 onto [-1, 1].
- **Training** (WGAN-GP Algorithm 1): ``n_critic`` critic steps per generator step, penalty weight
  ``gp_weight`` = 10, Adam with ``lr`` and betas (0, 0.9), budget ``iterations`` generator steps per
  generation, every generation from scratch (MAD Sec. 3 trains each generation anew). With ``ema_decay``
  > 0 the generator that samples is an exponential moving average of the trained one's weights (Yazici et
  al. 2019, "The unusual effectiveness of averaging in GAN training"; project choice against the
  oscillation of short GAN runs), with decay min(ema_decay, (1 + i) / (10 + i)) at generator step i so
  that the initial weights are forgotten early; batch-norm statistics are copied from the trained one.
- **Samples** are quantised to uint8 (what the next generation trains on, as saving them does).
- **Metrics** (``summary``): FID, precision and recall (k = 5) on LeNet features of ``eval_samples``
  samples (fixed latents) against the held-out split, as MAD's MNIST figures use; an unconditional GAN
  has no labels, so the LeNet's predicted classes give a diversity readout only: the normalised entropy of
  the predicted-class histogram (1 = uniform over the 10 digits) and the share of the commonest class;
  and a recognisability readout in place of a classifier accuracy: ``confidence``, the LeNet's mean
  top-class probability (real digits score close to 1).

Runs: each member r of the ensemble is one independent loop (its own real subset, initialisation and
samples), so ``records["fid"]`` is [G, R] and claims can ask that every run agrees.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from madlib._checks import check_choice, check_int, check_interval, resolve_device
from madlib.data.images import DATASETS, load_images
from madlib.diffusion.core import PIXEL_RANGE, to_network_range, to_uint8_images  # noqa: F401 (PIXEL_RANGE)
from madlib.diffusion.training import ema_update

__all__ = ["ARCHITECTURES", "ConvCritic", "ConvGenerator", "EnsembleNet", "GanData", "GanModel", "WGANFamily",
           "gradient_penalty", "wgan_gp_critic_loss"]

ARCHITECTURES = ("mlp", "conv")
CRITIC_NORMS = ("none", "layer")


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


def _seeded_init(modules, generator: torch.Generator | None) -> None:
    """PyTorch's default initialisation of ``modules`` (uniform +-1/sqrt(fan_in) for convolutions and linears),
    drawn from one seed taken from ``generator``, without touching the global random state."""
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in modules:
            m.reset_parameters()


def _down_sizes(size: int) -> list[int]:
    """Spatial sizes of the critic: halve (4x4 kernel, stride 2, padding 1) while the map is >= 6 pixels."""
    sizes = [size]
    while sizes[-1] >= 6:
        sizes.append((sizes[-1] - 2) // 2 + 1)
    return sizes


def _up_stages(size: int) -> int:
    """Stride-2 stages k of the generator: the largest k <= 2 with size / 2^k an integer >= 3 (14: 1, 28: 2, 8: 1)."""
    k = 0
    while k < 2 and size % 2 ** (k + 1) == 0 and size // 2 ** (k + 1) >= 3:
        k += 1
    return k


class ConvGenerator(nn.Module):
    """R independent DCGAN-style generators z [R, B, latent] -> images [R, B, C*H*W] in [-1, 1] (tanh).

    z -> per-member linear -> [2^k width, H/2^k, W/2^k] -> batch norm, ReLU -> k x (ConvTranspose 4x4 stride 2,
    channels halved, batch norm, ReLU) -> Conv 3x3 -> C channels -> tanh. The members are the groups of grouped
    convolutions over a [B, R*channels, h, w] map; batch norm is per channel, hence per member."""

    def __init__(self, members: int, latent_dim: int, shape, width: int, *, generator: torch.Generator | None = None,
                 device=None):
        super().__init__()
        self.members, self.shape = check_int("members", members, minimum=1), tuple(shape)
        channels, height, width_px = self.shape
        if height != width_px:
            raise ValueError(f"ConvGenerator needs square images; got shape {self.shape}")
        k = _up_stages(height)
        self.base, self.c0 = height // 2**k, width * 2**k
        R = members
        self.project = EnsembleNet(R, [latent_dim, self.c0 * self.base**2], nn.functional.relu, generator=generator,
                                   device=device)
        layers = [nn.BatchNorm2d(R * self.c0), nn.ReLU()]
        c = self.c0
        for _ in range(k):
            layers += [nn.ConvTranspose2d(R * c, R * (c // 2), 4, stride=2, padding=1, groups=R),
                       nn.BatchNorm2d(R * (c // 2)), nn.ReLU()]
            c //= 2
        layers += [nn.Conv2d(R * c, R * channels, 3, padding=1, groups=R)]
        self.body = nn.Sequential(*layers)
        _seeded_init([m for m in self.body if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))], generator)
        self.to(device)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        R, B = z.shape[:2]
        h = self.project(z).reshape(R, B, self.c0, self.base, self.base)  # [R, B, c0, b, b]
        h = h.transpose(0, 1).reshape(B, R * self.c0, self.base, self.base)  # [B, R*c0, b, b]
        x = torch.tanh(self.body(h))  # [B, R*C, H, W]
        return x.reshape(B, R, -1).transpose(0, 1)  # [R, B, C*H*W]


class ConvCritic(nn.Module):
    """R independent DCGAN-style critics x [R, B, C*H*W] -> [R, B, 1], without batch norm (WGAN-GP Sec. 4).

    Conv 4x4 stride 2 (width, 2 width, 4 width, ...) with LeakyReLU(0.2), while the map is >= 6 pixels, then one
    linear output (a grouped convolution whose kernel covers the whole map). ``norm`` "layer" normalises each
    member's [C, H, W] per sample after every conv but the first (a GroupNorm with one group per member)."""

    def __init__(self, members: int, shape, width: int, norm: str = "none", *, generator: torch.Generator | None = None,
                 device=None):
        super().__init__()
        self.members, self.shape = check_int("members", members, minimum=1), tuple(shape)
        self.norm = check_choice("critic_norm", norm, CRITIC_NORMS)
        channels, height, _ = self.shape
        R, sizes = members, _down_sizes(height)
        layers, c_in = [], channels
        for i in range(len(sizes) - 1):
            c_out = width * 2**i
            layers.append(nn.Conv2d(R * c_in, R * c_out, 4, stride=2, padding=1, groups=R))
            if norm == "layer" and i > 0:
                layers.append(nn.GroupNorm(R, R * c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        layers.append(nn.Conv2d(R * c_in, R, sizes[-1], groups=R))  # the linear output: [B, R, 1, 1]
        self.body = nn.Sequential(*layers)
        _seeded_init([m for m in self.body if isinstance(m, nn.Conv2d)], generator)
        self.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        R, B = x.shape[:2]
        if x.ndim != 3 or R != self.members:
            raise ValueError(f"x must be [members={self.members}, batch, C*H*W]; got {tuple(x.shape)}")
        h = x.reshape(R, B, *self.shape).transpose(0, 1).reshape(B, R * self.shape[0], *self.shape[1:])  # [B, R*C, H, W]
        return self.body(h).reshape(B, R, 1).transpose(0, 1)  # [R, B, 1]


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

    generator: nn.Module
    generation: int
    stats: dict


class WGANFamily:
    """R independent WGAN-GP loops on an image dataset, fitted and sampled by :func:`madlib.loops.run_loop`.

    Args:
        dataset: a key of :data:`madlib.data.DATASETS`; ``image_size`` the height = width (MNIST: 28).
        runs: independent loops, trained together as one ensemble.
        architecture: ``"mlp"`` or ``"conv"`` (module docstring); ``critic_norm`` ``"none"`` or ``"layer"``
            (conv critic only).
        latent_dim, width, depth: the networks (module docstring; ``depth`` is the MLPs' only).
        iterations: generator steps per generation; ``n_critic`` critic steps each (WGAN-GP: 5).
        ema_decay: in [0, 1); 0 samples from the trained generator itself, > 0 from its moving average.
        gp_weight: lambda of the penalty (WGAN-GP: 10); ``lr``, ``beta1``, ``beta2``: Adam (WGAN-GP: 1e-4, 0, 0.9).
        batch_size: images per step and member.
        eval_samples, eval_seed: the samples ``summary`` measures (the same latents every generation).
        keep_samples: the first this many of them are returned by ``summary`` as ``samples`` (uint8
            [R, k, C, H, W]), so a figure can show and archive them.
        lenet: the metrics' classifier recipe (:func:`madlib.metrics.load_lenet`).
    """

    def __init__(self, dataset: str = "mnist5k", *, runs: int = 3, image_size: int = 14,
                 root: str | os.PathLike | None = None, architecture: str = "mlp",
                 critic_norm: str = "none", latent_dim: int = 32, width: int = 256, depth: int = 2,
                 iterations: int = 2000, n_critic: int = 5, gp_weight: float = 10.0, batch_size: int = 64,
                 lr: float = 1e-4, beta1: float = 0.0, beta2: float = 0.9, ema_decay: float = 0.0,
                 eval_samples: int = 500,
                 eval_seed: int = 0, keep_samples: int = 0, lenet="default", device: str = "cpu"):
        self.dataset = check_choice("dataset", dataset, DATASETS)
        self.runs = check_int("runs", runs, minimum=1)
        self.image_size = check_int("image_size", image_size, minimum=4)
        self.architecture = check_choice("architecture", architecture, ARCHITECTURES)
        self.critic_norm = check_choice("critic_norm", critic_norm, CRITIC_NORMS)
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.width, self.depth = check_int("width", width, minimum=1), check_int("depth", depth, minimum=1)
        self.iterations = check_int("iterations", iterations, minimum=1)
        self.n_critic = check_int("n_critic", n_critic, minimum=1)
        self.gp_weight = check_interval("gp_weight", gp_weight, 0.0, math.inf, high_open=True)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.lr = check_interval("lr", lr, 0.0, math.inf, low_open=True, high_open=True)
        self.betas = (check_interval("beta1", beta1, 0.0, 1.0, high_open=True),
                      check_interval("beta2", beta2, 0.0, 1.0, high_open=True))
        self.ema_decay = check_interval("ema_decay", ema_decay, 0.0, 1.0, high_open=True)
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
        self._classifier = self._held = None

    def settings(self) -> dict:
        return {"dataset": self.dataset, "runs": self.runs, "image_size": self.image_size,
                "architecture": self.architecture, "critic_norm": self.critic_norm, "latent_dim": self.latent_dim,
                "width": self.width, "depth": self.depth, "iterations": self.iterations, "n_critic": self.n_critic,
                "gp_weight": self.gp_weight, "batch_size": self.batch_size, "lr": self.lr, "betas": list(self.betas),
                "ema_decay": self.ema_decay,
                "eval_samples": self.eval_samples, "eval_seed": self.eval_seed, "lenet": str(self.lenet)}

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.train_images.numpy().tobytes()).hexdigest()[:16]
        return f"WGANFamily({self.settings()}, data={digest})"

    def true_model(self):
        raise ValueError("a GAN loop starts from real data: set n_ini in the LoopSpec")

    def networks(self, generator: torch.Generator) -> tuple[nn.Module, nn.Module]:
        """A fresh (generator, critic) pair of ensembles, drawn from ``generator``."""
        if self.architecture == "conv":
            gen = ConvGenerator(self.runs, self.latent_dim, self.shape, self.width, generator=generator, device=self.device)
            critic = ConvCritic(self.runs, self.shape, self.width, self.critic_norm, generator=generator, device=self.device)
            return gen, critic
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
        return to_uint8_images(x.reshape((self.runs, n) + self.shape))

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
        x = to_network_range(data.images).reshape(self.runs, -1, self.pixels).to(self.device)  # [R, N, D]
        n, batch = x.shape[1], min(self.batch_size, x.shape[1])
        opt_g = torch.optim.Adam(gen.parameters(), lr=self.lr, betas=self.betas)
        opt_c = torch.optim.Adam(critic.parameters(), lr=self.lr, betas=self.betas)
        rows = torch.arange(self.runs, device=self.device)[:, None]
        average = copy.deepcopy(gen) if self.ema_decay > 0 else None
        start = time.perf_counter()
        for i in range(self.iterations):
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
            if average is not None:
                ema_update(average, gen, min(self.ema_decay, (1 + i) / (10 + i)))
                with torch.no_grad():
                    for kept, live in zip(average.buffers(), gen.buffers()):
                        kept.copy_(live)
        seconds = time.perf_counter() - start
        gen = gen if average is None else average
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
        with the predicted-class entropy (normalised by log 10), the share of the commonest predicted class and
        the mean top-class probability (``confidence``)."""
        from madlib.metrics.images import HeldOutMetrics
        from madlib.metrics.lenet import lenet_logits

        lenet = self._lenet()
        if self._held is None:  # the held-out split's features, once
            self._held = HeldOutMetrics(self.test_images, lenet, k=5)
        quality = self._held(images)  # FID, precision, recall: the one metric bundle
        probs = lenet_logits(images, lenet).softmax(1).cpu()
        counts = torch.bincount(probs.argmax(1), minlength=10).double()
        p = counts / counts.sum()
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum() / math.log(len(p)))
        return {"fid": float(quality["fid"]), "precision": float(quality["precision"]),
                "recall": float(quality["recall"]), "class_entropy": entropy, "top_class_share": float(p.max()),
                "confidence": float(probs.max(1).values.mean())}

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
