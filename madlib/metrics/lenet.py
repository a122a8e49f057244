"""The project's LeNet-style MNIST classifier: the feature extractor of every image metric.

MAD computes FID on MNIST with LeNet features (Sec. 3.2); Inception weights cannot be downloaded here,
so the project trains its own classifier on the MNIST 5k training split (``load_images("mnist5k",
"train")``, 4,000 images) and reports its accuracy on the 1,000 held-out images.

**Architecture.** conv 5x5 1->16 (pad 2), ReLU, max-pool 2 -> conv 5x5 16->32, ReLU, max-pool 2 ->
flatten 32*5*5 -> linear 800->128, ReLU (**the features**, 128-d) -> linear 128->10 (logits).
Input: [B, 1, 28, 28] float in [0, 1] (other sizes are resized bilinearly, 3 channels averaged).

**Training recipe** (:class:`LeNetRecipe`): Adam (lr 1e-3), cross-entropy, batch 64, 12 epochs,
mini-batches drawn by a seeded ``torch.Generator``, random shifts of up to ``shift`` = 2 pixels as
augmentation. Training on CPU runs single-threaded (the thread count is restored afterwards) so the
weights do not depend on the machine's core count; it takes about 20 s and reaches about 98% held-out
accuracy. ``TINY_RECIPE`` (30 steps, for tests and smoke runs) trains in about a second (about 60%).

**Cache.** ``$MADLIB_CACHE`` if set, else ``~/.cache/madlib``; the file is
``lenet-<hash>.pt`` where ``<hash>`` is the SHA-256 of the recipe (architecture version, training
settings, and a digest of the training images). It stores the recipe, its hash, the weights, a
SHA-256 checksum of the weights and the held-out accuracy. It is written atomically (temporary file
+ ``os.replace``). On load, a file that does not unpickle, whose recipe or hash differs, or whose
checksum does not match its weights is reported with a :class:`CacheWarning` and rebuilt, never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from madlib._checks import check_int
from madlib._io import atomic_path

__all__ = ["LeNet", "LeNetRecipe", "DEFAULT_RECIPE", "TINY_RECIPE", "CacheWarning", "cache_dir", "cache_path",
           "train_lenet", "load_lenet", "lenet_features", "lenet_logits", "class_histogram", "to_lenet_input"]

ARCH_VERSION = "lenet-16-32-128-v1"
FEATURE_DIM = 128


class CacheWarning(UserWarning):
    """A cached classifier was corrupt or stale and is being rebuilt."""


class LeNet(nn.Module):
    """LeNet-style CNN; ``forward`` returns (features [B, 128], logits [B, 10])."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.fc1 = nn.Linear(32 * 5 * 5, FEATURE_DIM)
        self.fc2 = nn.Linear(FEATURE_DIM, 10)
        self.info: dict = {}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # [B, 16, 14, 14]
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # [B, 32, 5, 5]
        features = F.relu(self.fc1(x.flatten(1)))  # [B, 128]
        return features, self.fc2(features)


@dataclass(frozen=True)
class LeNetRecipe:
    """Everything that determines the trained weights (hashed into the cache key).

    steps: optimiser steps (None: ``epochs`` passes over the training split).
    """

    epochs: int = 12
    steps: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    shift: int = 2
    seed: int = 0
    dataset: str = "mnist5k"
    arch: str = ARCH_VERSION


DEFAULT_RECIPE = LeNetRecipe()
TINY_RECIPE = LeNetRecipe(steps=30, batch_size=32)


def cache_dir() -> Path:
    """``$MADLIB_CACHE`` if set, else ``~/.cache/madlib``."""
    env = os.environ.get("MADLIB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "madlib"


def _recipe_dict(recipe: LeNetRecipe) -> dict:
    from madlib.data import load_images

    x, y = load_images(recipe.dataset, "train", dtype="uint8")
    data = hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16]
    return dataclasses.asdict(recipe) | {"train_data_sha256": data}


