"""SIMS-2 at the smoke profile: the (B, w) grid is paired (w = 0 is one chain for every B), the chosen cell was
selected on latents disjoint from those that report it, and the Fig. 1 triple is read off the report grid."""

import numpy as np

from madlib.data import load_sample_archive


def test_sims_2_self_improvement(smoke_build):
    record, _ = smoke_build("sims_2_self_improvement")
    assert record["experiments"] == ["SIMS-0", "SIMS-2"]
    assert {c["id"] for c in record["claims"]} == {
        "SIMS-2.base-bar", "SIMS-2.bowl-in-w", "SIMS-2.interior-B", "SIMS-2.small-w-small-B",
        "SIMS-2.fig1-finetune-on-own-samples-is-worse", "SIMS-2.fig1-sims-is-better", "SIMS-2.relative-gain"}
    params, data = record["params"], record["data"]
    seeds, budgets, ws = params["seeds"], params["budgets"], params["ws"]
    assert not set(params["select_seeds"]) & set(params["report_seeds"])
    for split in ("select", "report"):
        fid = np.array(data["grid"][split]["fid"])
        assert fid.shape == (len(seeds), len(budgets), len(ws)) and np.isfinite(fid).all()
        j0 = ws.index(0.0)
        assert (fid[:, :, j0] == fid[:, :1, j0]).all()  # the base model: one chain shared by every B
    select, report = (np.array(data["grid"][s]["fid"]) for s in ("select", "report"))
    assert not np.array_equal(select, report)  # other latents, other numbers
    chosen = data["chosen"]
    b, j = budgets.index(chosen["B"]), ws.index(chosen["w"])
    assert chosen["w"] > 0
    assert np.isclose(chosen["fid_reported"], report[:, b, j].mean())
    assert np.isclose(chosen["fid_selected"], select[:, b, j].mean())
    np.testing.assert_allclose(data["triple"]["sims"], report[:, b, j])
    np.testing.assert_allclose(data["triple"]["auxiliary"], report[:, b, ws.index(-1.0)])
    assert data["throughput"]["nfe"]["sims"] == 2 * data["throughput"]["nfe"]["base"]
    archive = load_sample_archive(data["samples_archive"])
    assert {f"base/seed={s}" for s in seeds} <= set(archive)
