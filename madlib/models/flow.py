"""A RealNVP-style normalizing flow as a model family (MAD App. B.4, Fig. 17), batched over runs.

x -> standardise -> 8 affine coupling layers -> z ~ N(0, I_d). A coupling layer keeps one half of the
coordinates (alternating between layers) and maps the other half by y_b = x_b * exp(s(x_a)) + t(x_a),
with s = scale * tanh(.) and (s, t) from an MLP of two hidden layers of 64 ReLU units; its last layer
starts at zero, so an untrained coupling is the identity. Fit = maximum likelihood with Adam. Sampling
bias lambda = variance of the latent Gaussian: z ~ N(0, lambda I_d), x = f^{-1}(z) (MAD App. B.4).

R independent flows are trained at once: every weight carries a leading run axis ([R, L, ...]) and each
run's loss is its own mean negative log-likelihood, so (Adam being elementwise) the runs do not interact.

Project choices (the paper gives the architecture, epochs and batch, not these): Adam with learning rate
1e-3; 10% of each generation's data held out for validation; the weights of the epoch with the best
validation likelihood are kept (per run); a fixed affine standardisation (the training split's mean and
standard deviation per coordinate) is the first bijection of the flow; every generation starts from a
fresh initialisation. Randomness is explicit: the data object carries the training seed, drawn from the
loop's generator, and a ``torch.Generator`` seeded by it drives the initialisation, the split and the
batches; on the CPU the result is deterministic.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from madlib._checks import check_int, check_interval


class RealNVP(torch.nn.Module):
    """R independent RealNVP flows on R^d.

    Args:
        runs: R. dim: d >= 2. layers: number of affine couplings. hidden: width of the two hidden layers.
        generator: ``torch.Generator`` for the initial weights.
    """

    def __init__(self, runs: int, dim: int = 2, layers: int = 8, hidden: int = 64, *,
                 generator: torch.Generator | None = None, dtype=torch.float32):
        super().__init__()
        self.runs = check_int("runs", runs, minimum=1)
        self.dim = check_int("dim", dim, minimum=2, why="a coupling layer splits the coordinates in two")
        self.layers = check_int("layers", layers, minimum=1)
        self.hidden = check_int("hidden", hidden, minimum=1)
        first = torch.arange(dim // 2)
        second = torch.arange(dim // 2, dim)
        # Layer l keeps coordinates keep[l] and transforms move[l]; the halves alternate.
        self._halves = [(first, second) if l % 2 == 0 else (second, first) for l in range(layers)]
        n_keep = max(len(first), len(second))  # inputs are zero-padded to the larger half
        n_move = n_keep
        R, L, H = runs, layers, hidden

        def uniform(*shape, fan_in):
            bound = 1.0 / math.sqrt(fan_in)
            return torch.nn.Parameter((torch.rand(*shape, generator=generator, dtype=dtype) * 2 - 1) * bound)

        # One tensor per layer (slicing a stacked [R, L, ...] tensor costs a full-size gradient per layer).
        params = torch.nn.ParameterList
        self.w1 = params([uniform(R, n_keep, H, fan_in=n_keep) for _ in range(L)])  # [R, n_keep, H] each
        self.b1 = params([uniform(R, 1, H, fan_in=n_keep) for _ in range(L)])
        self.w2 = params([uniform(R, H, H, fan_in=H) for _ in range(L)])
        self.b2 = params([uniform(R, 1, H, fan_in=H) for _ in range(L)])
        self.w3 = params([torch.nn.Parameter(torch.zeros(R, H, 2 * n_move, dtype=dtype)) for _ in range(L)])
        self.b3 = params([torch.nn.Parameter(torch.zeros(R, 1, 2 * n_move, dtype=dtype)) for _ in range(L)])
        self.log_scale = params([torch.nn.Parameter(torch.zeros(R, 1, n_move, dtype=dtype)) for _ in range(L)])
        self.register_buffer("loc", torch.zeros(R, 1, dim, dtype=dtype))  # standardisation, [R, 1, d]
        self.register_buffer("scale", torch.ones(R, 1, dim, dtype=dtype))

    def _shift_scale(self, l: int, x_keep: torch.Tensor):
        """(s, t) of coupling l for the kept coordinates [R, B, n_keep] -> two [R, B, n_move]."""
        pad = self.w1[l].shape[1] - x_keep.shape[-1]
        if pad:
            x_keep = torch.nn.functional.pad(x_keep, (0, pad))
        h = torch.nn.functional.relu(torch.baddbmm(self.b1[l], x_keep, self.w1[l]))  # [R, B, H]
        h = torch.nn.functional.relu(torch.baddbmm(self.b2[l], h, self.w2[l]))  # [R, B, H]
        out = torch.baddbmm(self.b3[l], h, self.w3[l])  # [R, B, 2 n_move]
        raw_s, t = out.chunk(2, dim=-1)
        s = torch.exp(self.log_scale[l]) * torch.tanh(raw_s)
        return s, t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [R, B, d] -> z [R, B, d] and log |det dz/dx| [R, B]."""
        z = (x - self.loc) / self.scale
        log_det = -torch.log(self.scale).sum(-1).expand(z.shape[:2])
        for l, (keep, move) in enumerate(self._halves):
            s, t = self._shift_scale(l, z[..., keep])
            s, t = s[..., : len(move)], t[..., : len(move)]
            z = z.index_copy(-1, move, z[..., move] * torch.exp(s) + t)
            log_det = log_det + s.sum(-1)
        return z, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z [R, B, d] -> x [R, B, d], the inverse of :meth:`forward`."""
        x = z
        for l in reversed(range(self.layers)):
            keep, move = self._halves[l]
            s, t = self._shift_scale(l, x[..., keep])
            s, t = s[..., : len(move)], t[..., : len(move)]
            x = x.index_copy(-1, move, (x[..., move] - t) * torch.exp(-s))
        return x * self.scale + self.loc

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log density of each run's flow at x [R, B, d] -> [R, B] (change of variables)."""
        z, log_det = self(x)
        return -0.5 * (z * z).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi) + log_det


