"""R independent U-Nets of one architecture as one module: the seeds of a setting trained together.

Why: every setting of the MNIST experiments is run with several seeds (replicas). Instead of R
training loops, :class:`BatchedUNet` holds the R members' weights stacked as parameters
[R, ...] and takes inputs whose first axis is the member: x [R, B, C, H, W], t and y [R, B], output
[R, B, C, H, W] (the ensemble convention of :func:`madlib.diffusion.training.train_ensemble`, the
losses and the samplers, as :class:`madlib.diffusion.networks.EnsembleMLP`). The per-member losses
[R] are summed; member r's loss depends only on member r's weights, so each member gets exactly its
own gradient, and Adam being elementwise, each follows the updates it would get alone.

Two ways to run the members (``strategy``), the same numbers up to float rounding:

- ``"vmap"``: one batched computation, ``torch.vmap`` over ``torch.func.functional_call`` of the
  plain :class:`~madlib.diffusion.unet.UNet` (its convolutions become one grouped convolution with
  R groups, its GroupNorms and linears one batched call each). On a GPU this is where throughput
  should come from: R small U-Nets fill the device as one wide one, one kernel launch per layer.
- ``"loop"``: the members one after another, each a ``functional_call`` on its slice of the stacked
  weights. On CPUs this is the faster one: oneDNN's grouped convolution and vmap's GroupNorm are
  slower than R separate calls (below).
- ``"auto"`` (default): ``"vmap"`` when x is on a CUDA device, ``"loop"`` otherwise.

Measured (``benchmarks/bench_batched_unets.py --threads 1``: R = 3 members, 14x14, base 16, batch
64 per member, DDPM eps loss; sampling = forward passes of 256 per member without gradients; the
shared 2-core CPU with another job running, three runs), relative to R UNets trained one after
another (1,470-1,720 images/s): training loop 1.12-1.18x (likely one Adam over stacked tensors, not
R), vmap 0.92-0.99x; sampling loop 0.96-1.31x, vmap 0.51-0.73x. At 2 threads on that busy machine
every row varied several-fold between runs. Not yet measured on a GPU, where vmap is the point.

Limits: U-Nets built with ``channels_last=True`` are refused (vmap cannot query memory formats);
the stacked module has no ``chunk``ing, so the R members' activations are alive together, as with
R separate nets whose summed loss is backpropagated once (vmap adds transposed copies of them
around each grouped convolution).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from madlib._checks import check_choice, check_int
from madlib.diffusion.unet import UNet

STRATEGIES = ("auto", "vmap", "loop")


def _key(name: str) -> str:
    """A parameter's dotted name as a ParameterDict key ('down.0.0.conv1.weight' -> 'down__0__0__conv1__weight')."""
    return name.replace(".", "__")


def _architecture(net: UNet) -> tuple:
    """What must agree between members: the class, the layers, the settings and each tensor's shape, dtype, device."""
    settings = {k: v for k, v in vars(net).items() if not k.startswith("_") and k != "training"}
    tensors = [(n, tuple(p.shape), p.dtype, p.device) for n, p in net.named_parameters()]
    tensors += [(n, tuple(b.shape), b.dtype, b.device) for n, b in net.named_buffers()]
    return type(net), repr(net), settings, tensors


def _check_nets(nets) -> list[UNet]:
    if isinstance(nets, nn.Module) or not isinstance(nets, Sequence) or len(nets) == 0:
        raise ValueError(f"nets must be a non-empty list of UNet; got {type(nets).__name__}")
    nets = list(nets)
    for i, net in enumerate(nets):
        if not isinstance(net, UNet):
            raise TypeError(f"nets[{i}] must be a UNet; got {type(net).__name__}")
        if net.channels_last:
            raise ValueError(f"nets[{i}] uses channels_last=True, which vmap cannot batch; build it with "
                             "channels_last=False")
    first = _architecture(nets[0])
    for i, net in enumerate(nets[1:], start=1):
        if _architecture(net) != first:
            raise ValueError(f"nets must share one architecture (layers, settings, dtype, device); nets[{i}] "
                             "differs from nets[0]")
    return nets


