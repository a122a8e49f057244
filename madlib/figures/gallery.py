"""A static gallery of the results: ``figures/site/index.html`` and one page per paper.

It reads only what the builds commit: the figure JSONs and PNGs of ``figures/`` (default profile) and
``figures/paper/`` (paper profile), the sample archives beside the image figures, the manifest, and
``../shared/paper-targets.md`` for the experiment IDs. The pages are plain HTML and one style sheet:
no server and no JavaScript is needed to read them.

- The index has one row per experiment ID (built or not), with its figure, claims held / tested and
  wall time per profile.
- Each paper's page shows every figure large, its scale beside the paper's, sample grids generation by
  generation, and a claims table whose measured values are rendered readably (:func:`measured_lines`),
  profiles side by side.

A figure JSON with a missing or malformed field stops the gallery with a :class:`GalleryError` naming
the file and the field.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from madlib.figures.formatting import claim_lines, explanation, measured_lines
from madlib.figures.record import atomic_write_text, count_levels, default_out_dir, repo_root
from madlib.figures.verdicts import level_of

# paper prefix -> (name, page, title); titles as the papers print them
PAPERS = {
    "MAD": ("MAD", "mad.html", "Self-Consuming Generative Models Go MAD"),
    "SIMS": ("SIMS", "sims.html", "Self-Improving Diffusion Models with Synthetic Data"),
    "CASD": ("CASD", "casd.html", "Conditional Augmentation Enables Effective Use of Synthetic Data"),
    "RDF": ("ReDiFine", "redifine.html", "Model Collapse in the Self-Consuming Chain of Diffusion Finetuning"),
}
EXPERIMENT_ID = re.compile(r"^(MAD|SIMS|CASD|RDF)-\d+$")
CLAIM_FIELDS = {"id": str, "text": str, "source": str, "condition": str, "held": bool}
TEMPLATES = Path(__file__).with_name("templates")


class Counts(tuple):
    """``(held, tested)`` of a list of claims, with every level's count in ``levels`` and the rest in words."""

    def __new__(cls, claims):
        levels = count_levels(claims)
        counts = super().__new__(cls, (levels["held"], sum(levels.values())))
        counts.levels = levels
        return counts

    @property
    def others(self) -> str:
        """``2 not held, 1 inconclusive``: the levels other than held that some claim reads."""
        return ", ".join(f"{n} {level}" for level, n in self.levels.items() if level != "held" and n)


class GalleryError(ValueError):
    """A figure JSON is missing a field or holds a malformed claim (the message names file and field)."""


# ----------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class Experiment:
    id: str
    paper: str  # prefix: MAD, SIMS, CASD or RDF
    title: str


def default_targets_path() -> Path:
    return repo_root().parent / "shared" / "paper-targets.md"


def read_targets(path: str | os.PathLike | None = None) -> list[Experiment] | None:
    """The experiment IDs and titles of ``paper-targets.md`` (``- **MAD-1 Title (Sec. ...).**``), in order;
    None when the file is absent."""
    path = Path(path) if path is not None else default_targets_path()
    if not path.is_file():
        return None
    found = re.findall(r"^- \*\*((MAD|SIMS|CASD|RDF)-\d+) (.+?)\.\*\*", path.read_text(), re.M)
    return [Experiment(id_, paper, title) for id_, paper, title in found]


def claim_experiment(claim_id: str) -> str | None:
    """The experiment a claim belongs to, from its ID (``MAD-9.fid-rises`` -> ``MAD-9``); None for a
    figure's own checks (``floors.fid-decreases-with-n``)."""
    prefix = claim_id.split(".", 1)[0]
    return prefix if EXPERIMENT_ID.match(prefix) else None


