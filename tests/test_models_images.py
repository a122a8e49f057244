"""The class-conditional image DDPM family in the loop engine, its metrics and the on-disk image sets."""

import io
import zipfile

import numpy as np
import pytest
import torch

from madlib.data import from_uint8, load_image_set, save_image_set, settings_key, to_uint8
from madlib.diffusion.guidance import class_conditional, constant_weight
from madlib.diffusion.samplers import ddpm_ancestral_sampler
from madlib.loops import LoopSpec, run_loop
from madlib.metrics.images import image_metrics
from madlib.models.images import ImageDiffusionFamily, balanced_labels
from tests.helpers import interrupted_then_resumed, tiny_lenet_cache

# 8x8 digits, T = 10, a two-level U-Net of width 8: a generation trains and samples in well under a second
TINY = dict(image_size=8, steps=10, base_channels=8, channel_mults=(1, 2), epochs=2, batch_size=32,
            eval_samples=40, lenet="tiny")


pytestmark = pytest.mark.usefixtures("one_thread")


lenet_cache = tiny_lenet_cache()  # the tiny classifier, trained once into this module's own cache


def _family(**kw):
    return ImageDiffusionFamily("digits", **(TINY | kw))


def _loop(kind="fully_synthetic", seed=0, lam=1.0, **kw):
    spec = LoopSpec(kind, generations=3, n_synth=30, n_ini=40, lam=lam)
    return run_loop(_family(lam=lam), spec, seed=seed, progress=False, **kw)


def test_fully_synthetic_loop_records_and_is_reproducible():
    a, b = _loop(lam=0.8), _loop(lam=0.8)
    assert list(a.generation) == [1, 2, 3]
    assert set(a.records) == {"fid", "precision", "recall", "accuracy", "mean_intensity", "real_accuracy",
                              "real_mean_intensity", "train_loss"}
    for name, value in a.records.items():
        assert value.shape == (3, 1), name  # [G, R] with one run
        np.testing.assert_array_equal(value, b.records[name])
    assert not np.array_equal(a.records["fid"], _loop(lam=0.8, seed=1).records["fid"])
    assert np.all((0 <= a.records["precision"]) & (a.records["precision"] <= 1))


def test_augmentation_loop_keeps_the_real_set(tmp_path):
    family = _family(store_dir=tmp_path)
    run_loop(family, LoopSpec("augmentation", generations=3, n_synth=30, n_ini=40), seed=0, progress=False)
    sets = [load_image_set(tmp_path / f"gen_{t:03d}_train.npz") for t in (1, 2, 3)]
    assert [len(s.labels) for s in sets] == [40, 70, 70]
    # generation t trains on the fixed real set (source 0) and 30 samples of G^{t-1}
    assert sets[1].arrays["source"].tolist() == [0] * 40 + [1] * 30
    assert sets[2].arrays["source"].tolist() == [0] * 40 + [2] * 30
    for s in sets[1:]:
        np.testing.assert_array_equal(s.images[:40], sets[0].images)
    assert not np.array_equal(sets[1].images[40:], sets[2].images[40:])
    assert sets[2].meta["generation"] == 3 and sets[2].meta["family"]["dataset"] == "digits"


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole = _loop()
    spec = LoopSpec("fully_synthetic", generations=3, n_synth=30, n_ini=40)
    resumed = interrupted_then_resumed(_family, spec, tmp_path / "c.pkl")
    for name, value in whole.records.items():
        np.testing.assert_array_equal(resumed.records[name], value)
    with pytest.raises(ValueError, match="belongs to another run"):  # another family's settings: refused
        run_loop(_family(epochs=3), spec, seed=0, checkpoint=tmp_path / "c.pkl", progress=False)


def test_samples_are_class_balanced_uint8_and_lambda_one_is_the_conditional_sampler():
    family = _family()
    model = family.fit(family.draw_real(40, np.random.default_rng(0)))
    assert model.generation == 1
    synth = family.sample(model, 23, 1.0, np.random.default_rng(1))
    assert synth.images.dtype == torch.uint8 and synth.images.shape == (23, 1, 8, 8)
    assert torch.bincount(synth.labels).tolist() == [3, 3, 3] + [2] * 7
    assert synth.source.tolist() == [1] * 23
    # the same draw by hand: no guide at lambda = 1 (w = 0), x0 clipped to [-1, 1], quantised
    g = torch.Generator().manual_seed(synth.seed)
    noise = torch.randn(1, 23, 1, 8, 8, generator=g)
    with torch.no_grad():
        x = ddpm_ancestral_sampler(class_conditional(model.net, synth.labels[None]), noise, family.schedule,
                                   weight=constant_weight(0.0), generator=g, clip_x0=(-1.0, 1.0))
    torch.testing.assert_close(synth.images, to_uint8(x[0], (-1.0, 1.0)), rtol=0, atol=0)


def test_draw_real_is_a_balanced_subset_without_repeats():
    family = _family()
    data = family.draw_real(50, np.random.default_rng(0))
    assert torch.bincount(data.labels).tolist() == [5] * 10 and data.images.dtype == torch.uint8
    assert len({bytes(img.numpy()) for img in data.images}) == 50
    again = family.draw_real(50, np.random.default_rng(0))
    assert torch.equal(again.images, data.images) and again.seed == data.seed


