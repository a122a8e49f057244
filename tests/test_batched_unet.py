"""BatchedUNet: R U-Nets as one module, checked against the plain UNets it stacks."""

import pytest
import torch

from madlib.diffusion.batched import BatchedUNet
from madlib.diffusion.losses import ddpm_eps_loss
from madlib.diffusion.schedules import cosine_schedule
from madlib.diffusion.training import train_ensemble
from madlib.diffusion.unet import UNet
from tests.helpers import awake

TINY = dict(image_size=8, base_channels=8, channel_mults=(1, 2))
# For the training comparisons: with 8 groups over 8 channels every GroupNorm normalises each channel
# alone, so the biases (and class/time embeddings) in front of it get a true gradient of 0, and Adam
# turns the rounding noise of that 0 into steps of size ~lr that differ between two ways of computing.
# Two groups keep every gradient well defined; lr 1e-4 moves weights ~3e-4, 30x the tolerance.
TRAINABLE = TINY | dict(norm_groups=2)
LR = 1e-4
# The training comparisons run in float64, so that they hold on any CPU. Adam divides by the root of the
# second moments, which amplifies a one-ulp difference in a gradient (another summation order: vmap against
# one net after another, another CPU's kernels) into a weight difference far above the ulp: in float32 four
# steps differed by 1e-5 here and 4.3e-5 on an AMD CPU, of the 4e-4 the weights move (a relative error of
# ~1e6 float32 eps). The same amplification in float64 gives 4e-4 * 1e6 * 2.2e-16 ~ 1e-13 (2e-16 measured);
# ATOL_ADAM leaves 1000x headroom above that and stays 1e6x below the 4e-4 that a member trained on other
# batches, labels or dropout would differ by.
ATOL_ADAM = 1e-10

pytestmark = pytest.mark.usefixtures("one_thread")


def _nets(count: int = 3, **kwargs) -> list[UNet]:
    return [awake(UNet(seed=r, **(TINY | kwargs)), seed=10 + r) for r in range(count)]


def _same_weights(a: UNet, b: UNet, atol: float = 0.0) -> None:
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=atol, msg=name)


class _OneAfterAnother(torch.nn.Module):
    """The obvious ensemble: plain UNets run one by one and stacked (the reference for train_ensemble)."""

    def __init__(self, nets):
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)
        self.members, self.num_classes = len(nets), nets[0].num_classes

    def forward(self, x, t, y=None):
        t = torch.broadcast_to(torch.as_tensor(t, dtype=x.dtype), x.shape[:2])
        return torch.stack([net(x[r], t[r], None if y is None else y[r]) for r, net in enumerate(self.nets)])


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_forward_equals_each_members_own_forward(strategy):
    nets = _nets()
    batched = BatchedUNet.from_nets(nets, strategy=strategy)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 4, 1, 8, 8, generator=g), torch.rand(3, 4, generator=g) * 50
    y = torch.tensor([[0, 3, 9, 10], [1, 1, 2, 10], [7, 10, 5, 4]])  # 10 = the "no label" token
    for labels in (y, None):
        out = batched(x, t, labels)
        assert out.shape == x.shape
        for r, net in enumerate(nets):
            torch.testing.assert_close(out[r], net(x[r], t[r], None if labels is None else labels[r]),
                                       rtol=0, atol=1e-5)
    assert not torch.allclose(batched(x, t, y), batched(x, t, None))  # labels reach the members
    torch.testing.assert_close(batched(x, 7.0, y)[1], nets[1](x[1], 7.0, y[1]), rtol=0, atol=1e-5)  # scalar t


def test_vmap_and_loop_agree_with_attention_and_unconditional_members():
    nets = [awake(UNet(seed=r, attention=True, num_classes=0, **TINY), seed=r) for r in range(2)]
    x, t = torch.randn(2, 3, 1, 8, 8), torch.rand(2, 3) * 50
    vmap, loop = BatchedUNet.from_nets(nets, strategy="vmap"), BatchedUNet.from_nets(nets, strategy="loop")
    torch.testing.assert_close(vmap(x, t), loop(x, t), rtol=0, atol=1e-5)
    torch.testing.assert_close(loop(x, t)[1], nets[1](x[1], t[1]), rtol=0, atol=0)


def test_new_member_r_is_unet_with_seed_r_bit_for_bit():
    state = torch.random.get_rng_state()
    batched = BatchedUNet.new(3, seeds=[0, 1, 2], **TINY)
    assert torch.equal(torch.random.get_rng_state(), state)  # seeded: the global generator untouched
    assert batched.members == 3 and batched.num_classes == 10 and batched.image_size == 8
    for r in range(3):
        _same_weights(batched.member(r), UNet(seed=r, **TINY))
    assert not torch.equal(batched.stacked["stem__weight"][0], batched.stacked["stem__weight"][1])