def check_record(path: Path, record) -> dict:
    """Raise GalleryError naming ``path`` and the field unless ``record`` is a well-formed figure JSON."""
    def fail(where: str, what: str):
        raise GalleryError(f"{path}: {where} {what}")

    if not isinstance(record, dict):
        fail("the file", "must hold a JSON object")
    for key, kind in (("name", str), ("profile", str), ("experiments", list), ("scale", dict), ("claims", list)):
        if key not in record:
            fail(f"field '{key}'", "is missing")
        if not isinstance(record[key], kind):
            fail(f"field '{key}'", f"must be a {kind.__name__}; got {type(record[key]).__name__}")
    if record["name"] != path.stem:
        fail("field 'name'", f"must equal the file name {path.stem!r}; got {record['name']!r}")
    bad = [e for e in record["experiments"] if not (isinstance(e, str) and EXPERIMENT_ID.match(e))]
    if bad or not record["experiments"]:
        fail("field 'experiments'", f"must list IDs such as MAD-1 or RDF-2; got {record['experiments']}")
    if not isinstance(record.get("wall_time_s", 0), (int, float)):
        fail("field 'wall_time_s'", "must be a number")
    seen = set()
    for i, claim in enumerate(record["claims"]):
        where = f"claims[{i}]" + (f" ({claim.get('id')!r})" if isinstance(claim, dict) and "id" in claim else "")
        if not isinstance(claim, dict):
            fail(where, "must be an object")
        for key, kind in CLAIM_FIELDS.items():
            if key not in claim:
                fail(f"{where}: field '{key}'", "is missing")
            if not isinstance(claim[key], kind) or (kind is str and not claim[key].strip()):
                want = "true or false" if kind is bool else "a non-empty string"
                fail(f"{where}: field '{key}'", f"must be {want}; got {claim[key]!r}")
        if "measured" not in claim:
            fail(f"{where}: field 'measured'", "is missing")
        if claim["id"] in seen:
            fail(f"{where}: field 'id'", "repeats an earlier claim's ID")
        seen.add(claim["id"])
        experiment = claim_experiment(claim["id"])
        if experiment is not None and experiment not in record["experiments"]:
            fail(f"{where}: field 'id'", f"names {experiment}, which the figure's experiments {record['experiments']} "
                                        "do not list")
    return record


def read_records(folder: Path) -> dict[str, dict]:
    """Every figure JSON of ``folder`` by name, checked (files without ``claims`` or ``experiments``,
    such as benchmark outputs, are not figure JSONs and are skipped)."""
    records = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise GalleryError(f"{path}: not valid JSON ({err})") from None
        if isinstance(record, dict) and not ({"claims", "experiments"} & set(record)):
            continue
        records[path.stem] = check_record(path, record)
    return records


# ----------------------------------------------------------------------------- the site's contents

def link(target: Path, site: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(site).resolve())).as_posix()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def format_seconds(seconds) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


@dataclass
class Column:
    """One results folder (``figures/`` or ``figures/paper/``) and its figure JSONs; ``tag`` names its files
    and anchors in the site."""

    folder: Path
    records: dict[str, dict]
    tag: str = ""

    @property
    def label(self) -> str:
        profiles = Counter(r["profile"] for r in self.records.values())
        return profiles.most_common(1)[0][0] if profiles else self.folder.name


@dataclass
class Grid:
    file: str  # path inside the site
    generation: int
    pixels: object = field(repr=False)  # uint8 [H, W]


@dataclass
class SampleRow:
    setting: str
    seed: int
    grids: list[Grid]


@dataclass
class Panel:
    """One figure at one profile: image, scale, run facts, samples and the claims' verdicts."""

    label: str
    tag: str
    record: dict
    png: str | None
    json: str
    counts: Counts
    wall: str
    samples: list[SampleRow]
    samples_note: str


@dataclass
class ClaimRow:
    id: str
    text: str
    source: str
    paper_value: list[str]
    cells: list  # per panel: a dict (held, measured, condition, explanation, anchor) or None


@dataclass
class FigureView:
    name: str
    title: str
    experiments: list[str]
    notebook: str | None
    panels: list[Panel]
    rows: list[ClaimRow]


@dataclass
class ExperimentRow:
    experiment: Experiment
    figures: list[dict]  # name, title, thumb, href (its paper page), jsons [(profile, link)]
    counts: list  # per column: (held, tested) or None where no figure of that column lists the experiment
    walls: list[str]
    status: str  # "built", "no claims of its own" or "not built yet"


