"""The overview page (index.html): best configurations, outcomes and errors, definitions,
headline figures, the one-seed and colour-range caveats."""

from __future__ import annotations

import html
import re

import pandas as pd
import pytest

from analysis import build_report
from analysis.aggregate import ONE_SEED, aggregate, spread_caveat
from analysis.definitions import (
    DEFINITIONS,
    EVAL_DEFINITIONS,
    HIGHER,
    LOWER,
    NEITHER,
    better,
    definition_of,
)
from analysis.figures import alpha_gamma_heatmap
from analysis.figures.style import colorscale
from analysis.overview import (
    Selection,
    best_configurations,
    error_messages,
    ranked_configurations,
    selection_of,
)
from analysis.tidy import tidy_results
from core import columns as C
from tests.analysis import fakes

SEL = Selection(C.SELECTION_COLUMN, True)


def test_definitions_cover_every_evaluation_key_and_the_robustness_metrics():
    assert tuple(EVAL_DEFINITIONS) == C.EVAL_KEYS
    assert {d.better for d in DEFINITIONS.values()} == {HIGHER, LOWER, NEITHER}
    assert definition_of("final_test_member_acc").name == "member accuracy"  # not 'accuracy'
    assert definition_of(C.TEST_ACC_AT_BEST_VAL).name == "accuracy"
    assert definition_of(C.ood_metric("auroc", "mi")).name == "OOD AUROC"
    assert definition_of(C.corrupt_metric("acc")).name == "corrupted accuracy"
    assert better(C.FINAL_TEST_LOSS) == LOWER and better("final_val_kl") == NEITHER
    assert definition_of(C.PARAMS) is None


def test_colour_scales_follow_the_definitions():
    """Bright = better wherever a direction is defined: OOD AUROC used to be reversed."""
    assert colorscale(C.ood_metric("auroc", "msp")) == "Viridis"
    assert colorscale(C.ood_metric("fpr95", "msp")) == "Viridis_r"
    assert colorscale(C.corrupt_metric("acc")) == "Viridis"
    assert colorscale(C.FINAL_TEST_LOSS) == "Viridis_r"
    assert colorscale("final_test_disagreement") == "Cividis"


def test_best_configurations_mean_sd_over_seeds(ag_results):
    varying = ["alpha", "gamma"]
    best = best_configurations(ag_results, varying, SEL)
    assert len(best) == 5 and list(best["rank"]) == [1, 2, 3, 4, 5]
    # validation accuracy is test + 0.01 in every epoch (fakes.epoch_values): alpha=1 wins,
    # then gamma in sweep order from the top; (1, 1) is fine, (-1, 1) diverged elsewhere
    assert list(best["configuration"])[:2] == ["alpha=1, gamma=1", "alpha=1, gamma=0.8"]
    top = best.iloc[0]
    accs = [fakes.ag_acc(1.0, 1.0, s) for s in fakes.AG_SEEDS]
    assert top[f"{C.SELECTION_COLUMN}_mean"] == pytest.approx(fakes.mean(accs) + 0.01)
    assert top[f"{C.SELECTION_COLUMN}_sd"] == pytest.approx(fakes.std(accs))
    assert top[f"{C.TEST_ACC_AT_BEST_VAL}_mean"] == pytest.approx(fakes.mean(accs))
    assert top[f"{C.SELECTION_COLUMN}_n"] == 3 and top["n_trials"] == 3
    # 81 cells, one not run, one all diverged: 79 ranked
    assert ranked_configurations(ag_results, varying, SEL) == 79


def test_ranking_reads_the_validation_metric_never_the_test_one():
    rows = [
        fakes.trial("good_test", 0.9, 0.5, optimizer="adam"),
        fakes.trial("good_val", 0.6, 0.5, optimizer="sgd"),
    ]
    results, _ = fakes.frames(rows)
    results.loc[1, C.SELECTION_COLUMN] = 0.95  # sgd: worse test, better validation
    best = best_configurations(tidy_results(results), ["optimizer"], SEL)
    assert list(best["configuration"]) == ["optimizer=sgd", "optimizer=adam"]
    lowest = best_configurations(tidy_results(results), ["optimizer"], Selection(SEL.column, False))
    assert list(lowest["configuration"]) == ["optimizer=adam", "optimizer=sgd"]