def test_member_round_trips_and_is_a_copy():
    nets = _nets(2)
    batched = BatchedUNet.from_nets(nets)
    for r in range(2):
        copy = batched.member(r)
        assert type(copy) is UNet and copy.members == 1
        _same_weights(copy, nets[r])
    before = batched.stacked["stem__weight"].detach().clone()
    with torch.no_grad():  # neither the copy nor the original shares storage with the stacked weights
        batched.member(0).stem.weight.add_(1.0)
        nets[0].stem.weight.add_(1.0)
    assert torch.equal(batched.stacked["stem__weight"], before)


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_summed_losses_give_each_member_its_own_adam_steps(strategy):
    # each member sees fixed draws (x_t, t, noise) drawn once; batched: one Adam on the summed losses,
    # alone: one Adam per UNet on its own loss
    nets = [net.double() for net in _nets(2, **TRAINABLE)]  # float64: see ATOL_ADAM
    batched = BatchedUNet.from_nets(nets, strategy=strategy)
    opt_batched = torch.optim.Adam(batched.parameters(), lr=LR)
    opts = [torch.optim.Adam(net.parameters(), lr=LR) for net in nets]
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        xt, noise = torch.randn(2, 2, 6, 1, 8, 8, generator=g, dtype=torch.float64).unbind(0)  # [R, B, C, H, W] each
        t, y = torch.randint(0, 50, (2, 6), generator=g).double(), torch.randint(0, 11, (2, 6), generator=g)
        opt_batched.zero_grad()
        ((batched(xt, t, y) - noise) ** 2).mean(dim=(1, 2, 3, 4)).sum().backward()
        opt_batched.step()
        for r, (net, opt) in enumerate(zip(nets, opts)):
            opt.zero_grad()
            ((net(xt[r], t[r], y[r]) - noise[r]) ** 2).mean().backward()
            opt.step()
    for r in range(2):
        assert batched.member(r).stem.weight.dtype == torch.float64
        _same_weights(batched.member(r), nets[r], atol=ATOL_ADAM)
    start = awake(UNet(seed=0, **TRAINABLE), seed=10).double()
    assert max((p - q).abs().max() for p, q in zip(nets[0].parameters(), start.parameters())) > 1e-4


def test_train_ensemble_trains_it_as_it_trains_unets_one_after_another():
    nets = [net.double() for net in _nets(2, **TRAINABLE)]  # float64: see ATOL_ADAM
    start = [p.detach().clone() for p in nets[0].parameters()]
    batched, reference = BatchedUNet.from_nets(nets, strategy="vmap"), _OneAfterAnother(nets)
    g = torch.Generator().manual_seed(2)
    data = torch.randn(2, 12, 1, 8, 8, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 10, (2, 12), generator=g)
    schedule = cosine_schedule(50)
    loss = lambda m, x, **kw: ddpm_eps_loss(m, x, schedule, **kw)  # noqa: E731
    settings = dict(samples_seen=24, batch_size=6, lr=LR, labels=labels, cond_dropout=0.2)
    stats = train_ensemble(batched, data, loss, generator=torch.Generator().manual_seed(3), **settings)
    train_ensemble(reference, data, loss, generator=torch.Generator().manual_seed(3), **settings)
    assert stats.steps == 4 and len(stats.final_loss) == 2
    for r in range(2):
        assert batched.member(r).stem.weight.dtype == torch.float64
        _same_weights(batched.member(r), reference.nets[r], atol=ATOL_ADAM)
    # the weights moved far beyond the tolerance, so the comparison can fail
    assert max((p - q).abs().max() for p, q in zip(reference.nets[0].parameters(), start)) > 1e-4


def test_extra_arguments_reach_each_member():
    class WithS(UNet):  # a second label s, as the lead may add to UNet.forward
        def forward(self, x, t, y=None, s=None, *, scale=1.0):
            out = super().forward(x, t, y)
            return out if s is None else out + scale * s.reshape(-1, 1, 1, 1).to(out.dtype)

    nets = [WithS(seed=r, **TINY) for r in range(2)]
    x, t, s = torch.randn(2, 3, 1, 8, 8), torch.rand(2, 3), torch.tensor([[1, 2, 3], [4, 5, 6]])
    for strategy in ("vmap", "loop"):
        batched = BatchedUNet.from_nets(nets, strategy=strategy)
        for out in (batched(x, t, None, s, scale=2.0), batched(x, t, None, s=s, scale=2.0)):
            torch.testing.assert_close(out[1], nets[1](x[1], t[1], None, s[1], scale=2.0), rtol=0, atol=1e-5)


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ValueError, match="members"):
        BatchedUNet.new(0, **TINY)
    with pytest.raises(ValueError, match="seeds"):
        BatchedUNet.new(3, seeds=[0, 1], **TINY)
    with pytest.raises(TypeError, match="seeds"):
        BatchedUNet.new(2, seed=0, **TINY)
    with pytest.raises(ValueError, match="nets"):
        BatchedUNet.from_nets([UNet(seed=0, **TINY), UNet(seed=1, **(TINY | {"base_channels": 16}))])
    with pytest.raises(ValueError, match="nets"):
        BatchedUNet.from_nets([UNet(seed=0, **TINY), UNet(seed=1, **(TINY | {"image_size": 10}))])
    with pytest.raises(ValueError, match="nets"):
        BatchedUNet.from_nets([])
    with pytest.raises(ValueError, match="channels_last"):
        BatchedUNet.from_nets([UNet(seed=0, channels_last=True, **TINY)])
    with pytest.raises(ValueError, match="strategy"):
        BatchedUNet.new(2, strategy="grouped", **TINY)
    batched = BatchedUNet.new(2, **TINY)
    with pytest.raises(ValueError, match="x must be"):
        batched(torch.randn(3, 4, 1, 8, 8), 1.0)
    with pytest.raises(ValueError, match="y must lead"):
        batched(torch.randn(2, 4, 1, 8, 8), 1.0, torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="index"):
        batched.member(2)
