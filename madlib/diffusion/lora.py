"""LoRA fine-tuning of the U-Net: ReDiFine's per-iteration adapter (Sec. 3.1, App. A.1 Table 1).

ReDiFine fine-tunes the pretrained model M_0 "using LoRA (Hu et al., 2021) at each iteration"
(R:222, R:708), following kohya-ss, with "LoRA Rank 32" and "LoRA Weight Scaling 8" (R:553-554).

LoRA (Hu et al. 2021 Eq. 3) replaces a layer's weight W [out, in] by W + (alpha / r) B A with
A [r, in] (Kaiming-uniform at start) and B [out, r] (zero at start, so the adapted model starts as
the base model exactly). For a Conv2d(in, out, k) the pair is A = Conv2d(in, r, k) (same stride and
padding as the base) and B = Conv2d(r, out, 1): r (in k^2 + out) parameters; for a Linear(in, out),
r (in + out). Only A and B train; every base weight stays frozen.

Alpha mapping: kohya-ss scales its adapters by ``network_alpha / network_dim`` and peft by
``lora_alpha / r`` (peft ``LoraConfig``: "the alpha parameter for Lora scaling", scaling
``lora_alpha / r`` unless ``use_rslora``). Reading Table 1's "Weight Scaling 8" as kohya's
``network_alpha = 8`` gives ``lora_alpha = 8`` with rank 32: each update enters with the factor
8 / 32 = 0.25 (project reading; the other reading, a multiplier of 8 on B A, would be
``lora_alpha = 256``).

Targets (:data:`LORA_TARGETS`, project choice): kohya-ss's default LoRA adapts Stable Diffusion's
transformer blocks (attention and feed-forward projections), with optional 3x3 convolutions of the
residual blocks. This U-Net has no cross-attention and its self-attention is off by default, so the
adapter goes where its weights are: every residual block's two 3x3 convolutions, its 1x1 skip
convolution and its embedding projection, the self-attention's qkv and output projections when
present, and the time-embedding MLP (the path by which t and, after the sum, y enter every block).
The stem and output convolutions (1 image channel), the down/upsampling convolutions and the class
embedding table stay frozen, as kohya's default leaves the VAE-facing layers and the embeddings.

``peft`` is an optional dependency (``pip install "madlib[lora]"``), imported only inside the
functions that need it.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from madlib._checks import check_int, check_interval

# project choice (module docstring): suffixes of the U-Net's Linear and Conv2d layer names
LORA_TARGETS = ("time_mlp.0", "time_mlp.2", "conv1", "conv2", "skip", "emb", "qkv", "proj")


def lora_copy(net: nn.Module, *, rank: int = 32, alpha: float = 8.0, target_modules=None, dropout: float = 0.0,
              seed: int | None = None) -> nn.Module:
    # ReDiFine App. A.1 Table 1 (R:553-554): LoRA rank 32, weight scaling 8 -> peft lora_alpha = 8
    """A LoRA-adapted deep copy of ``net`` (a peft ``PeftModel``); ``net`` itself is left unchanged.

    The copy is called like the network, ``model(x, t, y)`` with x [1, B, C, H, W] or [B, C, H, W],
    and forwards ``members``, ``num_classes`` and the other attributes to it (peft forwards unknown
    attributes to the wrapped model). Only the adapter matrices require gradients; right after the
    call the copy's outputs equal ``net``'s exactly (B = 0).

    Args:
        net: the base network (e.g. :class:`madlib.diffusion.unet.UNet`).
        rank: r, the inner dimension of each adapter (ReDiFine: 32).
        alpha: peft's ``lora_alpha``; updates are scaled by alpha / rank (ReDiFine: 8, i.e. 0.25).
        target_modules: names or name suffixes (peft's rule: ``name == t`` or ``name`` ends with
            ``"." + t``) of the Linear / Conv2d layers to adapt; each must match at least one.
            None: the entries of :data:`LORA_TARGETS` that ``net`` has (:func:`default_targets`).
        dropout: peft's ``lora_dropout`` on each adapter's input in training mode (it draws from the
            global generator; ReDiFine / kohya-ss default: none).
        seed: the adapters' A matrices are drawn with this seed inside ``torch.random.fork_rng`` (the
            global generator is untouched); None draws from the global generator.
    """
    rank = check_int("rank", rank, minimum=1)
    alpha = check_interval("alpha", alpha, 0.0, float("inf"), low_open=True, high_open=True)
    dropout = check_interval("dropout", dropout, 0.0, 1.0, high_open=True)
    names = default_targets(net) if target_modules is None else resolve_targets(net, target_modules)
    peft = _import_peft()
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                             target_modules=_exact_pattern(names))
    if seed is None:
        model = peft.get_peft_model(copy.deepcopy(net), config)
    else:
        seed = check_int("seed", seed, minimum=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = peft.get_peft_model(copy.deepcopy(net), config)
    if getattr(net, "channels_last", False):
        model.to(memory_format=torch.channels_last)
    return model


def finetune_lora(net: nn.Module, data: torch.Tensor, loss_fn, *, samples_seen: int, rank: int = 32, alpha: float = 8.0,
                  target_modules=None, seed: int | None = None, optimizer: str = "adamw", lr: float = 1e-4,
                  **train_kwargs):
    # ReDiFine Eq. 1 with App. A.1 Table 1: M_{k+1} = Finetune(M_0, D_k) through a LoRA adapter, AdamW 1e-4
    """(adapted copy, TrainStats): :func:`lora_copy` of ``net``, then only its adapters trained on ``data``.

    ``data`` [1, N, ...], ``loss_fn`` and ``train_kwargs`` as for
    :func:`madlib.diffusion.training.train_ensemble` (labels, cond_dropout, generator, ema, checkpoint, ...).
    ``net`` is left bit-identical; :func:`merge_lora` turns the result into a plain network.
    """
    from madlib.diffusion.training import train_ensemble

    model = lora_copy(net, rank=rank, alpha=alpha, target_modules=target_modules, seed=seed)
    stats = train_ensemble(model, data, loss_fn, samples_seen=samples_seen, optimizer=optimizer, lr=lr, **train_kwargs)
    return model, stats


def default_targets(net: nn.Module) -> list[str]:
    """Full names of ``net``'s Linear / Conv2d layers matched by :data:`LORA_TARGETS` (absent entries skipped)."""
    names = [name for name in adaptable_layers(net) if any(_matches(name, t) for t in LORA_TARGETS)]
    if not names:
        raise ValueError(f"the network has none of the default LoRA targets {LORA_TARGETS}; pass target_modules")
    return names


