"""SIMS Algorithm 1 on images (madlib.methods.sims): w = 0 is the base model exactly, w = -1 the auxiliary model,
snapshots along B equal separate fine-tunes, the selection split never reports on its own seeds."""

import numpy as np
import pytest
import torch

from madlib.data import load_images
from madlib.methods.sims import (SIMSConfig, freeze_encoder, group_shifted_subset, network_evaluations, select_then_report,
                                 sims_grid, sims_sample, synthesize, train_auxiliary, train_base)

CONFIG = SIMSConfig(image_size=8, base_channels=8, channel_mults=(1, 2), sample_steps=4, warmup=0, sample_batch=64)


@pytest.fixture(scope="module")
def models():
    images, _ = load_images("digits", "train", size=8, dtype="uint8")
    base = train_base(images[:128], CONFIG, images_seen=256, seed=1)
    synthetic = synthesize(base, 64, CONFIG, seed=2)
    auxes = train_auxiliary(base, synthetic, CONFIG, budgets=[64, 192], seed=3)
    return images[:128], base, synthetic, auxes


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_w_zero_samples_the_base_model_bit_for_bit(models):
    _, base, _, auxes = models
    alone = sims_sample(base, None, 0.0, 20, CONFIG, seed=7)
    assert torch.equal(sims_sample(base, auxes[64], 0.0, 20, CONFIG, seed=7), alone)
    assert alone.dtype == torch.uint8 and alone.shape == (20, 1, 8, 8)
    assert not torch.equal(sims_sample(base, auxes[64], 1.0, 20, CONFIG, seed=7), alone)  # guidance changes them


def test_w_minus_one_samples_the_auxiliary_model_alone(models):
    _, base, _, auxes = models
    assert torch.equal(sims_sample(base, auxes[192], -1.0, 20, CONFIG, seed=7),
                       sims_sample(auxes[192], None, 0.0, 20, CONFIG, seed=7))


def test_snapshots_along_the_budget_equal_separate_fine_tunes_and_leave_the_base_untouched(models):
    _, base, synthetic, auxes = models
    before = {k: v.clone() for k, v in base.net.state_dict().items()}
    alone = train_auxiliary(base, synthetic, CONFIG, budgets=[64], seed=3)[64]
    assert _same_weights(alone.net, auxes[64].net)  # the constant rate makes the first 64 images identical
    assert not _same_weights(auxes[64].net, auxes[192].net)
    assert auxes[192].images_seen == 192 and auxes[64].images_seen == 64
    assert all(torch.equal(before[k], v) for k, v in base.net.state_dict().items())


def test_the_base_model_cache_reuses_only_identical_inputs(models, tmp_path):
    images = models[0]
    first = train_base(images, CONFIG, images_seen=128, seed=4, cache_dir=tmp_path)
    assert first.stats is not None and len(list(tmp_path.glob("base-*.pt"))) == 1
    again = train_base(images, CONFIG, images_seen=128, seed=4, cache_dir=tmp_path)
    assert again.stats is None and _same_weights(first.net, again.net)  # read back, not retrained
    other = train_base(images, SIMSConfig(**{**CONFIG.settings(), "channel_mults": (1, 2), "lr": 1e-3}),
                       images_seen=128, seed=4, cache_dir=tmp_path)
    assert other.stats is not None and not _same_weights(first.net, other.net)
    assert len(list(tmp_path.glob("base-*.pt"))) == 2 and not list(tmp_path.glob("*.tmp*"))


def test_freeze_encoder_trains_only_the_decoder(models):
    _, base, synthetic, _ = models
    aux = train_auxiliary(base, synthetic, CONFIG, budgets=[64], seed=5, trainable=freeze_encoder)[64]
    b, a = base.net.net, aux.net.net
    for part in ("time_mlp", "stem", "down", "middle"):
        assert _same_weights(getattr(b, part), getattr(a, part)), part
    for part in ("up", "out"):
        assert not _same_weights(getattr(b, part), getattr(a, part)), part