def sample_rows(archive: Path, tag: str) -> list[SampleRow]:
    """Sample grids of an archive (keys like ``augmentation/lam=1/seed=0/gen=3``): for each setting, its
    first seed, generation by generation, up to 4 images per class, upscaled to at least 280 px wide."""
    import numpy as np

    from madlib.data import load_sample_archive
    from madlib.plotting import class_grid, image_grid

    try:
        sets = load_sample_archive(archive)
    except Exception as err:  # noqa: BLE001 - an unreadable archive names itself
        raise GalleryError(f"{archive}: the sample archive does not load ({err})") from None
    settings: dict[str, dict[int, dict[int, object]]] = {}
    for key, stored in sets.items():
        parts = dict(p.split("=", 1) for p in key.split("/") if p.split("=", 1)[0] in ("seed", "gen"))
        if set(parts) != {"seed", "gen"} or stored.images.ndim != 4 or stored.images.shape[1] != 1:
            continue  # not a per-generation grayscale set
        setting = "/".join(p for p in key.split("/") if p.split("=", 1)[0] not in ("seed", "gen"))
        settings.setdefault(setting, {}).setdefault(int(parts["seed"]), {})[int(parts["gen"])] = stored
    rows = []
    for setting, seeds in settings.items():
        seed = min(seeds)
        grids = []
        for generation, stored in sorted(seeds[seed].items()):
            labels = np.asarray(stored.labels)
            classes = max(10, int(labels.max()) + 1) if labels.size else 10
            per_class = int(np.bincount(labels, minlength=classes).min()) if labels.size else 0
            pixels = (class_grid(stored.images, labels, per_class=min(4, per_class), num_classes=classes)
                      if per_class else image_grid(stored.images[:40], 10))
            scale = max(1, math.ceil(280 / pixels.shape[1]))
            pixels = np.kron(pixels, np.ones((scale, scale), dtype=pixels.dtype))
            figure = archive.name.removesuffix("_samples.npz")
            grids.append(Grid(f"samples/{tag}/{figure}/{slug(setting) or 'set'}-gen{generation}.png", generation, pixels))
        rows.append(SampleRow(setting or "samples", seed, grids))
    return rows


def figure_view(name: str, title: str, notebook: Path | None, columns: list[Column], grids: dict,
                site: Path) -> FigureView:
    """Everything the paper page shows for one figure, one panel per column that holds it."""
    panels = []
    for column in columns:
        record = column.records.get(name)
        if record is None:
            continue
        png = column.folder / f"{name}.png"
        rows = grids.get((column.tag, name), [])
        expected = "samples_archive" in record.get("data", {})
        note = "" if rows or not expected else "The sample archive of this run is not committed yet."
        panels.append(Panel(column.label, column.tag, record, link(png, site) if png.exists() else None,
                            link(column.folder / f"{name}.json", site), Counts(record["claims"]), format_seconds(record.get("wall_time_s")), rows, note))
    ids = list(dict.fromkeys(c["id"] for p in panels for c in p.record["claims"]))
    rows = []
    for claim_id in ids:
        found = [next((c for c in p.record["claims"] if c["id"] == claim_id), None) for p in panels]
        first = next(c for c in found if c is not None)
        cells = [None if c is None else {
            "held": c["held"], "level": level_of(c), "condition": c["condition"],
            "measured": claim_lines(c),
            "explanation": "" if c["held"] else explanation(c), "own_explanation": c.get("explanation") or "",
            "anchor": f"{p.tag}-{slug(claim_id)}"}
            for p, c in zip(panels, found)]
        paper_value = first.get("paper_value")
        rows.append(ClaimRow(claim_id, first["text"], first["source"],
                             [] if paper_value is None else measured_lines(paper_value), cells))
    experiments = list(dict.fromkeys(e for p in panels for e in p.record["experiments"]))
    return FigureView(name, title, experiments, link(notebook, site) if notebook and notebook.exists() else None,
                      panels, rows)


def experiment_rows(experiments: list[Experiment], columns: list[Column], views: dict[str, FigureView],
                    manifest: dict) -> list[ExperimentRow]:
    """One index row per experiment: the figures that list it (those with its claims first), its own claims
    held / tested and their figures' wall time per column."""
    rows = []
    for experiment in experiments:
        def own(record):
            return [c for c in record["claims"] if claim_experiment(c["id"]) == experiment.id]

        names = sorted((n for n, v in views.items() if experiment.id in v.experiments),
                       key=lambda n: not any(own(p.record) for p in views[n].panels))
        planned = [n for n, e in manifest.items() if experiment.id in e.experiments and n not in names]
        counts, walls = [], []
        for column in columns:
            records = [column.records[n] for n in names if n in column.records]
            claims = [c for r in records for c in own(r)]
            counts.append(Counts(claims) if records else None)
            timed = [r for r in records if own(r)] or records  # the figures that test it, else those that list it
            walls.append(format_seconds(sum(r.get("wall_time_s", 0) for r in timed)) if timed else "—")
        figures = [{"name": n, "title": views[n].title, "thumb": next((p.png for p in views[n].panels if p.png), None),
                    "href": f"{PAPERS[experiment.paper][1]}#fig-{n}",
                    "jsons": [(p.label, p.json) for p in views[n].panels]} for n in names]
        figures += [{"name": n, "title": manifest[n].title, "thumb": None, "href": None, "jsons": []} for n in planned]
        status = ("not built yet" if not names else
                  "built" if any(c and c[1] for c in counts) else "no claims of its own")
        rows.append(ExperimentRow(experiment, figures, counts, walls, status))
    return rows