@dataclass(frozen=True)
class FlowData:
    """Training points [R, N, d] and the seed of the training run that will fit them."""

    points: np.ndarray
    seed: int


@dataclass
class FlowModel:
    """R trained flows and their training history ([R, epochs] mean NLL per point; best epoch [R])."""

    flow: RealNVP
    train_nll: np.ndarray
    val_nll: np.ndarray
    best_epoch: np.ndarray

    def log_prob(self, x) -> np.ndarray:
        """log density at x [R, n, d] (or [n, d], shared by all runs) -> [R, n] (numpy in, numpy out)."""
        x = np.asarray(x, float)
        if x.ndim == 2:
            x = np.broadcast_to(x, (self.flow.runs,) + x.shape)
        p = next(self.flow.parameters())
        with torch.no_grad():
            return self.flow.log_prob(torch.tensor(x, dtype=p.dtype, device=p.device)).double().cpu().numpy()

    def sample(self, n: int, lam: float, rng: np.random.Generator) -> np.ndarray:
        """n points per run with latent z ~ N(0, lambda I) drawn from ``rng`` -> [R, n, d]."""
        n = check_int("n", n, minimum=0)
        lam = check_interval("lam", lam, 0.0, 1.0, low_open=True)
        z = math.sqrt(lam) * rng.standard_normal((self.flow.runs, n, self.flow.dim))
        p = next(self.flow.parameters())
        with torch.no_grad():
            return self.flow.inverse(torch.tensor(z, dtype=p.dtype, device=p.device)).double().cpu().numpy()


