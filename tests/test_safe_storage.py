"""Files a user can be handed run no code, and damaged files are named and rebuilt (issue 29, items 2 and 3).

Loop checkpoints and sweep results are madlib's plain-data format (madlib._io.save_plain: npz + JSON + checksum,
read with numpy.load(allow_pickle=False)); the network caches (madlib.diffusion.cache, ReDiFine's M_0) carry a
checksum of their payload. Each case below is one the issue tried, with what must happen now.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from madlib._io import (DamagedFileError, PlainDataError, StorageWarning, checksum, load_plain, save_plain)
from madlib.diffusion.cache import cached_fit
from madlib.loops import LoopSpec, run_loop
from madlib.methods.mad_fresh import FreshLimit
from madlib.models.gaussian import GaussianFamily
from madlib.sweep import cell_key, probe, sweep
from tests.helpers import interrupted_then_resumed

pytestmark = pytest.mark.usefixtures("one_thread")


class _WritesMarker:
    """Unpickling this creates the file ``marker``: what a crafted pickle could do (any code at all)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_pickle(tmp_path, name="marker"):
    """(pickle bytes that create tmp_path/name when loaded, that marker's path); checked to do so here."""
    marker = tmp_path / name
    payload = pickle.dumps({"identity": None, "value": _WritesMarker(marker)})
    proof = tmp_path / f"{name}-proof"
    pickle.loads(pickle.dumps(_WritesMarker(proof))).close()  # the payload is real: unpickled, it writes a file
    assert proof.exists()
    return payload, marker


def _same_records(a, b):
    np.testing.assert_array_equal(a.generation, b.generation)
    assert set(a.records) == set(b.records)
    for name in a.records:
        if not name.endswith("seconds"):  # wall times differ between any two runs
            np.testing.assert_array_equal(a.records[name], b.records[name], err_msg=name)


SPEC = LoopSpec("augmentation", 4, n_synth=15, n_ini=10, lam=0.95, accumulate=True)


def _gaussian():
    return GaussianFamily(np.zeros(2), np.eye(2), 8)


# --- item 2: loop checkpoints ---------------------------------------------------------------------------------

def test_a_crafted_pickle_in_a_checkpoint_dir_runs_no_code_and_the_run_starts_afresh(tmp_path):
    whole = run_loop(_gaussian(), SPEC, seed=3, progress=False)
    payload, marker = _crafted_pickle(tmp_path)
    ckpt = tmp_path / "checkpoints" / "mad_12_default_fully_synthetic_lam1_seed3.pkl"  # as the notebooks name them
    ckpt.parent.mkdir()
    ckpt.write_bytes(payload)
    with pytest.warns(StorageWarning, match=rf"{ckpt} cannot be read \(it is a pickle, which madlib does not load"):
        result = run_loop(_gaussian(), SPEC, seed=3, checkpoint=ckpt, progress=False)
    assert not marker.exists()
    _same_records(result, whole)
    assert load_plain(ckpt)["done"] == SPEC.generations  # overwritten in the plain format
    with np.load(ckpt, allow_pickle=False) as archive:
        assert "__tree__" in archive.files


def test_a_truncated_checkpoint_is_named_and_the_run_recomputed(tmp_path):
    ckpt = tmp_path / "loop.ckpt"
    whole = run_loop(_gaussian(), SPEC, seed=3, checkpoint=ckpt, progress=False)
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.warns(StorageWarning, match=rf"loop checkpoint not used: {ckpt} cannot be read.*from generation 1"):
        again = run_loop(_gaussian(), SPEC, seed=3, checkpoint=ckpt, progress=False)
    _same_records(again, whole)


def test_flipped_bytes_in_a_checkpoint_are_caught_by_its_checksum(tmp_path):
    ckpt = tmp_path / "loop.ckpt"
    run_loop(_gaussian(), SPEC, seed=3, checkpoint=ckpt, progress=False)
    data = bytearray(ckpt.read_bytes())
    array = np.ascontiguousarray(load_plain(ckpt)["records"]["mean"][-1]).tobytes()  # an array stored as is
    at = bytes(data).find(array)
    assert at > 0
    data[at:at + 8] = bytes(b ^ 0xFF for b in data[at:at + 8])
    ckpt.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match=rf"{ckpt} (is damaged \(checksum mismatch\)|cannot be read)"):
        load_plain(ckpt)


