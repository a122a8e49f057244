"""Four verdict levels for a claim, decided from stated preconditions and an interval against a margin.

A claim says before running what it compares, the margin that matters and the conditions under which
it can be read; the numbers then give one of

- ``held``: every precondition met, and the interval lies on the claim's side of the margin;
- ``not held``: every precondition met, and the interval lies on the other side;
- ``inconclusive``: every precondition met, but the interval straddles the margin;
- ``not testable``: a precondition failed (a model short of its quality bar, no headroom for the effect,
  a saturated readout), whatever the numbers say.

A claim without an interval (an exact statement about a simulator, a count) reads held / not held from
its condition, still subject to its preconditions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from madlib.stats import Interval

__all__ = ["LEVELS", "Precondition", "Comparison", "decide", "level_of"]

LEVELS = ("held", "not held", "inconclusive", "not testable")
DIRECTIONS = ("greater", "less")


@dataclass(frozen=True)
class Precondition:
    """A condition the claim needs before it can be read: ``requirement`` in words, ``met``, and what was ``measured``.

    ``fails_as``: the level a claim reads when this condition fails: ``"not testable"`` (the default: the test cannot
    be run as stated) or ``"inconclusive"`` (the test ran, but its premise leaves the answer open, e.g. the cost of an
    ablation where the full method itself showed no gain to lose)."""

    name: str
    requirement: str
    met: bool
    measured: Any = None
    fails_as: str = "not testable"

    def __post_init__(self):
        object.__setattr__(self, "met", bool(self.met))
        if self.fails_as not in ("not testable", "inconclusive"):
            raise ValueError(f"fails_as must be 'not testable' or 'inconclusive'; got {self.fails_as!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_claim(cls, claim, name: str | None = None) -> "Precondition":
        """The precondition that an earlier claim (a project check recorded as its own claim, e.g. a headroom or a
        model bar) reads held; ``measured`` keeps its level."""
        return cls(name or claim.id, f"{claim.id} reads held", met=claim.level == "held", measured={"level": claim.level})


@dataclass(frozen=True)
class Comparison:
    """``quantity`` (e.g. "FID(standard) - FID(SIMS)") claimed ``greater`` or ``less`` than ``margin``, with its interval."""

    quantity: str
    direction: str
    margin: float
    interval: Interval

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {list(DIRECTIONS)}; got {self.direction!r}")
        if not math.isfinite(self.margin):
            raise ValueError(f"margin must be a finite number; got {self.margin!r}")

    @property
    def level(self) -> str:
        low, high = self.interval.low, self.interval.high
        if self.direction == "greater":
            return "held" if low > self.margin else "not held" if high <= self.margin else "inconclusive"
        return "held" if high < self.margin else "not held" if low >= self.margin else "inconclusive"

    @property
    def statement(self) -> str:
        side = ">" if self.direction == "greater" else "<"
        return (f"{self.quantity} {side} {self.margin:g}: the {self.interval.confidence:.0%} interval "
                f"({self.interval.method}) lies {'above' if side == '>' else 'below'} the margin")

    def to_dict(self) -> dict:
        return {"quantity": self.quantity, "direction": self.direction, "margin": self.margin,
                "interval": self.interval.to_dict()}


def decide(*, held=None, preconditions=(), comparison: Comparison | None = None) -> str:
    """The level of a claim: ``not testable`` if a precondition failed (``inconclusive`` if every failed one says so
    with ``fails_as``), else the comparison's level, else held / not held from ``held``."""
    failed = [p for p in preconditions if not p.met]
    if any(p.fails_as == "not testable" for p in failed):
        return "not testable"
    if failed:
        return "inconclusive"
    if comparison is not None:
        return comparison.level
    if held is None:
        raise ValueError("a claim needs held=True/False or a comparison")
    return "held" if bool(held) else "not held"


def level_of(claim: dict) -> str:
    """The level of a claim as stored in a figure JSON; JSONs written before the levels carry only ``held``."""
    level = claim.get("level")
    if level is None:
        return "held" if claim["held"] else "not held"
    if level not in LEVELS:
        raise ValueError(f"claim {claim.get('id')!r}: level must be one of {list(LEVELS)}; got {level!r}")
    return level