def train_flow(x, *, seed: int, layers: int = 8, hidden: int = 64, epochs: int = 20, batch_size: int = 256,
               lr: float = 1e-3, val_fraction: float = 0.1, device: str | torch.device = "cpu") -> FlowModel:
    """Maximum-likelihood training of R flows at once on x [R, N, d] with Adam.

    Each epoch visits the training split in random batches of ``batch_size`` (the last one smaller) and
    ends with the mean validation NLL per point; the weights of each run's best validation epoch are kept.
    """
    x = np.asarray(x, float)
    if x.ndim != 3:
        raise ValueError(f"x must be points [R, N, d]; got shape {x.shape}")
    seed = check_int("seed", seed, minimum=0)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_interval("lr", lr, 0.0, np.inf, low_open=True)
    val_fraction = check_interval("val_fraction", val_fraction, 0.0, 1.0, low_open=True, high_open=True)
    R, N, d = x.shape
    n_val = int(round(val_fraction * N))
    if n_val < 1 or N - n_val < 2:
        raise ValueError(f"val_fraction = {val_fraction} of N = {N} points leaves no validation or training split")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)  # CPU generator: the same draws on every device
    flow = RealNVP(R, d, layers, hidden, generator=gen)
    perm = torch.stack([torch.randperm(N, generator=gen) for _ in range(R)])  # [R, N]
    data = torch.as_tensor(x, dtype=torch.float32)
    data = torch.gather(data, 1, perm[..., None].expand(R, N, d))
    train, val = data[:, n_val:].to(device), data[:, :n_val].to(device)
    flow.loc.copy_(train.mean(1, keepdim=True))
    flow.scale.copy_(train.std(1, keepdim=True).clamp_min(1e-12))
    flow.to(device)
    opt = torch.optim.Adam(flow.parameters(), lr=lr, foreach=True)
    best = {name: p.detach().clone() for name, p in flow.named_parameters()}
    best_val = torch.full((R,), math.inf, device=device)
    best_epoch = torch.zeros(R, dtype=torch.long)
    train_hist, val_hist = np.zeros((R, epochs)), np.zeros((R, epochs))
    n_train = train.shape[1]
    rows = torch.arange(R, device=device)[:, None]
    for epoch in range(epochs):
        order = torch.stack([torch.randperm(n_train, generator=gen) for _ in range(R)]).to(device)  # [R, n_train]
        total = torch.zeros(R, device=device)
        for start in range(0, n_train, batch_size):
            batch = train[rows, order[:, start:start + batch_size]]  # [R, B, d]
            nll = -flow.log_prob(batch).mean(1)  # [R]
            opt.zero_grad(set_to_none=True)
            nll.sum().backward()  # runs are independent: the sum separates
            opt.step()
            total += nll.detach() * batch.shape[1]
        with torch.no_grad():
            val_nll = -flow.log_prob(val).mean(1)  # [R]
            better = val_nll < best_val
            for name, p in flow.named_parameters():
                mask = better.view(R, *([1] * (p.dim() - 1)))
                best[name] = torch.where(mask, p.detach(), best[name])
            best_val = torch.where(better, val_nll, best_val)
            best_epoch = torch.where(better.cpu(), torch.tensor(epoch), best_epoch)
        train_hist[:, epoch] = (total / n_train).cpu().numpy()
        val_hist[:, epoch] = val_nll.cpu().numpy()
    with torch.no_grad():
        for name, p in flow.named_parameters():
            p.copy_(best[name])
    flow.eval()
    for p in flow.parameters():
        p.requires_grad_(False)
    return FlowModel(flow, train_hist, val_hist, best_epoch.numpy())


