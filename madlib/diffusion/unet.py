"""A small class-conditional U-Net: the denoiser of the MNIST DDPM experiments (MAD-9..12).

MAD trains "a conditional DDPM [Ho et al. 2020]" on MNIST (Sec. 3.2) without describing the network.
This is the U-Net of Ho et al. 2020 (App. B: sinusoidal time embedding, residual blocks with
GroupNorm + SiLU, skip connections, optional self-attention) shrunk for CPUs, with a class embedding
whose extra row ``num_classes`` is the "no label" token of classifier-free guidance (Ho & Salimans 2022).

Layout at the defaults (``base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1``), 28x28 input::

    stem    conv 3x3 1 -> 32                                   28x28
    down 0  res 32 -> 32, skip, conv 3x3 stride 2              28x28 -> 14x14
    down 1  res 32 -> 64, skip, conv 3x3 stride 2              14x14 -> 7x7
    down 2  res 64 -> 64, skip (lowest level: no downsampling) 7x7
    middle  res 64 -> 64 [+ self-attention]                    7x7
    up 2    concat skip, res 128 -> 64, nearest-upsample to the next skip's size + conv 3x3   7x7 -> 14x14
    up 1    concat skip, res 128 -> 64, upsample + conv                                    14x14 -> 28x28
    up 0    concat skip, res 96 -> 32
    out     GroupNorm, SiLU, conv 3x3 32 -> 1 (zero-initialised: the untrained net predicts eps = 0)

Downsampling rounds up (7 -> 4) and upsampling goes to the size of the skip it meets, so any image
size works (28 -> 14 -> 7, 14 -> 7 -> 4, 8 -> 4 -> 2). Parameters (:func:`parameter_count`, 10
classes, mults (1, 2, 2), one block per level; they do not depend on the image size): base 16 ->
175,441 (168,225 with ``decoder="narrow"`` or ``"lean"``); base 32 -> 695,969; base 64 -> 2,772,289;
attention adds 4 c^2 + 6 c at the lowest width c.
Training throughput on the shared 2-core development machine, one thread, batch 64: base 16 ->
1,050 images/s at 14x14, 285 at 28x28; base 32 -> 440 and 110 (``benchmarks/bench_image_diffusion.py``).

Time input: the raw DDPM step index as a float (any float works; the embedding's frequencies suit
values from 0 to about 1000). Ensemble convention: the U-Net is one model (``members = 1``) and
accepts ``x`` [1, B, C, H, W] as the losses, samplers and :func:`train_ensemble` pass it, or plain
[B, C, H, W]; t and y then have the shape of the leading dimensions ([1, B] or [B]).
"""

from __future__ import annotations

import contextlib

import math

import torch
from torch import nn
from torch.nn import functional as F

from madlib._checks import check_choice, check_int


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    # Ho et al. 2020 App. B (Vaswani et al. 2017 Sec. 3.5): [sin(t f_i), cos(t f_i)], f_i = max_period^(-i / half)
    """t [N] (floats) -> [N, dim], in float64 for float64 t (a network run in double precision), else float32."""
    half = dim // 2
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / half)
    args = t.to(dtype)[:, None] * freqs[None]  # [N, half]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


