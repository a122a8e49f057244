"""ReDiFine's Chain of Diffusion (madlib.methods.redifine): Eq. 1 fine-tunes from M_0, the unconditional branch
without condition dropout, the CFG schedule's end points, one image per prompt, the M_0 cache, the trait fit; the
claim readouts and preconditions the ReDiFine figures share (the blank cap, blank shares, the M_0 and iteration-1
bars, image readouts) against constructed cases with known answers."""

import math

import numpy as np
import pytest
import torch

from madlib.diffusion.guidance import cfg_scale_from_w, guided_prediction
from madlib.diffusion.samplers import euler_ancestral_sampler
from madlib.diffusion.schedules import edm_sigma_steps
from madlib.metrics import collapse_rate, image_metrics, lenet_features, load_lenet
from madlib.figures import FigureRecord
from madlib.methods.redifine import (NUM_ATTRIBUTE_PROMPTS, AttributePromptNet, BranchedDenoiser, ChainResult, ChainSetting,
                                     attribute_cuts, attribute_prompts, balanced_subset, below_cap, blank_cap,
                                     blank_share, calibrate_cfg_axis, calibrated_high_cfg, calibration_bar, cfg_fid_sweep, cfg_schedule, chain_of_diffusion,
                                     collapses, fid_auc, finetune_from_m0, fit_truncation_ratios,
                                     generate_one_per_prompt, guidance_decomposition, image_attributes,
                                     iteration_one_bar, iteration_one_sweep, m0_bar, m0_quality, pretrain_m0,
                                     prompt_classes, restyle, seed_readouts, weights_digest, white_share)
from madlib.theory.traits import trait_recursion

TINY = dict(dataset="digits", image_size=8, base_channels=8, images_seen=256, batch_size=32, warmup=0)


@pytest.fixture(scope="module")
def m0(tmp_path_factory):
    return pretrain_m0(**TINY, cache_dir=tmp_path_factory.mktemp("m0"))


@pytest.fixture(scope="module")
def d0():
    images, labels, _ = balanced_subset("digits", 20, image_size=8, seed=3)
    return images, labels


@pytest.fixture(scope="module")
def lenet():
    return load_lenet("tiny")


def _sampled_scales(weight, steps):
    """The CFG scales 1 + w_i a real sampler asks the schedule for, in step order."""
    seen = []
    logged = lambda i, n: seen.append(weight(i, n)) or seen[-1]  # noqa: E731
    denoise = lambda x, s: x / (1 + s**2)  # noqa: E731
    guide = lambda x, s: 0.5 * x / (1 + s**2)  # noqa: E731
    euler_ancestral_sampler(denoise, torch.randn(1, 3, 1, 2, 2), edm_sigma_steps(steps), guide=guide, weight=logged,
                            generator=torch.Generator().manual_seed(0))
    return np.array([cfg_scale_from_w(w) for w in seen])


def test_redifine_cfg_schedule_is_s0_at_the_first_step_and_s0_exp_minus_alpha_at_the_last():
    scales = _sampled_scales(cfg_schedule("exponential", s0=7.5, alpha=2.0), steps=30)
    assert len(scales) == 30  # one weight per sampling step
    assert scales[0] == pytest.approx(7.5) and scales[-1] == pytest.approx(7.5 * math.exp(-2.0))
    np.testing.assert_allclose(scales, 7.5 * np.exp(-2.0 * np.arange(30) / 29))  # s = s0 exp(-alpha t / T)
    linear = _sampled_scales(cfg_schedule("linear", s0=7.5, alpha=2.0), steps=30)
    assert linear[0] == pytest.approx(7.5) and linear[-1] == pytest.approx(7.5 * math.exp(-2.0))
    np.testing.assert_allclose(np.diff(linear), np.diff(linear)[0])
    np.testing.assert_allclose(_sampled_scales(cfg_schedule("constant", cfg_scale=2.5), steps=12), 2.5)


def test_cfg_scale_is_the_papers_eq_4():
    # ReDiFine Eq. 4: total = uncond + CFG (cond - uncond); CFG 1 is the conditional model bit for bit
    cond, uncond = torch.randn(1, 4, 1, 3, 3), torch.randn(1, 4, 1, 3, 3)
    for scale in (1.0, 2.5, 7.5):
        out = guided_prediction(lambda x, t: cond, lambda x, t: uncond, cfg_schedule(cfg_scale=scale), 0, 30, None, 0)
        torch.testing.assert_close(out, uncond + scale * (cond - uncond))
    assert torch.equal(guided_prediction(lambda x, t: cond, lambda x, t: uncond, cfg_schedule(cfg_scale=1.0), 0, 30,
                                         None, 0), cond)
    with pytest.raises(ValueError, match="schedule must be one of"):
        cfg_schedule("cosine")


def test_every_iteration_fine_tunes_from_m0_unless_continual(m0, d0, lenet):
    images, labels = d0
    before = weights_digest(m0.net)
    kw = dict(lenet=lenet, iterations=3, epochs=2.0, batch_size=10, steps=4, seed=1)
    chain = chain_of_diffusion(m0.net, images, labels, **kw)
    assert chain.start_digest == [before] * 3  # Eq. 1: M_{k+1} = Finetune(M_0, D_k)
    assert len(set(chain.end_digest)) == 3 and before not in chain.end_digest
    continual = chain_of_diffusion(m0.net, images, labels, continual=True, **kw)
    assert continual.start_digest[0] == before
    assert continual.start_digest[1:] == continual.end_digest[:-1]  # M_{k+1} = Finetune(M_k, D_k)
    full = chain_of_diffusion(m0.net, images, labels, method="full", **kw)
    assert full.start_digest == [before] * 3
    assert weights_digest(m0.net) == before  # M_0 itself never changes