class FlowFamily:
    """RealNVP model family for :func:`madlib.loops.run_loop` (MAD App. B.4).

    Start the loop from real data (``LoopSpec(n_ini=...)``): P_r is not a flow, so there is no G^0.

    Args:
        target: P_r, an object with ``sample(n, seed=...) -> [n, d]`` (numpy or torch), e.g.
            :class:`madlib.data.Rosenbrock`; each run's real set is drawn with a seed from the loop's generator.
        runs: independent loops trained together (R).
        layers, hidden, epochs, batch_size, lr, val_fraction, device: see :func:`train_flow`.
        eval_points: [m, d] points where :meth:`summary` records each run's log density (e.g. a grid).
        eval_samples: number of lambda = 1 samples per run that :meth:`summary` records, drawn from
            latents fixed by ``eval_seed`` (the same latents every generation).
    """

    def __init__(self, target, runs: int, *, layers: int = 8, hidden: int = 64, epochs: int = 20,
                 batch_size: int = 256, lr: float = 1e-3, val_fraction: float = 0.1,
                 device: str | torch.device = "cpu", eval_points=None, eval_samples: int = 0, eval_seed: int = 0):
        if not callable(getattr(target, "sample", None)):
            raise TypeError(f"target must have a sample(n, seed=...) method; got {type(target).__name__}")
        self.target = target
        self.runs = check_int("runs", runs, minimum=1)
        self.layers = check_int("layers", layers, minimum=1)
        self.hidden = check_int("hidden", hidden, minimum=1)
        self.epochs = check_int("epochs", epochs, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.lr = check_interval("lr", lr, 0.0, np.inf, low_open=True)
        self.val_fraction = check_interval("val_fraction", val_fraction, 0.0, 1.0, low_open=True, high_open=True)
        self.device = torch.device(device)
        self.eval_points = None if eval_points is None else np.asarray(eval_points, float)
        if self.eval_points is not None and self.eval_points.ndim != 2:
            raise ValueError(f"eval_points must be [m, d]; got shape {self.eval_points.shape}")
        self.eval_samples = check_int("eval_samples", eval_samples, minimum=0)
        self.eval_seed = check_int("eval_seed", eval_seed, minimum=0)

    def fingerprint(self) -> str:
        ev = b"" if self.eval_points is None else self.eval_points.tobytes()
        digest = hashlib.sha256(repr(self.target).encode() + ev).hexdigest()[:16]
        return (f"FlowFamily(runs={self.runs}, layers={self.layers}, hidden={self.hidden}, epochs={self.epochs}, "
                f"batch={self.batch_size}, lr={self.lr}, val={self.val_fraction}, eval_samples={self.eval_samples}, "
                f"eval_seed={self.eval_seed}, {digest})")

    def true_model(self):
        raise NotImplementedError("P_r is not a flow: start the loop from real data with LoopSpec(n_ini=...)")

    def draw_real(self, n: int, rng: np.random.Generator) -> FlowData:
        points = np.stack([np.asarray(self.target.sample(n, seed=int(rng.integers(2**62))), float)
                           for _ in range(self.runs)])
        return FlowData(points, int(rng.integers(2**62)))

    def sample(self, model: FlowModel, n: int, lam: float, rng: np.random.Generator) -> FlowData:
        return FlowData(model.sample(n, lam, rng), int(rng.integers(2**62)))

    def concat(self, parts) -> FlowData:
        parts = list(parts)
        seed = int(np.random.SeedSequence([p.seed for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(2))
        return FlowData(np.concatenate([p.points for p in parts], axis=1), seed)

    def fit(self, data: FlowData) -> FlowModel:
        return train_flow(data.points, seed=data.seed, layers=self.layers, hidden=self.hidden, epochs=self.epochs,
                          batch_size=self.batch_size, lr=self.lr, val_fraction=self.val_fraction, device=self.device)

    def summary(self, model: FlowModel) -> dict[str, np.ndarray]:
        """Per-run records: final train/val NLL [R], best epoch [R], val NLL per epoch [R, E], and if set,
        log density at ``eval_points`` [R, m] and lambda = 1 samples [R, eval_samples, d]."""
        out = {"train_nll": model.train_nll[:, -1], "val_nll": model.val_nll.min(1),
               "val_nll_curve": model.val_nll, "best_epoch": model.best_epoch}
        if self.eval_points is not None:
            out["log_prob_eval"] = model.log_prob(self.eval_points)
        if self.eval_samples:
            out["samples"] = model.sample(self.eval_samples, 1.0, np.random.default_rng(self.eval_seed))
        return out
