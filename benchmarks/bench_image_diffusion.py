"""U-Net training and sampling throughput: fp32 baseline vs channels_last (and on CUDA: bf16 autocast,
torch.compile), same process.

    python benchmarks/bench_image_diffusion.py --sizes 14,28 --bases 16,32 --threads 1

Training: Adam steps of the DDPM epsilon loss with 10% condition dropout (``train_ensemble``, as
``ImageDiffusionFamily.fit``); sampling: DDPM ancestral steps with classifier-free guidance (two
network passes per step at lambda < 1, as ``ImageDiffusionFamily.sample``), reported as images/s for
a chain of ``--sample-steps`` steps (a chain of T steps costs T / sample-steps times as much). Each
variant is warmed up first (compilation included there). Prints one row per variant and its ratio
to the fp32 row of the same size and width. Not a test.
"""

from __future__ import annotations

import argparse
import time

import torch

from madlib.diffusion.guidance import cfg_predictors, constant_weight, w_from_lam
from madlib.diffusion.losses import ddpm_eps_loss
from madlib.diffusion.samplers import ddpm_ancestral_sampler
from madlib.diffusion.schedules import cosine_schedule
from madlib.diffusion.training import train_ensemble
from madlib.diffusion.unet import UNet, parameter_count
from madlib.machine import machine_info


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_rate(net, size: int, args, device: str, schedule) -> float:
    """Training images/s over ``args.train_steps`` Adam steps (after 2 warm-up steps)."""
    g = torch.Generator().manual_seed(0)
    n = args.batch * 4
    data = (torch.rand(1, n, 1, size, size, generator=g) * 2 - 1).to(device)
    labels = torch.randint(0, 10, (1, n), generator=g).to(device)
    loss = lambda m, x, **kw: ddpm_eps_loss(m, x, schedule, **kw)  # noqa: E731
    settings = dict(batch_size=args.batch, labels=labels, cond_dropout=0.1, generator=g)
    train_ensemble(net, data, loss, samples_seen=2 * args.batch, **settings)
    _sync(device)
    start = time.perf_counter()
    train_ensemble(net, data, loss, samples_seen=args.train_steps * args.batch, **settings)
    _sync(device)
    return args.train_steps * args.batch / (time.perf_counter() - start)


@torch.no_grad()
def sample_rate(net, size: int, args, device: str, schedule) -> float:
    """Images/s of guided ancestral chains of ``args.sample_steps`` steps (after one warm-up chain)."""
    g = torch.Generator().manual_seed(1)
    y = (torch.arange(args.sample_batch) % 10).to(device)[None]
    eps, guide = cfg_predictors(net, y)
    weight = constant_weight(w_from_lam(args.lam))

    def chain():
        noise = torch.randn(1, args.sample_batch, 1, size, size, generator=g).to(device)
        return ddpm_ancestral_sampler(eps, noise, schedule, guide=guide, weight=weight, generator=g, clip_x0=(-1, 1))

    chain()
    _sync(device)
    start = time.perf_counter()
    chain()
    _sync(device)
    return args.sample_batch / (time.perf_counter() - start)


def variants(device: str) -> dict:
    """name -> (UNet keyword arguments, compile?); the CUDA-only ones only on CUDA."""
    out = {"fp32": ({}, False), "channels_last": ({"channels_last": True}, False)}
    if device.startswith("cuda"):
        out |= {"bf16 autocast": ({"amp": True}, False),
                "bf16 + channels_last": ({"amp": True, "channels_last": True}, False),
                "torch.compile": ({}, True), "compile + bf16": ({"amp": True}, True)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="14,28", help="image sizes, comma-separated")
    parser.add_argument("--bases", default="16,32", help="U-Net base widths, comma-separated")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--sample-steps", type=int, default=10)
    parser.add_argument("--lam", type=float, default=0.8, help="MAD's bias; < 1 guides (two passes per step)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    schedule = cosine_schedule(args.sample_steps)
    print(f"machine: {machine_info()}")  # times mean little without the machine
    print(f"device {args.device}, {torch.get_num_threads()} CPU threads, train batch {args.batch} x {args.train_steps} "
          f"steps, sampling {args.sample_batch} images x {args.sample_steps} steps at lambda {args.lam}")
    print(f"{'size':>4} {'base':>4} {'params':>9}  {'variant':<22} {'train img/s':>11} {'ratio':>6} "
          f"{'sample img/s':>12} {'ratio':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        for base in (int(b) for b in args.bases.split(",")):
            baseline = None
            for name, (kwargs, compiled) in variants(args.device).items():
                net = UNet(image_size=size, base_channels=base, seed=0, device=args.device, **kwargs)
                params = parameter_count(net)
                if compiled:
                    net = torch.compile(net)
                rates = (train_rate(net, size, args, args.device, schedule),
                         sample_rate(net, size, args, args.device, schedule))
                baseline = baseline or rates
                print(f"{size:>4} {base:>4} {params:>9,}  {name:<22} {rates[0]:>11,.0f} "
                      f"{rates[0] / baseline[0]:>5.2f}x {rates[1]:>12,.1f} {rates[1] / baseline[1]:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
