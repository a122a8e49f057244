"""LoRA fine-tuning of the U-Net (ReDiFine App. A.1): only adapters train, exact start, counts, merging, errors."""

import copy
import importlib.util
import sys
from functools import partial

import pytest
import torch

pytest.importorskip("peft")

from madlib.diffusion.lora import (LORA_TARGETS, adapter_parameters, lora_copy, merge_lora,  # noqa: E402
                                   trainable_parameters)
from madlib.diffusion.losses import ddpm_eps_loss  # noqa: E402
from madlib.diffusion.schedules import cosine_schedule  # noqa: E402
from madlib.diffusion.training import train_ensemble  # noqa: E402
from madlib.diffusion.unet import UNet  # noqa: E402
from tests.helpers import awake  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

PREFIX = "base_model.model."  # where peft puts the wrapped network's parameters
BLOCKS = ["down.0.0", "down.1.0", "middle", "up.0.0", "up.1.0"]  # the residual blocks of _base()


def _base(seed: int = 0, attention: bool = False) -> UNet:
    """A tiny "pretrained" U-Net: the zero-initialised layers get random weights, so every adapter gets gradients."""
    return awake(UNet(1, 8, 8, (1, 2), 10, attention=attention, seed=seed), seed + 100)


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 5, 1, 8, 8, generator=g), torch.rand(1, 5, generator=g) * 40, torch.randint(0, 11, (1, 5))


def _fine_tune(model, steps: int = 3, seed: int = 2):
    """A few Adam steps of the DDPM loss through train_ensemble (which needs members and num_classes)."""
    g = torch.Generator().manual_seed(seed)
    data, labels = torch.rand(1, 16, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 10, (1, 16), generator=g)
    loss = partial(ddpm_eps_loss, schedule=cosine_schedule(40))
    train_ensemble(model, data, loss, samples_seen=8 * steps, batch_size=8, lr=1e-2, labels=labels,
                   cond_dropout=0.5, generator=g)
    return model


def _base_name(peft_name: str) -> str:
    """The wrapped network's parameter name: 'base_model.model.stem.base_layer.weight' -> 'stem.weight'."""
    return peft_name.removeprefix(PREFIX).replace(".base_layer", "")


def _adapted_layers(model) -> set[str]:
    return {name.removeprefix(PREFIX).removesuffix(".lora_A") for name, _ in model.named_modules()
            if name.endswith(".lora_A")}


def test_fine_tuning_changes_only_the_adapters_and_leaves_the_base_untouched():
    base = _base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = lora_copy(base, rank=4, seed=0)
    start = {k: v.clone() for k, v in adapter_parameters(model).items()}
    assert model.members == 1 and model.num_classes == 10  # what train_ensemble reads
    _fine_tune(model)
    after = base.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    base_params = dict(base.named_parameters())
    frozen = {_base_name(n): p for n, p in model.named_parameters() if "lora_" not in n}
    assert frozen.keys() == base_params.keys()
    assert all(torch.equal(frozen[k], base_params[k]) and not frozen[k].requires_grad for k in frozen)
    trained = adapter_parameters(model)
    assert trained.keys() == start.keys() and all("lora_A" in n or "lora_B" in n for n in trained)
    assert all(not torch.equal(trained[n], start[n]) for n in trained)  # 3 steps move every A and B


def test_the_fresh_copy_predicts_exactly_what_the_base_predicts():
    base = _base()
    model = lora_copy(base, rank=4, seed=0)
    assert all(not p.any() for n, p in adapter_parameters(model).items() if "lora_B" in n)
    assert any(p.any() for n, p in adapter_parameters(model).items() if "lora_A" in n)
    x, t, y = _inputs()
    assert torch.equal(model(x, t, y), base(x, t, y)) and base(x, t, y).abs().max() > 0.1


@pytest.mark.parametrize("attention", [False, True])
def test_trainable_count_is_r_in_plus_out_per_linear_and_r_in_k2_plus_out_per_conv(attention):
    base = _base(attention=attention)
    model = lora_copy(base, seed=0)  # the defaults: rank 32, LORA_TARGETS
    expected = {"time_mlp.0", "time_mlp.2", "down.1.0.skip", "up.0.0.skip", "up.1.0.skip"}
    expected |= {f"{b}.{layer}" for b in BLOCKS for layer in ("conv1", "emb", "conv2")}
    if attention:
        expected |= {"middle_attention.qkv", "middle_attention.proj"}
    assert _adapted_layers(model) == expected
    r, count = 32, 0
    for name in expected:
        m = base.get_submodule(name)
        if isinstance(m, torch.nn.Linear):
            count += r * (m.in_features + m.out_features)
        else:  # A = Conv2d(in, r, k), B = Conv2d(r, out, 1)
            count += r * (m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels)
    assert trainable_parameters(model) == count
    assert {"qkv", "proj"} <= set(LORA_TARGETS)


