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


def awake(net, seed: int = 0):
    """Give a network's zero-initialised layers (block outputs, final conv, LoRA's B) random weights 0.1 N(0, 1)
    from ``seed``, so that every input and every layer shows in its output; returns the network."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return net


def tiny_lenet_cache():
    """A module fixture (assign it to a module-level name) that trains the tiny classifier once into a cache of
    that module's own, so tests never touch the user's cache."""
    import pytest

    from madlib.metrics import load_lenet

    @pytest.fixture(scope="module", autouse=True)
    def lenet_cache(tmp_path_factory):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MADLIB_CACHE", str(tmp_path_factory.mktemp("lenet")))
            load_lenet("tiny")
            yield

    return lenet_cache