@pytest.mark.parametrize("family", ["gaussian", "mixture", "flow", "gan"])
def test_resume_from_the_plain_checkpoint_equals_an_uninterrupted_run(tmp_path, family, monkeypatch):
    if family == "gaussian":
        make, spec = _gaussian, SPEC
    elif family == "mixture":
        from madlib.models.mixture import MixtureFamily

        w, mu = np.array([0.4, 0.6]), np.array([[-3.0, 0.0], [3.0, 0.0]])

        def make():
            return MixtureFamily(w, mu, np.stack([np.eye(2)] * 2), 2)

        spec = LoopSpec("augmentation", 3, n_synth=40, n_ini=60)
    elif family == "flow":
        from madlib.data import Rosenbrock
        from madlib.models.flow import FlowFamily

        def make():
            return FlowFamily(Rosenbrock(), runs=2, layers=2, hidden=8, epochs=1, eval_samples=20)

        spec = LoopSpec("fully_synthetic", 3, n_synth=100, n_ini=100, lam=0.8)
    else:  # the WGAN's generator holds torch activation functions, stored by name
        from madlib.models.gan import WGANFamily

        monkeypatch.setenv("MADLIB_CACHE", str(tmp_path / "lenet"))

        def make():
            return WGANFamily("digits", runs=2, image_size=8, latent_dim=4, width=16, depth=1, iterations=3,
                              n_critic=2, batch_size=8, eval_samples=20, lenet="tiny")

        spec = LoopSpec("fully_synthetic", 3, n_synth=40, n_ini=40)
    whole = run_loop(make(), spec, seed=5, progress=False)
    ckpt = tmp_path / "c.ckpt"
    resumed = interrupted_then_resumed(make, spec, ckpt, seed=5, at=2)
    _same_records(resumed, whole)
    assert load_plain(ckpt)["done"] == spec.generations


class _LambdaModelFamily:
    """A toy family whose models hold a lambda: not plain data."""

    def true_model(self):
        return {"mean": 0.0, "f": lambda x: x}

    def draw_real(self, n, rng):
        return rng.normal(size=n)

    def sample(self, model, n, lam, rng):
        return rng.normal(model["mean"], 1.0, size=n)

    def concat(self, parts):
        return np.concatenate(parts)

    def fit(self, data):
        return {"mean": float(data.mean()), "f": lambda x: x}

    def summary(self, model):
        return {"mean": np.asarray(model["mean"])}


def test_a_model_that_is_not_plain_data_is_refused_by_name_at_the_first_checkpoint(tmp_path):
    spec = LoopSpec("fully_synthetic", 3, n_synth=10)
    with pytest.raises(ValueError, match=r"checkpoint .*c\.ckpt cannot hold .* value\['window'\]\[0\]\['f'\]: a "
                                         r"builtins\.function \(.*<lambda>\) cannot be stored without pickle"):
        run_loop(_LambdaModelFamily(), spec, seed=0, checkpoint=tmp_path / "c.ckpt", progress=False)
    assert not (tmp_path / "c.ckpt").exists()
    run_loop(_LambdaModelFamily(), spec, seed=0, progress=False)  # without a checkpoint it runs


# --- item 2: sweep results ----------------------------------------------------------------------------------

