"""Helpers shared by the test modules (import as tests.helpers)."""

from __future__ import annotations

import pytest

from madlib.loops import run_loop


def interrupted_then_resumed(make_family, spec, checkpoint, *, seed: int = 0, at: int = 2):
    """Run ``spec`` with a family from ``make_family()``, interrupt it while recording generation ``at``,
    then resume from ``checkpoint`` with a fresh family; returns the resumed LoopResult."""
    family = make_family()
    calls = []

    def crash(model):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return family.summary(model)

    with pytest.raises(KeyboardInterrupt):
        run_loop(family, spec, seed=seed, record=crash, checkpoint=checkpoint, progress=False)
    return run_loop(make_family(), spec, seed=seed, checkpoint=checkpoint, progress=False)
