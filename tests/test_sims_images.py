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
