"""The report folder: pages, offline plotly.js, CSV tables, which figures apply, safety."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis import ReportInputError, build_report
from analysis.__main__ import app
from tests.analysis import fakes

HEATMAP_PAGES = {
    f"alpha_gamma_{m}.html"
    for m in (
        "final_test_acc",
        "avg_test_acc",
        "final_test_loss",
        "avg_test_loss",
        "final_test_ece",
        "final_test_disagreement",
        # robustness metrics, measured by the fabricated trials (fakes.robustness_values)
        "corrupt_acc",
        "corrupt_ece",
        "ood_auroc_msp",
        "ood_auroc_mi",
    )
}


def pages(report: Path) -> set[str]:
    return {p.name for p in report.glob("*.html")} - {"index.html"}


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file outside report/ (what the report must never touch)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "report" not in p.relative_to(folder).parts
    }


def test_index_links_every_page_and_table(ag_report):
    report = ag_report.parent
    assert ag_report.name == "index.html" and report.name == "report"
    index = ag_report.read_text()
    links = set(re.findall(r'href="([^"]+)"', index))
    assert {link for link in links if link.endswith(".html")} == pages(report)
    tables = {p.name for p in (report / "tables").glob("*.csv")}
    assert {link.removeprefix("tables/") for link in links if link.endswith(".csv")} == tables
    assert pages(report) == HEATMAP_PAGES | {
        "seeds.html",
        "best_trials.html",
        "robustness.html",
        "parallel_coordinates.html",
    }


def test_only_applicable_figures(ag_report):
    # an alpha/gamma study: no sharing, ensemble-size, optimizer or search pages
    for page in ("sharing", "ensemble_size_lr", "optimizers", "search_pareto"):
        assert not (ag_report.parent / f"{page}.html").exists()


def test_pages_use_the_local_plotly_js_once(ag_report):
    report = ag_report.parent
    js = report / "plotly.min.js"
    assert js.stat().st_size > 1_000_000  # the real bundle, written once
    assert [p.name for p in report.rglob("*.js")] == ["plotly.min.js"]
    for page in sorted(pages(report) | {"index.html"}):  # the overview draws figures too
        html = (report / page).read_text()
        srcs = re.findall(r'<script[^>]*\bsrc="([^"]*)"', html)
        assert srcs == ["plotly.min.js"], page
        assert "cdn.plot.ly" not in html
        assert "https://" not in html and "http://" not in html  # no remote URL at all
        assert "Plotly.newPlot" in html


def test_csv_tables_have_the_expected_rows(ag_report, ag_frames):
    tables = ag_report.parent / "tables"
    results = ag_frames[0]
    trials = pd.read_csv(tables / "trials.csv")
    assert len(trials) == len(results) == 80 * 3
    assert trials["outcome"].value_counts().to_dict() == {
        "completed": 233,
        "diverged": 3,
        "asha_stopped": 3,
        "error": 1,
    }
    ag = pd.read_csv(tables / "alpha_gamma.csv")
    assert len(ag) == 80 * 10  # cells that ran x heatmap metrics (6 + 4 of robustness)
    row = ag[(ag["alpha"] == 0.5) & (ag["gamma"] == 0.2) & (ag["metric"] == "final_test_acc")]
    expected = fakes.mean(fakes.ag_acc(0.5, 0.2, s) for s in fakes.AG_SEEDS)
    assert row["mean"].item() == pytest.approx(expected) and row["n"].item() == 3
    div = ag[(ag["alpha"] == -1.0) & (ag["gamma"] == 1.0) & (ag["metric"] == "final_test_acc")]
    assert div["mean"].isna().all() and div["n_diverged"].item() == 3
    summary = pd.read_csv(tables / "summary.csv")
    # 8 metrics + 9 robustness columns (corrupted acc/loss/ECE, AUROC and FPR95 of 3 scores)
    assert len(summary) == 80 * 17 and set(summary["metric"]) >= {"params", "corrupt_acc"}


def test_heatmap_page_notes_unusable_trials(ag_report):
    html = (ag_report.parent / "alpha_gamma_final_test_acc.html").read_text()
    assert "5 trials excluded from the final test accuracy means" in html
    assert "3 diverged, 1 errored, 1 NaN value" in html
    assert "stopped early by ASHA" in html


def test_experiment_folder_untouched_and_report_replaced(tmp_path):
    results, history = fakes.sharing_frames(seeds=(0, 1))
    exp = fakes.write_experiment(tmp_path / "sh", results, history, study="sharing")
    (exp / "notes.txt").write_text("mine")
    before = snapshot(exp)
    index = build_report(exp)
    assert pages(index.parent) == {
        "sharing.html",
        "sharing_robustness.html",
        "seeds.html",
        "best_trials.html",
        "robustness.html",
        "parallel_coordinates.html",
    }
    (index.parent / "stale.html").write_text("old")
    build_report(exp)  # an earlier report is replaced as a whole
    assert not (index.parent / "stale.html").exists()
    assert snapshot(exp) == before


def test_out_dir_safety(tmp_path):
    results, _ = fakes.sharing_frames(seeds=(0,))
    exp = fakes.write_experiment(tmp_path / "sh", results)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("keep")
    with pytest.raises(ReportInputError, match="was not written by analysis"):
        build_report(exp, foreign)
    assert (foreign / "keep.txt").read_text() == "keep"
    with pytest.raises(ReportInputError, match="is \\(or contains\\) the experiment folder"):
        build_report(exp, exp)
    with pytest.raises(ReportInputError, match="is \\(or contains\\) the experiment folder"):
        build_report(exp, tmp_path)
    out = build_report(exp, tmp_path / "elsewhere" / "r")
    assert out == tmp_path / "elsewhere" / "r" / "index.html"


def test_study_inferred_from_columns_without_study_json(tmp_path):
    results, history = fakes.ensemble_size_frames(sizes=(1, 2), seeds=(0,))
    results, history = results.drop(columns="study"), history.drop(columns="study")
    exp = fakes.write_experiment(tmp_path / "es", results, history)  # no study.json either
    report = build_report(exp).parent
    # ensemble_size varies (and lr): ensemble-size page; 1 seed: no seed box plot
    assert pages(report) == {
        "ensemble_size_lr.html",
        "ensemble_size_robustness.html",
        "best_trials.html",
        "robustness.html",
        "parallel_coordinates.html",
    }
    assert "unknown (figures chosen from the columns)" in (report / "index.html").read_text()


def test_search_report_with_too_few_optuna_trials_says_so(tmp_path):
    import optuna

    results, history = fakes.search_frames()
    exp = fakes.write_experiment(tmp_path / "s", results, history, study="search")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{exp / 'optuna.db'}", study_name="s")
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.01},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1)},
            value=0.5,
        )
    )
    index = build_report(exp)
    # no importance page, and no link to one: the index says why, with the threshold
    assert pages(index.parent) == {
        "search_pareto.html",
        "best_trials.html",
        "robustness.html",
        "parallel_coordinates.html",
    }
    html = index.read_text()
    assert "search_importance" not in html
    assert (
        "not drawn: parameter importances: too few completed trials (1) in the Optuna study "
        "&#x27;s&#x27; for parameter importances: at least 10 are needed"
    ) in html


def test_cli_writes_the_report(tmp_path):
    results, history = fakes.sharing_frames(seeds=(0,))
    exp = fakes.write_experiment(tmp_path / "sh", results, history, study="sharing")
    res = CliRunner().invoke(app, [str(exp), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert f"report written: {tmp_path / 'out' / 'index.html'}" in res.stdout
    assert "sharing.html" in res.stdout
