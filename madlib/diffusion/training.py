"""Training and fine-tuning of denoiser ensembles, with a budget counted in samples seen per member."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm import tqdm

from madlib._checks import check_int, check_interval


@dataclass(frozen=True)
class TrainStats:
    """What a training call did: optimiser steps, samples seen per member, wall time and throughput."""

    steps: int
    samples_seen: int
    seconds: float
    samples_per_s: float  # summed over members
    final_loss: list[float]


def train_ensemble(net: torch.nn.Module, data: torch.Tensor, loss_fn: Callable, *, samples_seen: int,
                   batch_size: int = 256, lr: float = 1e-3, labels: torch.Tensor | None = None,
                   cond_dropout: float = 0.0, generator: torch.Generator | None = None,
                   after_step: Callable[[], None] | None = None, progress: bool = False) -> TrainStats:
    """Train every member of ``net`` on its own dataset with Adam.

    data [R, N, ...] (points [R, N, d] or images [R, N, C, H, W]; member r sees only data[r]);
    labels [R, N] or None. Each epoch visits a fresh permutation per member; the budget
    ``samples_seen`` per member sets the number of steps ceil(samples_seen / batch), the batch
    clipped to N. ``loss_fn(net, x0, generator=..., y=...)``
    returns per-member losses [R]; their sum trains all members at once, and Adam being elementwise,
    each member follows exactly the updates it would get alone. Condition dropout replaces a label
    by the "no label" token (``net.num_classes``) with probability ``cond_dropout``.
    ``after_step()`` runs after every optimiser step (e.g. an EMA update, :func:`ema_update`).
    """
    if data.ndim < 3 or data.shape[0] != getattr(net, "members", data.shape[0]):
        raise ValueError(f"data must be [members, N, ...] matching the network; got {tuple(data.shape)}")
    members, n = data.shape[:2]
    if n < 1:
        raise ValueError("data must hold at least one point per member (got an empty dataset)")
    samples_seen = check_int("samples_seen", samples_seen, minimum=1)
    batch = min(check_int("batch_size", batch_size, minimum=1), n)
    cond_dropout = check_interval("cond_dropout", cond_dropout, 0.0, 1.0)
    steps = math.ceil(samples_seen / batch)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    rows = torch.arange(members, device=data.device)[:, None]
    order, pos = None, n
    start = time.perf_counter()
    losses = torch.zeros(members)
    for _ in tqdm(range(steps), disable=not progress, leave=False, desc="train"):
        if pos + batch > n:  # new epoch: a fresh permutation per member
            order = torch.argsort(torch.rand(members, n, generator=generator), dim=1).to(data.device)
            pos = 0
        idx = order[:, pos:pos + batch]  # [R, B]
        pos += batch
        y = None
        if labels is not None:
            y = labels[rows, idx]
            if cond_dropout > 0:
                drop = torch.rand(y.shape, generator=generator).to(y.device) < cond_dropout
                y = torch.where(drop, torch.full_like(y, net.num_classes), y)
        losses = loss_fn(net, data[rows, idx], generator=generator, y=y)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step()
        if after_step is not None:
            after_step()
    seconds = time.perf_counter() - start
    return TrainStats(steps=steps, samples_seen=steps * batch, seconds=seconds,
                      samples_per_s=steps * batch * members / max(seconds, 1e-9),
                      final_loss=losses.detach().cpu().tolist())


@torch.no_grad()
def ema_update(average: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    # Ho et al. 2020 App. B (EMA decay 0.9999): theta_ema <- decay theta_ema + (1 - decay) theta
    """Move every parameter of ``average`` (a copy of ``net``) towards ``net``'s, in place."""
    for a, p in zip(average.parameters(), net.parameters()):
        a.lerp_(p, 1.0 - decay)


def finetune_copy(net: torch.nn.Module, data: torch.Tensor, loss_fn: Callable, *, samples_seen: int,
                  **train_kwargs) -> tuple[torch.nn.Module, TrainStats]:
    """A deep copy of ``net`` fine-tuned on ``data`` for ``samples_seen`` per member (SIMS Algorithm 1, step 3).

    The base network is left untouched; the copy starts from its weights with a fresh optimiser and
    the same training settings (SIMS S:135: the auxiliary model uses the base model's settings).
    """
    aux = copy.deepcopy(net)
    return aux, train_ensemble(aux, data, loss_fn, samples_seen=samples_seen, **train_kwargs)
