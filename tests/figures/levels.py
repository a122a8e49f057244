"""Verdict levels recomputed independently of madlib (scipy's t interval), for the figure smoke tests."""

import numpy as np
from scipy import stats


def t_interval(values) -> tuple[float, float]:
    """The 95% Student t interval of the mean of per-seed values: zero width when the seeds agree exactly (as
    madlib.stats.seed_interval), unbounded for one seed."""
    x = np.asarray(values, float)
    if x.size < 2:
        return -np.inf, np.inf
    if np.ptp(x) == 0:
        return x.mean(), x.mean()
    return stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))


def level(low, high, direction, margin) -> str:
    """held / not held / inconclusive of an interval against a margin the claim says it is greater or less than."""
    if direction == "greater":
        return "held" if low > margin else "not held" if high <= margin else "inconclusive"
    return "held" if high < margin else "not held" if low >= margin else "inconclusive"


def t_level(values, direction, margin):
    """(level, low, high) of per-seed values against a margin."""
    low, high = t_interval(values)
    return level(low, high, direction, margin), low, high


def check_level(claim, values, direction, margin, met):
    """The claim reads not testable exactly when a recomputed precondition fails, else the recomputed interval's level."""
    expected, low, high = t_level(values, direction, margin)
    assert claim["comparison"]["direction"] == direction and claim["comparison"]["margin"] == margin, claim["id"]
    np.testing.assert_allclose([claim["comparison"]["interval"]["low"], claim["comparison"]["interval"]["high"]], [low, high])
    assert [p["met"] for p in claim["preconditions"]] == met, claim["id"]
    soft = [p.get("fails_as") == "inconclusive" for p in claim["preconditions"]]
    hard_failed = any(not m and not f for m, f in zip(met, soft))
    assert claim["level"] == ("not testable" if hard_failed else expected if all(met) else "inconclusive"), claim["id"]


def run_claims_cell(notebook, cell_id: str, namespace: dict, experiments=("MAD-1",)):
    """Run one notebook cell (its claims) on constructed numbers; returns {id: claim} of the record it fills."""
    import json

    import madlib.figures as figures
    from madlib.figures import FigureRecord

    nb = json.loads(notebook.read_text())
    source = "".join(next(c for c in nb["cells"] if c.get("id") == cell_id)["source"])
    scope = {"np": np, **{k: getattr(figures, k) for k in figures.__all__}, **namespace}
    # the figure's catalogue entries, their text slots filled from the cell's own variables, as in the notebook
    record = FigureRecord.for_claims(notebook.stem, scope, experiments=experiments)
    scope["record"] = record
    exec(source, scope)
    return {c.id: c for c in record.claims}


def sims_base_bar(base, floor: float, continued) -> bool:
    """SIMS's base bar recomputed from a JSON's numbers: the mean base FID within 1.5x the floor, or the base at its
    plateau (the same fine-tune on D removes on average less than 0.142 of its excess FID over the floor)."""
    base, continued = np.asarray(base, float), np.asarray(continued, float)
    removed = (base - continued) / np.maximum(base - floor, 1e-12)
    return bool(base.mean() <= 1.5 * floor or removed.mean() < 0.142)
