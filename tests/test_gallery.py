"""The results gallery: readable measured values, checked JSONs, a site whose links and counts hold, and
the pages as a real browser (headless Chromium) renders them."""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from madlib.figures import gallery
from madlib.figures.__main__ import main
from madlib.figures.formatting import explanation, format_number, measured_lines
from madlib.figures.gallery import GalleryError, read_targets, render_site, write_gallery, write_gallery_after_build
from madlib.figures.record import repo_root, write_claims_summary

FIGURES = repo_root() / "figures"
RESULTS = [FIGURES, FIGURES / "paper"]
TARGETS = gallery.default_targets_path()


class Page(HTMLParser):
    """Ids, links, tags, and the claim counts of a page (``data-held`` / ``data-tested`` cells by row)."""

    def __init__(self, path: Path):
        super().__init__()
        self.ids, self.links, self.tags, self.counts, self._row = set(), [], [], [], None
        self.feed(path.read_text())

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        self.ids |= {a["id"]} if "id" in a else set()
        self.links += [a[k] for k in ("href", "src") if k in a]
        if tag == "tr":
            self._row = a.get("data-experiment") or a.get("data-paper") or a.get("data-figure")
        if tag == "td" and "count" in a.get("class", ""):
            held = (int(a["data-held"]), int(a["data-tested"])) if "data-held" in a else None
            self.counts.append((self._row, a["data-profile"], held))


def _claim(claim_id: str, held: bool = True, **extra) -> dict:
    return {"id": claim_id, "text": f"statement of {claim_id}", "source": "MAD Sec. 1, M:1",
            "condition": "x > 1", "measured": {"x": 2.0}, "held": held, "paper_value": None, **extra}


def _record(name: str, claims: list[dict], experiments=("MAD-1",), profile: str = "default", **data) -> dict:
    return {"name": name, "experiments": list(experiments), "profile": profile, "params": {}, "seed": 0,
            "scale": {"ours": "small", "paper": "large", "differences": ["fewer runs"]}, "wall_time_s": 3.0,
            "created": "2026-01-01T00:00:00+00:00", "git": "abc", "versions": {}, "claims": claims, "data": data}


def _write(folder: Path, record: dict) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.new("L", (60, 40), 90).save(folder / f"{record['name']}.png")
    path = folder / f"{record['name']}.json"
    path.write_text(json.dumps(record))
    return path


def _expected_counts(folder: Path, experiment: str):
    """Claims held / tested for one experiment, straight from the JSONs (None: no figure lists it)."""
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    records = [r for r in records if experiment in r.get("experiments", [])]
    claims = [c for r in records for c in r["claims"] if c["id"].split(".")[0] == experiment]
    return (sum(c["held"] for c in claims), len(claims)) if records else None


