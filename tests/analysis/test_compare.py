"""Several experiment folders: one comparison report (python -m analysis A B ...)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis import ReportInputError
from analysis.__main__ import app
from analysis.compare import build_comparison, default_out
from analysis.figures.compare import main_metric_boxes, pareto_overlay
from analysis.provenance import provenance_notes
from analysis.tidy import tidy_results
from core import columns as C
from tests.analysis import fakes


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two searches (the second: half the parameters, validation accuracy 0.05 lower) and a
    sharing study with three seeds."""
    root = tmp_path_factory.mktemp("compare")
    results, history = fakes.search_frames()
    s1 = fakes.write_experiment(root / "s1", results, history, study="search")
    slim = results.assign(
        **{C.PARAMS: results[C.PARAMS] / 2, C.SELECTION_COLUMN: results[C.SELECTION_COLUMN] - 0.05}
    )
    s2 = fakes.write_experiment(root / "s2", slim, history, study="search")
    results, history = fakes.sharing_frames()
    sh = fakes.write_experiment(root / "sh", results, history, study="sharing")
    return s1, s2, sh


@pytest.fixture(scope="module")
def comparison(folders, tmp_path_factory) -> Path:
    return build_comparison(folders, tmp_path_factory.mktemp("out") / "cmp")


def test_table_has_one_row_per_experiment_with_the_selected_configuration(comparison):
    table = pd.read_csv(comparison.parent / "tables" / "experiments.csv").set_index("experiment")
    assert list(table.index) == ["s1", "s2", "sh"]
    assert table.loc["s1", "trials"] == 10 and table.loc["s1", "usable"] == 8
    # search: search_0 has the best validation accuracy (search_7 diverged, search_8 errored)
    assert table.loc["s1", "best_test_mean"] == pytest.approx(0.90)
    assert table.loc["s2", "best_selection_mean"] == pytest.approx(0.91 - 0.05)
    # sharing: regime none/none (acc 0.7 + 0.01 * seed) is ranked first by validation
    assert table.loc["sh", "best_configuration"] == "sharing_network=none, sharing_ensemble=none"
    assert table.loc["sh", "best_test_mean"] == pytest.approx(0.71)
    assert table.loc["sh", "best_test_sd"] == pytest.approx(0.01)
    assert table.loc["sh", "best_n"] == 3 and table.loc["sh", "seeds"] == 3
    index = comparison.read_text()
    assert "0.710 ± 0.010 (n=3)" in index
    assert "one seed in s1, s2: differences between configurations are untested" in index
    assert re.findall(r'<div id="(compare-\d)"', index) == ["compare-0", "compare-1"]
    assert re.findall(r'<script[^>]*\bsrc="([^"]*)"', index) == ["plotly.min.js"]
    assert "https://" not in index and "http://" not in index


def test_main_metric_side_by_side_with_the_selected_trial_starred(folders):
    exps = [(p.name, tidy_results(pd.read_parquet(p / C.RESULTS_FILE))) for p in folders]
    fig = main_metric_boxes(exps)
    boxes = [t for t in fig.data if t.type == "box"]
    assert [b.name for b in boxes] == ["s1", "s2", "sh"]
    assert [len(b.y) for b in boxes] == [8, 8, 11]  # usable trials only
    stars = [t for t in fig.data if t.type == "scatter"]
    assert [s.hovertext[0].split("<br>")[0] for s in stars] == [
        "s1: trial search_0",
        "s2: trial search_0",
        "sh: trial sh_none_none_s2",
    ]
    assert fig.layout.title.subtitle.text == "s1: n=8; s2: n=8; sh: n=11"


def test_pareto_fronts_overlaid_one_colour_per_search(folders):
    s1, s2, _ = folders
    exps = [(p.name, tidy_results(pd.read_parquet(p / C.RESULTS_FILE))) for p in (s1, s2)]
    fig = pareto_overlay(exps)
    fronts = {
        (t.name, t.xaxis): {h.split(": trial ")[1] for h in t.hovertext}
        for t in fig.data
        if t.name.endswith("Pareto front")
    }
    # halving every trial's params and lowering every accuracy keeps the fronts
    for name in ("s1", "s2"):
        assert fronts[(f"{name}: Pareto front", "x")] == fakes.PARAMS_FRONT
        # FLOPs per image and peak memory grow with params in the fakes: the same front
        assert fronts[(f"{name}: Pareto front", "x2")] == fakes.PARAMS_FRONT
        assert fronts[(f"{name}: Pareto front", "x4")] == fakes.THROUGHPUT_FRONT
    assert fig.layout.title.text == "Pareto fronts of 2 searches"


