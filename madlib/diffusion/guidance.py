"""Guidance as one piece: every guided prediction is (1 + w) primary - w guide.

- classifier-free guidance (MAD, ReDiFine): primary = conditional, guide = unconditional prediction
  (:func:`cfg_predictors` makes both from one network trained with condition dropout);
- SIMS (Eq. 5): primary = base model, guide = auxiliary model fine-tuned on the base model's samples;
- schedules over sampling steps (ReDiFine Sec. 5) and guidance limited to an interval of steps (SIMS App. A).

The three papers' parameters convert with the helpers below (paper-targets "One guidance convention"):
MAD's lambda = 1 / (1 + w); ReDiFine's CFG scale = 1 + w; SIMS's w is this w.
"""

from __future__ import annotations

import math
from typing import Callable

import torch


def check_weight(w):
    """A finite float, or a 1-D tensor of finite per-member weights (one per ensemble member)."""
    if isinstance(w, torch.Tensor):
        if w.ndim != 1 or not torch.isfinite(w).all():
            raise ValueError(f"w (guidance weight) must be finite: a number or a 1-D tensor of one weight per "
                             f"member; got {w}")
        return w
    w = float(w)
    if not math.isfinite(w):
        raise ValueError(f"w (guidance weight) must be finite; got {w}")
    return w


def extrapolate(primary: torch.Tensor, guide: torch.Tensor, w) -> torch.Tensor:
    """(1 + w) primary - w guide: w = 0 gives primary, w = -1 gives guide.

    ``w`` may be a tensor [R] of per-member weights (ensembles lead every tensor): member r gets w[r],
    and a member with w[r] = 0 gets its primary prediction exactly.
    """
    if primary.shape != guide.shape:
        raise ValueError(f"primary and guide predictions must have one shape; got {tuple(primary.shape)} "
                         f"and {tuple(guide.shape)}")
    w = check_weight(w)
    if isinstance(w, torch.Tensor):
        if w.shape[0] != primary.shape[0]:
            raise ValueError(f"per-member w must have one entry per member ({primary.shape[0]}); got {w.shape[0]}")
        w = w.to(primary).reshape((-1,) + (1,) * (primary.ndim - 1))
        return primary + w * (primary - guide)
    return primary if w == 0 else primary + w * (primary - guide)


def guided_prediction(primary, guide, weight, i: int, n: int, x: torch.Tensor, t) -> torch.Tensor:
    """The one guided prediction every sampler makes at step i of n: (1 + w_i) primary(x, t) - w_i guide(x, t).

    ``primary`` and ``guide`` are prediction functions (x, t) -> [R, B, ...] (noise for DDPM, D(x; sigma)
    for EDM); the guide is the unconditional branch (CFG) or another model (SIMS's auxiliary model,
    autoguidance); ``weight(i, n)`` is a schedule (:func:`constant_weight`, :func:`exponential_cfg_weight`,
    :func:`interval_weight`). With no guide, or a float weight of 0 at this step, the primary
    prediction is returned as it is (bit for bit) and the guide is not evaluated.
    """
    if guide is None:
        return primary(x, t)
    w = weight(i, n)
    if not isinstance(w, torch.Tensor) and w == 0:
        return primary(x, t)
    return extrapolate(primary(x, t), guide(x, t), w)


def sims_score(base: torch.Tensor, aux: torch.Tensor, w: float) -> torch.Tensor:
    # SIMS Eq. 5: s = (1 + w) s_base - w s_aux
    return extrapolate(base, aux, w)


def cfg(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    # MAD Sec. 2.3 / Ho & Salimans 2022: eps = (1 + w) eps_cond - w eps_uncond
    return extrapolate(cond, uncond, w)


def class_conditional(net, y: torch.Tensor | None, **labels) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The sampler's prediction function (x, t) -> net(x, t, y, **labels) of a class-conditional network.

    y [R, B] integer labels, or None for the "no label" token (index ``net.num_classes``, the
    unconditional model that condition dropout trains); ``labels`` e.g. ``s=`` CASD's source label.
    """
    return lambda x, t: net(x, t, y, **labels)


def cfg_predictors(net, y: torch.Tensor | None, **labels):
    # Ho & Salimans 2022 Eq. 6 (MAD Sec. 2.3): primary = eps(x, t, y), guide = eps(x, t, no label)
    """(primary, guide) for classifier-free guidance with one network trained with condition dropout.

    Pass them as ``eps`` and ``guide`` to a sampler with ``weight=constant_weight(w)``; MAD's bias
    gives w = w_from_lam(lam), and w = 0 (lam = 1) samples the conditional model alone.
    """
    return class_conditional(net, y, **labels), class_conditional(net, None, **labels)


def lam_from_w(w: float) -> float:
    """MAD's sampling bias lambda = 1 / (1 + w) (M:115)."""
    w = check_weight(w)
    if w <= -1:
        raise ValueError(f"w must be > -1 for a sampling bias lambda; got {w}")
    return 1.0 / (1.0 + w)


def w_from_lam(lam: float) -> float:
    """Inverse of :func:`lam_from_w`; lambda in (0, 1] gives w >= 0."""
    lam = float(lam)
    if not 0 < lam <= 1:
        raise ValueError(f"lam must lie in (0, 1]; got {lam}")
    return 1.0 / lam - 1.0


def cfg_scale_from_w(w: float) -> float:
    """ReDiFine's CFG scale = 1 + w (R:249): CFG 1 is plain conditional sampling."""
    return 1.0 + check_weight(w)


def w_from_cfg_scale(scale: float) -> float:
    return check_weight(scale) - 1.0


def constant_weight(w) -> Callable[[int, int], float]:
    """A guidance schedule: step index i of n steps (0 = pure noise) -> w (a float or per-member tensor)."""
    w = check_weight(w)
    return lambda i, n: w


def exponential_cfg_weight(s0: float = 7.5, alpha: float = 2.0) -> Callable[[int, int], float]:
    # ReDiFine Sec. 5: CFG scale s(t) = s0 exp(-alpha t / T), t counted from pure noise; w = s - 1
    return lambda i, n: s0 * math.exp(-alpha * i / n) - 1.0


def interval_weight(w: float, first: int, last: int | None = None) -> Callable[[int, int], float]:
    """Guidance only for steps first <= i < last (SIMS App. A skips the first steps); 0 elsewhere."""
    w = check_weight(w)
    return lambda i, n: w if first <= i < (n if last is None else last) else 0.0
