"""Probe: SIMS-2's class-conditional base under another training recipe, read as SIMS-2 reads its bases.

    python benchmarks/probe_sims_base.py --seeds 0,1 --lr-decay cosine                 # 400k images, cosine to 0
    python benchmarks/probe_sims_base.py --seeds 0 --images 600000 --out build/probe.json
    python benchmarks/probe_sims_base.py --seeds 0 --lr-decay constant --base-channels 32   # a wider U-Net

Each row trains one base exactly as ``sims_2_self_improvement`` does at the default profile (the same spec: the
2000 first class-balanced MNIST 5k training images, width 16, batch 64, Adam 2e-3 with 5k warm-up, EMA 0.999
with EDM's ramp-up, 12 Heun steps), except for ``--images``, ``--lr-decay`` and ``--base-channels``, and reads
FID, KID and precision / recall on 2000 samples of the report latents SIMS-2 uses (20000 + seed) against the 3000
other images, beside the real-vs-real floor at the same sizes. The models go into SIMS's cache (``build/cache/sims``),
so a build that adopts the recipe reuses them. A probe of the recipe, not a claim: the bar is read in the
figure, on every seed. Rows are appended to ``--out`` atomically; a rerun skips what is there. Not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from madlib._io import atomic_path
from madlib.figures.record import repo_root
from madlib.machine import machine_info
from madlib.methods import sims
from madlib.metrics.images import reference_protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/calibration_sims_base.json")
    parser.add_argument("--seeds", default="0,1", help="training seeds, comma-separated (SIMS-2 uses 0..3)")
    parser.add_argument("--images", type=int, default=400_000, help="the base's budget in images seen")
    parser.add_argument("--lr-decay", default="cosine", choices=["constant", "cosine"])
    parser.add_argument("--base-channels", type=int, default=16, help="U-Net width (SIMS-2: 16)")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", default=str(repo_root() / "build" / "cache" / "sims"), help="SIMS's model cache")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    done = {r["key"] for r in rows}
    config = sims.SIMSConfig(image_size=14, base_channels=args.base_channels, batch_size=64, lr=2e-3, warmup=5000, ema_decay=0.999,
                             ema_rampup=0.05, sample_steps=12, num_classes=10, lr_decay=args.lr_decay)
    protocol, _, held = reference_protocol("mnist5k", 14, 2000, None, "cpu", 5)
    floor = held.floor(protocol.pool_images, args.samples, seed=7)  # SIMS-2's floor (seed 0 + 7)
    for seed in map(int, args.seeds.split(",")):
        width = "" if args.base_channels == 16 else f"/width={args.base_channels}"
        key = f"{args.lr_decay}/{args.images}{width}/seed={seed}/n={args.samples}"
        if key in done:
            continue
        spec = dict(settings=config.settings(), dataset="mnist5k", n_real=2000, base_images=args.images, seed=seed,
                    device="cpu", cache_dir=args.cache_dir)
        clock = time.perf_counter()
        base = sims.base_model(spec)
        trained = time.perf_counter() - clock
        images = sims.sims_sample(base, None, 0.0, args.samples, config, seed=20_000 + seed)
        row = {"key": key, "seed": seed, "images_seen": args.images, "lr_decay": args.lr_decay, "base_channels": args.base_channels,
               "metrics": sims.protocol_metrics(held, images), "floor": {k: floor[k] for k in sims.PROTOCOL_KEYS},
               "train_seconds": trained, "threads": args.threads, "machine": machine_info()}
        rows.append(row)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
        m = row["metrics"]
        print(f"{key}: FID {m['fid']:.2f} ({m['fid'] / floor['fid']:.2f}x the floor {floor['fid']:.2f}), KID {m['kid']:.4f}, "
              f"precision {m['precision']:.2f}, recall {m['recall']:.2f}; trained in {trained:.0f} s", flush=True)


if __name__ == "__main__":
    main()