def test_a_crafted_pickle_in_a_sweep_dir_runs_no_code_and_its_cell_is_recomputed(tmp_path):
    payload, marker = _crafted_pickle(tmp_path)
    results = tmp_path / "sweep"
    results.mkdir()
    cells = [dict(index=2), dict(index=3)]
    keys = [cell_key(probe, c) for c in cells]
    (results / f"{keys[0]}.npz").write_bytes(payload)  # under today's name
    (results / f"{keys[1]}.pkl").write_bytes(payload)  # under the name older versions used
    with pytest.warns(StorageWarning) as caught:
        out = sweep(probe, cells, result_dir=results, progress=False)
    messages = [str(w.message) for w in caught]
    assert any(f"{keys[0]}.npz cannot be read (it is a pickle" in m for m in messages), messages
    assert any(f"pickles of an older madlib ({keys[1]}.pkl)" in m and "not read" in m for m in messages), messages
    assert not marker.exists()
    assert (out.jobs, out.skipped) == (2, 0) and [v["square"] for v in out.values] == [4, 9]
    again = sweep(probe, cells, result_dir=results, progress=False)  # both now stored in the plain format
    assert (again.jobs, again.skipped) == (0, 2) and [v["square"] for v in again.values] == [4, 9]


def test_a_result_of_another_cell_under_a_key_is_recomputed(tmp_path):
    first = sweep(probe, [dict(index=2)], result_dir=tmp_path, progress=False)
    other = sweep(probe, [dict(index=5)], result_dir=tmp_path, progress=False)
    (tmp_path / f"{first.keys[0]}.npz").write_bytes((tmp_path / f"{other.keys[0]}.npz").read_bytes())
    with pytest.warns(StorageWarning, match=r"holds the result of madlib\.sweep\.probe\(\{'index': 5\}\), not of this"):
        again = sweep(probe, [dict(index=2)], result_dir=tmp_path, progress=False)
    assert again.jobs == 1 and again.values[0]["square"] == 4


def _returns_a_lambda(x: int):
    return {"x": x, "f": lambda: x}


def test_a_cell_value_that_is_not_plain_data_fails_the_cell_with_its_place_named(tmp_path):
    from madlib.sweep import SweepError

    with pytest.raises(SweepError, match=r"cannot be stored in .* without pickle: value\['value'\]\['f'\]"):
        sweep(_returns_a_lambda, [dict(x=1)], result_dir=tmp_path, retries=0, progress=False)
    assert sweep(_returns_a_lambda, [dict(x=1)], progress=False).values[0]["x"] == 1  # nothing stored: fine


# --- the plain-data format itself -----------------------------------------------------------------------------

def test_plain_format_round_trips_what_checkpoints_and_cells_hold(tmp_path):
    from madlib.diffusion.losses import EDMPrecond
    from madlib.diffusion.unet import UNet

    net = EDMPrecond(UNet(1, 8, 4, (1, 2), num_classes=10, seed=0))
    a = np.arange(6.0).reshape(2, 3)
    limit = FreshLimit(10, 20, 0.5, 1, 2, 10, 4, 1.5, (3, 9), 0.1, 0.2, np.float64(-0.3), mean_path=a[0])
    value = {"a": a, "again": a, "tuple": (1, 2.5, float("nan"), None, "s", -0.0), "set": {1, 2}, 7: "int key",
             "$": "a dollar key", "od": OrderedDict(z=1, a=2), "f32": np.float32(1.5), "big": 2**80,
             "bf16": torch.randn(3, 4).to(torch.bfloat16), "param": torch.nn.Parameter(torch.ones(2)),
             "size": torch.Size([2, 3]), "dtype": torch.float16, "device": torch.device("cpu"), "net": net,
             "limit": limit, "rng": np.random.default_rng(4).bit_generator.state, "act": torch.nn.functional.relu}
    save_plain(tmp_path / "x.bin", value)
    out = load_plain(tmp_path / "x.bin")
    assert out["again"] is out["a"] and out["a"].dtype == np.float64
    np.testing.assert_array_equal(out["a"], a)
    assert out["tuple"][:2] == (1, 2.5) and np.isnan(out["tuple"][2]) and out["tuple"][3:5] == (None, "s")
    assert str(out["tuple"][5]) == "-0.0"
    assert out["set"] == {1, 2} and out[7] == "int key" and out["$"] == "a dollar key"
    assert type(out["od"]) is OrderedDict and list(out["od"]) == ["z", "a"]
    assert type(out["f32"]) is np.float32 and out["big"] == 2**80
    assert out["bf16"].dtype == torch.bfloat16 and torch.equal(out["bf16"], value["bf16"])
    assert type(out["param"]) is torch.nn.Parameter and out["param"].requires_grad
    assert (out["size"], out["dtype"], out["device"], out["act"]) == (value["size"], torch.float16,
                                                                      torch.device("cpu"), torch.nn.functional.relu)
    assert out["rng"] == value["rng"]
    assert type(out["limit"]) is FreshLimit and type(out["limit"].drift_z) is np.float64
    assert all(getattr(out["limit"], f.name) == getattr(limit, f.name) for f in dataclasses.fields(limit)
               if f.name != "mean_path")
    x, sigma, y = torch.randn(1, 3, 1, 8, 8), torch.full((1, 3), 0.7), torch.tensor([[1, 2, 10]])
    with torch.no_grad():
        assert torch.equal(out["net"](x, sigma, y), net(x, sigma, y))
    assert type(out["net"]) is EDMPrecond and set(vars(out["net"])) == set(vars(net))


