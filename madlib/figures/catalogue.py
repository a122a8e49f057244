"""The claims catalogue ``notebooks/claims.yaml``: every claim a figure reads, stated before it runs.

Per figure, per claim id, the static part of the claim: its statement (``text``), where the paper makes it
(``source``), for a comparison the ``quantity``, ``direction`` and ``margin``, for a plain claim its ``condition``,
and the paper's value where it gives one. The notebook passes only what it measured (values, intervals, the
numbers behind them, preconditions), so a margin or a direction cannot move after the numbers are seen without a
change to this file that a reviewer reads in one place.

A key may hold ``{field}`` slots (``CASD-2.sda-pulled-toward-source.{case}``) for claims a notebook reads in a
loop; a text may hold ``{name}``, ``{name:g}``, ``{name[0]}`` or ``{name.attr}`` slots, filled from the notebook's
variables when the claim is recorded (``str.format``: lookups and format specs only, nothing is evaluated).
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import yaml

from madlib.figures.paths import repo_root

__all__ = ["CATALOGUE_FIELDS", "TEXT_FIELDS", "CatalogueError", "load_catalogue", "catalogue_entry", "fill"]

TEXT_FIELDS = ("text", "source", "quantity", "condition")
CATALOGUE_FIELDS = (*TEXT_FIELDS, "direction", "margin", "paper_value")
_SLOT = re.compile(r"\{[^{}]*\}")
_FIELD_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z]\w*|\[\d+\])*$")  # no private or dunder attributes


class CatalogueError(ValueError):
    """The catalogue is malformed, or a claim's entry cannot be found or filled."""


def default_catalogue_path() -> Path:
    return repo_root() / "notebooks" / "claims.yaml"


def _check_template(where: str, text: str) -> None:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise CatalogueError(f"{where}: {exc} in {text!r}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if conversion or not _FIELD_NAME.match(name) or (spec and "{" in spec):
            raise CatalogueError(f"{where}: slot {{{name}}} must be a name with optional .attr / [index] and a plain "
                                 "format spec (nothing is evaluated)")


def load_catalogue(path: str | Path | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """{figure: {claim id or id template: {field: value}}}, checked: known fields only, a direction of
    ``greater`` / ``less``, a finite margin, text slots that are lookups."""
    path = Path(path) if path is not None else default_catalogue_path()
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise CatalogueError(f"{path}: expected a mapping of figures at the top")
    for figure, claims in raw.items():
        if not isinstance(claims, dict) or not claims:
            raise CatalogueError(f"{path.name}: figure {figure} must map claim ids to their fields")
        for key, entry in claims.items():
            where = f"{path.name}: {figure} / {key}"
            if not isinstance(entry, dict):
                raise CatalogueError(f"{where}: expected a mapping of {list(CATALOGUE_FIELDS)}")
            unknown = set(entry) - set(CATALOGUE_FIELDS)
            if unknown:
                raise CatalogueError(f"{where}: unknown fields {sorted(unknown)}; accepted {list(CATALOGUE_FIELDS)}")
            if entry.get("direction", "greater") not in ("greater", "less"):
                raise CatalogueError(f"{where}: direction must be 'greater' or 'less'; got {entry['direction']!r}")
            if "margin" in entry and not isinstance(entry["margin"], (int, float)):
                raise CatalogueError(f"{where}: margin must be a number; got {entry['margin']!r}")
            for name in TEXT_FIELDS:
                if name in entry:
                    if not isinstance(entry[name], str):
                        raise CatalogueError(f"{where}: {name} must be text")
                    _check_template(f"{where}, {name}", entry[name])
    return raw


def _key_pattern(key: str) -> re.Pattern:
    parts = _SLOT.split(key)
    return re.compile("^" + ".+".join(re.escape(p) for p in parts) + "$")


def catalogue_entry(catalogue: dict, figure: str, claim_id: str) -> dict[str, Any]:
    """The catalogue's fields for ``claim_id`` of ``figure``: its own key, else the most specific template key
    it matches (the most literal characters: ``x.beats.{name}`` before ``x.{claim}``); an empty dict when the
    figure lists nothing for it. Two equally specific templates matching one id is an error."""
    claims = catalogue.get(figure) or {}
    if claim_id in claims:
        return dict(claims[claim_id])
    hits = sorted(((len(_SLOT.sub("", key)), key) for key in claims if _SLOT.search(key) and _key_pattern(key).match(claim_id)),
                  reverse=True)
    if len(hits) > 1 and hits[0][0] == hits[1][0]:
        raise CatalogueError(f"claim {claim_id!r} of {figure} matches several catalogue keys: {[k for _, k in hits]}")
    return dict(claims[hits[0][1]]) if hits else {}


def fill(template: str, namespace: dict, *, where: str) -> str:
    """``template`` with its slots filled from ``namespace`` (the notebook's variables)."""
    try:
        return template.format_map(namespace)
    except (KeyError, AttributeError, IndexError) as exc:
        raise CatalogueError(f"{where}: slot {exc} of {template!r} is not a variable of the notebook") from None