class BatchedUNet(nn.Module):
    """R independent U-Nets eps_r(x_r, t_r, y_r) -> [R, B, C, H, W] (module docstring: why, strategies, speed).

    Build with :meth:`from_nets` (copies of given UNets) or :meth:`new` (fresh members, one seed
    each). Parameters: ``stacked[name]`` [R, *shape of the UNet's parameter ``name``] (dots in the
    name become ``__``); ``torch.optim.Adam(batched.parameters())`` and ``train_ensemble`` train all
    members. :meth:`member` returns a plain UNet with one member's weights.

    Args:
        nets: the members' initial weights (copied); one architecture.
        strategy: "vmap" (one batched computation), "loop" (members one after another) or "auto"
            ("vmap" on CUDA inputs, "loop" otherwise).
    """

    def __init__(self, nets: Sequence[UNet], *, strategy: str = "auto"):
        super().__init__()
        nets = _check_nets(nets)
        self.strategy = check_choice("strategy", strategy, STRATEGIES)
        self.members = len(nets)
        first = nets[0]
        self.image_channels, self.image_size = first.image_channels, first.image_size
        self.base_channels, self.num_classes = first.base_channels, first.num_classes
        self.num_sources = getattr(first, "num_sources", 0)  # the second label s, where UNet has one
        params, buffers = stack_module_state(nets)  # name -> [R, ...] (leaf copies)
        self.stacked = nn.ParameterDict({_key(n): nn.Parameter(p.detach()) for n, p in params.items()})
        self.stacked_buffers = nn.Module()
        for n, b in buffers.items():
            self.stacked_buffers.register_buffer(_key(n), b)
        self._names = tuple(params)  # dotted UNet names, in the UNet's order
        self._buffer_names = tuple(buffers)
        # the architecture without weights: functional_call supplies them; not a submodule, so its
        # (meta) parameters stay out of parameters() and state_dict()
        self.__dict__["_template"] = copy.deepcopy(first).to("meta")
        self.train(first.training)

    @classmethod
    def from_nets(cls, nets: Sequence[UNet], *, strategy: str = "auto") -> "BatchedUNet":
        """One member per UNet of ``nets`` (their weights copied; the nets are left untouched)."""
        return cls(nets, strategy=strategy)

    @classmethod
    def new(cls, members: int, *, seeds: Sequence[int] | None = None, strategy: str = "auto",
            **unet_kwargs) -> "BatchedUNet":
        """``members`` fresh members; member r is initialised exactly as ``UNet(seed=seeds[r], **unet_kwargs)``.

        seeds: one non-negative int per member; None means 0, 1, ..., members - 1.
        """
        members = check_int("members", members, minimum=1)
        if "seed" in unet_kwargs:
            raise TypeError("pass seeds (one per member), not seed")
        seeds = list(range(members)) if seeds is None else list(seeds)
        if len(seeds) != members:
            raise ValueError(f"seeds must hold one seed per member (members={members}); got {len(seeds)}")
        return cls([UNet(seed=s, **unet_kwargs) for s in seeds], strategy=strategy)

    def train(self, mode: bool = True) -> "BatchedUNet":
        super().train(mode)
        self._template.train(mode)
        return self

    def _weights(self) -> tuple[dict, dict]:
        """(parameters, buffers) as dotted UNet name -> [R, ...]."""
        params = {n: self.stacked[_key(n)] for n in self._names}
        buffers = {n: self.stacked_buffers.get_buffer(_key(n)) for n in self._buffer_names}
        return params, buffers

    def forward(self, x: torch.Tensor, t, y: torch.Tensor | None = None, *args, **kwargs) -> torch.Tensor:
        """x [R, B, C, H, W]; t [R, B] or a scalar; y [R, B] labels or None (the "no label" token) -> [R, B, C, H, W].

        Further arguments go to each member's UNet forward: a tensor with ndim >= 1 must lead with
        R and member r gets its slice [r]; anything else (None, numbers, 0-dim tensors) goes to
        every member unchanged.
        """
        shape = (self.members, self.image_channels, self.image_size, self.image_size)
        if x.ndim != 5 or (x.shape[0],) + tuple(x.shape[2:]) != shape:
            raise ValueError(f"x must be [members={self.members}, batch, {self.image_channels}, {self.image_size}, "
                             f"{self.image_size}]; got {tuple(x.shape)}")
        t = torch.broadcast_to(torch.as_tensor(t, dtype=x.dtype, device=x.device), x.shape[:2])  # [R, B]
        if y is None and self.num_classes:
            y = torch.full(x.shape[:2], self.num_classes, dtype=torch.long, device=x.device)  # [R, B] no label
        names = ["x", "t", "y", *(f"args[{i}]" for i in range(len(args))), *kwargs]
        values = [x, t, y, *args, *kwargs.values()]
        mapped = [isinstance(v, torch.Tensor) and v.ndim > 0 for v in values]  # per member: sliced along R
        for name, v, m in zip(names, values, mapped):
            if m and v.shape[0] != self.members:
                raise ValueError(f"{name} must lead with members={self.members}; got {tuple(v.shape)}")
        one = self._member_call(values, mapped, positional=3 + len(args), keywords=tuple(kwargs))
        params, buffers = self._weights()
        tensors = [v for v, m in zip(values, mapped) if m]
        strategy = self.strategy if self.strategy != "auto" else ("vmap" if x.device.type == "cuda" else "loop")
        if strategy == "vmap":
            return torch.vmap(one, in_dims=(0, 0) + (0,) * len(tensors))(params, buffers, *tensors)
        return torch.stack([one({n: p[r] for n, p in params.items()}, {n: b[r] for n, b in buffers.items()},
                                *(v[r] for v in tensors)) for r in range(self.members)])  # [R, B, C, H, W]

    def _member_call(self, values: list, mapped: list[bool], positional: int, keywords: tuple[str, ...]):
        """One member's forward (params, buffers, *its slices of the mapped values) -> [B, C, H, W]."""

        def one(params: dict, buffers: dict, *tensors: torch.Tensor) -> torch.Tensor:
            it = iter(tensors)
            full = [next(it) if m else v for v, m in zip(values, mapped)]
            return functional_call(self._template, (params, buffers), tuple(full[:positional]),
                                   dict(zip(keywords, full[positional:])))

        return one

    def member(self, index: int) -> UNet:
        """A plain UNet holding a copy of member ``index``'s weights (same device, dtype and train mode)."""
        index = check_int("index", index, minimum=0)
        if index >= self.members:
            raise ValueError(f"index must be < members={self.members}; got {index}")
        params, buffers = self._weights()
        first = next(iter(params.values()))
        net = copy.deepcopy(self._template).to_empty(device=first.device).to(first.dtype)
        with torch.no_grad():
            for n, p in net.named_parameters():
                p.copy_(params[n][index])
            for n, b in net.named_buffers():
                b.copy_(buffers[n][index])
        return net
