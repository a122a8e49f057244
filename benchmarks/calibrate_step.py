"""Quality per CPU-second of the EDM U-Net's training-step options (issue 24, item 2).

    python benchmarks/calibrate_step.py --variants default,lean --seeds 0       # one lane: rows into build/calibrate_step
    python benchmarks/calibrate_step.py --variants default,lean --seeds 1,2     # a second lane beside it
    python benchmarks/calibrate_step.py --collect --out docs/calibration_step.json   # the table

Each row trains one class-conditional EDM U-Net (14x14, width 16, Adam 2e-3 after a 5k-image warm-up, EMA 0.999 with
EDM's ramp-up 0.05, batch 64, 10% label dropout) with ``madlib.diffusion.core.train`` on the 2000 first class-balanced
MNIST 5k training images, for ``--images`` images seen with an EMA snapshot at half of it, times the
training at one thread, and reads every snapshot's 2000 class-balanced Heun samples (12 steps, no guidance, latents
seeded 9000 + seed) against the 3000 other real images (LeNet FID; the real-vs-real floor at the same sizes beside).
The variants change only the network (``EDMConfig.decoder`` / ``conditioning``): ``default`` (every committed
figure's U-Net), ``lean`` (the upsampling convs at the coarser size and the finer width: 1.38x fewer FLOPs per
training image), ``lean_ss`` (lean with scale-shift conditioning). CPU seconds at a snapshot are the run's seconds per
image times the images seen, so the variants compare at equal CPU time as well as at equal images. Rows are one file
each (a rerun skips them); the seconds are this machine's, recorded beside its probe. A calibration, not a claim.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from madlib._io import atomic_path
from madlib.diffusion import core
from madlib.diffusion.config import EDMConfig
from madlib.figures.record import repo_root
from madlib.machine import machine_info
from madlib.metrics.images import reference_protocol
from madlib.models.images import balanced_labels

VARIANTS = {"default": {}, "lean": {"decoder": "lean"}, "lean_ss": {"decoder": "lean", "conditioning": "scale_shift"}}
RECIPE = dict(image_size=14, base_channels=16, batch_size=64, lr=2e-3, warmup=5000, ema_decay=0.999, ema_rampup=0.05,
              sample_steps=12)


def run_row(variant: str, seed: int, images: int, samples: int, held, protocol) -> dict:
    config = EDMConfig(**RECIPE, **VARIANTS[variant])
    budgets = [images // 2, images]
    steps = core.budget_steps(budgets, len(protocol.pool_images), config.batch_size)
    clock = time.process_time()
    trained = core.train(protocol.pool_images, config, images_seen=images, seed=seed, labels=protocol.pool_labels,
                         label_dropout=0.1, num_classes=10, snapshot_steps=[steps[b] for b in budgets[:-1]])
    seconds = time.process_time() - clock
    nets = {**{b: trained.snapshots[steps[b]] for b in budgets[:-1]}, images: trained.net}
    labels = balanced_labels(samples, 10)
    fid = {}
    for b, net in nets.items():
        fake = core.sample(net, samples, seed=9000 + seed, image_shape=config.image_shape(), sigmas=config.sigmas(),
                           labels=labels)
        fid[b] = float(held(fake)["fid"])
    return {"variant": variant, "seed": seed, "images": images, "train_cpu_s": seconds, "cpu_s_per_image": seconds / images,
            "fid": {str(b): v for b, v in fid.items()}, "settings": config.settings(), "machine": machine_info()}


def collect(folder: Path, out: Path) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    table = {}
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        budgets = sorted({int(b) for r in mine for b in r["fid"]})
        fid = np.array([[r["fid"][str(b)] for b in budgets] for r in mine])
        rate = float(np.mean([1 / r["cpu_s_per_image"] for r in mine]))
        table[v] = {"seeds": [r["seed"] for r in mine], "images": budgets, "train_img_per_cpu_s": rate,
                    "cpu_s": [b / rate for b in budgets], "fid_mean": fid.mean(0).tolist(),
                    "fid_std": fid.std(0, ddof=1).tolist() if len(mine) > 1 else None, "fid": fid.tolist()}
    base = table.get("default")
    header = " | ".join(f"FID at {b // 1000}k" for b in base["images"])
    print(f"| variant | seeds | train img / CPU s | {header} | CPU s at the last |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in base["images"]) + " | --- |")
    for v, t in table.items():
        spread = t["fid_std"] or [None] * len(t["fid_mean"])
        cells = " | ".join(f"{m:.2f}" + (f" +- {sd:.2f}" if sd is not None else "") for m, sd in zip(t["fid_mean"], spread))
        rate = t["train_img_per_cpu_s"]
        print(f"| {v} | {len(t['seeds'])} | {rate:.0f} ({rate / base['train_img_per_cpu_s']:.2f}x) | {cells} | {t['cpu_s'][-1]:.0f} |")
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps({"recipe": RECIPE, "variants": VARIANTS, "rows": rows, "table": table}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="default,lean,lean_ss")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--images", type=int, default=120_000, help="budget in images seen (a snapshot at half of it)")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", default=str(repo_root() / "build" / "calibrate_step"))
    parser.add_argument("--collect", action="store_true")
    parser.add_argument("--out", default="docs/calibration_step.json")
    args = parser.parse_args()
    folder = Path(args.rows)
    if args.collect:
        return collect(folder, Path(args.out))
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--variants takes {sorted(VARIANTS)}; got {sorted(unknown)}")
    torch.set_num_threads(args.threads)
    folder.mkdir(parents=True, exist_ok=True)
    protocol, _, held = reference_protocol("mnist5k", 14, 2000)
    floor = held.floor(protocol.pool_images, args.samples, seed=7)
    print(f"floor FID {floor['fid']:.2f} ({args.samples} pool images vs {len(protocol.reference)}); {machine_info()}", flush=True)
    for seed in map(int, args.seeds.split(",")):
        for variant in args.variants.split(","):
            path = folder / f"{variant}_seed{seed}_{args.images}.json"
            if path.exists():
                continue
            row = run_row(variant, seed, args.images, args.samples, held, protocol) | {"floor_fid": floor["fid"]}
            with atomic_path(path) as tmp:
                Path(tmp).write_text(json.dumps(row, indent=1))
            print(f"{variant} seed {seed}: {1 / row['cpu_s_per_image']:.0f} img/CPU s, FID {row['fid']}", flush=True)


if __name__ == "__main__":
    main()
