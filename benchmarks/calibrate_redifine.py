"""Calibration of ReDiFine's fine-tune recipe (issue 28, item 5): each step towards Stable Diffusion's setting, measured.

    python benchmarks/calibrate_redifine.py --out docs/calibration_redifine.json     # every variant below
    python benchmarks/calibrate_redifine.py --variants default,sd-sigma --seeds 1   # some of them

The setting is ``rdf_4_6``'s default: M_0 the attribute-prompt U-Net (cached), D_0 = 200 upscaled 8x8 digits, a
LoRA fine-tune from M_0 with a shared unconditional branch, Euler-ancestral 30 steps. Each variant changes one
piece of the recipe (or all of them) towards the paper's:

- ``sd-sigma``: sigma_max = 7.3, Stable Diffusion's largest noise level (sqrt((1 - abar_T) / abar_T) = 14.6 for
  latents of unit variance) scaled to this project's sigma_data = 0.5, so that the share of the 30 steps spent at
  high noise is SD's rather than EDM's (sigma_max 80);
- ``rank-4``: LoRA rank 4 (alpha scaled to keep alpha / rank), small against the 16-32-channel layers, where rank
  32 is effectively full rank;
- ``small-steps``: AdamW 5e-4 at batch 8, four times the steps of the default at the same epochs (the paper:
  AdamW 1e-4, batch 6, many small steps);
- ``all``: the three together.

Each variant reads (i) FID_1 against CFG: one fine-tune M_1 = Finetune(M_0, D_0), then a sample-only sweep
(:func:`madlib.methods.redifine.calibrate_cfg_axis`), with the calibrated baseline CFG it implies and the style
share of |eps_c - eps_u|^2 before and after the fine-tune; (ii) K = 6 chains at CFG 1 and at the calibrated
baseline on ``--seeds`` seeds: FID_1, FID_K, the collapse rate (Eq. 3) and the FID AUC. Rows are appended to
``--out`` one (variant, piece) at a time, atomically, and a rerun skips what is there, so an interrupted run
resumes. A calibration, not a claim (the figures judge the chosen recipe on their own seeds). Not a test.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from madlib._io import atomic_path
from madlib.machine import machine_info
from madlib.methods.redifine import balanced_subset, calibrate_cfg_axis, chain_of_diffusion, pretrain_m0
from madlib.metrics import load_lenet

DEFAULT = dict(sigma_max=80.0, rank=32, lora_alpha=8.0, lr=2e-3, batch_size=32)
VARIANTS = {
    "default": {},
    "sd-sigma": dict(sigma_max=7.3),
    "rank-4": dict(rank=4, lora_alpha=1.0),
    "small-steps": dict(lr=5e-4, batch_size=8),
    "all": dict(sigma_max=7.3, rank=4, lora_alpha=1.0, lr=5e-4, batch_size=8),
}
CFG_GRID = [1.0, 1.25, 1.5, 2.0, 3.0, 7.5]


def high_noise_steps(sigma_max: float, steps: int = 30, sigma_min: float = 0.002, rho: float = 7.0,
                     sigma_data: float = 0.5) -> int:
    """How many of the sampler's steps start above 10 sigma_data (EDM's rho schedule)."""
    i = np.arange(steps)
    sigmas = (sigma_max ** (1 / rho) + i / (steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return int((sigmas > 10 * sigma_data).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/calibration_redifine.json")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    parser.add_argument("--seeds", type=int, default=2, help="chains per (variant, CFG), seeds 1..N")
    parser.add_argument("--n-d0", type=int, default=200)
    parser.add_argument("--epochs", type=float, default=25.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants takes names from {list(VARIANTS)}; got {unknown}")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="IProgress not found")
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    done = {r["key"] for r in rows}
    lenet = load_lenet(device=args.device)
    m0 = pretrain_m0(prompts="attributes", seed=0, device=args.device)
    d0, labels, _ = balanced_subset("digits", args.n_d0, split="train", image_size=14, seed=0)
    codes = m0.prompts_for(d0, labels)

    def save(row: dict) -> None:
        row.update(threads=args.threads, device=args.device, machine=machine_info())  # times need their machine
        rows.append(row)
        done.add(row["key"])
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps({"rows": rows}, indent=1, default=float) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k != "machine"}, default=float), flush=True)

    for name in args.variants.split(","):
        recipe = DEFAULT | VARIANTS[name]
        finetune = dict(method="lora", untrained_uncond="shared", epochs=args.epochs, batch_size=recipe["batch_size"],
                        lr=recipe["lr"], rank=recipe["rank"], lora_alpha=recipe["lora_alpha"])
        key = f"{name}/calibration"
        if key not in done:
            clock = time.perf_counter()
            cal = calibrate_cfg_axis(m0.net, d0, codes, lenet, cfg_grid=CFG_GRID, steps=30, sigma_max=recipe["sigma_max"],
                                     seed=0, guidance_images=50, **finetune)
            it1 = cal["iteration_1"]
            save({"key": key, "variant": name, "recipe": recipe, "high_noise_steps": high_noise_steps(recipe["sigma_max"]),
                  "cfg": CFG_GRID, "fid_1": list(it1["fid"]), "accuracy_1": list(it1["accuracy"]),
                  "white_share_1": list(it1["white_share"]), "baseline_cfg": cal["baseline_cfg"],
                  "style_share": {k: float(np.mean(g["style_share"])) for k, g in it1["guidance"].items()},
                  "finetune_seconds": it1["finetune_seconds"], "seconds": time.perf_counter() - clock})
        baseline_cfg = next(r for r in rows if r["key"] == key)["baseline_cfg"]
        for cfg in sorted({1.0, baseline_cfg}):
            for seed in range(1, args.seeds + 1):
                key = f"{name}/chain/cfg={cfg:g}/seed={seed}"
                if key in done:
                    continue
                clock = time.perf_counter()
                chain = chain_of_diffusion(m0.net, d0, codes, lenet=lenet, iterations=6, cfg_scale=cfg, steps=30,
                                           sigma_max=recipe["sigma_max"], seed=seed, **finetune)
                save({"key": key, "variant": name, "cfg": cfg, "seed": seed, "fid": list(chain.fid),
                      "collapse_rate": chain.collapse_rate, "fid_auc": chain.fid_auc,
                      "seconds": time.perf_counter() - clock})
    print(markdown_table(rows))


def markdown_table(rows: list[dict]) -> str:
    """One line per variant: FID_1 against CFG, the calibrated baseline, the style share, and the chains."""
    lines = ["| variant | steps > 10 sigma_data | FID_1 at CFG " + " / ".join(f"{c:g}" for c in CFG_GRID) +
             " | baseline CFG | style share M0 -> M1 | chain CFG 1: FID_1 -> FID_6, rate | chain at baseline: FID_1 -> FID_6, rate | s / chain |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for cal in (r for r in rows if r["key"].endswith("/calibration")):
        name = cal["variant"]

        def chains(cfg: float) -> str:
            got = [r for r in rows if r["variant"] == name and r.get("cfg") == cfg and "/chain/" in r["key"]]
            if not got:
                return "-"
            f1, fk, rate = (np.array(v) for v in zip(*[(r["fid"][0], r["fid"][-1], r["collapse_rate"]) for r in got]))
            return f"{f1.mean():.1f} -> {fk.mean():.1f}, {rate.mean():.1f} ({len(got)} seeds: {', '.join(f'{x:.1f}' for x in rate)})"

        seconds = [r["seconds"] for r in rows if r["variant"] == name and "/chain/" in r["key"]]
        share = cal["style_share"]
        lines.append(f"| {name} | {cal['high_noise_steps']} | " + " / ".join(f"{x:.1f}" for x in cal["fid_1"]) +
                     f" | {cal['baseline_cfg']:g} | {share.get('m0', float('nan')):.2f} -> {share.get('m1', float('nan')):.2f} | "
                     f"{chains(1.0)} | {chains(cal['baseline_cfg'])} | {np.mean(seconds) if seconds else float('nan'):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