def test_grid_is_paired_and_w_zero_is_shared_by_every_budget(models):
    _, base, _, auxes = models
    calls = []
    grid = sims_grid(base, auxes, [0.0, 1.0], 12, CONFIG, lambda im: calls.append(im) or {"mean": float(im.float().mean())},
                     seed=9)
    assert grid["mean"].shape == (2, 2) and len(calls) == 3  # one base chain, one guided chain per budget
    assert grid["mean"][0, 0] == grid["mean"][1, 0]
    assert grid["mean"][1, 1] == float(sims_sample(base, auxes[192], 1.0, 12, CONFIG, seed=9).float().mean())
    assert network_evaluations(CONFIG, guided=True) == 2 * network_evaluations(CONFIG, guided=False) == 14


def test_select_then_report_chooses_on_one_seed_set_and_reads_the_other():
    rng = np.random.default_rng(0)
    select, report = rng.normal(size=(3, 4, 5)), rng.normal(size=(2, 4, 5))
    out = select_then_report(select, report, select_seeds=[0, 1, 2], report_seeds=[10, 11])
    best = min(np.ndindex(4, 5), key=lambda i: select[:, i[0], i[1]].mean())  # brute force
    assert out["index"] == best
    assert out["reported"] == pytest.approx(report[:, best[0], best[1]].mean())
    assert out["selected"] == pytest.approx(select[:, best[0], best[1]].mean())
    with pytest.raises(ValueError, match="disjoint"):
        select_then_report(select, report[:2], select_seeds=[0, 1, 2], report_seeds=[2, 3])


def test_group_shifted_subset_has_the_asked_proportion():
    rng = np.random.default_rng(1)
    images = torch.arange(1000, dtype=torch.uint8).reshape(1000, 1, 1, 1) % 251
    in_group = torch.as_tensor(rng.random(1000) < 0.5)
    picked, flags = group_shifted_subset(images, in_group, 0.3, 400, rng)
    assert picked.shape == (400, 1, 1, 1) and int(flags.sum()) == 120
    with pytest.raises(ValueError, match="larger pool"):
        group_shifted_subset(images, in_group, 1.0, 900, rng)


def test_bad_input_names_the_parameter(models):
    _, base, _, auxes = models
    with pytest.raises(ValueError, match="without an auxiliary model"):
        sims_sample(base, None, 1.0, 4, CONFIG, seed=0)
    with pytest.raises(ValueError, match="synthetic must be uint8"):
        train_auxiliary(base, torch.zeros(4, 1, 8, 8), CONFIG, budgets=[8], seed=0)
    with pytest.raises(ValueError, match="base_channels"):
        SIMSConfig(base_channels=4)


def test_shared_encoder_sampling_equals_two_separate_networks(models):
    _, base, synthetic, _ = models
    aux = train_auxiliary(base, synthetic, CONFIG, budgets=[64], seed=5, trainable=freeze_encoder)[64]
    fused = sims_sample(base, aux, 1.5, 16, CONFIG, seed=3, shared_encoder=True).int()
    plain = sims_sample(base, aux, 1.5, 16, CONFIG, seed=3).int()
    assert (fused - plain).abs().max() <= 1  # the same images up to float rounding of the uint8 quantisation
    with pytest.raises(ValueError, match="freeze_encoder"):
        sims_sample(base, models[3][64], 1.0, 4, CONFIG, seed=0, shared_encoder=True)


def test_network_evaluations_count_heun_steps_and_the_guided_interval():
    n = CONFIG.sample_steps  # 4 steps: 2 + 2 + 2 + 1 evaluations
    assert network_evaluations(CONFIG, guided=False) == 2 * n - 1
    assert network_evaluations(CONFIG, guided=True, guide_from=2) == 7 + 3


# --- the image protocol (issue 26) --------------------------------------------------------------------------------

from madlib.diffusion.training import ema_beta  # noqa: E402
from madlib.methods import sims  # noqa: E402

