"""ReDiFine's Chain of Diffusion (madlib.methods.redifine): Eq. 1 fine-tunes from M_0, the unconditional branch
without condition dropout, the CFG schedule's end points, one image per prompt, the M_0 cache, the trait fit."""

import math

import numpy as np
import pytest
import torch

from madlib.diffusion.guidance import cfg_scale_from_w, guided_prediction
from madlib.diffusion.samplers import euler_ancestral_sampler
from madlib.diffusion.schedules import edm_sigma_steps
from madlib.metrics import collapse_rate, load_lenet
from madlib.methods.redifine import (BranchedDenoiser, balanced_subset, cfg_schedule, chain_of_diffusion,
                                     finetune_from_m0, fit_truncation_ratios, generate_one_per_prompt, pretrain_m0,
                                     weights_digest)
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
        tuned = finetune_from_m0(m0.net, images, labels, method=method, cond_dropout=0.0, epochs=3.0, batch_size=10,
                                 lr=1e-2, seed=0)
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
