"""Training and fine-tuning of denoiser ensembles, with a budget counted in samples seen per member.

One trainer for every network (ensemble MLPs, U-Nets, batched U-Nets, LoRA-wrapped U-Nets): warm-up
and decay of the learning rate, an EMA, checkpoints that resume with the same numbers.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from madlib._checks import check_choice, check_int, check_interval
from madlib._io import atomic_path
from madlib.diffusion._random import rand


@dataclass(frozen=True)
class TrainStats:
    """What a training call did: optimiser steps, samples seen per member, wall time and throughput."""

    steps: int
    samples_seen: int
    seconds: float
    samples_per_s: float  # summed over members
    final_loss: list[float]


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
LR_DECAYS = ("constant", "cosine")
_CHECKPOINT_FORMAT = "madlib-train-checkpoint-v1"


def lr_factor(step: int, steps: int, warmup_steps: int, decay: str) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based) of ``steps``: a linear warm-up over
    ``warmup_steps`` (EDM App. F.3 ramps the rate up linearly), then constant or a cosine decay to 0."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if decay == "cosine" and steps > warmup_steps:
        done = max(0, step - warmup_steps) / (steps - warmup_steps)
        return warm * 0.5 * (1 + math.cos(math.pi * done))
    return warm


PRECISIONS = ("fp32", "bf16")


def autocast(precision: str, device) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in: nothing for ``"fp32"``, bf16 autocast on ``device``'s type for ``"bf16"``
    (convolutions and matmuls in bfloat16, reductions and the loss in float32; on a GPU about 2x the throughput)."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def train_ensemble(net: torch.nn.Module, data: torch.Tensor, loss_fn: Callable, *, samples_seen: int,
                   batch_size: int = 256, lr: float = 1e-3, labels: torch.Tensor | None = None,
                   sources: torch.Tensor | None = None, cond_dropout: float = 0.0,
                   generator: torch.Generator | None = None, optimizer: str = "adam", weight_decay: float = 0.0,
                   warmup: int = 0, lr_decay: str = "constant", ema: torch.nn.Module | None = None,
                   ema_decay: float = 0.999, ema_rampup: float = 0.0, checkpoint: str | os.PathLike | None = None,
                   checkpoint_every: int = 200, after_step: Callable[[], None] | None = None,
                   precision: str = "fp32", progress: bool = False) -> TrainStats:
    """Train every member of ``net`` on its own dataset (Adam or AdamW on its trainable parameters).

    data [R, N, ...] (points [R, N, d] or images [R, N, C, H, W]; member r sees only data[r]);
    labels [R, N] (class y) and sources [R, N] (a second label s, CASD's data source) or None. Each
    epoch visits a fresh permutation per member; the budget ``samples_seen`` per member sets the
    number of steps ceil(samples_seen / batch), the batch clipped to N. ``loss_fn(net, x0,
    generator=..., y=...[, s=...])`` returns per-member losses [R]; their sum trains all members at
    once, and the optimiser being elementwise, each member follows exactly the updates it would get
    alone. Only parameters with ``requires_grad`` are optimised (a LoRA adapter trains alone).
    Condition dropout replaces a class label by the "no label" token (``net.num_classes``) with
    probability ``cond_dropout``; the source label is never dropped (CASD Algorithm 1).

    Schedule: ``warmup`` samples seen of linear warm-up, then ``lr_decay`` "constant" or "cosine" (to 0
    at the last step). ``ema``: a copy of ``net`` moved towards it after every step with
    ``ema_decay`` (:func:`ema_update`); with ``ema_rampup`` r > 0 the decay ramps up as in EDM's training loop, the
    half-life at most r times the images seen so far (:func:`ema_beta`), so that the average forgets its starting
    weights (a fresh network's, or the base model's in a fine-tune) in proportion to the run. ``after_step()`` runs after every step. ``precision``: ``"fp32"``,
    or ``"bf16"`` for the forward pass and loss under bf16 autocast on the data's device (weights, gradients,
    optimiser and EMA stay float32; a GPU option, :func:`autocast`).

    ``checkpoint``: a file that holds the whole training state (weights, optimiser, EMA, generator,
    epoch permutation, step) every ``checkpoint_every`` steps and at the end, written atomically. A
    call that finds it resumes from it and ends with the same weights as an uninterrupted run (with
    a ``generator``; the global generator's draws are not restored); a checkpoint of another run
    (different budget, batch, data shape or settings) raises ValueError naming the file.
    """
    if data.ndim < 3 or data.shape[0] != getattr(net, "members", data.shape[0]):
        raise ValueError(f"data must be [members, N, ...] matching the network; got {tuple(data.shape)}")
    members, n = data.shape[:2]
    if n < 1:
        raise ValueError("data must hold at least one point per member (got an empty dataset)")
    samples_seen = check_int("samples_seen", samples_seen, minimum=1)
    batch = min(check_int("batch_size", batch_size, minimum=1), n)
    cond_dropout = check_interval("cond_dropout", cond_dropout, 0.0, 1.0)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("lr_decay", lr_decay, LR_DECAYS)
    ema_decay = check_interval("ema_decay", ema_decay, 0.0, 1.0, high_open=True)
    ema_rampup = check_interval("ema_rampup", ema_rampup, 0.0, math.inf, high_open=True)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    steps = math.ceil(samples_seen / batch)
    warmup_steps = math.ceil(check_int("warmup", warmup, minimum=0) / batch)
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise ValueError("net has no trainable parameters (every requires_grad is False)")
    # foreach: one multi-tensor kernel per Adam op instead of a Python loop over ~100 tensors (same numbers, bit for bit)
    opt = OPTIMIZERS[optimizer](params, lr=lr, weight_decay=weight_decay, foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k, steps, warmup_steps, lr_decay))
    rows = torch.arange(members, device=data.device)[:, None]
    check_choice("precision", precision, PRECISIONS)
    identity = {"format": _CHECKPOINT_FORMAT, "steps": steps, "batch": batch, "data_shape": list(data.shape),
                "lr": lr, "optimizer": optimizer, "weight_decay": weight_decay, "warmup_steps": warmup_steps,
                "lr_decay": lr_decay, "cond_dropout": cond_dropout, "ema": ema is not None, "ema_decay": ema_decay,
                **({"precision": precision} if precision != "fp32" else {}),
                **({"ema_rampup": ema_rampup} if ema_rampup else {})}
    state = {"step": 0, "order": None, "pos": n, "losses": torch.zeros(members)}
    if checkpoint is not None and Path(checkpoint).exists():
        state = _load_checkpoint(Path(checkpoint), identity, net, opt, sched, ema, generator)
    start = time.perf_counter()
    order, pos, losses = state["order"], state["pos"], state["losses"]
    first = state["step"]
    bar = tqdm(range(first, steps), disable=not progress, leave=False, desc="train", initial=first, total=steps)
    for step in bar:
        if pos + batch > n:  # new epoch: a fresh permutation per member
            order = torch.argsort(rand((members, n), generator, data.device), dim=1)  # on the generator's device
            pos = 0
        idx = order[:, pos:pos + batch]  # [R, B]
        pos += batch
        cond = {}
        if labels is not None:
            y = labels[rows, idx]
            if cond_dropout > 0:
                drop = rand(y.shape, generator, y.device) < cond_dropout
                y = torch.where(drop, torch.full_like(y, net.num_classes), y)
            cond["y"] = y
        if sources is not None:
            cond["s"] = sources[rows, idx]
        with autocast(precision, data.device):
            losses = loss_fn(net, data[rows, idx], generator=generator, **cond)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step()
        sched.step()
        if ema is not None:
            ema_update(ema, net, ema_beta(step + 1, ema_decay, ema_rampup))
        if after_step is not None:
            after_step()
        if checkpoint is not None and (step + 1 == steps or (step + 1) % checkpoint_every == 0):
            _save_checkpoint(Path(checkpoint), identity, step + 1, order, pos, losses, net, opt, sched, ema, generator)
    seconds = time.perf_counter() - start
    done = steps - first
    return TrainStats(steps=steps, samples_seen=steps * batch, seconds=seconds,
                      samples_per_s=done * batch * members / max(seconds, 1e-9),
                      final_loss=losses.detach().cpu().tolist())


def _save_checkpoint(path: Path, identity: dict, step: int, order, pos: int, losses, net, opt, sched, ema,
                     generator) -> None:
    state = {"identity": identity, "step": step, "order": order, "pos": pos, "losses": losses.detach().cpu(),
             "net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
             "ema": None if ema is None else ema.state_dict(),
             "generator": None if generator is None else generator.get_state()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, identity: dict, net, opt, sched, ema, generator) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise ValueError(f"checkpoint {path} is not a complete training checkpoint ({type(err).__name__}: {err}); "
                         f"delete it to start afresh") from None
    if not isinstance(state, dict) or state.get("identity") != identity:
        theirs = state.get("identity") if isinstance(state, dict) else None
        raise ValueError(f"checkpoint {path} belongs to another training run (its settings {theirs}, these "
                         f"{identity}); delete it or pass another checkpoint path")
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    if generator is not None and state["generator"] is not None:
        generator.set_state(state["generator"])
    device = next(net.parameters()).device
    order = None if state["order"] is None else state["order"].to(device)
    return {"step": state["step"], "order": order, "pos": state["pos"], "losses": state["losses"]}


def ema_beta(step: int, decay: float, rampup: float = 0.0) -> float:
    # EDM training_loop.py: half-life = min(half-life of decay, rampup x images seen); beta = 0.5 ** (batch / half-life)
    """The EMA decay after optimiser step ``step`` (1-based): ``decay``, or with ``rampup`` r > 0 the smaller of
    ``decay`` and 0.5 ** (1 / (r * step)) (a half-life of r times the images seen, counted in batches)."""
    return decay if rampup <= 0 else min(decay, 0.5 ** (1.0 / (rampup * step)))


@torch.no_grad()
def ema_update(average: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    # Ho et al. 2020 App. B (EMA decay 0.9999): theta_ema <- decay theta_ema + (1 - decay) theta
    """Move every parameter of ``average`` (a copy of ``net``) towards ``net``'s, in place, in one multi-tensor call."""
    torch._foreach_lerp_(list(average.parameters()), list(net.parameters()), 1.0 - decay)


def finetune_copy(net: torch.nn.Module, data: torch.Tensor, loss_fn: Callable, *, samples_seen: int,
                  **train_kwargs) -> tuple[torch.nn.Module, TrainStats]:
    """A deep copy of ``net`` fine-tuned on ``data`` for ``samples_seen`` per member (SIMS Algorithm 1, step 3).

    The base network is left untouched; the copy starts from its weights with a fresh optimiser and
    the same training settings (SIMS S:135: the auxiliary model uses the base model's settings).
    """
    aux = copy.deepcopy(net)
    return aux, train_ensemble(aux, data, loss_fn, samples_seen=samples_seen, **train_kwargs)