def test_condition_dropout_zero_leaves_the_unconditional_branch_untouched(m0, d0):
    images, labels = d0
    x = torch.randn(1, 6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    sigma = torch.full((1, 6), 1.3)
    reference = m0.net(x, sigma, None)
    y = torch.arange(6)[None]
    for method in ("lora", "full"):
        tuned = finetune_from_m0(m0.net, images, labels, method=method, cond_dropout=0.0, untrained_uncond="m0",
                                 epochs=3.0, batch_size=10, lr=1e-2, seed=0)
        assert torch.equal(tuned.net(x, sigma, None), reference)  # the unconditional branch is M_0's exactly
        assert not torch.allclose(tuned.net(x, sigma, y), m0.net(x, sigma, y))  # the conditional one learnt
        # a mixed batch answers the no-label rows with M_0 and the labelled rows with the fine-tuned network
        mixed = y.clone()
        mixed[0, ::2] = 10
        out = tuned.net(x, sigma, mixed)
        assert torch.equal(out[0, ::2], reference[0, ::2])
        torch.testing.assert_close(out[0, 1::2], tuned.tuned(x, sigma, y)[0, 1::2])
    # full fine-tuning without dropout: the no-label embedding row gets no update; with dropout it learns
    rows = {}
    for p in (0.0, 0.5):
        tuned = finetune_from_m0(m0.net, images, labels, method="full", cond_dropout=p, untrained_uncond="shared",
                                 epochs=3.0, batch_size=10, lr=1e-2, seed=0)
        rows[p] = tuned.tuned.net.class_emb.weight[10]
    assert torch.equal(rows[0.0], m0.net.net.class_emb.weight[10])
    assert not torch.equal(rows[0.5], m0.net.net.class_emb.weight[10])
    # with condition dropout the (shared) LoRA adapter trains the unconditional branch too
    tuned = finetune_from_m0(m0.net, images, labels, cond_dropout=0.5, epochs=3.0, batch_size=10, lr=1e-2, seed=0)
    assert not isinstance(tuned.net, BranchedDenoiser)
    assert not torch.allclose(tuned.net(x, sigma, None), reference)


def test_one_image_per_prompt_and_the_same_seed_gives_the_same_images(m0, d0, lenet):
    images, labels = d0
    prompts = torch.tensor([3, 3, 1, 7, 0])
    a, norms = generate_one_per_prompt(m0.net, prompts, steps=5, seed=4, sample_batch=2, diff_norms=True)
    b, _ = generate_one_per_prompt(m0.net, prompts, steps=5, seed=4, sample_batch=2)
    assert a.shape == (5, 1, 8, 8) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert norms.shape == (5,) and np.all(norms > 0)
    chain = chain_of_diffusion(m0.net, images, labels, lenet=lenet, iterations=2, epochs=1.0, batch_size=10, steps=4,
                               real_mix=0.5, seed=0)
    assert [len(s) for s in chain.sets] == [len(labels)] * 3  # |D_k| = |P| every iteration
    assert chain.collapse_rate == pytest.approx(collapse_rate(chain.fid))  # Eq. 3
    assert chain.phenotype.shape == (3, len(labels)) and chain.diff_norm.shape == (2, 4)
    np.testing.assert_allclose(chain.histogram.sum(1) * 8, 1.0)  # densities over 32 bins of width 8


def test_chains_run_as_sweep_cells_in_two_lanes_give_this_processs_numbers_and_resume(m0, d0, lenet, tmp_path, monkeypatch):
    # issue 28, item 8: chain_cell rebuilds M_0 (cache), D_0 and the LeNet from plain arguments in a one-thread lane
    import madlib.methods.redifine as redifine

    images, labels = d0
    spec = dict(device="cpu", lenet="tiny", m0=TINY | dict(cache_dir=str(m0.path.parent)),
                d0=dict(dataset="digits", n=20, image_size=8, seed=3), chain=dict(iterations=2, epochs=1.0, batch_size=10, steps=4))
    fields = dict.fromkeys(ChainSetting.__dataclass_fields__)
    setting = ChainSetting(**fields | dict(lenet=lenet, m0=m0, d0=images, prompts=labels, codes=labels,
                                           chain=spec["chain"] | dict(lenet=lenet), spec=spec))
    runs = {"cfg 1": dict(seed=0, cfg_scale=1.0), "cfg 3, drop": dict(seed=1, cfg_scale=3.0, cond_dropout=0.2),
            "cfg 1 again": dict(cfg_scale=1.0, seed=0)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the lanes' thread count: the same reduction order
    try:
        here = {name: setting.run(**kw) for name, kw in runs.items()}  # this process, M_0 and D_0 as given
    finally:
        torch.set_num_threads(threads)
    lanes = setting.run_all(runs, lanes=2, result_dir=tmp_path)
    for name in runs:
        assert [torch.equal(a, b) for a, b in zip(here[name].sets, lanes[name].sets)] == [True] * 3
        np.testing.assert_array_equal(here[name].fid, lanes[name].fid)
        assert here[name].start_digest == lanes[name].start_digest and lanes[name].seconds_total > 0
    assert not torch.equal(here["cfg 1"].sets[1], here["cfg 3, drop"].sets[1])  # the runs' settings reached the cells
    assert lanes["cfg 1 again"] is lanes["cfg 1"]  # equal runs ran once
    assert len(list(tmp_path.glob("*.npz"))) == 2
    # an interrupted figure resumes: the stored chains are read back, none is run again
    monkeypatch.setattr(redifine, "chain_of_diffusion", lambda *a, **k: pytest.fail("a stored chain ran again"))
    again = setting.run_all(runs, result_dir=tmp_path)
    for name in runs:
        np.testing.assert_array_equal(again[name].fid, lanes[name].fid)
        assert [torch.equal(a, b) for a, b in zip(again[name].sets, lanes[name].sets)] == [True] * 3
    hand_made = ChainSetting(**fields | dict(m0=m0, d0=images, codes=labels, chain=setting.chain, spec={}))
    with pytest.raises(ValueError, match="no spec"):
        hand_made.run_all(runs, lanes=2)


def test_m0_is_cached_by_its_settings(m0, tmp_path):
    assert m0.path.exists() and not m0.cached
    again = pretrain_m0(**TINY, cache_dir=m0.path.parent)
    assert again.cached and weights_digest(again.net) == weights_digest(m0.net)
    other = pretrain_m0(**(TINY | {"images_seen": 128}), cache_dir=tmp_path)
    assert other.path != m0.path and weights_digest(other.net) != weights_digest(m0.net)
    with pytest.raises(ValueError, match="label_dropout"):
        pretrain_m0(**TINY, label_dropout=0.0, use_cache=False)


def test_trait_fit_recovers_the_direction_and_trajectory_of_a_known_truncation():
    for pair in ((0.95, 0.0002), (0.025, 0.675), (0.5, 0.09)):
        truth = trait_recursion(pair, 6, mu0=0.0, sigma_G0=1.0, sigma_E=4.46).mean
        fit = fit_truncation_ratios(truth, sigma_E=4.46)
        assert fit.rmse < 0.02 * max(1.0, np.abs(truth).max())
        assert np.sign(fit.r1 - fit.r2) == np.sign(pair[0] - pair[1])
    with pytest.raises(ValueError, match="measured_mean"):
        fit_truncation_ratios([0.0])


# ------------------------------------------------------------------ claim readouts and preconditions
def _chain(sets, fid) -> ChainResult:
    """A ChainResult holding only what the readouts read: D_0..D_K ``sets`` and FID_1..FID_K ``fid``."""
    K, n = len(sets) - 1, len(sets[0])
    return ChainResult(fid=np.asarray(fid, float), accuracy=np.zeros(K), collapse_rate=0.0, sets=list(sets),
                       prompts=torch.zeros(n, dtype=torch.long), diff_norm=np.zeros((K, 2)),
                       phenotype=np.zeros((K + 1, n)), radial=np.ones((K + 1, 2)), radial_freq=np.ones(2),
                       histogram=np.zeros((K + 1, 32)), start_digest=[], end_digest=[], seconds={})


def _noise(n, seed=0, size=8):
    return torch.as_tensor(np.random.default_rng(seed).integers(0, 256, (n, 1, size, size)), dtype=torch.uint8)


def _half_blank(n, value=255, seed=0):
    """n images, the first half (n // 2) constant ``value``, the rest noise."""
    images = _noise(n, seed)
    images[: n // 2] = value
    return images


def test_blank_share_counts_images_without_spread():
    images = _noise(10, seed=1)
    images[0], images[1], images[2] = 0, 128, 255  # constant images
    images[3] = 40
    images[3, 0, 0, 0] = 41  # one grey level in one pixel: sd 0.125, still blank
    sd = images.numpy().reshape(10, -1).astype(float).std(axis=1, ddof=1)
    assert blank_share(images) == pytest.approx(np.mean(sd < 1)) == pytest.approx(0.4)
    assert blank_share(torch.full((5, 1, 8, 8), 7, dtype=torch.uint8)) == 1.0
    assert blank_share(_noise(5)) == 0.0


def test_blank_cap_is_the_closed_form_fid_of_an_all_white_set(d0, lenet):
    images, labels = d0
    cap = blank_cap(images, labels, lenet)
    # every all-white image has the same features: its covariance is 0, so FID = |mu_white - mu_0|^2 + tr(S_0)
    white = lenet_features(torch.full_like(images, 255), lenet).double().numpy()
    real = lenet_features(images, lenet).double().numpy()
    expected = np.sum((white.mean(0) - real.mean(0)) ** 2) + np.trace(np.cov(real, rowvar=False))
    assert np.allclose(white, white[0], atol=1e-5)
    assert cap == pytest.approx(expected, rel=1e-3)
    # a chain whose D_K is the all-white set reads the cap: at the cap by its FID and by its blank share
    chain = _chain([images, images, torch.full_like(images, 255)], [5.0, cap])
    assert chain.blank_shares().tolist() == [0.0, 0.0, 1.0]
    assert chain.at_cap(cap).tolist() == [False, True]
    assert chain.at_cap(10 * cap).tolist() == [False, True]  # blank, whatever the cap


def test_at_cap_reads_fid_within_tol_of_the_cap_or_half_the_images_blank():
    four_of_nine = torch.cat([torch.zeros(4, 1, 8, 8, dtype=torch.uint8), _noise(5, 9)])
    sets = [_noise(10, s) for s in range(4)] + [_half_blank(10), four_of_nine]
    chain = _chain(sets[:5], [10.0, 97.9, 98.0, 50.0])  # cap 100: 98 is within 2%, 97.9 not; D_4 half blank
    assert chain.blank_shares().tolist() == [0.0, 0.0, 0.0, 0.0, 0.5]
    assert chain.at_cap(100.0).tolist() == [False, False, True, True]
    assert chain.at_cap(100.0, tol=0.025).tolist() == [False, True, True, True]
    assert chain.at_cap(100.0, blank=0.6).tolist() == [False, False, True, True]  # its blank half is white too
    assert chain.at_cap(100.0, blank=0.6, white=0.6).tolist() == [False, False, True, False]
    short = _chain(sets[:4] + [sets[5]], [10.0, 20.0, 30.0, 40.0])  # 4 of 9 blank: below half
    assert short.at_cap(100.0).tolist() == [False] * 4


def test_readouts_of_known_sets():
    noise = _noise(6, seed=2)
    white = torch.full((6, 1, 8, 8), 255, dtype=torch.uint8)
    checker = torch.as_tensor(((np.add.outer(np.arange(8), np.arange(8)) % 2) * 255).astype(np.uint8))
    checker = checker.expand(6, 1, 8, 8)
    chain = _chain([noise, white, checker], [30.0, 50.0])  # D_1 blank (at the cap), D_2 not
    out = chain.readouts(cap=100.0)
    assert list(out) == ["power_above_0.25", "relative_power", "pixel_sd", "extreme_share", "white_share",
                         "blank_share", "saturated", "at_cap"]
    # power above r = 0.25: a constant image has only DC; a checkerboard of 0 and 1 puts all its non-DC power at the
    # Nyquist corner (r = 0.71), by Parseval sum x^2 - (sum x)^2 / 64 = 32 - 16 = 16
    x = noise.double().numpy()[:, 0] / 255
    f = np.fft.fftshift(np.fft.fft2(x, norm="ortho"), axes=(-2, -1))
    r = np.hypot(*np.meshgrid(np.fft.fftshift(np.fft.fftfreq(8)), np.fft.fftshift(np.fft.fftfreq(8)), indexing="ij"))
    noise_power = float(((np.abs(f) ** 2) * (r > 0.25)).sum((-2, -1)).mean())
    np.testing.assert_allclose(out["power_above_0.25"], [noise_power, 0.0, 16.0], rtol=1e-9, atol=1e-9)
    # the checkerboards: 384 pixels, half 0, half 255
    noise_sd = noise.numpy().astype(float).std(ddof=1)
    np.testing.assert_allclose(out["pixel_sd"], [noise_sd, 0.0, 127.5 * np.sqrt(384 / 383)])
    raw = noise.numpy()
    assert out["extreme_share"].tolist() == [float(np.mean((raw <= 7) | (raw >= 248))), 1.0, 1.0]
    assert out["blank_share"].tolist() == [0.0, 1.0, 0.0]
    assert out["white_share"].tolist() == [float(np.mean(raw >= 248)), 1.0, 0.5]
    assert out["saturated"].tolist() == [True, True]  # D_1 blank (and white), D_2 half white
    assert out["at_cap"].tolist() == [True, True]
    assert "at_cap" not in chain.readouts()
    # over seeds: rows are the chains, seeds leading
    other = _chain([noise, noise, white], [30.0, 40.0])
    stacked = seed_readouts([chain, other], cap=100.0)
    assert stacked["pixel_sd"].shape == (2, 3) and stacked["at_cap"].shape == (2, 2)
    for key, value in other.readouts(cap=100.0).items():
        np.testing.assert_array_equal(stacked[key][1], value)


def test_m0_quality_is_m0s_cfg_1_samples_against_its_held_out_split(m0, lenet):
    _, prompts, _ = balanced_subset("digits", 20, image_size=8, seed=5)
    samples, metrics, floor = m0_quality(m0.net, prompts, lenet, dataset="digits", image_size=8, steps=4, seed=2, n=30)
    again, _ = generate_one_per_prompt(m0.net, prompts, weight=cfg_schedule(cfg_scale=1.0), steps=4, seed=2)
    assert torch.equal(samples, again)
    from madlib.data import load_images

    test, test_labels = load_images("digits", "test", size=8, dtype="uint8")
    assert metrics == image_metrics(samples, prompts, test, test_labels, lenet)
    assert floor["n_fake"] == 30 and floor["n_real"] == len(test_labels)


def test_m0_bar_is_met_by_an_accurate_model_near_its_floor():
    floor = {"fid": 3.0}
    ok = m0_bar({"accuracy": 0.85, "fid": 6.0}, floor)  # both edges count as met
    assert ok.met and ok.name == "M0 bar"
    assert ok.measured == {"accuracy": 0.85, "fid": 6.0, "accuracy_min": 0.85, "fid_max": 6.0}
    assert ok.requirement == ("M0's CFG-1 samples: accuracy >= 0.85 and FID <= 2 x the real-vs-real floor on its "
                              "held-out split")
    assert not m0_bar({"accuracy": 0.84, "fid": 4.0}, floor).met
    assert not m0_bar({"accuracy": 0.99, "fid": 6.01}, floor).met
    assert m0_bar({"accuracy": 0.8, "fid": 8.0}, floor, accuracy_min=0.75, fid_factor=3).met


def test_iteration_one_bar_reads_fid_1_or_its_mean_over_seeds():
    one = iteration_one_bar("baseline", 9.0, 3.0)
    assert one.met and one.name == "iteration-1 bar (baseline)" and one.measured == {"fid_1": 9.0, "floor": 3.0}
    assert one.requirement == "FID_1 <= 3 x the real-vs-real floor (9.0): the first fine-tune is a usable model"
    assert not iteration_one_bar("baseline", 9.01, 3.0).met
    seeds = iteration_one_bar("best", np.array([7.0, 11.0]), 3.0)  # mean 9: met, though one seed is above the bar
    assert seeds.met and seeds.requirement.startswith("mean over seeds of FID_1 <= 3 x")
    assert not iteration_one_bar("best", np.array([9.0, 11.0]), 3.0).met
    assert not iteration_one_bar("best", 9.0, 3.0, k=2).met


def test_below_cap_fails_when_any_seed_reaches_the_cap():
    sets = [_noise(10, s) for s in range(3)]
    low, high = _chain(sets, [10.0, 20.0]), _chain(sets, [30.0, 99.0])
    blank = _chain(sets[:2] + [_half_blank(10)], [10.0, 20.0])
    one = below_cap("baseline", low, 100.0)
    assert one.met and one.name == "below the blank cap (baseline)"
    assert one.requirement.startswith("no D_k (k = 1..K) within 2% of the blank cap (FID 100.0, an all-white set")
    white = max(float(np.mean(x.numpy() >= 248)) for x in sets[1:])
    assert one.measured == {"fid_max": 20.0, "blank_share_max": 0.0, "white_share_max": white, "cap": 100.0}
    seeds = below_cap("best", [low, high], 100.0)
    assert not seeds.met and "of any seed within 2%" in seeds.requirement
    assert seeds.measured["fid_max"] == 99.0
    assert not below_cap("x", blank, 100.0).met and below_cap("x", blank, 100.0).measured["blank_share_max"] == 0.5
    assert below_cap("x", [low, high], 100.0, tol=0.005).met


def test_collapses_needs_a_positive_rate_in_every_seed():
    assert collapses("baseline", 0.3).met and not collapses("baseline", 0.0).met
    seeds = collapses("baseline", np.array([0.5, -0.1]))
    assert not seeds.met and seeds.name == "baseline collapses" and "in every seed" in seeds.requirement
    assert collapses("baseline", np.array([0.5, 0.1])).met


# ------------------------------------------------------------------ issue 28: readouts that can show the effects
def test_white_pixels_and_saturated_sets_are_detected_on_the_images():
    noise = _noise(10, seed=4)
    half_white = noise.clone()
    half_white[:, :, :4] = 255  # rows 0..3 of 8 white: at least half the pixels
    black = torch.zeros(10, 1, 8, 8, dtype=torch.uint8)  # blank, not white
    raw = half_white.numpy()
    assert white_share(half_white) == pytest.approx(np.mean(raw >= 248)) and white_share(half_white) >= 0.5
    assert white_share(black) == 0.0 and white_share(torch.full((3, 1, 8, 8), 248, dtype=torch.uint8)) == 1.0
    chain = _chain([noise, noise, half_white, black], [10.0, 11.0, 12.0])  # FID far below any cap
    assert chain.saturated().tolist() == [False, True, True]
    assert chain.at_cap(1000.0).tolist() == [False, True, True]  # the images decide, not the FID
    assert chain.at_cap(1000.0, white=0.9).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="margin"):
        white_share(noise, margin=-1)


def test_fid_auc_is_the_trapezoid_area_under_fid_k():
    assert fid_auc([1.0, 2.0, 4.0]) == pytest.approx(1.5 + 3.0)
    np.testing.assert_allclose(fid_auc(np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]])), [4.5, 6.0])
    # a chain that starts bad and stays bad: Eq. 3's rate 0, a large area
    flat, rising = np.full(6, 100.0), np.linspace(10.0, 60.0, 6)
    assert collapse_rate(flat) == 0.0 < collapse_rate(rising) and fid_auc(flat) > fid_auc(rising)
    assert _chain([_noise(4)] * 3, [2.0, 6.0]).fid_auc == pytest.approx(4.0)
    with pytest.raises(ValueError, match="fid must be"):
        fid_auc([1.0])