@pytest.mark.parametrize("bad, where", [
    (lambda: 0, r"value\['bad'\]: a builtins\.function"),
    (np.array([object()]), r"value\['bad'\]: a numpy array of Python objects"),
    (torch.nn.functional.softmax, r"value\['bad'\]: a builtins\.function \(softmax\)"),
    (pytest, r"value\['bad'\]: a builtins\.module"),
])
def test_plain_format_refuses_what_it_cannot_hold_by_place(tmp_path, bad, where):
    with pytest.raises(PlainDataError, match=where):
        save_plain(tmp_path / "x", {"bad": bad})
    assert not list(tmp_path.iterdir())  # nothing written, no temporary left


@pytest.mark.parametrize("node, message", [
    ({"$": "dataclass", "class": "subprocess:Popen", "ref": 0, "fields": {}}, "names class 'subprocess:Popen', which "
                                                                               "madlib does not restore"),
    ({"$": "module", "class": "os:system", "ref": 0, "state": {}}, "names class 'os:system', which madlib does not"),
    ({"$": "dataclass", "class": "madlib._io:save_plain", "ref": 0, "fields": {}},
     "names 'madlib._io:save_plain' as a dataclass, which it is not"),
    ({"$": "function", "name": "os.system"}, "names function 'os.system', which madlib does not restore"),
    ({"$": "eval", "code": "1"}, "holds an unknown entry 'eval'"),
])
def test_plain_format_reading_builds_nothing_but_madlibs_own_types(tmp_path, node, message):
    import json

    from madlib._io import PLAIN_FORMAT, _digest

    raw = json.dumps({"format": PLAIN_FORMAT, "value": {"x": node}}).encode()
    with open(tmp_path / "crafted", "wb") as f:  # a well-formed file with a valid checksum, naming what it likes
        np.savez(f, __tree__=np.frombuffer(raw, np.uint8),
                 __checksum__=np.frombuffer(_digest(raw, {}).encode(), np.uint8))
    with pytest.raises(DamagedFileError, match=rf"{tmp_path / 'crafted'} {message}"):
        load_plain(tmp_path / "crafted")


# --- item 3: checksummed network caches --------------------------------------------------------------------

def _tiny_fit(calls):
    """A cheap fit: a 16 -> 8 linear layer, 20 Adam steps on fixed data; counts its calls."""

    def build():
        calls.append(1)
        g = torch.Generator().manual_seed(0)
        net = torch.nn.Linear(16, 8)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        x, y = torch.randn(64, 16, generator=g), torch.randn(64, 8, generator=g)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
        return {"state": {k: v.detach().clone() for k, v in net.state_dict().items()}, "seconds": 0.5}

    return build


