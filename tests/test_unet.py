"""The class-conditional U-Net, image losses and samplers, classifier-free guidance on images."""

import pytest
import torch

from madlib.diffusion.guidance import cfg_predictors, class_conditional, constant_weight, w_from_lam
from madlib.diffusion.losses import ddpm_eps_loss
from madlib.diffusion.samplers import clipped_posterior_mean, ddpm_ancestral_sampler
from madlib.diffusion.schedules import DDPMSchedule, cosine_schedule
from madlib.diffusion.training import ema_update, train_ensemble
from madlib.diffusion.unet import UNet, parameter_count, timestep_embedding
from tests.helpers import awake

TINY = dict(base_channels=8, channel_mults=(1, 2, 2))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("size", [8, 14, 28])
def test_output_has_the_input_shape_at_odd_and_even_sizes(size):
    net = UNet(image_size=size, seed=0, **TINY)
    x = torch.randn(1, 3, 1, size, size)
    y = torch.tensor([[0, 5, 10]])  # 10 = the "no label" token
    out = net(x, torch.full((1, 3), 7.0), y)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(awake(net)(x, 7.0, y)[0], net(x[0], torch.full((3,), 7.0), y[0]), rtol=0, atol=0)


def test_the_untrained_net_predicts_zero_noise():
    net = UNet(image_size=14, seed=0, **TINY)
    assert not net(torch.randn(1, 4, 1, 14, 14), 3.0).any()


def test_conditioning_and_the_null_token():
    net = awake(UNet(image_size=14, seed=0, **TINY))
    x, t = torch.randn(1, 4, 1, 14, 14), torch.full((1, 4), 20.0)
    three, seven = net(x, t, torch.full((1, 4), 3)), net(x, t, torch.full((1, 4), 7))
    null = net(x, t, None)
    assert not torch.allclose(three, seven) and not torch.allclose(three, null)
    torch.testing.assert_close(net(x, t, torch.full((1, 4), net.num_classes)), null, rtol=0, atol=0)
    assert not torch.allclose(net(x, t + 5, None), null)  # the time input matters too


def test_one_seed_one_network_and_the_global_generator_untouched():
    state = torch.random.get_rng_state()
    a, b = UNet(image_size=8, seed=3, **TINY), UNet(image_size=8, seed=3, **TINY)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = UNet(image_size=8, seed=4, **TINY)
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_documented_parameter_counts():
    # madlib/diffusion/unet.py's docstring quotes these (10 classes, mults (1, 2, 2), one block per level)
    assert [parameter_count(UNet(base_channels=c)) for c in (16, 32, 64)] == [175_441, 695_969, 2_772_289]
    c = 64  # the lowest level's width at base 32: attention adds 4 c^2 + 6 c
    assert parameter_count(UNet(attention=True)) - parameter_count(UNet()) == 4 * c * c + 6 * c


def test_attention_channels_last_and_amp_paths_agree():
    x, t, y = torch.randn(1, 5, 1, 14, 14), torch.full((1, 5), 9.0), torch.arange(5)[None]
    plain = awake(UNet(image_size=14, seed=1, attention=True, **TINY))
    last = awake(UNet(image_size=14, seed=1, attention=True, channels_last=True, **TINY))
    torch.testing.assert_close(last(x, t, y), plain(x, t, y), rtol=1e-4, atol=1e-5)
    amp = awake(UNet(image_size=14, seed=1, attention=True, amp=True, **TINY))
    out = amp(x, t, y)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, plain(x, t, y), rtol=0.1, atol=0.1)  # bfloat16 has 8 bits of mantissa


def test_timestep_embedding():
    e = timestep_embedding(torch.tensor([0.0, 3.0]), 9)
    assert e.shape == (2, 9)
    torch.testing.assert_close(e[0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0]))
    torch.testing.assert_close(e[1, 0], torch.sin(torch.tensor(3.0)))


def test_a_few_training_steps_reduce_the_loss_on_a_fixed_batch():
    g = torch.Generator().manual_seed(0)
    schedule = cosine_schedule(10)
    x = torch.zeros(1, 64, 1, 8, 8)
    x[..., 2:6, 3:5] = 1.0  # one bar: a distribution easy to learn
    y = torch.zeros(1, 64, dtype=torch.int64)

    def fixed_loss(net):
        with torch.no_grad():
            return float(ddpm_eps_loss(net, x, schedule, torch.Generator().manual_seed(1), y))

    net = UNet(image_size=8, seed=0, **TINY)
    before = fixed_loss(net)
    average = UNet(image_size=8, seed=0, **TINY)
    stats = train_ensemble(net, x, lambda m, xb, **kw: ddpm_eps_loss(m, xb, schedule, **kw), samples_seen=40 * 32,
                           batch_size=32, lr=3e-3, labels=y, cond_dropout=0.1, generator=g,
                           after_step=lambda: ema_update(average, net, 0.9))
    assert stats.steps == 40
    assert fixed_loss(net) < 0.7 * before, (before, fixed_loss(net))
    assert fixed_loss(average) < before  # the EMA copy followed


