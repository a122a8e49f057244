"""``python -m madlib.figures list | build [NAME ...] --profile P [--out DIR] [--jobs N]
[--executor local|submitit|ray] | gallery [--out SITE]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from madlib.figures.gallery import GalleryError
from madlib.figures.manifest import MANIFEST_PROFILES, ManifestError, load_manifest
from madlib.figures.params import ParameterError
from madlib.machine import usable_cores
from madlib.sweep import SweepError


def _parse_overrides(texts: list[str], flag: str) -> dict[str, object]:
    """``-p``/``-o`` NAME=VALUE pairs, VALUE read as YAML; parsed here rather than by argparse so that a bad one
    ends in the same one-line error as every other bad input (a YAMLError was a traceback)."""
    pairs = {}
    for text in texts:
        name, eq, value = text.partition("=")
        if not eq or not name.strip():
            raise ParameterError(f"{flag} takes NAME=VALUE; got {text!r}")
        try:
            pairs[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at character {mark.column + 1}" if mark is not None and mark.line == 0 else ""
            problem = getattr(err, "problem", None) or " ".join(str(err).split())
            raise ParameterError(f"{flag} {text}: the value is not valid YAML ({problem}{where})") from None
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m madlib.figures", description=__doc__)
    parser.add_argument("--manifest", help="manifest file (default: notebooks/figures.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="figures, their experiments and profile parameters")
    b = sub.add_parser("build", help="execute notebooks and write figures + JSON + CLAIMS.md")
    b.add_argument("names", nargs="*", help="figures to build (default: all)")
    b.add_argument("--profile", default="default", choices=MANIFEST_PROFILES)
    b.add_argument("--out", help="folder for figures and JSON (default: figures/)")
    b.add_argument("--executed", help="folder for executed notebooks (default: build/executed/<profile>)")
    b.add_argument("-p", "--param", action="append", default=[],
                   metavar="NAME=VALUE", help="override a parameter of every selected figure")
    b.add_argument("-j", "--jobs", metavar="N",
                   help=f"lanes of the local executor: N figures run at once, each kernel with cores // N threads "
                        f"(default: the usable cores, {usable_cores()} here: one thread per lane, so a multi-thread "
                        f"job never runs beside another; --jobs 1 runs one figure at a time and lets it use every "
                        f"core, for an otherwise idle machine: OMP_NUM_THREADS=1 keeps it to one thread)")
    b.add_argument("-q", "--quiet", action="store_true",
                   help="print failures only (no estimate, no progress lines)")
    b.add_argument("--dry-run", action="store_true", help="print the checked parameters and run nothing")
    b.add_argument("--executor", default="local", choices=("local", "submitit", "ray"),
                   help="local: the notebooks run here in --jobs lanes (default); submitit (Slurm, or "
                        "cluster=local) or ray: each figure is its own job (docs/cluster.md)")
    b.add_argument("-o", "--executor-option", action="append", default=[], metavar="NAME=VALUE",
                   help="an option of the executor, e.g. cluster=local, local_workers=2, partition=gpu, "
                        "gpus_per_task=1, address=auto, num_gpus=1, config=sweep.yaml (madlib.sweep.OPTIONS)")
    g = sub.add_parser("gallery", help="re-render the static results site and CLAIMS.md from the committed JSONs "
                                       "(runs nothing)")
    g.add_argument("--out", help="site folder (default: figures/site)")
    g.add_argument("--results", action="append", metavar="DIR",
                   help="results folder, shown side by side in the order given (default: figures/ and figures/paper/)")
    g.add_argument("--targets", help="paper-targets.md with the experiment IDs (default: ../shared/paper-targets.md)")
    g.add_argument("--screenshot", metavar="PNG", help="also save a headless-Chromium screenshot of --page")
    g.add_argument("--page", default="index.html", help="page of the site for --screenshot (default: index.html)")
    g.add_argument("--summary", action="store_true", help="print the README's 'What reproduced' section")
    args = parser.parse_args(argv)

    try:
        entries = load_manifest(args.manifest)
        if args.command == "list":
            for entry in entries.values():
                print(f"{entry.name}  [{', '.join(entry.experiments)}]  {entry.notebook.name}\n  {entry.title}")
                for profile, params in entry.profiles.items():
                    print(f"  {profile:8s}{json.dumps(params) if params else '(notebook defaults)'}")
            return 0
        if args.command == "gallery":
            from madlib.figures.gallery import screenshot, write_gallery
            from madlib.figures.record import default_out_dir, write_claims_summary

            site = write_gallery(args.out, folders=args.results, targets=args.targets, manifest=args.manifest)
            for folder in args.results or [default_out_dir(), default_out_dir() / "paper"]:
                if any(Path(folder).glob("*.json")):
                    write_claims_summary(folder)
            print(f"wrote {site.index}, {len(site.pages) - 2} paper pages and {len(site.grids)} sample grids")
            if args.summary:
                print(site.summary)
            if args.screenshot:
                print(f"wrote {screenshot(site.root / args.page, args.screenshot)}")
            return 0
        from madlib.figures.runner import build, check_executor_options, check_jobs, resolve_figure, select

        overrides = _parse_overrides(args.param, "-p")
        options = _parse_overrides(args.executor_option, "-o")
        jobs = args.jobs
        if jobs is not None and args.executor == "local":
            jobs = check_jobs(jobs)
        if args.dry_run:
            check_executor_options(args.executor, options)
            for entry in select(entries, args.names):
                print(entry.name, json.dumps(resolve_figure(entry, args.profile, overrides)))
            return 0
        results = build(args.names, profile=args.profile, out_dir=args.out, executed_dir=args.executed,
                        overrides=overrides, manifest=args.manifest, quiet=args.quiet, executor=args.executor,
                        executor_options=options, jobs=jobs)
    except (ParameterError, ManifestError, GalleryError, SweepError) as err:
        # SweepError: an executor that failed to start (e.g. ray.init at an address that stopped answering)
        print("error:", " ".join(str(err).split()), file=sys.stderr)  # one line, whatever the cause's text
        return 2
    except KeyboardInterrupt as err:  # a BuildInterrupted says which figures were kept
        print(str(err) or "interrupted", file=sys.stderr)
        return 130
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"failed figures: {', '.join(failed)}", file=sys.stderr)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