def test_cli_several_folders_default_out(folders, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, [str(p) for p in folders])
    assert res.exit_code == 0, res.output
    out = Path("reports/compare-s1-s2-sh")
    assert default_out(folders) == out
    assert f"comparison of 3 experiments written: {out / 'index.html'}" in res.stdout
    assert (tmp_path / out / "index.html").is_file()


def test_refusals_are_one_line_and_exit_2(folders, tmp_path):
    s1, _, sh = folders
    with pytest.raises(ReportInputError, match=r"experiment folder\(s\) \[.*s1'\] given more"):
        build_comparison([s1, s1], tmp_path / "o")
    with pytest.raises(ReportInputError, match=r"experiment folder '.*nope' does not exist"):
        build_comparison([s1, tmp_path / "nope"], tmp_path / "o")
    with pytest.raises(ReportInputError, match=r"is \(or contains\) the experiment folder"):
        build_comparison([s1, sh], sh)
    res = CliRunner().invoke(app, [str(s1), str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0 and "does not exist" in res.stderr
    assert not (tmp_path / "o").exists()


def test_notes_flag_different_code_and_library_versions(tmp_path):
    """Three searches: one made from another commit with uncommitted changes and another torch,
    one recorded before provenance was."""
    results, history = fakes.search_frames()
    made = {
        "a": fakes.provenance(),
        "b": fakes.provenance(commit="9f8e7d6c5b4a" + "0" * 28, dirty=True, torch="2.5.1"),
        "old": None,
    }
    folders = [
        fakes.write_experiment(
            tmp_path / name,
            results,
            history,
            study="search",
            **({C.PROVENANCE: record} if record else {}),
        )
        for name, record in made.items()
    ]
    index = build_comparison(folders, tmp_path / "cmp").read_text()
    notes = [html.unescape(n) for n in re.findall(r"<li>(.*?)</li>", index)]
    assert (
        "the experiments were made with different code versions (a: commit 1a2b3c4; "
        "b: commit 9f8e7d6 with uncommitted changes)" in notes
    )
    assert "the experiments used different torch versions (a: 2.4.0; b: 2.5.1)" in notes
    assert (
        "provenance not recorded for old (studies from before it was): their code and "
        "library versions cannot be compared" in notes
    )
    assert not [n for n in notes if "Ray versions" in n or "Python versions" in n]


def notes_of(*records: dict) -> list[str]:
    """provenance_notes of experiments a, b, ... whose study.json hold these records."""
    labels = "abcdefgh"[: len(records)]
    return provenance_notes([{C.PROVENANCE: r} for r in records], list(labels))


def test_provenance_notes_of_each_kind_of_difference():
    same = fakes.provenance()
    assert notes_of(same, fakes.provenance()) == []
    # the same commit, one tree dirty: different code
    dirty = fakes.provenance(dirty=True)
    (note,) = notes_of(same, dirty)
    assert note.startswith("the experiments were made with different code versions")
    # both dirty at one commit: the code may still differ
    assert notes_of(dirty, dirty) == [
        "made with uncommitted changes: a, b (one commit, but the code may differ)"
    ]
    # installed packages: their versions; CUDA on one side only; several libraries at once
    installed = fakes.provenance(commit=None, dirty=None, package_version="0.2.0")
    gpu = fakes.provenance(
        commit=None, dirty=None, package_version="0.1.0", cuda="12.4", ray="2.60.0"
    )
    assert notes_of(installed, gpu) == [
        "the experiments were made with different code versions (a: package version 0.2.0; "
        "b: package version 0.1.0)",
        "the experiments used different Ray versions (a: 2.50.0; b: 2.60.0)",
        "the experiments used different CUDA versions (a: none; b: 12.4)",
    ]
    # nothing recorded at all: said once, no comparison of versions
    assert provenance_notes([{}, {"name": "x"}], ["a", "b"]) == [
        "provenance not recorded for a, b (studies from before it was): their code and "
        "library versions cannot be compared"
    ]
