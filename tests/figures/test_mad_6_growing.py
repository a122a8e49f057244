"""MAD-6 at the smoke profile: the growing dataset with a real fraction p."""

import numpy as np


def test_mad_6_growing(smoke_build):
    record, _ = smoke_build("mad_6_growing")
    assert record["experiments"] == ["MAD-6"]
    data = record["data"]
    n = np.array(data["n"])
    series = {(s["p"], s["lam"]): np.array(s["w2_mean"]) for s in data["series"]}
    base = np.array(data["baseline_mean"])
    # p = 1 is plain fresh estimation on n_t points: the real-only baseline at n_t, within 15%
    assert np.all(np.abs(series[1.0, 1.0] / base - 1) < 0.15)
    # lambda = 1: the distance falls by orders of magnitude as n grows
    assert series[1.0, 1.0][-1] < 0.05 * series[1.0, 1.0][0]
    # the strongest bias ends near its floor sqrt(d) (1 - sqrt c)
    lam_min = min(lam for _, lam in series)
    floor = data["floor"][str(lam_min)]
    p_bias = record["params"]["p_bias"]
    assert floor > 0 and abs(series[p_bias, lam_min][-1] / floor - 1) < 0.2
    assert n[0] == record["params"]["n_first"] and n[-1] == record["params"]["n_last"]