def test_selection_metric_from_study_json():
    assert selection_of({}) == SEL
    loss = selection_of({C.STUDY_SELECTION_METRIC: "val_loss", C.STUDY_SELECTION_MODE: "min"})
    assert loss == Selection("final_val_loss", False)
    test = selection_of({C.STUDY_SELECTION_METRIC: "test_acc"})
    assert test.column == C.SELECTION_COLUMN
    assert test.note is not None and "'test_acc', not a validation metric" in test.note


def test_error_messages_counted_per_distinct_message():
    rows = [fakes.trial(f"t{k}", 0.5, 1.0, outcome="error", seed=k) for k in range(4)]
    rows.append(fakes.trial("ok", 0.5, 1.0, seed=9))
    results, _ = fakes.frames(rows)
    results.loc[3, C.ERROR] = "ValueError: bad lr"
    results.loc[2, C.ERROR] = None
    errors = error_messages(tidy_results(results))
    assert errors.to_dict("records") == [
        {"error": "RuntimeError: CUDA out of memory", "trials": 2},
        {"error": "(no message recorded)", "trials": 1},
        {"error": "ValueError: bad lr", "trials": 1},
    ]


def _noisy_grid(spread: float) -> pd.DataFrame:
    """A 2 x 2 alpha/gamma grid, 3 seeds: cells differ by `spread`, seeds by 0.01 each."""
    results, _ = fakes.alpha_gamma_frames(sweep=(0.0, 0.5), special=False)
    alpha_index = results["alpha"].eq(0.5).astype(float)
    results[C.FINAL_TEST_ACC] = 0.5 + 0.01 * results["seed"] + spread * alpha_index
    return tidy_results(results)


def test_spread_caveat_when_colours_span_less_than_the_seed_sd():
    noisy = _noisy_grid(0.002)
    caveat = spread_caveat(aggregate(noisy, ["alpha", "gamma"], C.FINAL_TEST_ACC))
    assert caveat == (
        "colour range 0.002 < median seed sd 0.01: the colour contrast is within seed noise"
    )
    fig = alpha_gamma_heatmap(noisy, C.FINAL_TEST_ACC)
    assert fig.layout.title.subtitle.text == caveat
    clear = _noisy_grid(0.05)
    assert spread_caveat(aggregate(clear, ["alpha", "gamma"], C.FINAL_TEST_ACC)) is None
    assert not alpha_gamma_heatmap(clear, C.FINAL_TEST_ACC).layout.title.subtitle.text
    one = clear[clear["seed"] == 0]
    assert spread_caveat(aggregate(one, ["alpha", "gamma"], C.FINAL_TEST_ACC)) == ONE_SEED


def best_rows(index_html: str) -> list[list[str]]:
    table = re.search(r'<table class="best">(.*?)</table>', index_html, re.S).group(1)
    return [
        [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]
    ]


def test_overview_page_of_the_alpha_gamma_report(ag_report):
    index = ag_report.read_text()
    rows = best_rows(index)
    accs = [fakes.ag_acc(1.0, 1.0, s) for s in fakes.AG_SEEDS]
    val = f"{fakes.mean(accs) + 0.01:.3f} ± {fakes.std(accs):.3f}"
    test = f"{fakes.mean(accs):.3f} ± {fakes.std(accs):.3f}"
    assert rows[0][:5] == ["1", "alpha=1, gamma=1", "3 of 3", val, test]
    assert len(rows) == 5
    assert "top 5 of 79 configurations by the mean final validation accuracy" in index
    # outcomes, and the one error message with its count
    assert '<td>errored</td><td class="num">1</td>' in index
    errors = re.search(r'<table class="errors">(.*?)</table>', index, re.S).group(1)
    assert re.findall(r"<td[^>]*>(.*?)</td>", errors) == [
        "<code>RuntimeError: CUDA out of memory</code>",
        "1",
    ]
    # every definition once, with its direction
    for d in DEFINITIONS.values():
        assert index.count(f"<th>{html.escape(d.name)}</th><td>{html.escape(d.meaning)}") == 1
    # headline figures drawn inline (the heatmap, the parallel coordinates), then the links
    assert re.findall(r'<div id="(overview-[^"]+)"', index) == [
        "overview-alpha_gamma_final_test_acc",
        "overview-parallel_coordinates",
    ]
    assert index.index("Headline figures") < index.index("<h2>Figures</h2>")
    assert 'href="tables/best_configurations.csv"' in index
    assert ONE_SEED not in index  # three seeds


