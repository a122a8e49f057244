"""SIMS-1's synthetic augmentation loop on 2D Gaussian data, one |D_s| at a time, as a sweep cell.

Reference: Alemohammad et al., "Self-Improving Diffusion Models with Synthetic Data" (SIMS), Sec. 4.2.1,
Fig. 4 and Algorithm 1 (``../shared/papers/000_21b426a53d3e3225.txt``, lines 565-660).

:func:`sims_gaussian_loop` is the grid cell of ``notebooks/sims_1_gaussian_loop.ipynb``: one loop whose
ensemble holds ``runs`` members for every guidance weight w (member k * runs + r is run r at w_k), trained
by :class:`madlib.models.diffusion.DiffusionFamily` on :func:`madlib.loops.run_loop`. Its arguments are
plain data and its result plain arrays, so :func:`madlib.sweep.sweep` can run the cells of different |D_s|
as separate jobs (Slurm, Ray) with the same numbers as a loop in one process.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["sims_gaussian_loop"]


def sims_gaussian_loop(n_synth: int, *, seed: int, mean, cov, runs: int, w, generations: int, n_real: int,
                       recipe: str, steps: int, max_beta: float, blocks: int, base_epochs: int, aux_epochs: int,
                       n_aux: int, batch_size: int, eval_samples: int, empirical_points: int, device: str = "auto",
                       checkpoint: str | None = None) -> dict:
    """One augmentation loop of SIMS-1 with |D_s| = ``n_synth`` (SIMS Sec. 4.2.1; Algorithm 1 per generation).

    Generation 1 trains on the fixed real set D_r (``n_real`` points of P_r = N(mean, cov)); generation t on
    D_r plus ``n_synth`` guided samples of generation t - 1. ``device`` is resolved in the worker ("auto": its
    GPU when it has one). With ``checkpoint`` (a file path) every generation is checkpointed and an
    interrupted cell resumes.

    Returns ``{"w2", "trace", "w2_empirical"}`` as [G, W, runs] arrays (Gaussian-moment W2 to P_r, tr Cov of
    the samples, exact empirical W2 or None when ``empirical_points`` is 0), ``seconds``, ``members`` and the
    ``device`` used.
    """
    from madlib._checks import resolve_device
    from madlib.loops import LoopSpec, run_loop
    from madlib.models.diffusion import DiffusionFamily

    device = resolve_device("device", device)
    family = DiffusionFamily(mean, cov, runs, w=list(w), recipe=recipe, steps=steps, max_beta=max_beta, blocks=blocks,
                             base_epochs=base_epochs, aux_epochs=aux_epochs, n_aux=n_aux, batch_size=batch_size,
                             eval_samples=eval_samples, empirical_points=empirical_points, device=device)
    spec = LoopSpec("augmentation", generations=generations, n_synth=n_synth, n_ini=n_real)
    clock = time.perf_counter()
    result = run_loop(family, spec, seed=seed, checkpoint=None if checkpoint is None else Path(checkpoint),
                      progress=False)
    seconds = time.perf_counter() - clock
    shape = (generations, len(w), runs)
    return {"w2": result.records["w2"].reshape(shape),
            "trace": np.trace(result.records["cov"], axis1=-2, axis2=-1).reshape(shape),
            "w2_empirical": result.records["w2_empirical"].reshape(shape) if empirical_points else None,
            "seconds": seconds, "members": family.members, "device": device}