def paper_counts(columns: list[Column], prefix: str) -> list[tuple[int, int] | None]:
    """Claims held / tested per column among the claims of one paper's experiments (None: no figure of
    that paper in the column)."""
    out = []
    for column in columns:
        records = [r for r in column.records.values() if any(e.startswith(prefix + "-") for e in r["experiments"])]
        claims = [c for r in records for c in r["claims"]
                  if (claim_experiment(c["id"]) or "").startswith(prefix + "-")]
        out.append(Counts(claims) if records else None)
    return out


@dataclass
class Site:
    root: Path  # the site folder
    pages: dict[str, str]  # file name inside the site -> text
    grids: list[Grid]
    summary: str  # the README's "What reproduced" section, markdown

    @property
    def index(self) -> Path:
        return self.root / "index.html"


def read_columns(folders: list[Path]) -> list[Column]:
    """The results folders that exist, each tagged by its profile (plus its position if two share one)."""
    columns = [Column(f, read_records(f)) for f in folders if f.is_dir()]
    labels = [c.label for c in columns]
    for i, column in enumerate(columns):
        column.tag = slug(column.label) + ("" if labels.count(column.label) == 1 else f"-{i}")
    return columns


def experiment_list(targets, columns: list[Column], entries: dict) -> tuple[list[Experiment], str]:
    """Every experiment of paper-targets.md, then any other ID a JSON names; without the file, the IDs the
    JSONs and the manifest name, with a note saying so."""
    named = {e for c in columns for r in c.records.values() for e in r["experiments"]}
    experiments, note = read_targets(targets), ""
    if experiments is None:
        note = ("paper-targets.md was not found: the index lists only the experiment IDs the figure JSONs "
                "and the manifest name.")
        named |= {e for entry in entries.values() for e in entry.experiments}
        experiments = []
    known = {e.id for e in experiments}
    order = lambda i: (list(PAPERS).index(i.split("-")[0]), int(i.split("-")[1]))  # noqa: E731
    extra = [Experiment(i, i.split("-")[0], "" if note else "(not in paper-targets.md)")
             for i in sorted(named - known, key=order)]
    return experiments + extra, note


def figure_checks(names: list[str], columns: list[Column]) -> list[tuple[str, list]]:
    """Per figure and column, held / tested of the claims tied to no experiment (metric floors, project bars)."""
    out = []
    for name in names:
        counts = []
        for column in columns:
            own = [c for c in column.records[name]["claims"] if claim_experiment(c["id"]) is None] \
                if name in column.records else None
            counts.append(None if own is None else Counts(own))
        if any(c and c[1] for c in counts):
            out.append((name, counts))
    return out


def render_site(site_dir: str | os.PathLike | None = None, *, folders=None, targets=None,
                manifest=None) -> Site:
    """Read the results and render every page (nothing is written; see :func:`write_gallery`).

    site_dir: where the site will live (links are relative to it; default ``figures/site``).
    folders: results folders shown side by side (default ``figures/`` then ``figures/paper/``).
    targets: ``paper-targets.md`` (default ``../shared/paper-targets.md``); without it the index lists
    the IDs the JSONs and the manifest name, and says so.
    manifest: ``notebooks/figures.yaml`` (titles, notebooks, figures not built yet).
    """
    from madlib.figures.manifest import load_manifest

    site = Path(site_dir) if site_dir is not None else default_out_dir() / "site"
    folders = [Path(f) for f in folders] if folders is not None else [default_out_dir(), default_out_dir() / "paper"]
    columns = read_columns(folders)
    entries = load_manifest(manifest)
    experiments, targets_note = experiment_list(targets, columns, entries)

    grids = {(c.tag, name): sample_rows(c.folder / f"{name}_samples.npz", c.tag)
             for c in columns for name in c.records if (c.folder / f"{name}_samples.npz").is_file()}
    names = list(dict.fromkeys([n for n in entries if any(n in c.records for c in columns)]
                               + sorted({n for c in columns for n in c.records})))
    views = {n: figure_view(n, entries[n].title if n in entries else n, entries[n].notebook if n in entries else None,
                            columns, grids, site) for n in names}
    rows = experiment_rows(experiments, columns, views, entries)
    labels = [c.label for c in columns]
    papers = [{"prefix": p, "name": name, "page": page, "title": title, "counts": paper_counts(columns, p),
               "built": sum(r.status == "built" for r in rows if r.experiment.paper == p),
               "total": sum(r.experiment.paper == p for r in rows)} for p, (name, page, title) in PAPERS.items()]

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["slug"] = slug
    common = {"papers": papers, "labels": labels}
    pages = {"index.html": env.get_template("index.html").render(
        **common, rows=rows, checks=figure_checks(names, columns), views=views, targets_note=targets_note,
        page="index.html")}
    for paper in papers:
        ids = {r.experiment.id for r in rows if r.experiment.paper == paper["prefix"]}
        shown = [v for v in views.values() if ids & set(v.experiments)]
        failed = [(v, p, row, cell) for v in shown for row in v.rows
                  for p, cell in zip(v.panels, row.cells) if cell is not None and not cell["held"]]
        pages[paper["page"]] = env.get_template("paper.html").render(
            **common, paper=paper, rows=[r for r in rows if r.experiment.paper == paper["prefix"]],
            views=shown, failed=failed, page=paper["page"])
    pages["style.css"] = (TEMPLATES / "style.css").read_text()
    return Site(site, pages, [g for rows_ in grids.values() for row in rows_ for g in row.grids],
                reproduced_summary(papers, labels, site))