TINY = SIMSConfig(image_size=8, base_channels=8, channel_mults=(1, 2), sample_steps=3, warmup=0, sample_batch=64,
                  ema_decay=0.99, ema_rampup=0.05)


def _spec(seed, tmp_path, **kw):
    return dict(settings=TINY.settings(), dataset="digits", n_real=100, base_images=64, seed=seed, n_synthetic=40,
                budgets=[32, 64], cache_dir=str(tmp_path), **kw)


def test_every_seed_trains_on_the_one_real_set_and_models_are_cached(tmp_path, monkeypatch):
    seen = []
    real_train = sims.train_base

    def spy(images, config, **kw):
        seen.append(images.clone())
        return real_train(images, config, **kw)

    monkeypatch.setattr(sims, "train_base", spy)
    base0, aux0 = sims.models(_spec(0, tmp_path))
    sims.models(_spec(1, tmp_path))
    assert torch.equal(seen[0], seen[1]) and len(seen[0]) == 100  # the same D for every seed: seeds vary training only
    again, aux_again = sims.models(_spec(0, tmp_path))
    assert again.stats is None and _same_weights(again.net, base0.net)  # read back from the cache
    assert all(_same_weights(aux_again[b].net, aux0[b].net) for b in (32, 64))
    assert aux_again[64].key == aux0[64].key and aux0[32].key != aux0[64].key
    polluted = sims.base_model(_spec(0, tmp_path, pollution=0.5))  # SIMS-3's G2: D plus 50 samples of G1
    assert len(seen[-1]) == 150 and torch.equal(seen[-1][:100], seen[0]) and polluted.key != base0.key


def test_spec_is_checked_before_any_compute(tmp_path):
    with pytest.raises(ValueError, match="missing \\['seed'\\]"):
        sims.check_spec({k: v for k, v in _spec(0, tmp_path).items() if k != "seed"})
    with pytest.raises(ValueError, match="unknown \\['budget'\\]"):
        sims.check_spec({**_spec(0, tmp_path), "budget": 3})
    with pytest.raises(ValueError, match="trainable"):
        sims.check_spec(_spec(0, tmp_path, trainable="encoder"))
    with pytest.raises(ValueError, match="synthetic_pool"):
        sims.check_spec(_spec(0, tmp_path, synthetic_pool=10))


def test_a_conditional_chain_samples_balanced_classes_and_the_shared_encoder_agrees(tmp_path):
    config = SIMSConfig(**{**TINY.settings(), "num_classes": 10})
    spec = {**_spec(0, tmp_path), "settings": config.settings(), "budgets": [64]}
    base, auxes = sims.models(spec)
    assert base.net.num_classes == 10
    assert torch.equal(sims.balanced_labels(12, config), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]))
    from madlib.diffusion import core

    direct = core.sample(base.net, 20, seed=5, image_shape=config.image_shape(), labels=sims.balanced_labels(20, config),
                         sigmas=config.sigmas())
    assert torch.equal(sims.sims_sample(base, None, 0.0, 20, config, seed=5), direct)
    _, dec = sims.models({**spec, "trainable": "decoder"})
    shared = sims.sims_sample(base, dec[64], 1.0, 20, config, seed=5, shared_encoder=True)
    separate = sims.sims_sample(base, dec[64], 1.0, 20, config, seed=5)
    assert (shared.int() - separate.int()).abs().max() <= 1  # one encoder pass, the same denoiser up to rounding
    with pytest.raises(ValueError, match="labels must give a class label"):
        train_base(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), config, images_seen=4, seed=0)


