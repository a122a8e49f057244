"""RDF-7 at the smoke profile: every sweep chain ran with its settings (continual chains continue, the others
start from M0), the long chains have long_iterations FIDs, and the archive holds every chain's iterations."""

import numpy as np

from madlib.data import load_sample_archive


def test_rdf_7_sweeps(smoke_build):
    record, _ = smoke_build("rdf_7_sweeps")
    assert record["experiments"] == ["RDF-7", "RDF-5"]
    ids = {c["id"] for c in record["claims"]}
    assert ids == {"RDF-7.mixing-does-not-stop-baseline", "RDF-5.redifine-helps-more-with-mixing", "RDF-7.long-chains",
                   "RDF-7.continual", "RDF-7.p-0.2-best", "RDF-7.schedules", "RDF-5.each-half-weaker"}
    params, chains = record["params"], record["data"]["chains"]
    m0_digest = chains["baseline"]["start_digest"][0]
    for name, chain in chains.items():
        K = params["long_iterations"] if name.endswith("/long") else params["iterations"]
        assert len(chain["fid"]) == K and chain["settings"]["iterations"] == K
        assert chain["collapse_rate"] == (chain["fid"][-1] - chain["fid"][0]) / (K - 1)
        if chain["settings"]["continual"]:
            assert chain["start_digest"][0] == m0_digest and chain["start_digest"][1:] == chain["end_digest"][:-1]
        else:
            assert chain["start_digest"] == [m0_digest] * K
    assert chains["redifine"]["settings"]["schedule"] == "exponential" and chains["redifine"]["settings"]["cond_dropout"] == 0.2
    assert chains["schedule only"]["settings"]["cond_dropout"] == 0.0
    assert chains["cond-drop only"]["settings"]["schedule"] == "constant"
    assert chains[f"baseline/mix={params['mix_shares'][0]:g}"]["settings"]["real_mix"] == params["mix_shares"][0]
    archive = load_sample_archive(record["data"]["samples_archive"])
    assert len(archive) == 1 + sum(len(c["fid"]) for c in chains.values())
    assert np.all(archive["d0"].labels == np.sort(archive["d0"].labels))
