"""Training R small denoisers as one batched ensemble vs one after another, same process.

    python benchmarks/bench_ensemble_training.py --members 32 --steps 200

Both sides train the SIMS-1 toy network (4 x 64 MLP, DDPM epsilon loss, T = 40) on 2D Gaussian data
with the same batch and number of steps; prints samples/s of each and the ratio. Not a test.
"""

from __future__ import annotations

import argparse
import time

import torch

from madlib.diffusion.losses import ddpm_eps_loss
from madlib.diffusion.networks import EnsembleMLP
from madlib.diffusion.schedules import cosine_schedule
from madlib.diffusion.training import train_ensemble
from madlib.machine import machine_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    data = torch.randn(args.members, args.points, 2, generator=g).to(args.device)
    schedule = cosine_schedule(40, max_beta=0.99)
    loss = lambda net, x, **kw: ddpm_eps_loss(net, x, schedule, **kw)  # noqa: E731
    budget = args.steps * args.batch

    net = EnsembleMLP(args.members, 2, generator=g, device=args.device)
    start = time.perf_counter()
    train_ensemble(net, data, loss, samples_seen=budget, batch_size=args.batch, generator=g)
    batched = time.perf_counter() - start

    start = time.perf_counter()
    for r in range(args.members):
        single = EnsembleMLP(1, 2, generator=g, device=args.device)
        train_ensemble(single, data[r:r + 1], loss, samples_seen=budget, batch_size=args.batch, generator=g)
    looped = time.perf_counter() - start

    samples = args.members * budget
    print(f"machine: {machine_info()}")  # times mean little without the machine
    print(f"{args.members} members x {args.steps} steps x batch {args.batch} on {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"batched ensemble : {batched:7.2f} s  {samples / batched:12,.0f} samples/s")
    print(f"one after another: {looped:7.2f} s  {samples / looped:12,.0f} samples/s")
    print(f"speed ratio (loop / ensemble): {looped / batched:.1f}x")


if __name__ == "__main__":
    main()
