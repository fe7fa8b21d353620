"""Search study: Pareto front and parameter importances."""

from __future__ import annotations

import itertools

import numpy as np
import optuna
import pandas as pd
import pytest

from analysis.figures import pareto_front_figure, pareto_table
from analysis.importance import MIN_TRIALS, eta_squared, param_importances
from analysis.tidy import tidy_results
from tests.analysis import fakes


def brute_force_front(points: list[tuple[float, float]]) -> set[int]:
    """Indices no other point dominates (both coordinates larger-is-better)."""
    front = set()
    for i, (a, b) in enumerate(points):
        if not any(
            c >= a and d >= b and (c > a or d > b) for j, (c, d) in enumerate(points) if j != i
        ):
            front.add(i)
    return front


def test_pareto_table_flags_the_2d_fronts(search_results):
    """The table's flags (core.pareto, accuracy against one cost) are the hand-made fronts."""
    table = pareto_table(search_results).set_index("trial_id")
    assert set(table.index[table["pareto_params"]]) == fakes.PARAMS_FRONT
    assert set(table.index[table["pareto_batches_per_s"]]) == fakes.THROUGHPUT_FRONT
    assert "pareto_study" not in table
    study = pareto_table(search_results, pd.DataFrame({"trial_id": ["search_2"]}))
    assert study.set_index("trial_id")["pareto_study"].sum() == 1


@pytest.fixture(scope="module")
def search_results():
    results, _ = fakes.search_frames()
    return tidy_results(results)


def front_ids(fig, axis: str) -> set[str]:
    traces = [
        t for t in fig.data if (t.xaxis or "x") == axis and t.name.startswith("Pareto-optimal")
    ]
    assert len(traces) == 1
    return {h.split("<br>")[0].removeprefix("trial ") for h in traces[0].hovertext}


def plotted_ids(fig, axis: str) -> set[str]:
    return {
        h.split("<br>")[0].removeprefix("trial ")
        for t in fig.data
        if (t.xaxis or "x") == axis
        for h in t.hovertext
    }


def test_pareto_front_highlights_exactly_the_non_dominated(search_results):
    fig = pareto_front_figure(search_results)
    assert front_ids(fig, "x") == fakes.PARAMS_FRONT
    # FLOPs per image and peak memory grow with the parameters in the fakes: the same front
    assert front_ids(fig, "x2") == front_ids(fig, "x3") == fakes.PARAMS_FRONT
    assert front_ids(fig, "x4") == fakes.THROUGHPUT_FRONT
    # the diverged (7) and errored (8) trials are not plotted at all
    usable = {f"search_{k}" for k in range(10)} - {"search_7", "search_8"}
    assert plotted_ids(fig, "x") == usable
    # cross-check the hand-made sets with brute force over the usable points
    pts = {f"search_{k}": p for k, p in enumerate(fakes.SEARCH_POINTS)}
    ids = sorted(usable)
    by_params = brute_force_front([(-pts[i][1], pts[i][0]) for i in ids])
    by_speed = brute_force_front([(pts[i][2], pts[i][0]) for i in ids])
    assert {ids[k] for k in by_params} == fakes.PARAMS_FRONT
    assert {ids[k] for k in by_speed} == fakes.THROUGHPUT_FRONT
    assert "distinct parameters" in fig.layout.xaxis.title.text
    assert "batches/s" in fig.layout.xaxis4.title.text
    assert "FLOPs" in fig.layout.xaxis2.title.text and "memory" in fig.layout.xaxis3.title.text


def test_pareto_front_from_the_study_file_when_present(search_results):
    study_front = pd.DataFrame({"trial_id": ["search_2", "search_4"]})
    fig = pareto_front_figure(search_results, study_front)
    assert front_ids(fig, "x") == {"search_2", "search_4"}
    assert front_ids(fig, "x2") == {"search_2", "search_4"}
    assert "pareto_front.parquet" in fig.data[1].name


def optuna_db(path, n_trials: int, multi: bool = False) -> str:
    """An Optuna study where accuracy depends on `lr` only (alpha is noise)."""
    storage = f"sqlite:///{path}"
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    study = optuna.create_study(storage=storage, study_name="s1", directions=directions)
    dists = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
        "alpha": optuna.distributions.FloatDistribution(-1, 1),
    }
    rng = np.random.default_rng(1)
    for k in range(n_trials):
        lr = float(10 ** (-4 + 3 * k / max(n_trials - 1, 1)))
        alpha = float(rng.uniform(-1, 1))
        acc = 0.9 - 0.1 * abs(np.log10(lr) + 2.5)
        values = [acc, 1e6 * (1 + k % 3)] if multi else [acc]
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr, "alpha": alpha}, distributions=dists, values=values
            )
        )
    return "s1"


@pytest.mark.parametrize("multi", [False, True])
def test_importances_from_optuna_storage(tmp_path, search_results, multi):
    db = tmp_path / "optuna.db"
    name = optuna_db(db, 24, multi)
    before = db.read_bytes()
    meta = {"optuna_study": name, "objectives": ["accuracy", "params"] if multi else ["accuracy"]}
    imp = param_importances(search_results, db, meta)
    assert imp.values is not None
    assert set(imp.values.index) == {"lr", "alpha"}
    assert imp.values["lr"] > imp.values["alpha"]
    assert "optuna" in imp.method
    assert db.read_bytes() == before  # opened on a copy only


def test_importances_with_too_few_trials_say_so(tmp_path, search_results):
    db = tmp_path / "optuna.db"
    optuna_db(db, 3)
    imp = param_importances(search_results, db, {})  # name found: the only study in db
    assert imp.values is None
    assert "too few completed trials (3)" in imp.notes[-1]
    assert str(MIN_TRIALS) in imp.notes[-1]


def test_fallback_importance_is_eta_squared():
    rows = []
    for k, (opt, alpha) in enumerate(itertools.product(("adam", "sgd", "ivon"), (-1.0, 0.5))):
        for seed in (0, 1):
            acc = {"adam": 0.8, "sgd": 0.7, "ivon": 0.6}[opt] + 0.001 * seed
            rows.append(
                fakes.trial(f"t{k}_{seed}", acc, 1.0, optimizer=opt, alpha=alpha, seed=seed)
            )
    results, _ = fakes.frames(rows)
    imp = eta_squared(tidy_results(results))
    assert imp.values is not None
    assert imp.values["optimizer"] == pytest.approx(1.0, abs=1e-3)
    assert imp.values["alpha"] == pytest.approx(0.0, abs=1e-3)
    few = eta_squared(tidy_results(results.head(MIN_TRIALS - 1)))
    assert few.values is None and "too few usable trials" in few.notes[0]
