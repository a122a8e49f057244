"""The one self-consuming loop engine: what each generation trains on (MAD Sec. 2.1-2.2).

A model family is any object with the methods of :class:`ModelFamily`; it decides how data
is represented (points, sufficient statistics, images) and may batch independent runs inside
its arrays. The engine only decides *who trains on what*:

- ``fully_synthetic``: D^t = D_s^t (MAD Sec. 3)
- ``augmentation``:    D^t = (D_r, D_s^t) with a fixed real set D_r of n_ini points (MAD Sec. 4)
- ``fresh``:           D^t = (D_r^t, D_s^t) with n_real fresh real points each generation (MAD Sec. 5)
- ``growing``:         D^t = (D_r^t, D_s^t) of a size n_t = ``sizes[t-1]`` that may change with t, a real
                       fraction p fresh real and the rest synthetic (MAD App. G exp. 2, Fig. 31)

Options shared by all three: the sampling bias ``lam``; ``accumulate`` keeps every past
synthetic set; ``last_k`` draws the synthetic set from the last K models (MAD App. G exp. 1).
The growing loop takes ``lam`` but neither ``accumulate`` nor ``last_k``.

**Checkpoints** (``run_loop(checkpoint=...)``) are written after every generation in madlib's plain-data format
(:func:`madlib._io.save_plain`: an ``.npz`` of the arrays and tensors with the rest as JSON and a checksum; read
back with ``numpy.load(allow_pickle=False)``, so a file handed over cannot run code). They hold the run's
identity (spec, seed, the family's fingerprint), the random generator's state, the records so far and the
family's models and data of the window (numpy arrays, tensors, madlib's dataclasses, nn.Modules of madlib and
torch.nn; a model holding anything else is refused when the first checkpoint is written, naming it). A
checkpoint that is truncated, damaged or in the old pickle format is named in a :class:`madlib._io.StorageWarning`
and the run starts again from generation 1 (and overwrites it); one of another run is refused with a ValueError.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
from tqdm import tqdm

from madlib._checks import check_choice, check_int, check_interval
from madlib._io import DamagedFileError, PlainDataError, StorageWarning, load_plain, save_plain

LOOP_KINDS = ("fully_synthetic", "augmentation", "fresh", "growing")
_CHECKPOINT_VERSION = 2  # 2: madlib's plain-data format (1 was a pickle)


class ModelFamily(Protocol):
    """What the engine needs of a model family. ``Data`` and ``Model`` are the family's own types."""

    def true_model(self) -> Any: ...  # P_r itself, for chains that start at G^0 = P_r
    def draw_real(self, n: int, rng: np.random.Generator) -> Any: ...
    def sample(self, model: Any, n: int, lam: float, rng: np.random.Generator) -> Any: ...
    def concat(self, parts: list) -> Any: ...
    def fit(self, data: Any) -> Any: ...
    def summary(self, model: Any) -> Mapping[str, np.ndarray]: ...