CONDITIONINGS = ("add", "scale_shift")
DECODERS = ("full", "narrow", "lean")


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv 3x3, conditioning, GroupNorm, SiLU, conv 3x3 (zero-init), + skip.

    ``conditioning="add"`` adds the projected embedding before the second GroupNorm (which, at one or two
    channels per group, normalises most of it away); ``"scale_shift"`` applies it after that norm as
    h * (1 + scale) + shift (adaptive group norm, Dhariwal & Nichol 2021 Sec. 3), where no norm follows it.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int, conditioning: str = "add"):
        super().__init__()
        self.scale_shift = conditioning == "scale_shift"
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, (2 if self.scale_shift else 1) * out_channels)
        self.norm2 = _norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # h [N, C_in, H, W], emb [N, E] (already passed through SiLU) -> [N, C_out, H, W]
        out = self.conv1(F.silu(self.norm1(h)))
        e = self.emb(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            out = self.norm2(out) * (1 + scale) + shift
        else:
            out = self.norm2(out + e)
        out = self.conv2(F.silu(out))
        return self.skip(h) + out


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels, with a residual connection (zero-init output)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, c, height, width = h.shape
        q, k, v = self.qkv(self.norm(h)).reshape(n, 3, c, height * width).transpose(2, 3).unbind(1)  # [N, L, C] each
        a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # [N, L, C]
        return h + self.proj(a.transpose(1, 2).reshape(n, c, height, width))


class UNet(nn.Module):
    """Class-conditional U-Net eps(x, t, y) for DDPM (module docstring: layout, sizes, conventions).

    Args:
        image_channels, image_size: input images [.., C, H, W] with H = W = ``image_size``.
        base_channels: width of the first level; level i has ``base_channels * channel_mults[i]``.
        channel_mults: one entry per resolution level (one downsampling between consecutive levels).
        num_sources: values of a second label s (CASD's data source: 0 real, 1 synthetic), 0..num_sources-1,
            with its own "no label" token ``num_sources``; it goes through its own embedding and a small
            SiLU MLP into the conditioning (CASD App. A.2). 0 (default): no second label.
        num_res_blocks: residual blocks per level on each path.
        num_classes: class labels 0..num_classes-1; index ``num_classes`` is the "no label" token
            (condition dropout trains it; y = None means every sample has it). 0: unconditional.
        attention: self-attention at the lowest resolution (off by default: slow on CPUs).
        norm_groups: GroupNorm groups (reduced to a divisor of the channel count where needed).
        conditioning: how each residual block takes the time / class / source embedding: ``"add"`` (default,
            before a GroupNorm) or ``"scale_shift"`` (adaptive group norm; see :class:`ResBlock`).
        decoder: the upsampling convs (project choice, issue 24: at 14x14, width 16 the last one is 21% of the
            FLOPs and the block after it 16%). ``"full"`` (default): nearest upsampling, then a conv c -> c at the
            finer size. ``"narrow"``: the conv maps to the finer level's width (32 -> 16 at the top), so the block
            after it reads fewer channels. ``"lean"``: narrow, and the conv runs before the upsampling, at the
            coarser size (a quarter of its FLOPs). The default's weights for one seed do not depend on this option.
        amp: run the forward pass under ``torch.autocast`` in bfloat16 (meant for CUDA; bf16 needs no
            loss scaling); the output is cast back to the input's dtype.
        channels_last: keep weights and activations in ``torch.channels_last`` memory format.
        seed: the initial weights are drawn with this seed (inside ``torch.random.fork_rng``, so the
            global generator is untouched); None draws from the global generator.
        device: where the parameters live.
    """

    members = 1  # one model: the ensemble axis of [R, B, ...] inputs is 1

    def __init__(self, image_channels: int = 1, image_size: int = 28, base_channels: int = 32,
                 channel_mults: tuple[int, ...] = (1, 2, 2), num_classes: int = 10, *, num_sources: int = 0,
                 num_res_blocks: int = 1,
                 attention: bool = False, norm_groups: int = 8, amp: bool = False, channels_last: bool = False,
                 conditioning: str = "add", decoder: str = "full", seed: int | None = None, device=None):
        super().__init__()
        self.image_channels = check_int("image_channels", image_channels, minimum=1)
        self.image_size = check_int("image_size", image_size, minimum=2)
        self.base_channels = check_int("base_channels", base_channels, minimum=1)
        self.channel_mults = tuple(check_int(f"channel_mults[{i}]", m, minimum=1) for i, m in enumerate(channel_mults))
        if not self.channel_mults:
            raise ValueError("channel_mults must hold at least one level")
        self.num_classes = check_int("num_classes", num_classes, minimum=0)
        self.num_sources = check_int("num_sources", num_sources, minimum=0)
        self.num_res_blocks = check_int("num_res_blocks", num_res_blocks, minimum=1)
        check_int("norm_groups", norm_groups, minimum=1)
        self.conditioning = check_choice("conditioning", conditioning, CONDITIONINGS)
        self.decoder = check_choice("decoder", decoder, DECODERS)
        self.attention, self.amp, self.channels_last = bool(attention), bool(amp), bool(channels_last)
        if seed is None:
            self._build(norm_groups)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(check_int("seed", seed, minimum=0))
                self._build(norm_groups)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        self.to(device)

    def _build(self, groups: int) -> None:
        c0 = self.base_channels
        emb_dim = 4 * c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(self.num_classes + 1, emb_dim) if self.num_classes else None
        self.stem = nn.Conv2d(self.image_channels, c0, 3, padding=1)
        widths = [c0 * m for m in self.channel_mults]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        ch = c0
        for level, width in enumerate(widths):
            blocks = []
            for _ in range(self.num_res_blocks):
                blocks.append(ResBlock(ch, width, emb_dim, groups, self.conditioning))
                ch = width
            self.down.append(nn.ModuleList(blocks))
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.middle = ResBlock(ch, ch, emb_dim, groups, self.conditioning)
        self.middle_attention = SelfAttention(ch, groups) if self.attention else None
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            blocks = []
            for i in range(self.num_res_blocks):
                blocks.append(ResBlock(ch + (width if i == 0 else 0), width, emb_dim, groups, self.conditioning))
                ch = width
            self.up.append(nn.ModuleList(blocks))
            if level > 0:
                out_ch = ch if self.decoder == "full" else widths[level - 1]
                self.upsample.append(nn.Conv2d(ch, out_ch, 3, padding=1))
                ch = out_ch
        self.out_norm = _norm(ch, groups)
        self.out = nn.Conv2d(ch, self.image_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # CASD App. A.2: label embedding -> SiLU MLP, added to the conditioning; drawn last, so that a U-Net
        # without it has, for one seed, the weights it always had
        self.source_emb = None
        if self.num_sources:
            self.source_emb = nn.Sequential(nn.Embedding(self.num_sources + 1, emb_dim), nn.SiLU(),
                                            nn.Linear(emb_dim, emb_dim))

    def forward(self, x: torch.Tensor, t, y: torch.Tensor | None = None, s: torch.Tensor | None = None) -> torch.Tensor:
        """x [1, B, C, H, W] or [B, C, H, W]; t, y and s [1, B] or [B] (t may be a scalar); -> x's shape.

        y = None (s = None) gives every sample the class (source) "no label" token.
        """
        shape = (self.image_channels, self.image_size, self.image_size)
        if x.ndim not in (4, 5) or (x.ndim == 5 and x.shape[0] != 1) or tuple(x.shape[-3:]) != shape:
            raise ValueError(f"x must be [members=1, batch, {', '.join(map(str, shape))}] or "
                             f"[batch, {', '.join(map(str, shape))}]; got {tuple(x.shape)}")
        h = x.reshape((-1,) + shape)  # [N, C, H, W], N = B
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        emb = self.embed(x, t, y, s)
        # amp: this network's own bf16; otherwise a caller's autocast (core.train / core.sample precision) reaches in
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16) if self.amp else contextlib.nullcontext():
            out = self._unet(h, emb)
        return out.to(x.dtype).reshape(x.shape)

    def _unet(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # h [N, C, H, W], emb [N, E]
        return self.decode(*self.encode(h, emb), emb)

    def embed(self, x: torch.Tensor, t, y: torch.Tensor | None = None, s: torch.Tensor | None = None) -> torch.Tensor:
        """The conditioning SiLU(emb) [N, E] that :meth:`forward` passes to every block."""
        lead = x.shape[:-3]
        t = torch.broadcast_to(torch.as_tensor(t, dtype=x.dtype, device=x.device), lead).reshape(-1)
        emb = self.time_mlp(timestep_embedding(t, self.base_channels))  # [N, 4 c0]
        if self.class_emb is not None:
            labels = torch.full(lead, self.num_classes, device=x.device) if y is None else y
            emb = emb + self.class_emb(labels.reshape(-1).long())
        elif y is not None:
            raise ValueError("y must be None for an unconditional U-Net (num_classes = 0)")
        if self.source_emb is not None:
            sources = torch.full(lead, self.num_sources, device=x.device) if s is None else s
            emb = emb + self.source_emb(sources.reshape(-1).long())
        elif s is not None:
            raise ValueError("s (second label) must be None for a U-Net without one (num_sources = 0)")
        return F.silu(emb)

    def encode(self, h: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The encoder half and the middle block: h [N, C, H, W] -> (bottleneck features, skip features)."""
        h = self.stem(h)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)  # [N, c, ceil(H/2), ceil(W/2)]
        h = self.middle(h, emb)
        if self.middle_attention is not None:
            h = self.middle_attention(h)
        return h, skips

    def decode(self, h: torch.Tensor, skips: list[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        """The decoder half: (bottleneck, skips) of :meth:`encode` -> the output [N, C, H, W]."""
        skips = list(skips)
        for i, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)  # [N, c + c_skip, H_l, W_l]
            for block in blocks:
                h = block(h, emb)
            if i < len(self.upsample):
                size = skips[-1].shape[-2:]
                if self.decoder == "lean":  # the conv at the coarse size, then upsample
                    h = F.interpolate(self.upsample[i](h), size=size, mode="nearest")
                else:
                    h = self.upsample[i](F.interpolate(h, size=size, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))


def parameter_count(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
