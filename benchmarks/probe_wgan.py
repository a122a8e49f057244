"""Probe: MAD-13's generation-1 WGAN-GP under another recipe, read against the figure's bar.

    python benchmarks/probe_wgan.py --seeds 0 --iterations 3000                 # more generator steps
    python benchmarks/probe_wgan.py --seeds 0 --iterations 3000 --width 64      # a wider generator and critic
    python benchmarks/probe_wgan.py --seeds 0 --lr 2e-4 --beta1 0               # WGAN-GP's own Adam, nearer

Each row trains one generation-1 model as ``mad_13_wgan_mnist`` does at the default profile (the same
:class:`madlib.models.gan.WGANFamily`: conv, layer-norm critic, latent 32, batch 32, 5 critic steps, GP 10, generator
EMA 0.99, on ``--n-images`` real training images drawn with the seed), except for the options given, and reads FID,
precision, recall and the LeNet's confidence on 2000 samples against the held-out split, beside the figure's
real-vs-real floor (2000 training images against the held-out split, drawn with seed 7) and its bar (FID <= 3x the
floor, confidence >= 0.9x the floor's). One member per row (the figure trains its runs as one batched ensemble, so
its numbers differ by the draw): a probe of the recipe, not a claim. Rows are appended to ``--out`` atomically;
a rerun skips what is there. Not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from madlib._io import atomic_path
from madlib.machine import machine_info
from madlib.models.gan import WGANFamily


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/calibration_mad13.json")
    parser.add_argument("--seeds", default="0", help="seeds, comma-separated (MAD-13: one batched ensemble of 3 runs)")
    parser.add_argument("--iterations", type=int, default=1200, help="generator steps (MAD-13: 1200)")
    parser.add_argument("--width", type=int, default=32, help="channels of the last generator and first critic layer (32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam rate (MAD-13: 1e-3; WGAN-GP: 1e-4)")
    parser.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 (MAD-13: 0.5; WGAN-GP: 0)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    done = {r["key"] for r in rows}
    recipe = dict(iterations=args.iterations, width=args.width, lr=args.lr, beta1=args.beta1, batch_size=args.batch_size)
    family = WGANFamily("mnist5k", runs=1, image_size=14, architecture="conv", critic_norm="layer", latent_dim=32,
                        n_critic=5, gp_weight=10.0, beta2=0.9, ema_decay=0.99, eval_samples=args.samples, **recipe)
    rng = np.random.default_rng(7)  # MAD-13's floor: eval_samples training images against the held-out split
    floor = family.scores(family.train_images[torch.as_tensor(rng.choice(len(family.train_images), args.samples, replace=False))])
    bar = {"fid_max": 3 * floor["fid"], "confidence_min": 0.9 * floor["confidence"]}
    for seed in map(int, args.seeds.split(",")):
        key = "/".join(f"{k}={v:g}" for k, v in recipe.items()) + f"/n={args.n_images}/seed={seed}/samples={args.samples}"
        if key in done:
            continue
        data = family.draw_real(args.n_images, np.random.default_rng(seed))
        clock = time.perf_counter()
        model = family.fit(data)
        trained = time.perf_counter() - clock
        metrics = {k: float(v[0]) for k, v in family.summary(model).items() if np.ndim(v) == 1 and k not in ("critic_loss", "generator_loss")}
        met = metrics["fid"] <= bar["fid_max"] and metrics["confidence"] >= bar["confidence_min"]
        row = {"key": key, "seed": seed, "recipe": recipe, "n_images": args.n_images, "metrics": metrics, "floor": floor,
               "bar": bar, "bar_met": bool(met), "train_seconds": trained, "threads": args.threads, "machine": machine_info()}
        rows.append(row)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
        print(f"{key}: FID {metrics['fid']:.2f} (bar {bar['fid_max']:.2f}, floor {floor['fid']:.2f}), confidence "
              f"{metrics['confidence']:.3f} (bar {bar['confidence_min']:.3f}), precision {metrics['precision']:.2f}, "
              f"recall {metrics['recall']:.2f}; bar {'met' if met else 'missed'}; trained in {trained:.0f} s", flush=True)


if __name__ == "__main__":
    main()
