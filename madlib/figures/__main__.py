"""``python -m madlib.figures list | build [NAME ...] --profile P [--out DIR]``."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from madlib.figures.manifest import MANIFEST_PROFILES, ManifestError, load_manifest
from madlib.figures.params import ParameterError


def _parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param takes NAME=VALUE; got {text!r}")
    name, value = text.split("=", 1)
    return name.strip(), yaml.safe_load(value)


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
    b.add_argument("-p", "--param", action="append", type=_parse_override, default=[],
                   metavar="NAME=VALUE", help="override a parameter of every selected figure")
    b.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    b.add_argument("--dry-run", action="store_true", help="print the checked parameters and run nothing")
    args = parser.parse_args(argv)

    try:
        entries = load_manifest(args.manifest)
        if args.command == "list":
            for entry in entries.values():
                print(f"{entry.name}  [{', '.join(entry.experiments)}]  {entry.notebook.name}\n  {entry.title}")
                for profile, params in entry.profiles.items():
                    print(f"  {profile:8s}{json.dumps(params) if params else '(notebook defaults)'}")
            return 0
        from madlib.figures.runner import build, resolve_figure, select

        overrides = dict(args.param)
        if args.dry_run:
            for entry in select(entries, args.names):
                print(entry.name, json.dumps(resolve_figure(entry, args.profile, overrides)))
            return 0
        results = build(args.names, profile=args.profile, out_dir=args.out, executed_dir=args.executed,
                        overrides=overrides, manifest=args.manifest, quiet=args.quiet)
    except (ParameterError, ManifestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
