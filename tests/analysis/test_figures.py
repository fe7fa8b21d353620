"""Ensemble-size lines, optimizer curves, sharing boxes, seed boxes and best-trial curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.figures import (
    best_trial_curves,
    ensemble_size_lines,
    optimizer_curves,
    seed_boxes,
    sharing_boxes,
)
from analysis.figures.style import get_notes
from analysis.tidy import tidy_history, tidy_results
from tests.analysis import fakes


def traces_on(fig, xaxis: str, kind: str = "scatter"):
    return [t for t in fig.data if t.type == kind and (t.xaxis or "x") == xaxis]


# ---------------------------------------------------------------- ensemble size x lr
@pytest.fixture(scope="module")
def es_fig():
    results, _ = fakes.ensemble_size_frames()
    return ensemble_size_lines(tidy_results(results))


def test_ensemble_size_one_line_per_lr_in_every_panel(es_fig):
    titles = [a.text for a in es_fig.layout.annotations if a.yref == "paper"]
    assert titles[:4] == [
        "final test accuracy",
        "average test accuracy",
        "final test loss (NLL)",
        "average test loss (NLL)",
    ]
    for axis in ("x", "x2", "x3", "x4"):
        lines = traces_on(es_fig, axis)
        assert [t.name for t in lines] == ["lr=0.001", "lr=0.01"]
        for t in lines:
            assert t.error_y.visible and t.error_y.type == "data"
    assert list(es_fig.layout.xaxis.categoryarray) == ["1", "2", "4", "8"]


def test_ensemble_size_means_and_std_error_bars(es_fig):
    lr3, lr2 = traces_on(es_fig, "x")
    seeds = (0, 1, 2)
    for k, size in enumerate((1, 2, 4, 8)):
        accs = [fakes.es_acc(size, 1e-3, s) for s in seeds]
        assert lr3.x[k] == str(size)
        assert lr3.y[k] == pytest.approx(fakes.mean(accs))
        assert lr3.error_y.array[k] == pytest.approx(fakes.std(accs))
    # lr 1e-2, size 4: seed 2 errored -> mean and std of seeds 0 and 1 only
    accs = [fakes.es_acc(4, 1e-2, s) for s in (0, 1)]
    assert lr2.y[2] == pytest.approx(fakes.mean(accs))
    assert lr2.error_y.array[2] == pytest.approx(fakes.std(accs))
    assert list(lr2.customdata[2][:2]) == [2, 3]


def test_ensemble_size_all_diverged_point_is_a_gap_with_a_marker(es_fig):
    lr2 = traces_on(es_fig, "x")[1]
    assert lr2.x[3] == "8" and math.isnan(lr2.y[3])  # a gap, not a zero
    marks = [a for a in es_fig.layout.annotations if a.text.startswith("✕")]
    assert len(marks) == 4  # one per panel
    assert {a.x for a in marks} == {3}  # category index of size 8
    assert "3 diverged" in marks[0].text
    assert any("3 diverged, 1 errored" in n for n in get_notes(es_fig))


# ---------------------------------------------------------------- optimizers
@pytest.fixture(scope="module")
def opt_frames():
    results, history = fakes.optimizer_frames()
    return results, tidy_history(history, results)


EXPECTED_LINES = {
    f"{o} · {m}" for o in ("adam", "sgd", "ivon") for m in ("single vgg11", "batch x8")
}


def test_optimizer_one_trace_per_optimizer_x_model_per_panel(opt_frames):
    fig = optimizer_curves(opt_frames[1])
    titles = [a.text for a in fig.layout.annotations if a.yref == "paper"]
    assert titles == [
        "training accuracy",
        "validation accuracy",
        "training loss",
        "validation loss",
    ]
    for axis in ("x", "x2", "x3", "x4"):
        names = [t.name for t in traces_on(fig, axis) if t.name != "diverged"]
        assert sorted(names) == sorted(EXPECTED_LINES)
        assert len(names) == len(set(names)) == 6


def test_optimizer_curve_is_mean_over_seeds_and_divergence_marked(opt_frames):
    _, history = opt_frames
    fig = optimizer_curves(history)
    by_name = {t.name: t for t in traces_on(fig, "x2")}  # validation accuracy
    adam = by_name["adam · single vgg11"]
    h = history[(history["optimizer"] == "adam") & (history["model"] == "single vgg11")]
    expected = h.groupby("epoch")["val_acc"].mean()
    assert list(adam.x) == [1, 2, 3, 4]
    assert np.allclose(adam.y, expected.to_numpy())
    # sgd · batch x8, seed 1 diverged at epoch 3: that epoch averages seed 0 only
    sgd = by_name["sgd · batch x8"]
    h = history[(history["optimizer"] == "sgd") & (history["model"] == "batch x8")]
    seed0 = h[(h["seed"] == 0) & (h["epoch"] == 3)]["val_acc"].iloc[0]
    assert sgd.y[2] == pytest.approx(seed0)
    assert list(sgd.customdata[2])[1] == 1  # n
    div = by_name["diverged"]
    assert list(div.x) == [3] and div.marker.symbol == "x"


def test_optimizer_without_validation_split_uses_test_metrics():
    results, history = fakes.optimizer_frames(val=False, optimizers=("adam", "sgd"))
    fig = optimizer_curves(tidy_history(history, results))
    titles = [a.text for a in fig.layout.annotations if a.yref == "paper"]
    assert titles[1] == "test (no validation split) accuracy"
    assert titles[3] == "test (no validation split) loss"
    val_panel = {t.name: t for t in traces_on(fig, "x2")}
    adam = val_panel["adam · single vgg11"]
    assert not any(math.isnan(y) for y in adam.y)
    assert any("no trial had a validation split" in n for n in get_notes(fig))


# ---------------------------------------------------------------- sharing
@pytest.fixture(scope="module")
def sharing():
    results, _ = fakes.sharing_frames()
    results = tidy_results(results)
    return results, sharing_boxes(results)


def test_sharing_four_panels_one_box_per_regime(sharing):
    results, fig = sharing
    titles = [a.text for a in fig.layout.annotations if a.yref == "paper"]
    assert titles == [
        "final test accuracy",
        "distinct parameters",
        "training FLOPs per image",
        "batches/s",
    ]
    regimes = [
        "net none / ens none",
        "net none / ens deep",
        "net early / ens none",
        "net all / ens all",
    ]
    for axis in ("x", "x2", "x3", "x4"):
        boxes = traces_on(fig, axis, "box")
        assert [b.name for b in boxes] == regimes
        assert all(b.boxpoints == "all" for b in boxes)
        assert all(set(b.x) == {b.name} for b in boxes)


def test_sharing_values_per_regime_diverged_only_out_of_accuracy(sharing):
    results, fig = sharing
    acc = {b.name: sorted(b.y) for b in traces_on(fig, "x", "box")}
    params = {b.name: list(b.y) for b in traces_on(fig, "x2", "box")}
    assert acc["net none / ens none"] == pytest.approx([0.70, 0.71, 0.72])
    assert acc["net all / ens all"] == pytest.approx([0.65, 0.66])  # seed 0 diverged
    assert params["net all / ens all"] == pytest.approx([0.25e6] * 3)  # still measured
    assert params["net early / ens none"] == pytest.approx([0.5e6] * 3)
    assert any("1 diverged" in n for n in get_notes(fig))


# ---------------------------------------------------------------- every study
def test_seed_boxes_group_by_varying_config(ag_results):
    fig = seed_boxes(ag_results, ["alpha", "gamma"])
    box = fig.data[0]
    assert box.type == "box" and box.boxpoints == "all"
    order = list(fig.layout.xaxis.categoryarray)
    assert order[:3] == ["alpha=-1, gamma=-1", "alpha=-1, gamma=-0.8", "alpha=-1, gamma=-0.5"]
    assert len(order) == 80  # one cell not run
    ys = [y for x, y in zip(box.x, box.y, strict=True) if x == "alpha=0.5, gamma=0.2"]
    assert sorted(ys) == pytest.approx([fakes.ag_acc(0.5, 0.2, s) for s in fakes.AG_SEEDS])
    assert len(box.y) == len(ag_results) - 5  # diverged, errored and NaN trials left out
    marks = [a for a in fig.layout.annotations if a.text == "✕"]
    assert [a.x for a in marks] == [order.index("alpha=-1, gamma=1")]


def test_best_trial_curves_top5_by_final_accuracy(ag_results, ag_history):
    fig = best_trial_curves(ag_results, ag_history, ["alpha", "gamma"])
    lines = [t for t in fig.data if t.name != "diverged"]
    assert len(lines) == 10  # 5 trials x (accuracy, loss)
    names = list(dict.fromkeys(t.name for t in lines))
    assert len(names) == 5
    assert names[0].startswith("#1 alpha=1, gamma=1, seed=2")
    best = ag_history[ag_history["trial_id"] == "ag_a1_g1_s2"].sort_values("epoch")
    assert list(lines[0].y) == pytest.approx(best["test_acc"].tolist())
    assert list(lines[1].y) == pytest.approx(best["test_loss"].tolist())


def test_scatter_traces_of_thousands_of_points_are_drawn_with_webgl():
    """finish() turns a scatter of WEBGL_FROM points or more into a Scattergl with the same
    points, markers and subplot; a small one stays SVG."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from analysis.figures.style import WEBGL_FROM, finish

    fig = make_subplots(rows=1, cols=2)
    many = np.arange(WEBGL_FROM, dtype=float)
    fig.add_trace(go.Scatter(x=many, y=many**2, mode="markers", marker={"size": 3}), 1, 1)
    fig.add_trace(go.Scatter(x=[1, 2], y=[3, 4], mode="lines+markers"), 1, 2)
    out = finish(fig, "t")
    big, small = out.data
    assert (big.type, small.type) == ("scattergl", "scatter")
    assert list(big.y) == list(many**2) and big.marker.size == 3
    assert (big.xaxis, small.xaxis) == ("x", "x2") and out.layout.xaxis2 is not None
    assert out.layout.title.text == "t"
