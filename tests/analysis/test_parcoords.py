"""Parallel coordinates over the swept knobs; parameter importances only from the threshold on;
page descriptions count what they draw."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from analysis import build_report
from analysis.figures.parcoords import knob_axis, parallel_coordinates
from analysis.importance import MIN_TRIALS
from analysis.tidy import tidy_results, varying_columns
from core import columns as C
from tests.analysis import fakes
from tests.analysis.test_search import optuna_db


@pytest.fixture(scope="module")
def search_results() -> pd.DataFrame:
    return tidy_results(fakes.search_frames()[0])


def test_one_line_per_usable_trial_across_every_swept_knob(search_results):
    knobs = varying_columns(search_results)
    assert knobs == ["alpha", "optimizer", "lr"]  # seed is not a knob
    fig = parallel_coordinates(search_results, knobs, C.SELECTION_COLUMN)
    (trace,) = fig.data
    labels = [d.label for d in trace.dimensions]
    assert labels == ["alpha", "optimizer", "lr (log)", "final validation accuracy"]
    usable = search_results.drop(index=[7, 8])  # search_7 diverged, search_8 errored
    assert list(trace.line.color) == pytest.approx(list(usable[C.SELECTION_COLUMN]))
    # categorical knob: codes with its values as tick text, in the config's choice order
    opt = trace.dimensions[1]
    assert list(opt.ticktext) == ["adam", "sgd"]
    assert list(opt.values) == [("adam", "sgd").index(o) for o in usable["optimizer"]]
    # lr spans 10^-4 .. 10^-1.75: a log axis whose tick text reads as learning rates
    lr = trace.dimensions[2]
    assert list(lr.values) == pytest.approx(list(np.log10(usable["lr"])))
    assert lr.ticktext[0] == "0.0001"
    assert fig.layout.title.subtitle.text == (
        "8 trials drawn across 3 swept knobs; 2 not drawn (diverged, errored or no final "
        "validation accuracy); best final validation accuracy 0.910"
    )


def test_past_max_lines_the_best_trials_are_drawn_the_best_on_top():
    """A 2,500-trial search draws its best MAX_LINES lines (more hide each other), the best
    last, and says how many of how many."""
    from analysis.figures.parcoords import MAX_LINES

    rng = np.random.default_rng(0)
    n = 2500
    results = pd.DataFrame(
        {
            "alpha": rng.uniform(-1, 1, n),
            "lr": 10 ** rng.uniform(-4, -2, n),
            C.SELECTION_COLUMN: rng.uniform(0, 1, n),
            C.STATUS: "TERMINATED",
            C.DIVERGED: False,
        }  # fmt: skip
    )
    fig = parallel_coordinates(results, ["alpha", "lr"], C.SELECTION_COLUMN)
    (trace,) = fig.data
    drawn = np.asarray(trace.line.color)
    best = np.sort(results[C.SELECTION_COLUMN].to_numpy())[-MAX_LINES:]
    assert len(drawn) == MAX_LINES == 1000
    assert list(drawn) == pytest.approx(list(best))  # the best, in rising order: best on top
    assert fig.layout.title.subtitle.text.startswith(
        "the best 1,000 of 2,500 usable trials drawn (more lines hide each other; every trial "
        "is in trials.csv) across 2 swept knobs; best final validation accuracy"
    )


def test_missing_and_boolean_knobs_are_categories():
    alpha = knob_axis("alpha", pd.Series([0.5, np.nan, -1.0, 0.5]))
    assert list(alpha.get("ticktext")) == ["-1", "0.5", "None"]  # sweep order, None last
    assert list(alpha["values"]) == [1.0, 2.0, 0.0, 1.0]
    aug = knob_axis("augment", pd.Series([True, False, True]))
    assert sorted(aug["ticktext"]) == ["False", "True"]
    plain = knob_axis("momentum", pd.Series([0.9, 0.0, 0.5]))
    assert "ticktext" not in plain and plain["label"] == "momentum"


def links(index) -> set[str]:
    return set(re.findall(r'href="([^"]+\.html)"', index.read_text()))


def test_importances_page_from_the_threshold_on(tmp_path):
    results, history = fakes.search_frames()
    exp = fakes.write_experiment(tmp_path / "s", results, history, study="search")
    optuna_db(exp / C.OPTUNA_DB, MIN_TRIALS, multi=False)
    index = build_report(exp)
    assert {"search_importance.html", "parallel_coordinates.html"} <= links(index)
    page = (index.parent / "search_importance.html").read_text()
    assert f"{MIN_TRIALS} completed trials" in page and "Plotly.newPlot" in page
    # one trial fewer than the threshold: no page and no link
    (exp / C.OPTUNA_DB).unlink()
    optuna_db(exp / C.OPTUNA_DB, MIN_TRIALS - 1, multi=False)
    index = build_report(exp)
    assert "search_importance.html" not in links(index)
    assert not (index.parent / "search_importance.html").exists()
    assert f"too few completed trials ({MIN_TRIALS - 1})" in index.read_text()


def test_best_trials_description_counts_the_trials_drawn(tmp_path):
    rows = [fakes.trial(f"t{k}", 0.5 + 0.1 * k, 1.0, seed=k, lr=10.0**-k) for k in range(4)]
    rows[3] = fakes.trial("t3", 0.9, 1.0, outcome="diverged", seed=3, lr=1e-3)
    results, history = fakes.frames(rows)
    index = build_report(fakes.write_experiment(tmp_path / "e", results, history))
    text = index.read_text()
    assert "of the top 3 trials, ranked by final validation accuracy" in text
    assert "top 5" not in text