@dataclass(frozen=True)
class LoopSpec:
    """Who trains on what, each generation.

    kind: one of ``LOOP_KINDS``.
    generations: number of fitted generations T.
    n_synth: synthetic points per generation (n_s).
    lam: sampling bias lambda in (0, 1]; 1 is unbiased (MAD Sec. 2.3).
    n_ini: real points that train generation 1 (and |D_r| of the augmentation loop). ``None``
        starts the chain at G^0 = P_r itself, as MAD Eq. 1 does.
    n_real: fresh real points per generation (``fresh`` loop only).
    accumulate: keep all past synthetic sets in the training data.
    last_k: draw the synthetic set from the last K models, n_synth / K from each
        (project choice: stratified rather than a multinomial split; same expectation).
    real_fraction: p in [0, 1], ``growing`` loop only: generation t trains on
        n_r^t = round(p n_t) fresh real points (nearest integer, halves up) and n_t - n_r^t synthetic
        points from G^{t-1}; a part of 0 points is left out.
    sizes: ``growing`` loop only: n_t = |D^t| for t = 1..T (one entry per generation, each >= 2). With
        ``n_ini`` set, generation 1 trains on n_ini real points as in every loop and sizes[0] is not read.
        The growing loop takes n_synth = n_real = 0 (the sizes and p set them).
    """

    kind: str
    generations: int
    n_synth: int
    lam: float = 1.0
    n_ini: int | None = None
    n_real: int = 0
    accumulate: bool = False
    last_k: int = 1
    real_fraction: float | None = None
    sizes: tuple[int, ...] = ()

    def __post_init__(self):
        check_choice("kind", self.kind, LOOP_KINDS)
        check_int("generations", self.generations, minimum=1)
        check_int("n_synth", self.n_synth, minimum=0)
        check_interval("lam", self.lam, 0.0, 1.0, low_open=True)
        check_int("n_real", self.n_real, minimum=0)
        check_int("last_k", self.last_k, minimum=1)
        if self.n_ini is not None:
            check_int("n_ini", self.n_ini, minimum=2, why="generation 1 fits on n_ini real points")
        if self.kind == "augmentation" and self.n_ini is None:
            raise ValueError("n_ini must be set for the augmentation loop: it is the size of the fixed real set D_r")
        if self.kind != "fresh" and self.n_real != 0:
            raise ValueError(f"n_real is for the fresh loop only; the {self.kind} loop takes n_real = 0")
        if self.kind == "growing":
            self._check_growing()
            return
        if self.real_fraction is not None or self.sizes:
            raise ValueError(f"real_fraction and sizes are for the growing loop only; the {self.kind} loop takes neither")
        if self.n_synth < self.last_k:
            raise ValueError(f"n_synth must be >= last_k (each of the last K models contributes); "
                             f"got n_synth = {self.n_synth}, last_k = {self.last_k}")
        real = {"fully_synthetic": 0, "augmentation": self.n_ini or 0, "fresh": self.n_real}[self.kind]
        if real + self.n_synth < 2:
            raise ValueError(f"each generation needs at least 2 training points; real + n_synth = {real + self.n_synth}")

    def _check_growing(self):
        if self.real_fraction is None:
            raise ValueError("real_fraction (the real share p of each training set) must be set for the growing loop")
        check_interval("real_fraction", self.real_fraction, 0.0, 1.0)
        sizes = tuple(check_int(f"sizes[{i}]", n, minimum=2, why="each generation needs at least 2 training points")
                      for i, n in enumerate(self.sizes))
        if len(sizes) != self.generations:
            raise ValueError(f"sizes must hold one training-set size per generation ({self.generations}); got {len(sizes)}")
        object.__setattr__(self, "sizes", sizes)  # a list becomes a tuple: the spec stays hashable
        if self.n_synth != 0:
            raise ValueError(f"n_synth must be 0 in the growing loop (sizes and real_fraction set it); got {self.n_synth}")
        if self.accumulate or self.last_k != 1:
            raise ValueError("the growing loop takes neither accumulate nor last_k > 1")

    def counts(self, t: int) -> tuple[int, int]:
        """(real, synthetic) points of the training set of generation t >= 2 (or t = 1 from G^0 = P_r)."""
        if self.kind != "growing":
            real = {"fully_synthetic": 0, "augmentation": self.n_ini or 0, "fresh": self.n_real}[self.kind]
            return real, self.n_synth
        n_t = self.sizes[t - 1]
        real = min(n_t, int(np.floor(self.real_fraction * n_t + 0.5)))
        return real, n_t - real


@dataclass
class LoopResult:
    """Records of every generation, stacked: ``records[name]`` is [G, R, ...]."""

    spec: LoopSpec
    seed: int
    generation: np.ndarray  # [G] generation index of each record row (0 = P_r itself)
    records: dict[str, np.ndarray] = field(default_factory=dict)


def _synthetic_counts(n_synth: int, models: int) -> list[int]:
    """Split n_synth over the available models, the newest taking the remainder."""
    base, rest = divmod(n_synth, models)
    return [base] * (models - 1) + [base + rest]


def _save_checkpoint(state: dict, path: Path) -> None:
    """A reader never sees half a checkpoint; a model that is not plain data is refused by name."""
    try:
        save_plain(path, state)
    except PlainDataError as err:
        raise ValueError(f"checkpoint {path} cannot hold this run's state without pickle: {err}; run without a "
                         "checkpoint, or give the family's models plain attributes") from None