def test_a_claim_decided_by_the_fid_cap_reads_not_testable():
    sets = [_noise(10, s) for s in range(3)]
    capped = [_chain(sets, [20.0, 99.0]), _chain(sets, [25.0, 99.5])]  # FID_K within 2% of the cap 100
    rates = np.array([c.fid[-1] - c.fid[0] for c in capped])
    record = FigureRecord("t", ["RDF-4"], "custom", {}, 0, {})
    decided = record.compare("capped", "collapses", source="test", quantity="rate", values=rates, direction="greater",
                             margin=0.0, preconditions=[below_cap("baseline", capped, 100.0)])
    assert decided.level == "not testable" and not decided.preconditions[0]["met"]
    # the same numbers on a chain below the cap read from the interval (two seeds, both far above 0: held)
    free = record.compare("free", "collapses", source="test", quantity="rate", values=rates, direction="greater",
                          margin=0.0, preconditions=[below_cap("baseline", capped, 1000.0)])
    assert free.level == "held"
    # a blank D_K with an FID far below the cap is caught by its images
    blank = _chain(sets[:2] + [torch.zeros(10, 1, 8, 8, dtype=torch.uint8)], [20.0, 40.0])
    assert not below_cap("baseline", blank, 1000.0).met


class _Constructed(torch.nn.Module):
    """D(x; sigma, y) = x / 2 + sigma (c + e_y) for a label y, x / 2 for none: d = eps_c - eps_u = -(c + e_y) exactly."""

    num_classes = 3

    def __init__(self, c, e):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.c, self.e = c, e  # [1, 4, 4], [3, 1, 4, 4]

    def forward(self, x, sigma, y=None):
        out = x / 2
        if y is None:
            return out
        shift = self.c + self.e[y.clamp(max=2)]  # [1, B, 1, 4, 4]
        return torch.where((y < 3)[..., None, None, None], out + sigma[..., None, None, None] * shift, out)


