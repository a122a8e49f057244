"""Calibration: generation-1 quality against CPU time for class-conditional MNIST models, DDPM vs EDM.

    python benchmarks/calibrate_image_models.py --out docs/calibration.json            # the grid below
    python benchmarks/calibrate_image_models.py --sizes 14 --bases 16 --budgets 20000  # one cell

Each cell trains one generation-1 model with :class:`madlib.models.images.ImageDiffusionFamily` on
``--n-train`` class-balanced MNIST 5k training images for a budget of images seen, samples
``--eval-samples`` class-balanced images at lambda = 1 and measures them against the 1000 held-out
images (LeNet FID, precision and recall with k = 5, classifier accuracy). The real-vs-real floor (as
many real training images, measured the same way) is written beside each size. ``--lr-decay`` and ``--ema-rampup``
change the recipe (cosine decay of the rate, EDM's EMA ramp-up; rows keep them in their key). DDPM: T = 50 cosine
steps, ancestral sampling with x0 clipping (MAD's model); EDM: Table 1 preconditioning and loss, Heun
with ``--heun-steps`` steps (2 n - 1 network evaluations). Both: batch 64, Adam lr 2e-3, EMA 0.99.

Rows are appended to ``--out`` one cell at a time (atomically), and a rerun skips the cells already
there, so an interrupted calibration resumes. One seed per cell: a calibration, not a claim (the
figures judge their models over several seeds). Prints a markdown table at the end. Not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from madlib._io import atomic_path
from madlib.models.images import ImageDiffusionFamily, balanced_labels
from madlib.machine import machine_info


def cell_key(objective: str, size: int, base: int, budget: int, args=None) -> str:
    recipe = "" if args is None else "".join(
        f"/{k}={v}" for k, v in (("lr_decay", args.lr_decay), ("ema_rampup", args.ema_rampup), ("n_train", args.n_train),
                                 ("seed", args.seed)) if v != DEFAULTS[k])
    return f"{objective}/{size}x{size}/width{base}/{budget}{recipe}"


DEFAULTS = {"lr_decay": "constant", "ema_rampup": 0.0, "n_train": 2000, "seed": 0}  # rows without them keep their keys


def calibrate_cell(objective: str, size: int, base: int, budget: int, args) -> dict:
    """Train one generation-1 model and measure it; returns the row."""
    kw = dict(steps=50) if objective == "ddpm" else dict(objective="edm", sample_steps=args.heun_steps)
    family = ImageDiffusionFamily("mnist5k", image_size=size, base_channels=base, epochs=budget / args.n_train,
                                  batch_size=64, lr=2e-3, ema_decay=0.99, lr_decay=args.lr_decay, ema_rampup=args.ema_rampup,
                                  eval_samples=args.eval_samples,
                                  device=args.device, **kw)
    data = family.draw_real(args.n_train, np.random.default_rng(args.seed))
    model = family.fit(data)
    labels = balanced_labels(args.eval_samples, family.num_classes)
    start = time.perf_counter()
    images = family.generate(model, labels, 1.0, torch.Generator().manual_seed(args.seed))
    sample_s = time.perf_counter() - start
    metrics = family.measure(images, labels)
    return {"key": cell_key(objective, size, base, budget, args), "objective": objective, "sampler": family.sampler,
            "lr_decay": args.lr_decay, "ema_rampup": args.ema_rampup, "seed": args.seed,
            "image_size": size, "base_channels": base, "budget_images": budget, "n_train": args.n_train,
            "network_evaluations": family.network_evaluations(1.0), "train_seconds": model.stats.seconds,
            "train_images_per_s": model.stats.samples_per_s, "sample_images_per_s": args.eval_samples / sample_s,
            **{k: float(metrics[k]) for k in ("fid", "precision", "recall", "accuracy")}}


def floor_row(size: int, args) -> dict:
    m = ImageDiffusionFamily("mnist5k", image_size=size, base_channels=8).real_floor(args.eval_samples, args.seed + 7)
    return {"key": f"floor/{size}x{size}", "image_size": size, **{k: float(m[k]) for k in ("fid", "precision", "recall",
                                                                                             "accuracy")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/calibration.json")
    parser.add_argument("--objectives", default="ddpm,edm")
    parser.add_argument("--sizes", default="14,28")
    parser.add_argument("--bases", default="16,32")
    parser.add_argument("--budgets", default="20000,60000", help="images seen per cell, comma-separated")
    parser.add_argument("--max-cost", type=float, default=60000 * 16 * 28 * 28,
                        help="skip cells whose budget x width x pixels exceeds this (28x28 width 32 gets the smallest budget)")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--lr-decay", default="constant", choices=["constant", "cosine"])
    parser.add_argument("--ema-rampup", type=float, default=0.0, help="EDM's EMA ramp-up (0: a constant EMA 0.99)")
    parser.add_argument("--eval-samples", type=int, default=500)
    parser.add_argument("--heun-steps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    done = {r["key"] for r in rows}
    todo = [("floor", s, 0, 0) for s in map(int, args.sizes.split(","))]
    todo += [(o, s, b, n) for s in map(int, args.sizes.split(",")) for b in map(int, args.bases.split(","))
             for n in map(int, args.budgets.split(",")) for o in args.objectives.split(",")
             if n * b * s * s <= args.max_cost or n == min(map(int, args.budgets.split(",")))]
    for objective, size, base, budget in todo:
        key = f"floor/{size}x{size}" if objective == "floor" else cell_key(objective, size, base, budget, args)
        if key in done:
            continue
        row = floor_row(size, args) if objective == "floor" else calibrate_cell(objective, size, base, budget, args)
        row.update(threads=args.threads, device=args.device, machine=machine_info())  # times need their machine
        rows.append(row)
        done.add(key)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
        print(json.dumps(row), flush=True)
    print(markdown_table(rows))


def markdown_table(rows: list[dict]) -> str:
    floors = {r["image_size"]: r for r in rows if r["key"].startswith("floor/")}
    lines = ["| model | size | width | images seen | train s | train img/s | NFE | sample img/s | FID (floor) | precision | recall | accuracy |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted((r for r in rows if not r["key"].startswith("floor/")),
                    key=lambda r: (r["image_size"], r["base_channels"], r["objective"], r["budget_images"], r["key"])):
        f = floors.get(r["image_size"], {})
        recipe = "".join(f", {k} {r[k]}" for k in ("lr_decay", "ema_rampup", "seed") if r.get(k, DEFAULTS[k]) != DEFAULTS[k])
        lines.append(f"| {r['objective']} ({r['sampler']}{recipe}) | {r['image_size']} | {r['base_channels']} | {r['budget_images']:,} | "
                     f"{r['train_seconds']:.0f} | {r['train_images_per_s']:.0f} | {r['network_evaluations']} | "
                     f"{r['sample_images_per_s']:.0f} | {r['fid']:.1f} ({f.get('fid', float('nan')):.1f}) | {r['precision']:.2f} | "
                     f"{r['recall']:.2f} | {r['accuracy']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
