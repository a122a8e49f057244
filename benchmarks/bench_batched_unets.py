"""R U-Nets one after another vs one BatchedUNet (both strategies), same process.

    python benchmarks/bench_batched_unets.py --members 3 --size 14 --base 16 --threads 1

Training: ``--train-steps`` Adam steps of the DDPM epsilon loss (``cosine_schedule(50)``, 10%
condition dropout) through ``train_ensemble``, after 2 warm-up steps: "sequential" trains R UNets
one after another (R calls, data [1, N, ...] each), the batched rows train one BatchedUNet on data
[R, N, ...]. Sampling: ``--sample-passes`` network forward passes without gradients (after one
warm-up pass), ``--sample-batch`` images per member. Images/s count all members; the ratio is to
the sequential row. Not a test.
"""

from __future__ import annotations

import argparse
import time

import torch

from madlib.diffusion.batched import BatchedUNet
from madlib.diffusion.losses import ddpm_eps_loss
from madlib.diffusion.schedules import cosine_schedule
from madlib.diffusion.training import train_ensemble
from madlib.diffusion.unet import UNet, parameter_count
from madlib.machine import machine_info


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _models(args) -> dict:
    """name -> list of models that together hold R members (R UNets, or one BatchedUNet)."""
    unet = dict(image_size=args.size, base_channels=args.base, device=args.device)
    return {"sequential": [UNet(seed=r, **unet) for r in range(args.members)],
            "batched loop": [BatchedUNet.new(args.members, strategy="loop", **unet)],
            "batched vmap": [BatchedUNet.new(args.members, strategy="vmap", **unet)]}


def train_rate(models: list, args, schedule) -> float:
    """Training images/s (all members) over ``args.train_steps`` Adam steps per model, after 2 warm-up steps."""
    g = torch.Generator().manual_seed(0)
    n = args.batch * 4
    data = (torch.rand(args.members, n, 1, args.size, args.size, generator=g) * 2 - 1).to(args.device)
    labels = torch.randint(0, 10, (args.members, n), generator=g).to(args.device)
    loss = lambda m, x, **kw: ddpm_eps_loss(m, x, schedule, **kw)  # noqa: E731
    settings = dict(batch_size=args.batch, cond_dropout=0.1, generator=g)

    def run(steps: int) -> None:
        first = 0
        for model in models:  # member rows first .. first + model.members - 1 of data
            rows = slice(first, first + model.members)
            train_ensemble(model, data[rows], loss, samples_seen=steps * args.batch, labels=labels[rows], **settings)
            first += model.members

    run(2)
    _sync(args.device)
    start = time.perf_counter()
    run(args.train_steps)
    _sync(args.device)
    return args.members * args.train_steps * args.batch / (time.perf_counter() - start)


@torch.no_grad()
def sample_rate(models: list, args) -> float:
    """Forward-pass images/s (all members, no gradients) over ``args.sample_passes`` passes, after one warm-up."""
    g = torch.Generator().manual_seed(1)
    shape = (args.members, args.sample_batch, 1, args.size, args.size)
    x = torch.randn(shape, generator=g).to(args.device)  # [R, B, C, H, W]
    t = torch.randint(0, 50, shape[:2], generator=g).float().to(args.device)  # [R, B]
    y = torch.randint(0, 11, shape[:2], generator=g).to(args.device)  # [R, B], 10 = no label

    def run() -> None:
        first = 0
        for model in models:
            rows = slice(first, first + model.members)
            model(x[rows], t[rows], y[rows])
            first += model.members

    run()
    _sync(args.device)
    start = time.perf_counter()
    for _ in range(args.sample_passes):
        run()
    _sync(args.device)
    return args.members * args.sample_batch * args.sample_passes / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3, help="R, the U-Nets trained together")
    parser.add_argument("--size", type=int, default=14, help="image size")
    parser.add_argument("--base", type=int, default=16, help="U-Net base width")
    parser.add_argument("--batch", type=int, default=64, help="training batch per member")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--sample-batch", type=int, default=256, help="sampling batch per member")
    parser.add_argument("--sample-passes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    schedule = cosine_schedule(50)
    params = parameter_count(UNet(image_size=args.size, base_channels=args.base))
    print(f"machine: {machine_info()}")  # times mean little without the machine
    print(f"device {args.device}, {torch.get_num_threads()} CPU threads, R = {args.members} members of "
          f"{params:,} parameters, {args.size}x{args.size}, base {args.base}; train batch {args.batch} per member "
          f"x {args.train_steps} steps; sampling {args.sample_passes} passes of {args.sample_batch} per member")
    print(f"{'variant':<14} {'train img/s':>11} {'ratio':>6} {'sample img/s':>12} {'ratio':>6}")
    baseline = None
    for name, models in _models(args).items():
        rates = (train_rate(models, args, schedule), sample_rate(models, args))
        baseline = baseline or rates
        print(f"{name:<14} {rates[0]:>11,.0f} {rates[0] / baseline[0]:>5.2f}x "
              f"{rates[1]:>12,.0f} {rates[1] / baseline[1]:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
