"""The default U-Net's training step now against the old default, in one process (images/s and their ratio).

    python benchmarks/bench_training_step.py --threads 1 --repeats 3

Variants, each timed over ``--steps`` EDM-loss steps of the 14x14 width-16 U-Net with an EMA copy, the variants
interleaved ``--repeats`` times so that a machine's drift hits them alike (best of the repeats is shown):

- ``old``: per-tensor Adam (``foreach=False``) and a per-tensor EMA loop: the training step before issue 24;
- ``new``: ``train_ensemble`` as it is (multi-tensor Adam, one-call EMA) at batch 64;
- ``new, batch 256``: the same at batch 256 (equal images seen: a quarter of the steps; its rate, not its quality);
- ``new, scale-shift``: adaptive group norm conditioning (a few more parameters; quality is the calibration's job);
- ``new, lean decoder``: ``UNet(decoder="lean")``, the two upsampling convs at the coarser size and the finer width
  (1.38x fewer FLOPs per training image; its quality per CPU-second is ``benchmarks/calibrate_step.py``'s);
- ``new, lean, batch 256``: both.

Not a test: timings never go in tests.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from madlib.diffusion import training
from madlib.diffusion.losses import EDMPrecond, edm_loss
from madlib.diffusion.training import train_ensemble
from madlib.diffusion.unet import UNet
from madlib.machine import machine_info


def images_per_s(batch: int, steps: int, conditioning: str = "add", decoder: str = "full", old: bool = False) -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 4 * batch, 1, 14, 14, generator=g) * 2 - 1
    y = torch.randint(0, 10, (1, 4 * batch), generator=g)
    net = EDMPrecond(UNet(image_size=14, base_channels=16, conditioning=conditioning, decoder=decoder, seed=0))
    ema = copy.deepcopy(net)
    saved = training.OPTIMIZERS["adam"], training.ema_update
    if old:  # the step as it was: torch's per-tensor Adam loop and one lerp_ per tensor
        training.OPTIMIZERS["adam"] = lambda params, **kw: torch.optim.Adam(params, **{**kw, "foreach": False})

        def loop_ema(average, model, decay):
            with torch.no_grad():
                for a, p in zip(average.parameters(), model.parameters()):
                    a.lerp_(p, 1.0 - decay)

        training.ema_update = loop_ema
    try:
        settings = dict(batch_size=batch, lr=2e-3, labels=y, cond_dropout=0.1, generator=g, ema=ema, ema_decay=0.99)
        train_ensemble(net, x, edm_loss, samples_seen=2 * batch, **settings)  # warm-up
        start = time.perf_counter()
        train_ensemble(net, x, edm_loss, samples_seen=steps * batch, **settings)
        return steps * batch / (time.perf_counter() - start)
    finally:
        training.OPTIMIZERS["adam"], training.ema_update = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40, help="steps of batch 64 per timing (batch 256: a quarter)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = {"old": dict(batch=64, old=True), "new": dict(batch=64), "new, batch 256": dict(batch=256),
                "new, scale-shift": dict(batch=64, conditioning="scale_shift"), "new, lean decoder": dict(batch=64, decoder="lean"),
                "new, lean, batch 256": dict(batch=256, decoder="lean")}
    rates = {name: 0.0 for name in variants}
    for _ in range(args.repeats):
        for name, kw in variants.items():
            steps = args.steps if kw["batch"] == 64 else max(1, args.steps // 4)
            rates[name] = max(rates[name], images_per_s(steps=steps, **kw))
    print(f"machine: {machine_info()}")  # times mean little without the machine
    print(f"{args.threads} thread(s), best of {args.repeats} interleaved repeats, {args.steps} steps of batch 64")
    for name, rate in rates.items():
        print(f"{name:<22} {rate:8.0f} train img/s   {rate / rates['old']:.2f}x old")


if __name__ == "__main__":
    main()
