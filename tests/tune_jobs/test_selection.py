"""Selection never sees the test set: every study's ASHA metric, Optuna objective, study.json
selection metric and the report's ranking are validation metrics."""

from __future__ import annotations

import pandas as pd
import pytest

from core import columns as C
from tune_jobs import alpha_gamma, ensemble_size, optimizers, search, sharing
from tune_jobs.errors import JobError
from tune_jobs.options import VAL_FRACTION, JobOptions
from tune_jobs.record import study_record
from tune_jobs.study import Study, check_study, grid_configs

GRIDS = (alpha_gamma, ensemble_size, optimizers, sharing)
SEARCHES = ("accuracy", "accuracy,params", "accuracy,throughput", "accuracy,flops")
COSTS = {C.PARAMS, C.BATCHES_PER_S, C.TRAIN_FLOPS_PER_IMAGE}  # never a test metric


def every_study():
    """(study, the options it was made with)."""
    for module in GRIDS:
        for smoke in (False, True):
            opts = JobOptions(smoke=smoke)
            yield module.make_study(opts), opts
    cifar20 = JobOptions(dataset="cifar20")
    yield sharing.make_study(cifar20), cifar20
    for objectives in SEARCHES:
        yield search.make_study(JobOptions(), objectives=objectives), JobOptions()


def metrics_of(value):
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize(
    ("study", "opts"), list(every_study()), ids=lambda s: getattr(s, "name", "")
)
def test_every_study_selects_on_validation_and_holds_out_ten_percent(study, opts, tmp_path):
    from tune_jobs.runner import tune_config

    check_study(study, opts)
    ranked = metrics_of(study.metric)
    assert ranked[0] == C.VAL_ACC and set(ranked[1:]) <= COSTS
    assert not any(m.startswith(f"{C.TEST}_") for m in ranked)
    record = study_record(study, opts)
    assert record[C.STUDY_SELECTION_METRIC] == C.VAL_ACC
    assert record[C.STUDY_SELECTION_MODE] == "max"
    if study.make_search_alg is None:
        assert all(c["val_fraction"] == VAL_FRACTION for c in grid_configs(study.space))
    else:
        assert study.space["val_fraction"] == VAL_FRACTION
    tc = tune_config(study, opts, tmp_path)
    # what Tune hands ASHA (a single metric) and what the Optuna searcher optimises
    if isinstance(study.metric, list):
        assert tc.metric is None and tc.scheduler is None
    else:
        assert tc.metric == C.VAL_ACC
    if study.asha and not isinstance(study.metric, list):
        assert tc.scheduler is not None  # ASHA reads tc.metric (set by the Tuner)
    if tc.search_alg is not None:
        searcher = getattr(tc.search_alg, "searcher", tc.search_alg)
        assert metrics_of(searcher.metric)[0] == C.VAL_ACC
        assert not any(m.startswith("test_") for m in metrics_of(searcher.metric))


def test_alpha_gamma_and_search_use_asha_on_val_acc():
    assert alpha_gamma.make_study(JobOptions()).asha
    assert alpha_gamma.make_study(JobOptions()).metric == C.VAL_ACC
    assert search.OBJECTIVES["accuracy"] == (C.VAL_ACC, "max")


def test_val_fraction_can_be_set_but_selection_then_refuses_zero():
    study = alpha_gamma.make_study(JobOptions(overrides=("val_fraction=0.2",)))
    assert {c["val_fraction"] for c in grid_configs(study.space)} == {0.2}
    opts = JobOptions(overrides=("val_fraction=0",))
    with pytest.raises(JobError, match=r"val_fraction=0.*ASHA ranks trials by val_acc"):
        check_study(alpha_gamma.make_study(opts), opts)
    with pytest.raises(JobError, match=r"val_fraction=0.*the search ranks trials by val_acc"):
        check_study(search.make_study(opts), opts)
    # without ASHA a grid study may run without a validation split
    check_study(ensemble_size.make_study(opts), opts)


def test_a_test_metric_is_refused_as_the_selection_metric():
    study = Study("s", {"epochs": 1}, metric="test_acc")
    with pytest.raises(JobError, match=r"metric='test_acc'.*leak"):
        check_study(study, JobOptions())


def test_the_reports_ranking_reads_validation_only():
    from analysis import importance
    from analysis.figures import best_trial_curves
    from analysis.figures import search as search_fig

    assert C.SELECTION_COLUMN == "final_val_acc"
    assert search_fig.ACC == C.SELECTION_COLUMN and importance.ACC == C.SELECTION_COLUMN
    # test and validation disagree: the ranking follows validation
    results = pd.DataFrame(
        {
            C.TRIAL_ID: ["a", "b"],
            "seed": [0, 0],
            "outcome": ["completed", "completed"],
            C.STATUS: [C.STATUS_TERMINATED] * 2,
            C.DIVERGED: [False, False],
            C.FINAL_TEST_ACC: [0.9, 0.1],
            C.SELECTION_COLUMN: [0.2, 0.8],
        }
    )
    history = pd.DataFrame(
        {C.TRIAL_ID: ["a", "b"], C.EPOCH: [1, 1], C.TEST_ACC: [0.9, 0.1], C.TEST_LOSS: [1, 2]}
    )
    fig = best_trial_curves(results, history, [], k=1)
    assert [t.name for t in fig.data if t.name != "diverged"][0].startswith("#1 seed=0 (0.8")
    with pytest.raises(ValueError, match="validation metric only"):
        best_trial_curves(results, history, [], metric=C.FINAL_TEST_ACC)
    # the search's Pareto front (tune_jobs) is on validation accuracy too
    res = results.assign(**{C.PARAMS: [1.0, 1.0], C.FINAL_VAL_ACC: [0.2, 0.8]})
    assert list(search.pareto_front(res, ["accuracy", "params"])[C.TRIAL_ID]) == ["b"]