def test_store_holds_the_eval_samples_that_summary_measured(tmp_path):
    family = _family(store_dir=tmp_path, lam=0.5)
    model = family.fit(family.draw_real(40, np.random.default_rng(0)))
    summary = family.summary(model)
    stored = load_image_set(tmp_path / "gen_001_eval.npz")
    assert stored.meta["lam"] == 0.5 and stored.meta["seed"] == family.eval_seed
    metrics = image_metrics(torch.from_numpy(stored.images), torch.from_numpy(stored.labels), family.test_images,
                            family.test_labels, family._lenet())
    assert metrics["fid"] == summary["fid"][0] and metrics["recall"] == summary["recall"][0]


def _run_into(store, epochs: float, spec: LoopSpec):
    """One loop of the tiny family at ``epochs`` writing its sets into ``store``; (family, LoopResult)."""
    family = _family(epochs=epochs, store_dir=store)
    return family, run_loop(family, spec, seed=0, progress=False)


def test_two_runs_of_other_settings_into_one_folder_each_read_only_their_own_sets(tmp_path):
    # issue 29: two builds of mad_9_11 with other epochs and one store_dir read each other's evaluation sets.
    # Keyed as the MNIST notebooks key their store: each run writes into store_dir / settings_<key of its settings>
    spec = LoopSpec("fully_synthetic", generations=2, n_synth=30, n_ini=40)
    runs = {}
    for epochs in (2.0, 1.0):  # the second run starts after the first one finished writing: the case that went wrong
        key = settings_key({**TINY, "epochs": epochs, "generations": spec.generations, "n_images": 40, "seeds": [0]})
        runs[epochs] = _run_into(tmp_path / f"settings_{key}", epochs, spec)
    assert len({family.store_dir for family, _ in runs.values()}) == 2
    assert sorted(p.parent for p in tmp_path.iterdir()) == [tmp_path] * 2
    for epochs, (family, result) in runs.items():
        for t in (1, 2):
            stored = family.load_stored(t, "eval")
            assert stored.meta["family"]["epochs"] == epochs and stored.meta["generation"] == t
            # the very samples this run measured: their FID is the one its loop recorded
            metrics = family.measure(torch.from_numpy(stored.images), torch.from_numpy(stored.labels))
            assert metrics["fid"] == result.records["fid"][t - 1, 0]
            assert family.load_stored(t, "train").meta["family"]["epochs"] == epochs
    assert not np.array_equal(runs[2.0][0].load_stored(1).images, runs[1.0][0].load_stored(1).images)


def test_a_set_that_other_settings_wrote_into_the_same_folder_is_refused_naming_both(tmp_path):
    # without a key of its own, the second run overwrites the first run's sets: the first may not read them
    spec = LoopSpec("fully_synthetic", generations=2, n_synth=30, n_ini=40)
    first, _ = _run_into(tmp_path, 2.0, spec)
    second, result = _run_into(tmp_path, 1.0, spec)
    for t in (1, 2):
        for kind in ("eval", "train"):
            with pytest.raises(ValueError, match=rf"gen_00{t}_{kind}.npz was written with other settings than expected"
                                                 r".*family.epochs: stored 1.0, expected 2.0"):
                first.load_stored(t, kind)
        stored = second.load_stored(t)  # the run that wrote them reads them
        assert second.measure(torch.from_numpy(stored.images), torch.from_numpy(stored.labels))["fid"] == \
            result.records["fid"][t - 1, 0]
    assert second.load_stored(np.int64(2)).meta["generation"] == 2  # numpy integers (np.arange) are generations too
    with pytest.raises(FileNotFoundError, match="gen_003_eval.npz"):
        second.load_stored(3)
    with pytest.raises(ValueError, match="kind must be one of"):
        second.load_stored(1, "test")
    with pytest.raises(ValueError, match="store_dir is None"):
        _family().load_stored(1)


def test_load_image_set_checks_the_expected_meta_entry_by_entry(tmp_path):
    settings = {"epochs": 2.0, "channel_mults": (1, 2), "lr": 1e-3}
    path = save_image_set(tmp_path / "set.npz", np.zeros((2, 1, 2, 2), np.uint8), np.arange(2),
                          {"generation": 1, "family": {**settings, "channel_mults": [1, 2]}})
    assert load_image_set(path, expect={"family": settings, "generation": 1}).meta["generation"] == 1  # tuple = list
    assert load_image_set(path, expect={}).meta["family"]["epochs"] == 2.0
    with pytest.raises(ValueError, match=r"family.epochs: stored 2.0, expected 3.0; family.lr: stored 0.001, "
                                         r"expected 0.01"):
        load_image_set(path, expect={"family": {**settings, "epochs": 3.0, "lr": 1e-2}})
    with pytest.raises(ValueError, match=r"family.ema_decay: not stored, expected 0.99"):
        load_image_set(path, expect={"family": {**settings, "ema_decay": 0.99}})
    with pytest.raises(ValueError, match=r"family.lr: stored 0.001, not expected"):
        load_image_set(path, expect={"family": {"epochs": 2.0, "channel_mults": [1, 2]}})
    with pytest.raises(ValueError, match=r"seed: not stored, expected 0"):
        load_image_set(path, expect={"seed": 0})
    with pytest.raises(ValueError, match="expect must be JSON-serialisable"):
        load_image_set(path, expect={"family": object()})


