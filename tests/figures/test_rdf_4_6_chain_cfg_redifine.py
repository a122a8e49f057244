"""RDF-4..6 at the smoke profile: every chain fine-tunes from the one M0, FID_k and the collapse rate (Eq. 3)
agree, the archive holds D0 and every chain's iterations, and the trait fit has a pair per CFG."""

import numpy as np
import pytest

from madlib.data import load_sample_archive


def test_rdf_4_6_chain_cfg_redifine(smoke_build):
    record, _ = smoke_build("rdf_4_6_chain_cfg_redifine")
    assert record["experiments"] == ["RDF-4", "RDF-5", "RDF-6", "RDF-2"]
    ids = {c["id"] for c in record["claims"]}
    assert {"RDF-4.m0-bar", "RDF-4.collapse-at-cfg-7.5", "RDF-4.u-shape", "RDF-5.redifine-below-baseline",
            "RDF-5.redifine-close-to-best", "RDF-6.diff-norm", "RDF-6.spectrum-close", "RDF-2.trait-fit-directions"} <= ids
    params, data = record["params"], record["data"]
    K, grid = params["iterations"], params["cfg_grid"]
    chains = list(data["selection"].values()) + [r for runs in data["report"].values() for r in runs]
    assert len(data["selection"]) == len(grid) and all(len(r) == params["n_seeds"] for r in data["report"].values())
    m0_digest = chains[0]["start_digest"][0]
    for chain in chains:
        assert len(chain["fid"]) == K and np.all(np.array(chain["fid"]) > 0)
        assert chain["collapse_rate"] == pytest.approx((chain["fid"][-1] - chain["fid"][0]) / (K - 1))
        assert chain["start_digest"] == [m0_digest] * K  # Eq. 1: every fine-tune starts from the same M0
        assert np.shape(chain["diff_norm"]) == (K, params["steps"])
    assert data["best_cfg"] in grid
    assert data["best_cfg"] == grid[int(np.argmin([data["selection"][f"cfg={c:g}"]["fid"][-1] for c in grid]))]
    for key in [f"cfg={c:g}" for c in grid] + ["redifine"]:
        fit = data["trait_fit"][key]
        assert 0 <= fit["r1"] < 1 and 0 <= fit["r2"] < 1 and fit["r1"] + fit["r2"] < 1
        assert len(fit["fitted"]) == K + 1 and fit["fitted"][0] == 0.0
    for trajectory in data["phenotype"]["grid"].values():
        assert trajectory[0] == pytest.approx(0.0, abs=1e-9)  # standardised by D0 itself
    assert data["floors"]["fresh"]["fid"] > 0 and data["floors"]["halves"]["fid"] > 0
    archive = load_sample_archive(data["samples_archive"])
    n_chains = len(grid) + sum(len(r) for r in data["report"].values())
    assert len(archive) == 1 + n_chains * K
    shown = archive[f"cfg={grid[-1]:g}/seed={params['seed']}/iter={K}"]
    assert shown.images.shape[0] == min(params["archive_per_set"], params["n_d0"])
    assert set(shown.labels) == set(range(10))
