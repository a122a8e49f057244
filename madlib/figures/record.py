"""What a notebook leaves beside its figure: ``<name>.png`` and ``<name>.json``.

The JSON holds the experiment IDs, the profile, the parameters used, the scale beside the
paper's, the seed, package versions, the machine (:func:`madlib.machine.machine_info`), wall time, the data behind the plot and the claims tested,
each as ``{id, text, source, paper_value, condition, measured, level, held, preconditions, comparison}``:
``level`` is one of :data:`madlib.figures.verdicts.LEVELS` (held, not held, inconclusive, not testable) and
``held`` is ``level == "held"``. Files are written atomically, so a half-written result never passes for a
whole one.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from madlib._io import atomic_path
from madlib.figures.catalogue import TEXT_FIELDS, CatalogueError, catalogue_entry, fill, load_catalogue
from madlib.figures.paths import default_out_dir, repo_root
from madlib.figures.formatting import claim_lines, explanation
from madlib.figures.verdicts import LEVELS, Comparison, Precondition, decide, level_of
from madlib.machine import machine_info
from madlib.stats import Interval, seed_interval

PROFILES = ("smoke", "default", "paper", "custom")
_VERSIONED = ("madlib", "numpy", "scipy", "matplotlib", "seaborn", "torch", "torchvision",
              "torch-fidelity", "papermill")


@dataclass(frozen=True)
class Claim:
    """One tested statement of a paper and its verdict at our scale (one of four levels)."""

    id: str
    text: str
    source: str  # where the paper says it, e.g. "MAD Eq. 2, M:155"
    condition: str  # what "held" means here, stated before looking at the number
    measured: dict
    held: bool  # level == "held"
    paper_value: Any = None
    level: str = ""
    preconditions: list = field(default_factory=list)  # [{name, requirement, met, measured}]
    comparison: dict | None = None  # {quantity, direction, margin, interval: {estimate, low, high, ...}}


def to_jsonable(value):
    """numpy arrays and scalars to plain lists and numbers; NaN and inf to None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def package_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo_root()), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _repo_relative(value, root: str):
    """``value`` with every string that is an absolute path inside the repository made relative to it (a cache folder,
    a store, an archive): a JSON then reads the same from any checkout or worktree."""
    if isinstance(value, dict):
        return {k: _repo_relative(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_repo_relative(v, root) for v in value]
    if isinstance(value, str) and value.startswith(root + os.sep):
        return value[len(root) + 1:]
    return value


@dataclass
class FigureRecord:
    """Collects everything a figure's JSON holds; create it right after the parameters cell.

    name: figure name of the manifest (file stem of the outputs).
    experiments: IDs of ``../shared/paper-targets.md`` this figure reproduces.
    profile: the manifest profile that set the parameters (``custom`` for a hand-edited run).
    params: the parameter values used.
    scale: ``{"ours": ..., "paper": ..., "differences": [...]}`` in words.
    """

    name: str
    experiments: list[str]
    profile: str
    params: dict
    seed: int
    scale: dict
    claims: list[Claim] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    _start: float = field(default_factory=time.perf_counter, repr=False)
    # the claims catalogue's entries for this figure and the namespace its text slots are filled from (from_notebook)
    _catalogue: dict = field(default_factory=dict, repr=False)
    _namespace: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {list(PROFILES)}; got {self.profile!r}")

    @classmethod
    def from_notebook(cls, name: str, namespace: dict, *, ours: str, resolved: dict | None = None,
                      manifest=None, catalogue=None) -> "FigureRecord":
        """The record of figure ``name`` of the manifest, made in its notebook as
        ``FigureRecord.from_notebook("mad_1_gaussian_collapse", globals(), ours=...)``: the experiments and the
        static scale text (``paper``, ``differences``) come from the manifest, the parameters are the values the
        notebook's parameters cell declares (as they stand in ``namespace`` now, after any resolution such as
        ``device="auto"`` -> ``"cpu"``), so nothing is retyped; ``ours`` is this run's scale in words.

        Folders (``*_dir`` parameters) are left out: they say where, not what, and differ between machines.
        ``resolved`` adds settings derived from the parameters (a settings object's fields, the seed lists).

        The claims' static parts (statement, source, quantity, direction, margin, paper value) come from the claims
        catalogue (``catalogue``: its path, default ``notebooks/claims.yaml``; :mod:`madlib.figures.catalogue`),
        their text slots filled from ``namespace`` when each claim is recorded."""
        from madlib.figures.manifest import RUNNER_OWNED, load_manifest
        from madlib.figures.params import notebook_parameters

        entries = load_manifest(manifest)
        if name not in entries:
            raise ValueError(f"name must be a figure of the manifest ({', '.join(entries)}); got {name!r}")
        entry = entries[name]
        declared = notebook_parameters(entry.notebook)
        missing = [k for k in declared if k not in namespace]
        if missing:
            raise ValueError(f"namespace lacks the parameters {missing} of {entry.notebook.name}: pass globals()")
        params = {k: namespace[k] for k in declared if k not in RUNNER_OWNED and not k.endswith("_dir")}
        params |= resolved or {}
        return cls(name=name, experiments=list(entry.experiments), profile=namespace["profile"], params=params,
                   seed=namespace["seed"], scale={"ours": ours, **entry.scale},
                   _catalogue=load_catalogue(catalogue).get(name, {}), _namespace=namespace)

    @classmethod
    def for_claims(cls, name: str, namespace: dict, *, experiments=(), catalogue=None) -> "FigureRecord":
        """A record of figure ``name`` without parameters or scale whose claims read the figure's catalogue entries,
        their slots filled from ``namespace``: for running a notebook's claims cell on constructed numbers."""
        return cls(name=name, experiments=list(experiments), profile="custom", params={}, seed=0, scale={},
                   _catalogue=load_catalogue(catalogue).get(name, {}), _namespace=namespace)

    def _stated(self, id: str, given: dict) -> dict:
        """``given`` (the notebook's keywords, None where it left one out) completed from the catalogue's entry for
        claim ``id``; a field stated in both places is an error (one source for every statement)."""
        entry = catalogue_entry({self.name: self._catalogue}, self.name, id)
        twice = sorted(k for k, v in given.items() if v is not None and k in entry)
        if twice:
            raise CatalogueError(f"claim {id!r}: {twice} stated both in the notebook and in the claims catalogue")
        out = dict(given)
        for k, v in entry.items():
            out[k] = fill(v, self._namespace, where=f"claim {id!r}, {k}") if k in TEXT_FIELDS else v
        missing = [k for k, v in out.items() if v is None and k != "paper_value"]
        if missing:
            raise CatalogueError(f"claim {id!r}: {missing} stated neither in the notebook nor in the claims catalogue")
        return out

    def claim(self, id: str, text: str | None = None, *, source: str | None = None, condition: str | None = None,
              measured: dict, held=None, paper_value=None, preconditions=(), comparison: Comparison | None = None) -> Claim:
        """Record a claim and its level (:func:`madlib.figures.verdicts.decide`). ``text``, ``source``,
        ``condition`` and ``paper_value`` come from the claims catalogue where it states them (and must then be
        left out here).

        held: the verdict of ``condition`` when the claim has no interval (reduced to a plain bool).
        preconditions: :class:`Precondition` s stated with the claim; one not met makes it ``not testable``.
        comparison: a :class:`Comparison` (interval against a margin), which then decides held / not held /
            inconclusive; ``held`` must then be left out.
        """
        if comparison is not None and held is not None:
            raise ValueError(f"claim {id!r}: give held or comparison, not both (the comparison decides)")
        stated = self._stated(id, {"text": text, "source": source, "condition": condition, "paper_value": paper_value})
        return self._add(id, stated["text"], source=stated["source"], condition=stated["condition"], measured=measured,
                         held=held, paper_value=stated["paper_value"], preconditions=preconditions, comparison=comparison)

    def _add(self, id: str, text: str, *, source: str, condition: str, measured: dict, held=None, paper_value=None,
             preconditions=(), comparison: Comparison | None = None) -> Claim:
        preconditions = list(preconditions)
        if not all(isinstance(p, Precondition) for p in preconditions):
            raise TypeError(f"claim {id!r}: preconditions must be Precondition objects; got {preconditions!r}")
        level = decide(held=held, preconditions=preconditions, comparison=comparison)
        claim = Claim(id=id, text=text, source=source, condition=condition, measured=to_jsonable(measured),
                      held=level == "held", paper_value=to_jsonable(paper_value), level=level,
                      preconditions=[to_jsonable(p.to_dict()) for p in preconditions],
                      comparison=None if comparison is None else to_jsonable(comparison.to_dict()))
        self.claims.append(claim)
        return claim

    def compare(self, id: str, text: str | None = None, *, source: str | None = None, quantity: str | None = None,
                values, direction: str | None = None, margin: float | None = None, measured: dict | None = None,
                paper_value=None, preconditions=(), confidence: float = 0.95) -> Claim:
        """A comparison claim: ``quantity`` (per-seed values, or an :class:`Interval` from e.g. a paired bootstrap)
        is claimed ``greater`` or ``less`` than ``margin``; the interval decides the level. The condition text is
        written from these, so it is stated the same way for every claim. What the claims catalogue states
        (statement, source, quantity, direction, margin, paper value) is left out here."""
        stated = self._stated(id, {"text": text, "source": source, "quantity": quantity, "direction": direction,
                                   "margin": margin, "paper_value": paper_value})
        interval = values if isinstance(values, Interval) else seed_interval(values, confidence=confidence)
        comparison = Comparison(stated["quantity"], stated["direction"], float(stated["margin"]), interval)
        return self._add(id, stated["text"], source=stated["source"], condition=comparison.statement,
                         measured=measured or {}, paper_value=stated["paper_value"], preconditions=preconditions,
                         comparison=comparison)

    def to_dict(self) -> dict:
        return to_jsonable({
            "name": self.name,
            "experiments": self.experiments,
            "profile": self.profile,
            "params": self.params,
            "seed": self.seed,
            "scale": self.scale,
            "wall_time_s": round(time.perf_counter() - self._start, 3),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "git": git_commit(),
            "machine": machine_info(),
            "versions": package_versions(),
            "claims": [asdict(c) for c in self.claims],
            "data": _repo_relative(to_jsonable(self.data), str(repo_root().resolve())),
        })

    def save(self, fig, out_dir: str | os.PathLike | None = None) -> Path:
        """Write ``<name>.png`` and ``<name>.json`` into ``out_dir`` (default: the repo's figures/)."""
        out = Path(out_dir) if out_dir is not None else default_out_dir()
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / f"{self.name}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")
        path = out / f"{self.name}.json"
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        return path

    def save_samples(self, sets, out_dir: str | os.PathLike | None = None, *, per_set: int | None = 100) -> Path:
        """Write ``<name>_samples.npz`` beside the JSON: the evaluation samples behind the figure, ``sets`` mapping
        a key such as ``"lam=0.8/seed=1/gen=3"`` to (uint8 images, labels), ``per_set`` images each, evenly
        spaced (:func:`madlib.data.save_sample_archive`; read back with :func:`madlib.data.load_sample_archive`).
        The path returned is relative to the repository when the archive lies inside it (``figures/...``, the same
        on every machine and checkout), absolute otherwise."""
        from madlib.data.store import save_sample_archive

        out = Path(out_dir) if out_dir is not None else default_out_dir()
        path = save_sample_archive(out / f"{self.name}_samples.npz", sets,
                                   {"figure": self.name, "profile": self.profile}, per_set=per_set)
        root, where = repo_root().resolve(), path.resolve()
        return where.relative_to(root) if where.is_relative_to(root) else path

    def summary(self) -> str:
        lines = [f"{self.name} [{self.profile}]: {level_counts(asdict(c) for c in self.claims)}"]
        lines += [f"  {c.level.upper():12s}  {c.id}: {c.measured}" for c in self.claims]
        return "\n".join(lines)