def test_one_seed_study_says_differences_are_untested(tmp_path):
    results, history = fakes.search_frames()
    index = build_report(fakes.write_experiment(tmp_path / "s", results, history, "search"))
    text = index.read_text()
    assert ONE_SEED in text
    assert "top 5 of 8 configurations" in text  # 10 trials, one diverged, one errored
    # no validation split: the overview says why nothing is ranked
    results, history = fakes.optimizer_frames(val=False, seeds=(0,))
    index = build_report(fakes.write_experiment(tmp_path / "o", results, history, "optimizers"))
    text = index.read_text()
    assert '<table class="best">' not in text
    assert "configurations are not ranked, since ranking never reads the test set" in text


def facts(index_html: str) -> dict[str, str]:
    """The overview's key facts table: fact -> value as shown."""
    table = re.search(r"<table>(.*?)</table>", index_html, re.S).group(1)
    return {
        html.unescape(k): html.unescape(v)
        for k, v in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", table)
    }


def test_the_overview_says_what_produced_the_study(tmp_path):
    results, history = fakes.search_frames()
    # four trials ran on a GPU node, with what auto resolves to there
    gpu = {
        C.DEVICE_NAME: "NVIDIA H200 x1",
        C.RESOLVED_DEVICE: "cuda",
        C.RESOLVED_PRECISION: "bf16",
        C.RESOLVED_CHANNELS_LAST: True,
        C.RESOLVED_COMPILE: True,
    }
    for col, value in gpu.items():
        results[col] = results[col].astype(object)
        results.loc[results.index[:4], col] = value
    record = fakes.provenance(dirty=True, cuda="12.4")
    exp = fakes.write_experiment(
        tmp_path / "s", results, history, "search", **{C.PROVENANCE: record}
    )
    shown = facts(build_report(exp).read_text())
    assert shown["code version"] == "commit 1a2b3c4 with uncommitted changes"
    assert shown["library versions"] == (
        "Python 3.11.9, torch 2.4.0, Ray 2.50.0, Optuna 4.0.0, CUDA 12.4"
    )
    assert shown["driver CPU"] == "AMD EPYC 7763"
    # search_8 errored before its first epoch: it reported no device
    assert shown["trial devices"] == (
        "AMD EPYC 7763 (5 trials), NVIDIA H200 x1 (4 trials), not recorded (1 trial)"
    )
    assert shown["resolved runtime (precision, channels_last, compile)"] == (
        "cpu fp32, channels_last off, compile off (5 trials), "
        "cuda bf16, channels_last on, compile on (4 trials), not recorded (1 trial)"
    )
    # outside a git checkout: the installed package's version
    record = fakes.provenance(commit=None, dirty=None, package_version="0.1.0")
    exp = fakes.write_experiment(
        tmp_path / "p", results, history, "search", **{C.PROVENANCE: record}
    )
    assert facts(build_report(exp).read_text())["code version"] == "package version 0.1.0"
    # resumed by other code: the earlier runs' code is named too (the same code is not)
    earlier = [fakes.provenance(commit="f" * 40), record, fakes.provenance(commit="f" * 40)]
    meta = {C.PROVENANCE: fakes.provenance(), C.PROVENANCE_EARLIER: earlier}
    exp = fakes.write_experiment(tmp_path / "r", results, history, "search", **meta)
    assert facts(build_report(exp).read_text())["code version"] == (
        "commit 1a2b3c4 (resumed; earlier runs: commit fffffff, package version 0.1.0)"
    )
    meta[C.PROVENANCE_EARLIER] = [fakes.provenance()]
    exp = fakes.write_experiment(tmp_path / "same", results, history, "search", **meta)
    assert facts(build_report(exp).read_text())["code version"] == "commit 1a2b3c4"


def test_a_study_without_provenance_says_not_recorded(ag_report, tmp_path):
    shown = facts(ag_report.read_text())  # study.json from before provenance was recorded
    # 3 seeds x 80 cells; seed 0 of one cell errored before its first epoch
    for fact in ("code version", "library versions", "driver CPU"):
        assert shown[fact] == "not recorded", fact
    assert shown["trial devices"] == "AMD EPYC 7763 (239 trials), not recorded (1 trial)"
    # results from before the devices were reported: no such columns at all
    results, history = fakes.search_frames()
    exp = fakes.write_experiment(
        tmp_path / "old", results.drop(columns=list(C.RUNTIME_KEYS)), history, "search"
    )
    shown = facts(build_report(exp).read_text())
    assert shown["trial devices"] == shown["code version"] == "not recorded"