def _load_checkpoint(path: Path, identity: dict) -> dict | None:
    """The checkpoint's state; None when there is none or it cannot be used (a damaged file is named in a warning)."""
    if not path.exists():
        return None
    try:
        state = load_plain(path)
    except DamagedFileError as err:
        warnings.warn(f"loop checkpoint not used: {err}; the run starts from generation 1 and overwrites it",
                      StorageWarning, stacklevel=3)
        return None
    if not isinstance(state, dict) or state.get("identity") != identity:
        theirs = state.get("identity") if isinstance(state, dict) else None
        raise ValueError(f"checkpoint {path} belongs to another run ({theirs}); "
                         f"delete it or pass another checkpoint path for {identity}")
    return state


def run_loop(family: ModelFamily, spec: LoopSpec, *, seed: int,
             record: Callable[[Any], Mapping[str, np.ndarray]] | None = None,
             checkpoint: str | os.PathLike | None = None, progress: bool = True,
             desc: str | None = None) -> LoopResult:
    """Run a self-consuming loop (MAD Sec. 2.2) and record each generation's model.

    Args:
        family: a :class:`ModelFamily`; independent runs live inside its arrays.
        spec: the loop (:class:`LoopSpec`).
        seed: seeds the one random generator of the whole run.
        record: model -> dict of per-run arrays kept for every generation (default ``family.summary``).
        checkpoint: file written atomically after every generation (madlib's plain-data format, whatever its
            suffix; module docstring); an interrupted call with the same arguments resumes after the last
            finished generation and gives the same numbers. A damaged file is named in a StorageWarning and
            the run starts afresh; another run's checkpoint is refused with a ValueError.
        progress: show a tqdm bar over generations.
    """
    seed = check_int("seed", seed, minimum=0)
    record = record or family.summary
    # A family may define fingerprint() (its P_r, runs, ...) so that a checkpoint of another family is refused.
    family_id = family.fingerprint() if hasattr(family, "fingerprint") else type(family).__qualname__
    identity = {"version": _CHECKPOINT_VERSION, "spec": dataclasses.asdict(spec), "seed": seed, "family": family_id}
    path = Path(checkpoint) if checkpoint is not None else None
    state = _load_checkpoint(path, identity) if path is not None else None

    if state is None:
        rng = np.random.default_rng(seed)
        records: dict[str, list] = {}
        generations: list[int] = []
        window: list = []  # the last K models, oldest first
        real_fixed = synth_all = None
        done = 0
        if spec.n_ini is None:  # G^0 = P_r
            window.append(family.true_model())
            generations.append(0)
            for name, value in record(window[-1]).items():
                records.setdefault(name, []).append(np.asarray(value))
    else:
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng_state"]
        records, generations, window = state["records"], state["generations"], state["window"]
        real_fixed, synth_all, done = state["real_fixed"], state["synth_all"], state["done"]

    with tqdm(total=spec.generations, initial=done, disable=not progress, desc=desc, leave=False) as bar:
        for t in range(done + 1, spec.generations + 1):
            if t == 1 and spec.n_ini is not None:
                data = family.draw_real(spec.n_ini, rng)
                if spec.kind == "augmentation":
                    real_fixed = data
            else:
                n_real, n_synth = spec.counts(t)
                parts = []
                if n_synth > 0:  # only the growing loop can have none
                    sources = window[-spec.last_k:]
                    synth = family.concat([family.sample(m, n, spec.lam, rng)
                                           for m, n in zip(sources, _synthetic_counts(n_synth, len(sources)))])
                    if spec.accumulate:
                        synth = synth if synth_all is None else family.concat([synth_all, synth])
                        synth_all = synth
                    parts.append(synth)
                if spec.kind == "augmentation":
                    parts.insert(0, real_fixed)
                elif spec.kind in ("fresh", "growing") and n_real > 0:
                    parts.insert(0, family.draw_real(n_real, rng))
                data = family.concat(parts) if len(parts) > 1 else parts[0]
            model = family.fit(data)
            window = (window + [model])[-spec.last_k:]
            new_records = {name: np.asarray(value) for name, value in record(model).items()}
            for name, value in new_records.items():
                records.setdefault(name, []).append(value)
            generations.append(t)
            if path is not None:
                _save_checkpoint({"identity": identity, "done": t, "rng_state": rng.bit_generator.state,
                                  "records": records, "generations": generations, "window": window,
                                  "real_fixed": real_fixed, "synth_all": synth_all}, path)
            bar.update(1)

    return LoopResult(spec=spec, seed=seed, generation=np.asarray(generations),
                      records={name: np.stack(values) for name, values in records.items()})
