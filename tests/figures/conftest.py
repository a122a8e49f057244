"""Smoke-profile runs of the manifest figures through the runner's own code path."""

from __future__ import annotations

import json

import pytest

from madlib.figures.runner import build
from madlib.figures.verdicts import LEVELS


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory):
    """build_smoke(name) -> (figure JSON as a dict, executed notebook as a dict).

    Fails the test if the notebook failed, wrote to stderr, or left no PNG/JSON.
    """

    def run(name: str):
        out = tmp_path_factory.mktemp(name)
        (result,) = build([name], profile="smoke", out_dir=out, executed_dir=out / "executed", quiet=True)
        assert result.ok, result.message
        assert (out / f"{name}.png").stat().st_size > 10_000
        assert (out / "CLAIMS.md").exists()
        executed = json.loads(result.executed.read_text())
        stderr = [o.get("text", "") for c in executed["cells"] if c["cell_type"] == "code"
                  for o in c.get("outputs", []) if o.get("name") == "stderr"]
        assert not stderr, f"{name} wrote to stderr: {stderr}"
        record = json.loads((out / f"{name}.json").read_text())
        assert record["profile"] == "smoke" and record["name"] == name
        assert record["claims"], "a figure records at least one claim"
        for claim in record["claims"]:
            assert set(claim) >= {"id", "text", "source", "condition", "measured", "held", "level", "preconditions"}
            assert isinstance(claim["held"], bool) and claim["level"] in LEVELS
            assert claim["held"] == (claim["level"] == "held")
            # a failed precondition reads "not testable" (or "inconclusive" where it says so); an interval decides the rest
            failed = [p for p in claim["preconditions"] if not p["met"]]
            hard = [p for p in failed if p.get("fails_as", "not testable") == "not testable"]
            assert (claim["level"] == "not testable") == bool(hard), claim
            if failed and not hard:
                assert claim["level"] == "inconclusive", claim
        assert record["machine"]["cores"] >= 1 and record["machine"]["cpu"]
        return record, executed

    return run