def test_each_update_enters_scaled_by_alpha_over_rank():
    base = _base()
    model = lora_copy(base, rank=4, alpha=8.0, target_modules=("time_mlp.0",), seed=0)
    layer = model.get_submodule(PREFIX + "time_mlp.0")
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight  # [r, in], [out, r]
    with torch.no_grad():
        b.copy_(torch.randn(b.shape, generator=torch.Generator().manual_seed(5)))
    x = torch.randn(3, 8)
    w, bias = base.time_mlp[0].weight, base.time_mlp[0].bias
    torch.testing.assert_close(layer(x), x @ w.T + bias + (8.0 / 4) * x @ a.T @ b.T)


def test_merged_net_is_a_plain_unet_with_the_adapted_outputs():
    base = _base()
    model = _fine_tune(lora_copy(base, rank=4, seed=0)).eval()
    merged = merge_lora(model).eval()
    assert isinstance(merged, UNet) and not any("lora_" in n for n, _ in merged.named_modules())
    assert dict(merged.named_parameters()).keys() == dict(base.named_parameters()).keys()
    assert all(p.requires_grad for p in merged.parameters())
    x, t, y = _inputs()
    adapted = model(x, t, y)
    torch.testing.assert_close(merged(x, t, y), adapted, rtol=0, atol=1e-5)
    assert (adapted - base(x, t, y)).abs().max() > 1e-3  # the fine-tune moved the outputs: the check has teeth
    assert _adapted_layers(model) and torch.equal(model(x, t, y), adapted)  # merging left the adapted model as it was


def test_bad_inputs_name_the_parameter(monkeypatch):
    base = _base()
    with pytest.raises(ValueError, match="rank must be an integer >= 1"):
        lora_copy(base, rank=0)
    with pytest.raises(ValueError, match=r"target_modules entry 'nope' matches no .*'down\.0\.0\.conv1'"):
        lora_copy(base, target_modules=("conv1", "nope"))
    with pytest.raises(ValueError, match="target_modules entry 'class_emb'"):  # an Embedding: not adapted here
        lora_copy(base, target_modules=("class_emb",))
    with pytest.raises(TypeError, match="model must be a LoRA model"):
        merge_lora(base)
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    with pytest.raises(ImportError, match=r'pip install "madlib\[lora\]"'):
        lora_copy(base, rank=4)


def test_the_module_imports_without_peft(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    spec = importlib.util.find_spec("madlib.diffusion.lora")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a top-level `import peft` would raise here
    assert module.LORA_TARGETS == LORA_TARGETS


def test_one_seed_one_adapter_and_the_global_generator_untouched():
    base = _base()
    state = torch.random.get_rng_state()
    a, b, c = (lora_copy(base, rank=4, seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    init_a, init_c = adapter_parameters(a), adapter_parameters(c)
    assert any(not torch.equal(init_a[n], init_c[n]) for n in init_a if "lora_A" in n)
    trained_a, trained_b = adapter_parameters(_fine_tune(a)), adapter_parameters(_fine_tune(b))
    assert all(torch.equal(trained_a[n], trained_b[n]) for n in trained_a)


def test_finetune_lora_trains_the_adapters_of_a_copy_with_adamw():
    from madlib.diffusion.lora import finetune_lora

    base = _base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    g = torch.Generator().manual_seed(3)
    data, labels = torch.rand(1, 16, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 10, (1, 16), generator=g)
    model, stats = finetune_lora(base, data, partial(ddpm_eps_loss, schedule=cosine_schedule(40)), samples_seen=24,
                                 rank=4, seed=0, lr=1e-2, batch_size=8, labels=labels, generator=g)
    assert stats.steps == 3 and all(torch.equal(v, before[k]) for k, v in base.state_dict().items())
    fresh = lora_copy(base, rank=4, seed=0)
    moved = [not torch.equal(p, q) for p, q in zip(adapter_parameters(model).values(), adapter_parameters(fresh).values())]
    assert all(moved) and trainable_parameters(model) == trainable_parameters(fresh)