def resolve_targets(net: nn.Module, target_modules) -> list[str]:
    """Full names of the Linear / Conv2d layers matched by ``target_modules``, in module order.

    Raises ValueError naming ``target_modules`` when a name matches none of them (listing those there are).
    """
    if not isinstance(target_modules, (list, tuple)) or not all(isinstance(t, str) for t in target_modules):
        raise TypeError(f"target_modules must be a list or tuple of module names (str); got {target_modules!r}")
    if not target_modules:
        raise ValueError("target_modules must name at least one module")
    layers = adaptable_layers(net)
    for target in target_modules:
        if not any(_matches(name, target) for name in layers):
            raise ValueError(f"target_modules entry {target!r} matches no Linear or Conv2d module of the network; "
                             f"those there are: {list(layers)}")
    return [name for name in layers if any(_matches(name, t) for t in target_modules)]


def adaptable_layers(net: nn.Module) -> dict[str, nn.Module]:
    """name -> module for every Linear and Conv2d layer of ``net`` (the layer types LoRA adapts here)."""
    return {name: m for name, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


def merge_lora(model: nn.Module) -> nn.Module:
    # Hu et al. 2021 Sec. 4.1: W <- W + (alpha / r) B A, no inference latency
    """A plain network (the wrapped class, e.g. a UNet) with the adapters merged into its weights.

    Works on a deep copy (``model`` keeps its adapters); every parameter of the result requires
    gradients again, as in a freshly built network. Its outputs equal ``model``'s up to rounding.
    """
    peft = _import_peft()
    if not isinstance(model, peft.PeftModel):
        raise TypeError(f"model must be a LoRA model from lora_copy (a peft PeftModel); got {type(model).__name__}")
    merged = copy.deepcopy(model).merge_and_unload(safe_merge=True)
    merged.requires_grad_(True)
    return merged


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """name -> parameter for every parameter that requires gradients (after :func:`lora_copy`: the adapters).

    Pass ``adapter_parameters(model).values()`` to an optimiser to train only the adapters.
    """
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def trainable_parameters(model: nn.Module) -> int:
    """Number of scalars that require gradients: r (in + out) per Linear, r (in k^2 + out) per Conv2d adapted."""
    return sum(p.numel() for p in adapter_parameters(model).values())


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def _exact_pattern(names: list[str]) -> str:
    """A regex peft full-matches against module names: exactly ``names`` and nothing else."""
    return "^(?:" + "|".join(re.escape(n) for n in names) + ")$"


def _import_peft():
    try:
        import peft
    except ImportError as err:
        raise ImportError('LoRA fine-tuning needs the optional dependency peft: pip install "madlib[lora]"') from err
    return peft
