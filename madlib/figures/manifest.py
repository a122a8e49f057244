"""The figure manifest ``notebooks/figures.yaml``: figure -> notebook, experiments, title, profiles, and the
static part of its scale (``scale: {paper: ..., differences: [...]}``, what the paper did and how we differ, which
:meth:`madlib.figures.FigureRecord.from_notebook` writes into the JSON)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from madlib.figures.paths import repo_root

MANIFEST_PROFILES = ("smoke", "default", "paper")
# Parameters the runner sets itself, with the `build` flag that sets each: given as `-p` or in the manifest they were
# silently replaced (`-p out_dir=...` left the figures in figures/), so both refuse them.
RUNNER_OWNED = {"out_dir": "--out DIR", "profile": "--profile {smoke,default,paper}",
                "progress": "-q (bars are off in every build; -q prints failures only)"}
# Every notebook declares these (seed is the user's to set).
RUNNER_PARAMETERS = (*RUNNER_OWNED, "seed")
_EXPERIMENT_ID = re.compile(r"^(MAD|SIMS|CASD|RDF)-\d+$")


class ManifestError(ValueError):
    """The manifest is malformed."""


@dataclass(frozen=True)
class FigureEntry:
    name: str
    notebook: Path
    experiments: tuple[str, ...]
    title: str
    profiles: dict[str, dict[str, Any]]
    scale: dict[str, Any] = field(default_factory=dict)  # paper: str, differences: [str]


def default_manifest_path() -> Path:
    return repo_root() / "notebooks" / "figures.yaml"


def load_manifest(path: str | Path | None = None) -> dict[str, FigureEntry]:
    """Entries in manifest order; checks the structure, not the parameter values (see params.py)."""
    path = Path(path) if path is not None else default_manifest_path()
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or not isinstance(raw.get("figures"), dict):
        raise ManifestError(f"{path}: expected a mapping with a 'figures' mapping at the top")
    entries = {}
    for name, item in raw["figures"].items():
        where = f"{path.name}: figure {name}"
        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise ManifestError(f"{where}: names use lower-case letters, digits and '_' only")
        missing = {"notebook", "experiments", "title", "profiles"} - set(item or {})
        if missing:
            raise ManifestError(f"{where}: missing {sorted(missing)}")
        notebook = path.parent / item["notebook"]
        if not notebook.exists():
            raise ManifestError(f"{where}: notebook {notebook} does not exist")
        bad = [e for e in item["experiments"] if not _EXPERIMENT_ID.match(str(e))]
        if bad or not item["experiments"]:
            raise ManifestError(f"{where}: experiments must be IDs such as MAD-1 or RDF-2; got {item['experiments']}")
        profiles = item["profiles"]
        if set(profiles) != set(MANIFEST_PROFILES):
            raise ManifestError(f"{where}: profiles must be exactly {list(MANIFEST_PROFILES)}; got {list(profiles)}")
        for profile, params in profiles.items():
            params = params or {}
            if not isinstance(params, dict):
                raise ManifestError(f"{where}, profile {profile}: parameters must be a mapping")
            reserved = set(params) & set(RUNNER_OWNED)
            if reserved:
                raise ManifestError(f"{where}, profile {profile}: {sorted(reserved)} are set by the runner")
        scale = item.get("scale") or {}
        if not isinstance(scale, dict) or not set(scale) <= {"paper", "differences"} or \
                not isinstance(scale.get("paper", ""), str) or not isinstance(scale.get("differences", []), list):
            raise ManifestError(f"{where}: scale must be a mapping with paper (text) and differences (a list of text)")
        entries[name] = FigureEntry(name=name, notebook=notebook, experiments=tuple(item["experiments"]),
                                    title=str(item["title"]),
                                    profiles={p: dict(profiles[p] or {}) for p in MANIFEST_PROFILES}, scale=scale)
    return entries
