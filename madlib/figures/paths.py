"""Where the repository and its figures live (imported by the manifest and the records, which import nothing else
of each other's)."""

from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_out_dir() -> Path:
    return repo_root() / "figures"