def test_guidance_decomposition_splits_a_known_difference_into_style_and_prompt():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(1, 4, 4, generator=g, dtype=torch.float64).float()
    e = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64).float()
    e = e - e.mean(0)  # zero mean over the prompts: e is the prompt part, c the style part
    images = _noise(5, seed=1, size=4)
    out = guidance_decomposition(_Constructed(c, e), images, torch.arange(3), sigmas=(0.5, 2.0), seed=3)
    style, prompt = float((c**2).sum()), float((e**2).sum((1, 2, 3)).mean())
    np.testing.assert_allclose(out["style_sq"], style, rtol=1e-5)
    np.testing.assert_allclose(out["prompt_sq"], prompt, rtol=1e-5)
    np.testing.assert_allclose(out["total_sq"], style + prompt, rtol=1e-5)
    np.testing.assert_allclose(out["style_share"], style / (style + prompt), rtol=1e-5)
    norms = (c + e).flatten(1).norm(dim=1).double().mean()
    np.testing.assert_allclose(out["mean_norm"], float(norms), rtol=1e-5)
    assert out["sigma"].tolist() == [0.5, 2.0]
    with pytest.raises(ValueError, match="prompts"):
        guidance_decomposition(_Constructed(c, e), images, torch.tensor([1]))


def test_shared_branch_changes_the_no_label_pass_and_the_frozen_one_is_m0(m0, d0):
    images, labels = d0
    x = torch.randn(1, 6, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    sigma = torch.full((1, 6), 0.8)
    reference = m0.net(x, sigma, None)
    kw = dict(cond_dropout=0.0, epochs=3.0, batch_size=10, lr=1e-2, seed=0)
    shared = finetune_from_m0(m0.net, images, labels, **kw)  # the default: the adapter is active on the empty label
    assert not isinstance(shared.net, BranchedDenoiser)
    assert (shared.net(x, sigma, None) - reference).abs().max() > 1e-4
    frozen = finetune_from_m0(m0.net, images, labels, untrained_uncond="m0", **kw)
    assert torch.equal(frozen.net(x, sigma, None), reference)  # bit for bit
    # the frozen branch differs from the shared one by the style part of the guidance difference only in its uncond
    before = guidance_decomposition(m0.net, images[:6], torch.arange(10), sigmas=(1.0,), seed=0)
    after = guidance_decomposition(shared.net, images[:6], torch.arange(10), sigmas=(1.0,), seed=0)
    for out in (before, after):
        assert 0 <= out["style_share"][0] <= 1
        assert out["total_sq"][0] == pytest.approx(out["style_sq"][0] + out["prompt_sq"][0], rel=1e-9)
    with pytest.raises(ValueError, match="untrained_uncond must be one of"):
        finetune_from_m0(m0.net, images, labels, untrained_uncond="frozen")


def test_calibrated_high_cfg_is_the_largest_cfg_within_the_factor_of_the_best():
    grid, fid = [1.0, 1.5, 2.0, 3.0, 7.5], [10.0, 9.0, 11.0, 12.0, 30.0]
    assert calibrated_high_cfg(grid, fid) == 2.0  # 11 <= 1.25 x 9 = 11.25 < 12
    assert calibrated_high_cfg(grid, fid, factor=1.4) == 3.0
    assert calibrated_high_cfg(grid, fid, factor=1.0) == 1.5
    with pytest.raises(ValueError, match="factor"):
        calibrated_high_cfg(grid, fid, factor=0.9)
    with pytest.raises(ValueError, match="cfg_grid and fid"):
        calibrated_high_cfg(grid, fid[:3])


def test_cfg_sweeps_are_the_samples_of_each_cfg_against_their_reference(m0, d0, lenet):
    images, labels = d0
    sweep = cfg_fid_sweep(m0.net, labels, images, labels, lenet, cfg_grid=[1.0, 3.0], steps=4, seed=2)
    for i, c in enumerate([1.0, 3.0]):
        again, _ = generate_one_per_prompt(m0.net, labels, weight=cfg_schedule(cfg_scale=c), steps=4, seed=2)
        expected = image_metrics(again, labels, images, labels, lenet)
        assert sweep["fid"][i] == pytest.approx(expected["fid"], rel=1e-6)
        assert sweep["accuracy"][i] == pytest.approx(expected["accuracy"])
        assert sweep["white_share"][i] == white_share(again) and sweep["blank_share"][i] == blank_share(again)
    assert sweep["cfg"].tolist() == [1.0, 3.0]
    one = iteration_one_sweep(m0.net, images, labels, lenet, cfg_grid=[1.0, 2.0], steps=4, seed=1, epochs=1.0,
                              batch_size=10)
    assert one["fid"].shape == (2,) and np.all(one["fid"] > 0) and one["finetune_seconds"] > 0
    with pytest.raises(ValueError, match="cfg_grid"):
        cfg_fid_sweep(m0.net, labels, images, labels, lenet, cfg_grid=[], steps=4)


def test_calibrate_cfg_axis_runs_both_sweeps_and_applies_the_baseline_rule(m0, d0, lenet):
    images, labels = d0
    kw = dict(cfg_grid=[1.0, 3.0], steps=4, seed=1, epochs=1.0, batch_size=10)
    cal = calibrate_cfg_axis(m0.net, images, labels, lenet, m0_dataset="digits", factor=1.5, **kw)
    assert cal["grid"] == [1.0, 3.0] and cal["rule"] == "calibrated" and cal["factor"] == 1.5
    one = iteration_one_sweep(m0.net, images, labels, lenet, **kw)  # the same fine-tune and latents: the same FID_1
    np.testing.assert_allclose(cal["iteration_1"]["fid"], one["fid"], rtol=1e-6)
    assert cal["baseline_cfg"] == calibrated_high_cfg([1.0, 3.0], cal["iteration_1"]["fid"], 1.5)
    from madlib.data import load_images

    reference, reference_labels = load_images("digits", "test", size=8, dtype="uint8")
    m0_sweep = cfg_fid_sweep(m0.net, labels, reference, reference_labels, lenet, cfg_grid=[1.0, 3.0], steps=4, seed=1)
    np.testing.assert_allclose(cal["m0"]["fid"], m0_sweep["fid"], rtol=1e-6)
    fixed = calibrate_cfg_axis(m0.net, images, labels, lenet, baseline="fixed", baseline_cfg=7.5, **kw)
    assert fixed["baseline_cfg"] == 7.5 and fixed["m0"] is None and fixed["rule"] == "fixed"
    with pytest.raises(ValueError, match="baseline must be one of"):
        calibrate_cfg_axis(m0.net, images, labels, lenet, baseline="paper", **kw)


def test_calibration_bar_reads_fid_1_at_the_baseline_cfg():
    cal = {"grid": [1.0, 2.0, 7.5], "baseline_cfg": 2.0, "iteration_1": {"fid": np.array([9.0, 11.0, 40.0])}}
    bar = calibration_bar(cal, floor=4.0)  # 11 <= 3 x 4
    assert bar.name == "iteration-1 bar (baseline CFG 2 calibrated)" and bar.met and bar.measured["fid_1"] == 11.0
    assert not calibration_bar(cal, floor=3.0).met  # 11 > 9
    # a fixed baseline off the sweep's grid reads the mean FID_1 of its chains
    off = cal | {"baseline_cfg": 4.0}
    assert calibration_bar(off, 4.0, fid_1=[10.0, 14.0]).met and not calibration_bar(off, 4.0, fid_1=[10.0, 16.0]).met
    with pytest.raises(ValueError, match="not on the calibration grid"):
        calibration_bar(off, 4.0)


# ------------------------------------------------------------------ issue 28: prompts that nearly identify an image
def test_image_attributes_are_deterministic_functions_of_the_image():
    H = 8
    diagonal = torch.zeros(1, 1, H, H, dtype=torch.uint8)
    for r in range(H):
        diagonal[0, 0, r, H - 1 - r] = 255  # leans right: the column grows going up the image
    vertical = torch.zeros(1, 1, H, H, dtype=torch.uint8)
    vertical[0, 0, :, 3] = 255
    heavy = torch.full((1, 1, H, H), 255, dtype=torch.uint8)
    images = torch.cat([diagonal, vertical, heavy, torch.zeros(1, 1, H, H, dtype=torch.uint8)])
    a = image_attributes(images)
    np.testing.assert_allclose(a[0], [1 / 8, 1.0, np.std(np.arange(8)) / 8])  # closed forms of the diagonal
    np.testing.assert_allclose(a[1], [1 / 8, 0.0, 0.0], atol=1e-12)  # a vertical bar: no slant, no width
    np.testing.assert_allclose(a[2, [0, 2]], [1.0, np.std(np.arange(8)) / 8])
    np.testing.assert_allclose(a[3], 0.0)  # blank
    cuts = np.array([[0.1, 0.3], [-0.2, 0.2], [0.1, 0.2]])
    s = attribute_prompts(images, cuts)
    # (ink, slant, width) terciles: diagonal (1, 2, 2), vertical (1, 1, 0), heavy (2, 1, 2), blank (0, 1, 0)
    assert s.tolist() == [9 + 6 + 2, 9 + 3 + 0, 18 + 3 + 2, 0 + 3 + 0]
    assert torch.equal(attribute_prompts(images.clone(), cuts), s)  # same image -> same prompt
    ref = image_attributes(_noise(30, seed=2))
    assert attribute_cuts(ref).shape == (3, 2)
    np.testing.assert_allclose(attribute_cuts(ref), np.quantile(ref, [1 / 3, 2 / 3], axis=0).T)
    with pytest.raises(ValueError, match="cuts"):
        attribute_prompts(images, cuts[:2])


def test_attribute_prompt_net_drops_both_labels_on_the_no_prompt_code():
    from madlib.diffusion.unet import UNet

    unet = UNet(1, 8, 8, (1, 2), num_classes=10, num_sources=NUM_ATTRIBUTE_PROMPTS, seed=0)
    for p in unet.parameters():  # zero-initialised outputs: give the network something to say
        torch.nn.init.normal_(p, std=0.2, generator=torch.Generator().manual_seed(p.numel()))
    net = AttributePromptNet(unet)
    assert net.num_classes == 270
    x, t = torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.full((1, 4), 3.0)
    codes = torch.tensor([[0, 28, 269, 270]])
    out = net(x, t, codes)
    split = unet(x, t, torch.tensor([[0, 1, 9, 0]]), torch.tensor([[0, 1, 26, 0]]))
    torch.testing.assert_close(out[0, :3], split[0, :3])
    torch.testing.assert_close(out[0, 3], unet(x, t, None, None)[0, 3])  # the no-prompt code: both "no label" tokens
    torch.testing.assert_close(net(x, t, None), unet(x, t, None, None))
    assert prompt_classes(net, torch.tensor([0, 28, 269])).tolist() == [0, 1, 9]


def test_m0_with_attribute_prompts_is_cached_apart_and_its_chain_reads_classes(m0, d0, lenet, tmp_path):
    images, labels = d0
    attr = pretrain_m0(**TINY, prompts="attributes", cache_dir=tmp_path)
    assert "prompts" not in m0.settings  # the class-prompted M_0 keeps its settings, and so its cache file
    assert attr.settings["prompts"] == "attributes" and attr.path != m0.path
    assert attr.net.num_classes == 10 * NUM_ATTRIBUTE_PROMPTS
    prompts = attr.prompts_for(images, labels)
    assert torch.equal(prompts // NUM_ATTRIBUTE_PROMPTS, labels) and torch.equal(attr.prompts_for(images, labels), prompts)
    assert torch.equal(m0.prompts_for(images, labels), labels)
    assert pretrain_m0(**TINY, prompts="attributes", cache_dir=tmp_path).cached
    chain = chain_of_diffusion(attr.net, images, prompts, lenet=lenet, iterations=2, epochs=1.0, batch_size=10,
                               steps=4, sigma_max=10.0, rank=4, seed=0)
    expected = image_metrics(chain.sets[1], labels, images, labels, lenet)["accuracy"]
    assert chain.accuracy[0] == pytest.approx(expected)  # accuracy against the classes, not the codes
    assert chain.settings["sigma_max"] == 10.0 and chain.settings["untrained_uncond"] == "shared"
    with pytest.raises(ValueError, match="prompts must be one of"):
        pretrain_m0(**TINY, prompts="captions", use_cache=False)


def test_restyle_of_constructed_images():
    one = torch.zeros(1, 1, 6, 6, dtype=torch.uint8)
    one[0, 0, 2, 2] = 160
    dilated = restyle(one, "dilate")[0, 0]
    assert dilated[1:4, 1:4].eq(160).all() and int(dilated.sum()) == 9 * 160
    blurred = restyle(one, "blur")[0, 0]
    assert blurred[1:4, 1:4].tolist() == [[10, 20, 10], [20, 40, 20], [10, 20, 10]] and int(blurred.sum()) == 160
    block = torch.tensor([[0, 4], [8, 12]], dtype=torch.uint8).repeat(3, 3)[None, None]  # [1, 1, 6, 6]
    assert restyle(block, "pixelate").eq(6).all()
    assert torch.equal(restyle(block, "plain"), block)
    images, _, _ = balanced_subset("digits", 20, image_size=8, seed=3, style="dilate")
    plain, _, _ = balanced_subset("digits", 20, image_size=8, seed=3)
    assert torch.equal(images, restyle(plain, "dilate"))
    with pytest.raises(ValueError, match="style must be one of"):
        restyle(one, "emboss")


@pytest.mark.parametrize("high", [1.0, 1.25, 2.5, 7.5])
def test_redifine_on_the_calibrated_axis_starts_at_the_baseline_and_ends_where_the_papers_decay_ends(high):
    from madlib.methods.redifine import cfg_schedule, redifine_settings

    paper = redifine_settings(high, axis="paper")
    assert paper == dict(schedule="exponential", s0=7.5, alpha=2.0, cond_dropout=0.2)
    mapped = redifine_settings(high)
    weight = cfg_schedule(mapped["schedule"], s0=mapped["s0"], alpha=mapped["alpha"])
    s = np.array([1.0 + weight(i, 30) for i in range(30)])  # CFG at each of 30 steps
    kappa = math.log(high) / math.log(7.5)
    # log CFG is the paper's scaled by kappa at every step: first the baseline's CFG, last 1.015 ** kappa
    paper_s = 7.5 * np.exp(-2.0 * np.arange(30) / 29)
    np.testing.assert_allclose(np.log(s), kappa * np.log(paper_s), atol=1e-12)
    assert s[0] == pytest.approx(high) and 1.0 <= s[-1] <= 1.016 and mapped["cond_dropout"] == 0.2
    with pytest.raises(ValueError, match="axis"):
        redifine_settings(high, axis="latent")
    with pytest.raises(ValueError, match="high_cfg"):
        redifine_settings(0.5)