def test_flipped_bytes_in_a_cached_network_are_detected_and_it_is_rebuilt(tmp_path):
    calls = []
    settings = {"width": 8, "steps": 20}
    first, loaded = cached_fit(tmp_path, "tiny", settings, "k" * 64, _tiny_fit(calls))
    assert not loaded and len(calls) == 1
    path = tmp_path / f"tiny-{'k' * 20}.pt"
    again, loaded = cached_fit(tmp_path, "tiny", settings, "k" * 64, _tiny_fit(calls))
    assert loaded and len(calls) == 1 and torch.equal(again["state"]["weight"], first["state"]["weight"])

    data = bytearray(path.read_bytes())
    weights = first["state"]["weight"].numpy().tobytes()
    at = bytes(data).find(weights)
    assert at > 0
    data[at:at + 64] = bytes(b ^ 0x5A for b in data[at:at + 64])  # 64 flipped bytes inside the tensor
    path.write_bytes(bytes(data))
    silently = torch.load(path, weights_only=True)["payload"]["state"]["weight"]  # what torch alone would use
    assert not torch.equal(silently, first["state"]["weight"])

    with pytest.warns(StorageWarning, match=rf"cached tiny {path} is damaged \(its payload does not match its"):
        rebuilt, loaded = cached_fit(tmp_path, "tiny", settings, "k" * 64, _tiny_fit(calls))
    assert not loaded and len(calls) == 2 and torch.equal(rebuilt["state"]["weight"], first["state"]["weight"])
    assert cached_fit(tmp_path, "tiny", settings, "k" * 64, _tiny_fit(calls))[1]  # the rebuilt file is whole


def test_a_cache_file_without_checksum_or_truncated_is_rebuilt_with_a_message(tmp_path):
    calls = []
    settings = {"width": 8}
    path = tmp_path / f"tiny-{'k' * 20}.pt"
    payload = _tiny_fit([])()
    torch.save({"format": "madlib-casd-cache-v1", "key": "k" * 64, "settings": settings, "payload": payload}, path)
    with pytest.warns(StorageWarning, match=rf"{path} is in format 'madlib-casd-cache-v1' without a payload checksum"):
        cached_fit(tmp_path, "tiny", settings, "k" * 64, _tiny_fit(calls))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.warns(StorageWarning, match=rf"cached tiny {path} is unreadable"):
        cached_fit(tmp_path, "tiny", settings, "k" * 64, _tiny_fit(calls))
    assert len(calls) == 2 and cached_fit(tmp_path, "tiny", settings, "k" * 64, _tiny_fit(calls))[1]


def test_checksum_sees_dtype_shape_bytes_and_numbers():
    base = {"w": torch.ones(2, 3), "n": 1.0}
    same = checksum(base)
    assert same == checksum({"n": 1.0, "w": torch.ones(2, 3)})  # key order does not matter
    for other in ({"w": torch.ones(3, 2), "n": 1.0}, {"w": torch.ones(2, 3, dtype=torch.float64), "n": 1.0},
                  {"w": torch.ones(2, 3), "n": 1.0000001}, {"w": torch.ones(2, 3), "n": 1}):
        assert checksum(other) != same
    with pytest.raises(PlainDataError, match=r"payload\['f'\]: a function has no checksum"):
        checksum({"f": lambda: 0})


def test_a_truncated_m0_cache_is_rebuilt_with_a_message(tmp_path, monkeypatch):
    from madlib.methods.redifine import m0_cache_path, pretrain_m0, weights_digest

    tiny = dict(dataset="digits", image_size=8, base_channels=4, channel_mults=(1, 2), images_seen=64, batch_size=32,
                warmup=0)
    first = pretrain_m0(**tiny, cache_dir=tmp_path)
    assert not first.cached and first.path == m0_cache_path(first.settings, tmp_path)
    assert first.path.name.startswith("redifine-m0-") and len(first.path.stem) == len("redifine-m0-") + 16
    first.path.write_bytes(first.path.read_bytes()[:1000])
    with pytest.warns(StorageWarning, match=rf"cached redifine-m0 {first.path} is unreadable"):
        rebuilt = pretrain_m0(**tiny, cache_dir=tmp_path)
    assert not rebuilt.cached and weights_digest(rebuilt.net) == weights_digest(first.net)
    again = pretrain_m0(**tiny, cache_dir=tmp_path)
    assert again.cached and weights_digest(again.net) == weights_digest(first.net)