def test_settings_key_changes_with_every_setting_and_only_with_them():
    base = {"epochs": 2.0, "lam_values": [1.0, 0.8], "device": "cpu"}
    key = settings_key(base)
    assert len(key) == 16 and int(key, 16) >= 0
    assert settings_key(dict(reversed(list(base.items())))) == key  # the order of the entries does not matter
    assert settings_key({**base, "lam_values": (1.0, 0.8)}) == key  # a tuple is stored as a list
    assert len({key, settings_key({**base, "epochs": 1.0}), settings_key({**base, "lam_values": [1.0]}),
                settings_key({**base, "seed": 0})}) == 4
    with pytest.raises(ValueError, match="settings must be a mapping"):
        settings_key([1, 2])
    with pytest.raises(ValueError, match="settings must be JSON-serialisable"):
        settings_key({"root": object()})


def test_image_metrics_of_the_real_set_against_itself():
    family = _family()
    x, y = family.test_images, family.test_labels
    m = image_metrics(x, y, x, y, family._lenet())
    assert m["fid"] == pytest.approx(0.0, abs=1e-6) and m["precision"] == m["recall"] == 1.0
    assert m["accuracy"] == m["real_accuracy"] and m["mean_intensity"] == m["real_mean_intensity"]
    assert m["n_fake"] == m["n_real"] == len(y)


def test_balanced_labels():
    assert balanced_labels(12, 5).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]
    assert balanced_labels(0, 3).tolist() == []


def test_image_sets_round_trip_and_a_truncated_file_is_refused(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (30, 1, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.arange(30) % 10
    path = save_image_set(tmp_path / "set.npz", images, labels, {"generation": 2, "lam": 0.8},
                          arrays={"source": np.full(30, 2)})
    stored = load_image_set(path)
    np.testing.assert_array_equal(stored.images, images.numpy())
    np.testing.assert_array_equal(stored.labels, labels.numpy())
    assert stored.meta == {"generation": 2, "lam": 0.8} and stored.arrays["source"].tolist() == [2] * 30
    assert [p.name for p in tmp_path.iterdir()] == ["set.npz"]  # no temporary left behind
    raw = path.read_bytes()
    for cut in (len(raw) - 1, len(raw) // 2, 10):
        (tmp_path / "cut.npz").write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="not a complete image set"):
            load_image_set(tmp_path / "cut.npz")


def test_a_checksum_mismatch_is_refused(tmp_path):
    path = save_image_set(tmp_path / "set.npz", np.zeros((4, 1, 2, 2), np.uint8), np.arange(4))
    forged = tmp_path / "forged.npz"  # a well-formed archive whose labels were swapped afterwards
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(forged, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "labels.npy":
                buffer = io.BytesIO()
                np.save(buffer, np.arange(4)[::-1].copy())
                data = buffer.getvalue()
            dst.writestr(item, data)
    with pytest.raises(ValueError, match="do not match the stored SHA-256"):
        load_image_set(forged)


def test_quantisation_is_explicit():
    with pytest.raises(ValueError, match="images must be uint8.*to_uint8"):
        save_image_set("unused.npz", np.zeros((2, 1, 4, 4), np.float32), np.arange(2))
    levels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(from_uint8(levels, (-1.0, 1.0)), (-1.0, 1.0)), levels)
    assert to_uint8(torch.tensor([-3.0, 0.0, 0.5, 2.0])).tolist() == [0, 0, 128, 255]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"lam must lie in \(0, 1\]"):
        _family(lam=0.0)
    with pytest.raises(ValueError, match=r"lam must lie in \(0, 1\]"):
        _family(lam=1.5)
    with pytest.raises(ValueError, match=r"dataset must be one of \['digits', 'mnist', 'mnist5k'\]"):
        ImageDiffusionFamily("cifar10")
    for name in ("image_size", "base_channels", "steps", "batch_size", "eval_samples"):
        with pytest.raises(ValueError, match=f"{name} must be an integer >="):
            _family(**{name: -4})
    with pytest.raises(ValueError, match=r"epochs must lie in \(0, inf\)"):
        _family(epochs=0)
    family = _family()
    with pytest.raises(ValueError, match=r"n must be <= 1400 for a class-balanced subset of digits"):
        family.draw_real(5000, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        family.draw_real(-1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="set n_ini"):
        run_loop(family, LoopSpec("fully_synthetic", 2, n_synth=10), seed=0, progress=False)
    model = family.fit(family.draw_real(20, np.random.default_rng(0)))
    with pytest.raises(ValueError, match=r"lam must equal the family's lam \(1.0\)"):
        family.sample(model, 5, 0.5, np.random.default_rng(0))
