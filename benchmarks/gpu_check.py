"""One-shot GPU check (``make gpu-check``): throughput of the image engine and generation 1 of the MAD-9 paper
profile, written to one JSON. Meant for a lent GPU machine; about 3-5 minutes on one H100/H200.

    python benchmarks/gpu_check.py --out figures/paper/gpu_check.json

1. U-Net training and sampling images/s at 28x28, width 32 (the paper profile's network): fp32,
   channels_last, bf16 autocast, torch.compile, as ratios to fp32 (``bench_image_diffusion.py``'s
   measurements, in process), and the achieved TFLOP/s of a training step (FLOPs counted by
   ``torch.utils.flop_counter``) beside the device's dense bf16 peak where it is known.
2. R U-Nets trained one after another vs as one BatchedUNet (``bench_batched_unets.py``), if present.
3. Generation 1 of ``mad_9_11_mnist_fully_synthetic``'s paper profile: MNIST 5k at 28x28, T = 500,
   width 32, n = 4000, 50 epochs, batch 128, lr 1e-3, EMA 0.999; 1000 samples against the held-out
   split (FID, precision, recall, accuracy) and the real-vs-real floor; training and sampling times.

Nothing here is a test; the JSON is committed with the numbers of the machine that made it.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from madlib._io import atomic_path
from madlib.machine import machine_info

# dense bf16 tensor-core peaks (vendor data sheets, FLOP/s); share of peak is reported only for these
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}


def peak_for(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def training_flops_per_image(size: int, base: int, device: str) -> float:
    """FLOPs of one forward + backward pass of the DDPM loss per image (torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    from madlib.diffusion.losses import ddpm_eps_loss
    from madlib.diffusion.schedules import cosine_schedule
    from madlib.diffusion.unet import UNet

    net = UNet(image_size=size, base_channels=base, seed=0, device=device)
    x = torch.rand(1, 64, 1, size, size, device=device) * 2 - 1
    with FlopCounterMode(display=False) as counter:
        ddpm_eps_loss(net, x, cosine_schedule(500), y=torch.zeros(1, 64, dtype=torch.long, device=device)).sum().backward()
    return counter.get_total_flops() / 64


def run_benchmark(script: str, args: list[str]) -> str:
    path = Path(__file__).with_name(script)
    if not path.exists():
        return f"{script} not found"
    done = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True)
    return done.stdout + (done.stderr[-2000:] if done.returncode else "")


def generation_one(device: str, quick: bool) -> dict:
    from madlib.models.images import ImageDiffusionFamily

    kw = dict(image_size=28, steps=500, base_channels=32, epochs=50.0, batch_size=128, lr=1e-3, ema_decay=0.999,
              eval_samples=1000, device=device)
    n = 4000
    if quick:  # a seconds-long dry run of this script on a CPU
        kw |= dict(image_size=8, steps=10, base_channels=8, epochs=1.0, eval_samples=50)
        n = 200
    family = ImageDiffusionFamily("mnist5k", **kw)
    start = time.perf_counter()
    model = family.fit(family.draw_real(n, np.random.default_rng(0)))
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = family.summary(model)
    sample_s = time.perf_counter() - start
    floor = family.real_floor(family.eval_samples, 7)
    return {"settings": family.settings(), "n_train": n, "train_seconds": train_s,
            "train_images_per_s": model.stats.samples_per_s, "sample_seconds": sample_s,
            "sample_images_per_s": family.eval_samples / sample_s,
            "metrics": {k: float(v[0]) for k, v in metrics.items() if k in ("fid", "precision", "recall", "accuracy")},
            "floor": {k: float(floor[k]) for k in ("fid", "precision", "recall", "accuracy")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="figures/paper/gpu_check.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script itself on a CPU")
    args = parser.parse_args()
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "cpu"
    size, base = (8, 8) if args.quick else (28, 32)
    result = {"device": args.device, "device_name": name, "torch": torch.__version__, "quick": args.quick,
              "machine": machine_info()}
    bench_args = ["--sizes", str(size), "--bases", str(base), "--device", args.device, "--batch", "128",
                  "--train-steps", "5" if args.quick else "50", "--sample-batch", "256", "--sample-steps", "5" if args.quick else "50"]
    result["bench_image_diffusion"] = run_benchmark("bench_image_diffusion.py", bench_args)
    result["bench_batched_unets"] = run_benchmark("bench_batched_unets.py", ["--device", args.device, "--size", str(size),
                                                                             "--base", str(base)])
    flops = training_flops_per_image(size, base, args.device)
    result["training_flops_per_image"] = flops
    peak = peak_for(name)
    result["bf16_peak_flops"] = peak
    gen1 = generation_one(args.device, args.quick)
    result["mad_9_paper_generation_1"] = gen1
    achieved = flops * gen1["train_images_per_s"]
    result["achieved_training_tflops_fp32_gen1"] = achieved / 1e12
    result["share_of_bf16_peak_gen1"] = None if peak is None else achieved / peak
    out = Path(args.out)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    print(f"machine: {machine_info()}")  # times mean little without the machine
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("bench_")}, indent=1))
    print(result["bench_image_diffusion"])
    print(result["bench_batched_unets"])


if __name__ == "__main__":
    main()