def test_ema_update_is_polyak_averaging():
    a, b = UNet(image_size=8, seed=0, **TINY), UNet(image_size=8, seed=1, **TINY)
    expected = [0.75 * p + 0.25 * q for p, q in zip(a.parameters(), b.parameters())]
    ema_update(a, b, 0.75)
    for p, e in zip(a.parameters(), expected):
        torch.testing.assert_close(p, e)


def _draw(eps, guide=None, w=0.0, clip=(-1.0, 1.0)):
    noise = torch.randn(1, 6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return ddpm_ancestral_sampler(eps, noise, cosine_schedule(10), guide=guide, weight=constant_weight(w),
                                      generator=torch.Generator().manual_seed(3), clip_x0=clip)


def test_guidance_at_lambda_one_is_the_conditional_model_exactly():
    net = awake(UNet(image_size=8, seed=0, **TINY))
    y = torch.arange(6)[None]
    eps, guide = cfg_predictors(net, y)
    assert w_from_lam(1.0) == 0.0
    torch.testing.assert_close(_draw(eps, guide, w_from_lam(1.0)), _draw(class_conditional(net, y)), rtol=0, atol=0)


def test_cfg_is_the_extrapolation_computed_by_hand():
    net = awake(UNet(image_size=8, seed=0, **TINY))
    y = torch.arange(6)[None]
    w = w_from_lam(0.8)  # 0.25
    eps, guide = cfg_predictors(net, y)
    by_hand = lambda x, t: (1 + w) * net(x, t, y) - w * net(x, t, None)  # noqa: E731
    torch.testing.assert_close(_draw(eps, guide, w), _draw(by_hand), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_draw(eps, guide, w), _draw(eps))


def test_clipped_posterior_mean_is_algorithm_2_when_nothing_is_clipped():
    betas = cosine_schedule(10, max_beta=0.9).betas.double()
    s = DDPMSchedule(betas, 1 - betas, torch.cumprod(1 - betas, 0))  # ab_t = ab_{t-1} alpha_t in float64
    g = torch.Generator().manual_seed(4)
    x, e = (torch.randn(1, 5, 1, 4, 4, generator=g, dtype=torch.float64) for _ in range(2))
    for t in (0, 4, 9):
        beta, alpha, ab = s.betas[t], s.alphas[t], s.alpha_bar[t]
        algorithm_2 = (x - beta / (1 - ab).sqrt() * e) / alpha.sqrt()
        torch.testing.assert_close(clipped_posterior_mean(x, e, s, t, (-1e9, 1e9)), algorithm_2)
    assert clipped_posterior_mean(x, e, s, 0, (-0.5, 0.5)).abs().max() <= 0.5  # at t = 0: the clipped x0


def test_bad_input_is_named():
    net = UNet(image_size=8, **TINY)
    with pytest.raises(ValueError, match=r"x must be \[members=1, batch, 1, 8, 8\]"):
        net(torch.zeros(2, 3, 1, 8, 8), 0.0)
    with pytest.raises(ValueError, match=r"x must be"):
        net(torch.zeros(3, 1, 14, 14), 0.0)
    with pytest.raises(ValueError, match="base_channels must be an integer >= 1"):
        UNet(base_channels=-8)
    with pytest.raises(ValueError, match="channel_mults must hold at least one level"):
        UNet(channel_mults=())
    with pytest.raises(ValueError, match=r"y must be None for an unconditional U-Net"):
        UNet(image_size=8, num_classes=0, **TINY)(torch.zeros(1, 8, 8)[None], 0.0, torch.zeros(1, dtype=torch.int64))


def test_multi_tensor_adam_trains_as_the_per_tensor_loop(monkeypatch):
    # train_ensemble uses foreach Adam (one kernel per op over all tensors); it must train as torch's per-tensor loop
    # does, so that networks cached before the change stay what a fresh fit gives. float64 leaves summation-order
    # differences at ~1e-16, far below the tolerance, on any CPU.
    from madlib.diffusion import training

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 16, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    schedule = cosine_schedule(50)

    def fit():
        net = UNet(image_size=8, seed=0, **TINY).double()
        train_ensemble(net, x, lambda m, xb, **kw: ddpm_eps_loss(m, xb, schedule, **kw), samples_seen=4 * 8,
                       batch_size=8, lr=3e-3, generator=torch.Generator().manual_seed(1))
        return [p.detach().clone() for p in net.parameters()]

    multi = fit()
    monkeypatch.setitem(training.OPTIMIZERS, "adam",
                        lambda params, **kw: torch.optim.Adam(params, **{**kw, "foreach": False}))
    for a, b in zip(multi, fit()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_scale_shift_conditioning_survives_the_group_norm_that_add_loses():
    # At width 8 with 8 groups each GroupNorm group is one channel: an embedding added before it is a per-channel
    # constant that the norm removes, so the "add" network ignores its label; scale-shift after the norm keeps it.
    x = torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.full((1, 4), 5.0)
    spread = {}
    for conditioning in ("add", "scale_shift"):
        net = UNet(image_size=8, base_channels=8, channel_mults=(1,), norm_groups=8, conditioning=conditioning, seed=0)
        with torch.no_grad():
            for block in [*net.down[0], net.middle, *net.up[0]]:
                torch.nn.init.normal_(block.conv2.weight, std=0.1)  # undo the zero init so blocks contribute
            torch.nn.init.normal_(net.out.weight, std=0.1)
            outs = torch.stack([net(x, t, torch.full((1, 4), c)) for c in range(3)])  # 3 labels, same x and t
        spread[conditioning] = float((outs - outs.mean(0)).abs().max())
    assert spread["add"] < 1e-5 and spread["scale_shift"] > 1e-3, spread
    with pytest.raises(ValueError, match="conditioning must be one of"):
        UNet(image_size=8, conditioning="film")


def _forward_flops(net, size):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 1, size, size), torch.zeros(1), torch.zeros(1, dtype=torch.long))
    return counter.get_total_flops()