def _recipe_hash(recipe_dict: dict) -> str:
    return hashlib.sha256(json.dumps(recipe_dict, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(recipe: LeNetRecipe = DEFAULT_RECIPE) -> Path:
    """Where the classifier trained by ``recipe`` is cached."""
    return cache_dir() / f"lenet-{_recipe_hash(_recipe_dict(recipe))}.pt"


def _weights_checksum(state: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def to_lenet_input(images: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] images (uint8 0..255 or float in [0, 1]) -> float32 [B, 1, 28, 28] in [0, 1]."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [B, 1 or 3, H, W]; got {tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if x.shape[1] == 3:
        x = x.mean(1, keepdim=True)
    if x.shape[-2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=x.shape[-1] > 28)
    return x


def _shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Random integer translation of each image by up to max_shift pixels (zero padding)."""
    if max_shift == 0:
        return x
    B, _, H, W = x.shape
    pad = F.pad(x, (max_shift,) * 4)
    dx, dy = (torch.randint(0, 2 * max_shift + 1, (2, B), generator=g))
    rows = (dy[:, None] + torch.arange(H))[:, :, None].expand(B, H, W)  # [B, H, W]
    cols = (dx[:, None] + torch.arange(W))[:, None, :].expand(B, H, W)
    return pad[torch.arange(B)[:, None, None], 0, rows, cols].unsqueeze(1)


@torch.no_grad()
def _accuracy(model: LeNet, x: torch.Tensor, y: torch.Tensor, device) -> float:
    pred = torch.cat([model(xb.to(device))[1].argmax(1).cpu() for xb in x.split(1000)])
    return float((pred == y).double().mean())


def train_lenet(recipe: LeNetRecipe = DEFAULT_RECIPE, *, device: str | torch.device = "cpu",
                progress: bool = False) -> LeNet:
    """Train the classifier on the recipe's training split; ``model.info`` holds the held-out accuracy.

    Deterministic given the recipe (seeded initialisation, batches and shifts) on CPU.
    """
    from madlib.data import load_images

    device = torch.device(device)
    x, y = load_images(recipe.dataset, "train")
    xt, yt = load_images(recipe.dataset, "test")
    g = torch.Generator().manual_seed(recipe.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = LeNet()
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    n = x.shape[0]
    per_epoch = -(-n // recipe.batch_size)
    steps = recipe.steps if recipe.steps is not None else recipe.epochs * per_epoch
    steps = check_int("recipe.steps", steps, minimum=1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="LeNet", leave=False)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # weights independent of the core count, and no oversubscription
    try:
        model.train()
        step, order = 0, torch.randperm(n, generator=g)
        while step < steps:
            j = step % per_epoch
            if j == 0 and step > 0:
                order = torch.randperm(n, generator=g)
            idx = order[j * recipe.batch_size:(j + 1) * recipe.batch_size]
            xb = _shift(x[idx], recipe.shift, g).to(device)
            loss = F.cross_entropy(model(xb)[1], y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if bar is not None:
                bar.update(1)
    finally:
        torch.set_num_threads(threads)
        if bar is not None:
            bar.close()
    model.eval()
    model.requires_grad_(False)
    model.info = {"recipe": _recipe_dict(recipe), "heldout_accuracy": _accuracy(model, xt, yt, device),
                  "n_heldout": int(yt.shape[0]), "n_train": int(n), "steps": steps,
                  "train_seconds": round(time.perf_counter() - start, 3), "loaded_from_cache": False}
    return model


def _save(model: LeNet, path: Path, recipe_dict: dict, recipe_hash: str) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"recipe": recipe_dict, "recipe_hash": recipe_hash, "state_dict": state,
               "checksum": _weights_checksum(state), "info": {k: v for k, v in model.info.items() if k != "recipe"}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load(path: Path, recipe_dict: dict, recipe_hash: str) -> tuple[LeNet | None, str]:
    """(model, "") from a valid cache file, or (None, reason) when it is corrupt or stale."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, garbage or unreadable file
        return None, f"unreadable ({type(err).__name__})"
    if not isinstance(payload, dict) or not {"recipe", "recipe_hash", "state_dict", "checksum", "info"} <= set(payload):
        return None, "missing fields"
    if payload["recipe_hash"] != recipe_hash or payload["recipe"] != recipe_dict:
        return None, "stale (stored recipe differs)"
    state = payload["state_dict"]
    if _weights_checksum(state) != payload["checksum"]:
        return None, "checksum mismatch"
    model = LeNet()
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as err:
        return None, f"weights do not fit the architecture ({err})"
    model.eval()
    model.requires_grad_(False)
    model.info = dict(payload["info"]) | {"recipe": recipe_dict, "loaded_from_cache": True}
    return model, ""


def load_lenet(recipe: LeNetRecipe | str = DEFAULT_RECIPE, *, device: str | torch.device = "cpu",
               progress: bool = False, path: str | os.PathLike | None = None) -> LeNet:
    """The trained classifier: from the cache if a valid file exists, else trained and cached.

    Args:
        recipe: a :class:`LeNetRecipe`, or ``"default"`` / ``"tiny"`` (30 steps, for tests and smoke runs).
        device: where the returned model lives (training always runs on CPU, about 20 s, so the cached
            weights do not depend on the machine).
        progress: show a training progress bar.
        path: a cache file to use instead of :func:`cache_path` (e.g. one named by torch-fidelity's
            ``feature_extractor_weights_path``); it is validated the same way.

    Returns:
        the model in eval mode; ``model.info`` has ``heldout_accuracy``, ``n_heldout``, ``path``,
        ``recipe_hash`` and ``loaded_from_cache``.
    """
    if isinstance(recipe, str):
        recipe = {"default": DEFAULT_RECIPE, "tiny": TINY_RECIPE}.get(recipe) or _bad_recipe(recipe)
    recipe_dict = _recipe_dict(recipe)
    recipe_hash = _recipe_hash(recipe_dict)
    path = Path(path) if path is not None else cache_dir() / f"lenet-{recipe_hash}.pt"
    model = None
    if path.exists():
        model, reason = _load(path, recipe_dict, recipe_hash)
        if model is None:
            warnings.warn(f"cached classifier {path} is {reason}; rebuilding it", CacheWarning, stacklevel=2)
    if model is None:
        model = train_lenet(recipe, device="cpu", progress=progress)  # on CPU always: one cache file per recipe
        model.info["recipe_hash"] = recipe_hash
        _save(model.cpu(), path, recipe_dict, recipe_hash)
    model.info |= {"path": str(path), "recipe_hash": recipe_hash}
    return model.to(device)


def _bad_recipe(name):
    raise ValueError(f"recipe must be a LeNetRecipe or one of ['default', 'tiny']; got {name!r}")


@torch.no_grad()
def _batched(model: LeNet, images: torch.Tensor, batch_size: int, which: int) -> torch.Tensor:
    device = next(model.parameters()).device
    out = [model(to_lenet_input(xb.to(device)))[which] for xb in images.split(batch_size)]
    return torch.cat(out)


def lenet_features(images: torch.Tensor, model: LeNet, *, batch_size: int = 1000) -> torch.Tensor:
    """128-d penultimate features [N, 128] (on the model's device) of images [N, C, H, W] (uint8 or [0, 1])."""
    return _batched(model, images, check_int("batch_size", batch_size, minimum=1), 0)


def lenet_logits(images: torch.Tensor, model: LeNet, *, batch_size: int = 1000) -> torch.Tensor:
    """Class logits [N, 10] of images [N, C, H, W]."""
    return _batched(model, images, check_int("batch_size", batch_size, minimum=1), 1)


def class_histogram(images: torch.Tensor, model: LeNet, *, num_classes: int = 10, batch_size: int = 1000) -> dict:
    """Classifier-based class histogram of (generated) images (CASD Table 2 / Fig. 3, SIMS-4, MAD-9).

    Returns ``{"counts": [num_classes] ints, "shares": [num_classes] floats, "predicted": [N] labels,
    "confidence": mean max-softmax probability, "n": N}``.
    """
    logits = lenet_logits(images, model, batch_size=batch_size).cpu()
    pred = logits.argmax(1)
    counts = torch.bincount(pred, minlength=num_classes)
    n = int(pred.shape[0])
    return {"counts": counts.numpy(), "shares": (counts.double() / max(n, 1)).numpy(), "predicted": pred.numpy(),
            "confidence": float(torch.softmax(logits, 1).max(1).values.mean()) if n else float("nan"), "n": n}