def _label(folder: Path) -> str:
    profiles = Counter(json.loads(p.read_text())["profile"] for p in folder.glob("*.json")
                       if "claims" in json.loads(p.read_text()))
    return profiles.most_common(1)[0][0]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The gallery of the committed results, written into a temporary folder."""
    return write_gallery(tmp_path_factory.mktemp("gallery") / "site", folders=RESULTS).root


# ----------------------------------------------------------------------------- readable values

def test_numbers_read_at_three_significant_digits():
    cases = [(0.7833333, "0.783"), (31.496052, "31.5"), (2929.507, "2930"), (1.904e-25, "1.9e-25"), (0.0005, "5e-4"),
             (100_000_000, "1e8"), (1109031, "1.11e6"), (10, "10"), (1.0, "1"), (0.0, "0"), (None, "n/a"), (True, "yes")]
    assert [(x, format_number(x)) for x, _ in cases] == cases


def test_measured_values_read_as_numbers_with_spread_and_short_lists():
    spread = {"mean": 186.9477, "std": 0.0198, "min": 186.93, "max": 186.96, "seeds": 2}
    per_generation = {"mean": [31.5, 79.9, 116.2], "std": [1.0, 2.0, 3.0], "min": [0] * 3, "max": [0] * 3, "seeds": 3}
    measured = {"fid": {"generation_1": spread, "per_seed": [[186.96, 186.7], [186.93, 187.06]]}, "floor": 28.68,
                "by_gen": per_generation, "recall": [0.87, 0.542, 0.215], "long": list(np.linspace(1, 0, 50)),
                "limit": {"lam=1.0": {"10": 3.5053, "100": 3.5019}}, "one": {**spread, "seeds": 1}}
    assert measured_lines(measured) == [
        "fid · generation_1: 187 ± 0.02 (2 seeds)",
        "fid · per_seed: [[187, 187]; [187, 187]]",
        "floor: 28.7",
        "by_gen: [31.5 ± 1, 79.9 ± 2, 116 ± 3] (3 seeds)",
        "recall: [0.87, 0.542, 0.215]",
        "long: 1 → 0 (50 values)",
        "limit · lam=1.0: 10: 3.51, 100: 3.5",
        "one: 187 (1 seed)",
    ]


def test_no_committed_claim_renders_as_a_json_dump():
    for path in [p for folder in RESULTS for p in folder.glob("*.json")]:
        for claim in json.loads(path.read_text()).get("claims", []):
            for line in measured_lines(claim["measured"]):
                assert '{"' not in line and "': " not in line, (path.name, claim["id"], line)


def test_a_claim_that_did_not_hold_is_explained_in_one_line():
    derived = explanation(_claim("MAD-1.x", held=False, measured={"fid": [3.0, 2.0]}))
    assert derived == "Needs x > 1; measured fid: [3, 2]"
    assert explanation(_claim("MAD-1.x", held=False, explanation="FID fell in 2 of 3 seeds")) == "FID fell in 2 of 3 seeds"
    long = explanation(_claim("MAD-1.x", held=False, measured={"v": list(range(500))}, condition="y " * 200))
    assert len(long) <= 180 and "\n" not in long


def test_claims_md_renders_measured_values_readably(tmp_path):
    spread = {"mean": 0.5, "std": 0.1, "min": 0.4, "max": 0.6, "seeds": 3}
    _write(tmp_path, _record("fig_a", [_claim("MAD-1.a", measured={"recall": spread, "fid": [1.0, 2.0]})]))
    text = write_claims_summary(tmp_path).read_text()
    assert "recall: 0.5 ± 0.1 (3 seeds)<br>fid: [1, 2]" in text and '{"' not in text


# ----------------------------------------------------------------------------- inputs

def test_paper_targets_give_all_30_experiment_ids():
    if not TARGETS.is_file():
        pytest.skip(f"{TARGETS} is absent")
    experiments = read_targets(TARGETS)
    assert Counter(e.paper for e in experiments) == {"MAD": 13, "SIMS": 6, "CASD": 4, "RDF": 7}
    assert (experiments[0].id, experiments[-1].id) == ("MAD-1", "RDF-7")
    assert experiments[0].title.startswith("Gaussian fully synthetic loop")


@pytest.mark.parametrize("break_it, field", [
    (lambda r: r["claims"][0].pop("held"), "field 'held' is missing"),
    (lambda r: r["claims"][0].update(held="yes"), "field 'held' must be true or false"),
    (lambda r: r["claims"][0].pop("measured"), "field 'measured' is missing"),
    (lambda r: r["claims"][0].update(condition=""), "field 'condition' must be a non-empty string"),
    (lambda r: r["claims"][1].update(id="MAD-1.a"), "field 'id' repeats"),
    (lambda r: r["claims"][1].update(id="MAD-4.b"), "names MAD-4"),
    (lambda r: r.pop("claims"), "field 'claims' is missing"),
    (lambda r: r.update(experiments=["MAD1"]), "field 'experiments'"),
])
def test_a_missing_or_malformed_claim_fails_naming_file_and_field(tmp_path, capsys, break_it, field):
    record = _record("fig_a", [_claim("MAD-1.a"), _claim("MAD-1.b")])
    break_it(record)
    path = _write(tmp_path / "results", record)
    with pytest.raises(GalleryError, match=str(path)) as err:
        render_site(tmp_path / "site", folders=[tmp_path / "results"])
    assert field in str(err.value)
    assert main(["gallery", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "site")]) == 2
    assert str(path) in capsys.readouterr().err


def test_without_paper_targets_the_index_lists_the_ids_it_has_and_says_so(tmp_path):
    _write(tmp_path / "results", _record("fig_a", [_claim("SIMS-2.a")], experiments=["SIMS-2"]))
    index = write_gallery(tmp_path / "site", folders=[tmp_path / "results"], targets=tmp_path / "absent.md").index
    page = Page(index)
    assert "paper-targets.md was not found" in index.read_text()
    assert ("SIMS-2", "default", (1, 1)) in page.counts and ("MAD-1", "default", None) in page.counts


# ----------------------------------------------------------------------------- samples

def test_sample_grids_show_the_first_seed_generation_by_generation(tmp_path):
    from PIL import Image

    from madlib.data import save_sample_archive

    rng = np.random.default_rng(0)
    sets = {f"augmentation/lam={lam}/seed={seed}/gen={gen}": (rng.integers(0, 256, (20, 1, 8, 8), dtype=np.uint8),
                                                              np.arange(20) % 10)
            for lam in (1, 0.8) for seed in (0, 1) for gen in (1, 2, 3)}
    save_sample_archive(tmp_path / "results" / "fig_img_samples.npz", sets, {"figure": "fig_img"})
    _write(tmp_path / "results", _record("fig_img", [_claim("MAD-1.a")], samples_archive="fig_img_samples.npz"))
    written = write_gallery(tmp_path / "site", folders=[tmp_path / "results"])
    files = sorted(g.file for g in written.grids)
    assert files == sorted(f"samples/default/fig_img/augmentation-lam-{lam}-gen{g}.png" for lam in ("1", "0.8")
                           for g in (1, 2, 3))
    grid = Image.open(tmp_path / "site" / files[0])
    assert grid.width >= 280 and grid.mode == "L"  # two per class, a column per class, upscaled
    links = Page(tmp_path / "site" / "mad.html").links
    assert all(f in links for f in files)


def test_a_missing_sample_archive_leaves_the_figure_without_grids(tmp_path):
    _write(tmp_path / "results", _record("fig_img", [_claim("MAD-1.a")], samples_archive="gone.npz"))
    written = write_gallery(tmp_path / "site", folders=[tmp_path / "results"])
    assert not written.grids and "not committed yet" in written.pages["mad.html"]


# ----------------------------------------------------------------------------- the site of the committed results

def test_index_has_one_row_per_experiment_with_the_counts_of_the_jsons(site):
    page = Page(site / "index.html")
    rows = [a["data-experiment"] for tag, a in page.tags if tag == "tr" and "data-experiment" in a]
    if TARGETS.is_file():
        assert rows == [e.id for e in read_targets(TARGETS)]
    for folder in RESULTS:
        label = _label(folder)
        for experiment in rows:
            assert (experiment, label, _expected_counts(folder, experiment)) in page.counts, (experiment, label)


def test_every_json_appears_on_its_papers_pages(site):
    for folder in RESULTS:
        for path in folder.glob("*.json"):
            record = json.loads(path.read_text())
            for paper in {e.split("-")[0] for e in record["experiments"]}:
                page = Page(site / gallery.PAPERS[paper][1])
                assert f"fig-{record['name']}" in page.ids, (path, paper)
                assert any((site / link).resolve() == path.resolve() for link in page.links), (path, paper)
                held = sum(c["held"] for c in record["claims"])
                assert f"{held} of {len(record['claims'])} claims held" in (site / gallery.PAPERS[paper][1]).read_text()


def test_every_link_and_image_of_the_site_resolves(site):
    pages = sorted(site.glob("*.html"))
    assert [p.name for p in pages] == ["casd.html", "index.html", "mad.html", "redifine.html", "sims.html"]
    for page in pages:
        parsed = Page(page)
        assert parsed.links
        for link in parsed.links:
            assert not link.startswith(("http:", "https:", "//")), f"{page.name} needs the network: {link}"
            url, _, anchor = link.partition("#")
            target = (page.parent / url).resolve() if url else page
            assert target.exists(), f"{page.name}: {link} does not resolve"
            if anchor:
                assert anchor in Page(target).ids, f"{page.name}: no #{anchor} in {target.name}"
        images = [a["src"] for tag, a in parsed.tags if tag == "img"]
        assert page.name != "index.html" or len(images) >= len(list(FIGURES.glob("*.png")))


def test_the_committed_site_is_current():
    committed = FIGURES / "site"
    if not TARGETS.is_file() or not committed.is_dir():
        pytest.skip("needs ../shared/paper-targets.md and a committed figures/site")
    rendered = render_site(committed, folders=RESULTS, targets=TARGETS)
    for name, text in rendered.pages.items():
        assert (committed / name).read_text() == text, f"figures/site/{name} is stale: python -m madlib.figures gallery"
    assert all((committed / g.file).is_file() for g in rendered.grids)


def test_the_gallery_command_rerenders_site_and_claims_md(tmp_path, capsys):
    _write(tmp_path / "results", _record("fig_a", [_claim("RDF-1.a")], experiments=["RDF-1"]))
    assert main(["gallery", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "site"), "--summary"]) == 0
    out = capsys.readouterr().out
    assert "## What reproduced" in out and "| [ReDiFine](" in out and "| 1 / 1 |" in out
    assert (tmp_path / "site" / "redifine.html").is_file() and (tmp_path / "results" / "CLAIMS.md").is_file()


def test_a_build_elsewhere_writes_its_own_site(tmp_path):
    _write(tmp_path, _record("fig_a", [_claim("MAD-1.a", held=False)]))
    index = write_gallery_after_build(tmp_path).index
    assert index == tmp_path / "site" / "index.html" and ("MAD-1", "default", (0, 1)) in Page(index).counts


# ----------------------------------------------------------------------------- a real browser

@pytest.mark.skipif(gallery.find_chromium() is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_chromium_renders_the_index_and_a_paper_page(site, tmp_path):
    from PIL import Image

    start = time.perf_counter()
    index = gallery.dump_dom(site / "index.html")
    assert index.count("data-experiment=") == (30 if TARGETS.is_file() else index.count("data-experiment="))
    assert 'class="experiments"' in index and index.count("<img") >= 5
    mad = gallery.dump_dom(site / "mad.html")
    assert mad.count('<table class="claims">') == mad.count('<section class="figure"') > 0
    assert "✔ held" in mad and 'class="figure"' in mad
    png = gallery.screenshot(site / "mad.html", tmp_path / "mad.png", width=1200, height=1400)
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.shape == (1400, 1200)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01, "the screenshot is blank"
    assert time.perf_counter() - start < 30