def test_narrow_and_lean_decoders_save_the_hand_counted_conv_flops():
    def conv(c_in, c_out, pixels, k=3):  # multiply-adds x 2 of one conv over one image
        return 2 * c_in * c_out * k * k * pixels

    full, narrow, lean = (UNet(image_size=14, base_channels=16, decoder=d, seed=0) for d in ("full", "narrow", "lean"))
    # narrow: the last upsampling conv maps 32 -> 16 at 14x14, so the top block's conv and skip read 32 channels, not 48
    saved = ((conv(32, 32, 196) - conv(32, 16, 196)) + (conv(48, 16, 196) - conv(32, 16, 196))
             + (conv(48, 16, 196, 1) - conv(32, 16, 196, 1)))
    assert _forward_flops(full, 14) - _forward_flops(narrow, 14) == saved
    # lean: both upsampling convs run at the coarser size (4x4 and 7x7 instead of 7x7 and 14x14)
    saved_lean = (conv(32, 32, 49) - conv(32, 32, 16)) + (conv(32, 16, 196) - conv(32, 16, 49))
    assert _forward_flops(narrow, 14) - _forward_flops(lean, 14) == saved_lean
    assert parameter_count(narrow) == parameter_count(lean) == 168_225
    for size in (8, 14, 28):
        net = awake(UNet(image_size=size, decoder="lean", seed=0, **TINY))
        x = torch.randn(1, 3, 1, size, size)
        assert net(x, torch.full((1, 3), 7.0), torch.tensor([[0, 5, 10]])).shape == x.shape
    # the default's initial weights are those every committed fit drew: sum, sum of squares and largest magnitude of
    # UNet(image_size=14, base_channels=16, seed=2)'s 97 tensors, computed with the U-Net before the option existed
    flat = torch.cat([p.detach().double().flatten() for p in UNet(image_size=14, base_channels=16, seed=2).parameters()])
    assert [flat.sum().item(), (flat ** 2).sum().item(), flat.abs().max().item()] == pytest.approx(
        [383.3617942710909, 1404.7240712146347, 3.416620969772339], rel=1e-9)
    with pytest.raises(ValueError, match="decoder must be one of"):
        UNet(image_size=8, decoder="thin")


def test_edm_config_keeps_the_cache_keys_of_the_default_network():
    from madlib.diffusion.config import EDMConfig

    assert "decoder" not in EDMConfig().settings() and "conditioning" not in EDMConfig().settings()
    lean = EDMConfig(decoder="lean", conditioning="scale_shift")
    assert lean.settings()["decoder"] == "lean" and lean.settings()["conditioning"] == "scale_shift"
    net = lean.network(seed=0, num_classes=10).net
    assert net.decoder == "lean" and net.conditioning == "scale_shift"
    with pytest.raises(ValueError, match="decoder must be one of"):
        EDMConfig(decoder="thin")
