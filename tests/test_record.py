"""FigureRecord.from_notebook: parameters from the notebook's own parameters cell, scale text from the manifest."""

import pytest

from madlib.figures import FigureRecord
from madlib.figures.manifest import ManifestError, load_manifest
from madlib.figures.params import notebook_parameters


def test_from_notebook_records_every_declared_parameter_and_the_manifest_scale():
    entry = load_manifest()["mad_1_gaussian_collapse"]
    declared = notebook_parameters(entry.notebook)
    namespace = {name: spec.default for name, spec in declared.items()} | {"runs": 7, "profile": "custom"}
    record = FigureRecord.from_notebook("mad_1_gaussian_collapse", namespace, ours="7 runs", resolved={"extra": 1})
    assert record.params == {k: namespace[k] for k in declared if k not in ("profile", "out_dir", "progress")} | {"extra": 1}
    assert record.params["runs"] == 7 and record.profile == "custom" and record.experiments == ["MAD-1"]
    assert record.scale["ours"] == "7 runs" and record.scale["paper"] == entry.scale["paper"]
    assert record.scale["differences"] == entry.scale["differences"]


def test_from_notebook_names_what_is_missing():
    with pytest.raises(ValueError, match="must be a figure of the manifest"):
        FigureRecord.from_notebook("no_such_figure", {}, ours="")
    with pytest.raises(ValueError, match="pass globals"):
        FigureRecord.from_notebook("mad_1_gaussian_collapse", {"profile": "smoke", "seed": 0}, ours="")


def test_manifest_scale_must_be_paper_text_and_a_list_of_differences(tmp_path):
    (tmp_path / "a.ipynb").write_text("{}")
    (tmp_path / "m.yaml").write_text(
        "figures:\n  a:\n    notebook: a.ipynb\n    experiments: [MAD-1]\n    title: t\n"
        "    scale: {paper: p, differences: not-a-list}\n    profiles: {smoke: {}, default: {}, paper: {}}\n")
    with pytest.raises(ManifestError, match="scale must be"):
        load_manifest(tmp_path / "m.yaml")


def test_call_with_params_hands_over_the_named_parameters_and_keeps_the_rest():
    from madlib.figures import call_with_params

    def fn(*, a, b=2, c=3):
        return a, b, c

    assert call_with_params(fn, {"a": 1, "c": 30, "unrelated": 0}) == (1, 2, 30)
    assert call_with_params(fn, {"a": 1, "c": 30}, c=300) == (1, 2, 300)
    with pytest.raises(TypeError, match="a"):
        call_with_params(fn, {"b": 1})


@pytest.mark.parametrize("setting, figures", [
    ("madlib.methods.redifine.chain_setting", ["rdf_4_5_second_style", "rdf_4_6_chain_cfg_redifine", "rdf_7_sweeps"]),
    ("madlib.methods.sims.figure_setting", ["sims_2_self_improvement", "sims_3_pollution", "sims_4_distribution_shift",
                                            "sims_5_ablations"]),
    ("madlib.methods.casd.figure_setting", ["casd_1_effective_data", "casd_2_mismatched_support", "casd_3_memorization"]),
])
def test_every_required_setting_argument_is_a_parameter_of_its_notebooks(setting, figures):
    # the notebooks call these through call_with_params: a renamed parameter must fail here, not in a long build
    import importlib
    import inspect

    module, name = setting.rsplit(".", 1)
    fn = getattr(importlib.import_module(module), name)
    required = {k for k, p in inspect.signature(fn).parameters.items() if p.default is inspect.Parameter.empty}
    entries = load_manifest()
    for figure in figures:
        declared = set(notebook_parameters(entries[figure].notebook))
        assert required <= declared, (figure, sorted(required - declared))
        assert name in entries[figure].notebook.read_text()


def test_a_sample_archive_inside_the_repository_is_recorded_by_its_relative_path(tmp_path):
    import shutil

    import torch

    from madlib.data import load_sample_archive
    from madlib.figures import FigureRecord
    from madlib.figures.paths import repo_root

    record = FigureRecord(name="fig_x", experiments=["MAD-1"], profile="smoke", params={}, seed=0, scale={})
    sets = {"a": (torch.zeros(3, 1, 8, 8, dtype=torch.uint8), torch.arange(3))}
    outside = record.save_samples(sets, tmp_path)
    assert outside.is_absolute() and load_sample_archive(outside)["a"].images.shape == (3, 1, 8, 8)
    inside_dir = repo_root() / "build" / "test_sample_archive"
    try:
        inside = record.save_samples(sets, inside_dir)
        assert inside == inside_dir.relative_to(repo_root()) / "fig_x_samples.npz"  # the same in every checkout
        assert (repo_root() / inside).exists()
    finally:
        shutil.rmtree(inside_dir, ignore_errors=True)


def test_paths_inside_the_repository_are_recorded_relative_to_it(tmp_path):
    from madlib.figures import FigureRecord
    from madlib.figures.paths import repo_root

    record = FigureRecord(name="fig_x", experiments=["MAD-1"], profile="smoke", params={}, seed=0, scale={})
    record.data = {"cache": str(repo_root() / "build" / "cache"), "store": repo_root() / "build" / "sets",
                   "runs": [{"archive": str(repo_root() / "figures" / "a.npz")}], "elsewhere": str(tmp_path), "text": "build"}
    data = record.to_dict()["data"]
    assert data["cache"] == "build/cache" and data["store"] == "build/sets" and data["runs"][0]["archive"] == "figures/a.npz"
    assert data["elsewhere"] == str(tmp_path) and data["text"] == "build"  # outside the repository, or not a path: kept