class _Scale(torch.nn.Module):
    """A 'denoiser' D(x) = c x: the alignment's closed form is known."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x, sigma, y=None):
        return self.c * x


def test_denoiser_alignment_matches_a_closed_form():
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    base, aux = sims.SIMSModel(_Scale(0.8), 0, None), sims.SIMSModel(_Scale(0.9), 0, None)
    out = sims.denoiser_alignment(base, aux, images, [0.5, 2.0], seed=3)
    x0 = images.double() / 127.5 - 1
    g = torch.Generator().manual_seed(3)
    for k, sigma in enumerate([0.5, 2.0]):
        x = x0 + sigma * torch.randn(x0.shape, generator=g).double()
        e, d = (0.8 * x - x0).flatten(1), (-0.1 * x).flatten(1)
        w = float(-(e * d).sum() / (d * d).sum())
        np.testing.assert_allclose(out["w_star"][k], w, rtol=1e-4)
        np.testing.assert_allclose(out["cosine"][k], float(torch.nn.functional.cosine_similarity(e, d).mean()), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out["mse_reduction"][k], float(1 - ((e + w * d) ** 2).sum() / (e * e).sum()), rtol=1e-4, atol=1e-6)
    # at large sigma the ideal denoiser is near 0: the base (0.8 x) shrinks too little, its error points along +x;
    # the auxiliary model (0.9 x) shrinks even less, so d = -0.1 x points against the error and w > 0 helps
    assert out["cosine"][1] < 0 and out["w_star"][1] > 0


def test_choose_cell_reads_only_guided_cells():
    fid = np.array([[[1.0, 5.0, 4.0], [0.5, 5.0, 3.0]], [[1.0, 5.0, 4.2], [0.5, 5.0, 2.8]]])  # [S, B, W]; w = -1 is best, never chosen
    assert sims.choose_cell(fid, [10, 20], [-1.0, 0.0, 1.0]) == (20, 1.0)
    with pytest.raises(ValueError, match="w > 0|weight > 0"):
        sims.choose_cell(fid, [10, 20], [-1.0, 0.0, -0.5])
    with pytest.raises(ValueError, match="fid must be"):
        sims.choose_cell(fid, [10], [-1.0, 0.0, 1.0])


def test_ema_ramp_up_follows_edm_and_keeps_old_cache_keys():
    assert ema_beta(1, 0.999, 0.05) == 0.5 ** 20 and ema_beta(10**6, 0.999, 0.05) == 0.999
    assert ema_beta(40, 0.999, 0.0) == 0.999
    np.testing.assert_allclose(0.5 ** (1 / (0.05 * 1000)), ema_beta(1000, 0.9999, 0.05))  # half-life 50 steps = 5% of 1000
    assert "ema_rampup" not in SIMSConfig().settings() and SIMSConfig(ema_rampup=0.05).settings()["ema_rampup"] == 0.05
    with pytest.raises(ValueError, match="ema_rampup"):
        SIMSConfig(ema_rampup=-1)


def test_run_groups_reads_each_group_on_the_same_count_at_every_w(tmp_path):
    from madlib.metrics import predicted_classes
    from madlib.metrics.images import HeldOutMetrics, reference_protocol

    spec = {**_spec(0, tmp_path), "n_synthetic": 20, "budgets": [64], "shift": {"group": [0, 1, 2, 3, 4], "share": 0.3, "n_pool": 200}}
    out = sims.run_groups(spec=spec, ws=[0.0, 1.0], n=40, latent_seed=9, group=[0, 1, 2, 3, 4], per_group=6, keep=40)
    protocol, lenet, _ = reference_protocol("digits", 8, 100, None, "cpu", 5)
    in_ref = torch.isin(protocol.reference_labels, torch.arange(5))
    held = HeldOutMetrics(protocol.reference[in_ref], lenet)
    for j, w in enumerate(["0", "1"]):
        images, inside = (torch.as_tensor(x) for x in out["images"][w])
        assert torch.equal(inside.bool(), torch.isin(predicted_classes(images, lenet), torch.arange(5)))
        assert out["count"]["group"][j] == int(inside.sum()) and out["share"][j] == pytest.approx(inside.double().mean().item())
        if inside.sum() >= 6:  # the first 6 of the group, recomputed independently; fewer reads NaN, never a smaller set
            assert out["kid"]["group"][j] == pytest.approx(held.protocol(images[inside.bool()][:6])["kid"], rel=1e-6, abs=1e-9)
        else:
            assert np.isnan(out["kid"]["group"][j])
    assert out["auxiliary_set_share"] == pytest.approx(0.3)  # 6 of 20 in the group, by the same classifier


def test_lr_decay_reaches_the_trainer_and_keeps_old_cache_keys(monkeypatch):
    from madlib.diffusion import core

    assert "lr_decay" not in SIMSConfig().settings() and SIMSConfig(lr_decay="cosine").settings()["lr_decay"] == "cosine"
    with pytest.raises(ValueError, match="lr_decay"):
        SIMSConfig(lr_decay="step")
    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop")

    monkeypatch.setattr(core, "train_ensemble", fake)
    with pytest.raises(RuntimeError, match="stop"):
        core.train(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), SIMSConfig(image_size=8, base_channels=8, lr_decay="cosine"),
                   images_seen=8, seed=0)
    assert seen["lr_decay"] == "cosine"


def test_the_plateau_control_fine_tunes_on_the_real_set_with_its_labels(tmp_path, monkeypatch):
    config = SIMSConfig(**{**TINY.settings(), "num_classes": 10})
    spec = {**_spec(0, tmp_path), "settings": config.settings(), "budgets": [64]}
    seen = {}
    real_fit = sims.train_auxiliary

    def spy(base, data, config, **kw):
        seen["data"], seen["labels"] = data.clone(), kw.get("labels")
        return real_fit(base, data, config, **kw)

    monkeypatch.setattr(sims, "train_auxiliary", spy)
    real, labels = sims._protocol(sims.check_spec(spec))[0].first(100)
    read = sims.run_plateau(spec=spec, images=64, n=30, latent_seed=3)
    assert torch.equal(seen["data"], real) and torch.equal(seen["labels"], labels)  # D itself, each image with its class
    _, synthetic, _ = sims.chain(spec)
    assert torch.equal(seen["data"], synthetic) and not torch.equal(synthetic, real)  # S, not D, for SIMS
    assert seen["labels"] is None  # S takes balanced_labels inside train_auxiliary
    cells = sims.run_cells(spec=spec, cells=[], n=30, latent_seed=3)
    assert read["base"] == cells["base"]  # the same base on the same latents: a paired control
    assert read["continued"] != read["base"]
    with pytest.raises(ValueError, match="auxiliary_data must be one of"):
        sims.check_spec({**spec, "auxiliary_data": "noise"})
    with pytest.raises(ValueError, match="takes no shift"):
        sims.check_spec({**spec, "auxiliary_data": "real", "shift": {"group": [0], "share": 0.5, "n_pool": 100}})


def test_the_base_bar_passes_near_the_floor_or_at_the_plateau_only():
    floor = 2.0
    near = sims.base_bar([2.8, 3.0, 3.1], floor)  # mean 2.97 <= 3.0
    assert near["met"] and near["measured"]["near_floor"]
    far = sims.base_bar([3.5, 4.0, 4.5], floor)  # 2x the floor, no control
    assert not far["met"]
    # the same base, once at its plateau (more real training removes 5% of the excess), once still improving (50%)
    plateau = sims.base_bar([3.5, 4.0, 4.5], floor, continued_fid=[3.4, 3.9, 4.4])
    assert plateau["met"] and plateau["measured"]["at_plateau"]
    np.testing.assert_allclose(plateau["measured"]["excess_removed_by_more_training"], [0.1 / 1.5, 0.1 / 2.0, 0.1 / 2.5])
    improving = sims.base_bar([3.5, 4.0, 4.5], floor, continued_fid=[2.75, 3.0, 3.25])
    assert not improving["met"] and not improving["measured"]["at_plateau"]
    from madlib.figures import Precondition

    assert Precondition(**improving).met is False
    with pytest.raises(ValueError, match="continued_fid must hold one FID per seed"):
        sims.base_bar([3.5, 4.0], floor, continued_fid=[3.4])