def call_with_params(fn, namespace: dict, **overrides):
    """``fn`` called with the notebook parameters it takes by name (its arguments found in ``namespace``, a
    notebook's ``globals()``), ``overrides`` on top: a notebook hands its parameters to the package without
    retyping them, and a parameter the function does not take stays the notebook's."""
    import inspect

    names = inspect.signature(fn).parameters
    return fn(**({k: namespace[k] for k in names if k in namespace} | overrides))


def count_levels(claims) -> dict[str, int]:
    """How many of ``claims`` (dicts as stored in a JSON) read each of the four levels."""
    counts = dict.fromkeys(LEVELS, 0)
    for claim in claims:
        counts[level_of(claim)] += 1
    return counts


def level_counts(claims) -> str:
    """``3/7 held, 2 not held, 1 inconclusive, 1 not testable`` (levels with no claim left out after held)."""
    counts = count_levels(claims)
    total = sum(counts.values())
    rest = [f"{n} {level}" for level, n in counts.items() if level != "held" and n]
    return ", ".join([f"{counts['held']}/{total} held"] + rest)


def write_claims_summary(out_dir: str | os.PathLike) -> Path:
    """Regenerate ``CLAIMS.md`` from every figure JSON in ``out_dir``; measured values are rendered as in the
    gallery (:func:`madlib.figures.formatting.measured_lines`: a number with its spread, short lists whole),
    each claim with its level, its interval against the margin and any precondition that failed."""
    out = Path(out_dir)
    lines = ["# Claims tested by the figures", "",
             "Regenerated by `python -m madlib.figures build`; each section links to the figure's JSON, "
             "which holds every measured number; the gallery `figures/site/index.html` shows each figure with "
             "its claims beside the paper's.", ""]
    for path in sorted(out.glob("*.json")):
        record = json.loads(path.read_text())
        if "claims" not in record:
            continue
        lines += [f"## [{record['name']}]({path.name}) — {', '.join(record['experiments'])}", "",
                  f"Profile `{record['profile']}`; claims: {level_counts(record['claims'])}. "
                  f"Scale: {record['scale'].get('ours', '')}", "",
                  "| claim | verdict | statement | measured | held if |", "| --- | --- | --- | --- | --- |"]
        for c in record["claims"]:
            level = level_of(c)
            measured = claim_lines(c)
            if level == "not testable":
                measured.append(explanation(c, limit=400))
            cells = [f"`{c['id']}`", level if level == "held" else f"**{level}**", c["text"],
                     "<br>".join(measured), c["condition"]]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        lines.append("")
    path = out / "CLAIMS.md"
    atomic_write_text(path, "\n".join(lines))
    return path