def reproduced_summary(papers: list[dict], labels: list[str], site: Path) -> str:
    """The README's "What reproduced" section: claims held / tested per paper and profile."""
    index = link(site / "index.html", repo_root())
    head = "| paper | experiments with claims tested | " + " | ".join(f"claims held ({x})" for x in labels) + " |"
    lines = ["## What reproduced", "",
             f"Claims held / tested per paper, from the committed figure JSONs, with the other levels (not held, "
             f"inconclusive: the interval straddles the margin, not testable: a stated precondition failed) beside "
             f"them; browse every figure with its claims beside the paper's in the [gallery]({index}) (static HTML, "
             f"regenerated by every build).", "",
             head, "|" + " --- |" * (2 + len(labels))]
    for p in papers:
        cells = [(f"{c[0]} / {c[1]}" + (f" ({c.others})" if c.others else "")) if c and c[1] else "—"
                 for c in p["counts"]]
        lines.append(f"| [{p['name']}]({link(site / p['page'], repo_root())}) | {p['built']} of {p['total']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_gallery(site_dir: str | os.PathLike | None = None, **kwargs) -> Site:
    """Render the site (:func:`render_site`'s arguments) and write it; returns what was written.

    The sample grids are rewritten from scratch, so grids of settings that no longer exist disappear.
    """
    from PIL import Image

    site = Path(site_dir) if site_dir is not None else default_out_dir() / "site"
    rendered = render_site(site, **kwargs)
    site.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(site / "samples", ignore_errors=True)
    for grid in rendered.grids:
        path = site / grid.file
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid.pixels).save(path)
    for name, text in rendered.pages.items():
        atomic_write_text(site / name, text)
    return rendered


def write_gallery_after_build(out_dir: str | os.PathLike, manifest=None) -> Site:
    """The site a build refreshes: the committed ``figures/site`` (from ``figures/`` and ``figures/paper/``)
    when the build wrote into either, else ``<out_dir>/site`` from ``out_dir`` alone."""
    out, committed = Path(out_dir).resolve(), default_out_dir().resolve()
    if out in (committed, committed / "paper"):
        return write_gallery(manifest=manifest)
    return write_gallery(out / "site", folders=[out], manifest=manifest)


# ----------------------------------------------------------------------------- a real browser

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def find_chromium() -> str | None:
    """Debian's ``chromium`` (or another Chromium build on PATH), or None."""
    return next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)


def chromium(page: str | os.PathLike, *args: str, timeout: float = 60) -> str:
    """Run headless Chromium on a local page with a fresh profile; returns its stdout."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
                               Path(page).resolve().as_uri()], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}: {done.stderr[-500:]}")
    return done.stdout


def dump_dom(page: str | os.PathLike) -> str:
    """The page's DOM after Chromium has loaded and laid it out."""
    return chromium(page, "--dump-dom")


def screenshot(page: str | os.PathLike, png: str | os.PathLike, *, width: int = 1400, height: int = 2300) -> Path:
    """A PNG of the page's first ``width`` x ``height`` pixels as Chromium renders it."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    chromium(page, f"--window-size={width},{height}", f"--screenshot={png}")
    return png
