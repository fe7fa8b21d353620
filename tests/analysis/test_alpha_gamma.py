"""alpha x gamma heatmap: sweep order, means over seeds, hover, unusable cells."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.figures import alpha_gamma_heatmap
from analysis.figures.style import get_notes
from analysis.tidy import tidy_results
from core.config import FAST_WEIGHT_SWEEP
from tests.analysis import fakes

SWEEP_LABELS = ["-1", "-0.8", "-0.5", "-0.2", "0", "0.2", "0.5", "0.8", "1"]


def cell(alpha: float, gamma: float) -> tuple[int, int]:
    """(row, column) of a cell: rows are alpha, columns gamma, both in sweep order."""
    return FAST_WEIGHT_SWEEP.index(alpha), FAST_WEIGHT_SWEEP.index(gamma)


@pytest.fixture(scope="module")
def fig(ag_results):
    return alpha_gamma_heatmap(ag_results, "final_test_acc")


def overlay(fig):
    """The text trace labelling cells without a usable value: {(alpha, gamma): label}."""
    traces = [t for t in fig.data if t.type == "scatter" and t.mode == "text"]
    assert len(traces) == 1
    t = traces[0]
    return {(y, x): label for x, y, label in zip(t.x, t.y, t.text, strict=True)}


def test_z_is_9x9_in_sweep_order_not_string_order(fig):
    heat = fig.data[0]
    assert heat.type == "heatmap"
    assert np.asarray(heat.z, dtype=float).shape == (9, 9)
    assert list(heat.x) == SWEEP_LABELS  # string sorting would give '-0.2' before '-0.5'
    assert list(heat.y) == SWEEP_LABELS
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert axis.type == "category"
        assert list(axis.categoryarray) == SWEEP_LABELS
    assert "gamma" in fig.layout.xaxis.title.text and "alpha" in fig.layout.yaxis.title.text


@pytest.mark.parametrize("alpha,gamma", [(-1.0, -1.0), (0.5, 0.2), (1.0, -0.8), (-0.2, 0.8)])
def test_cell_is_mean_over_seeds(fig, alpha, gamma):
    z = np.asarray(fig.data[0].z, dtype=float)
    i, j = cell(alpha, gamma)
    expected = fakes.mean(fakes.ag_acc(alpha, gamma, s) for s in fakes.AG_SEEDS)
    assert z[i, j] == pytest.approx(expected, abs=1e-9)
    assert fig.data[0].text[i][j] == f"{expected:.3f}"  # annotated with its value


def test_hover_shows_std_and_n(fig):
    heat = fig.data[0]
    assert "std=%{customdata[0]}" in heat.hovertemplate
    assert "n=%{customdata[1]} of %{customdata[2]}" in heat.hovertemplate
    i, j = cell(0.5, 0.2)
    std = fakes.std(fakes.ag_acc(0.5, 0.2, s) for s in fakes.AG_SEEDS)
    assert std > 0
    assert list(heat.customdata[i][j][:3]) == [f"{std:.4f}", 3, 3]


def test_partially_excluded_cells_average_the_rest_and_say_so(fig):
    heat = fig.data[0]
    z = np.asarray(heat.z, dtype=float)
    for (alpha, gamma), kept, why in (
        (fakes.ONE_ERROR, (1, 2), "1 errored"),
        (fakes.ONE_NAN, (0, 2), "1 NaN value"),
    ):
        i, j = cell(alpha, gamma)
        assert z[i, j] == pytest.approx(fakes.mean(fakes.ag_acc(alpha, gamma, s) for s in kept))
        assert heat.text[i][j].endswith("*")
        assert list(heat.customdata[i][j][1:3]) == [2, 3]
        assert why in heat.customdata[i][j][3]


def test_unusable_and_missing_cells_are_nan_hatched_and_labelled(fig):
    z = np.asarray(fig.data[0].z, dtype=float)
    labels = overlay(fig)
    rects = {
        (round(s.x0 + 0.5), round(s.y0 + 0.5))
        for s in fig.layout.shapes
        if s.type == "rect" and s.fillcolor is not None
    }
    for (alpha, gamma), label in ((fakes.ALL_DIVERGED, "diverged"), (fakes.NOT_RUN, "no trial")):
        i, j = cell(alpha, gamma)
        assert math.isnan(z[i, j])  # never a zero
        assert labels[(SWEEP_LABELS[i], SWEEP_LABELS[j])] == label
        assert (j, i) in rects  # grey hatched background at (column, row)
    assert len(labels) == 2
    assert np.count_nonzero(np.isnan(z)) == 2
    assert not (z == 0).any()


def test_asha_cells_are_kept_but_marked(fig, ag_frames):
    results = ag_frames[0]
    i, j = cell(*fakes.ASHA)
    asha = results[results["alpha"].eq(fakes.ASHA[0]) & results["gamma"].eq(fakes.ASHA[1])]
    assert asha["asha_stopped"].all() and len(asha) == 3
    assert fig.data[0].z[i][j] == pytest.approx(asha["final_test_acc"].mean())
    assert fig.data[0].text[i][j].endswith("†")
    assert "stopped by ASHA" in fig.data[0].customdata[i][j][3]
    outlined = [s for s in fig.layout.shapes if s.type == "rect" and s.line.dash == "dot"]
    assert [(round(s.x0 + 0.5), round(s.y0 + 0.5)) for s in outlined] == [(j, i)]


def test_notes_count_what_was_excluded(fig):
    notes = " | ".join(get_notes(fig))
    assert "5 trials excluded from the final test accuracy means" in notes
    assert "3 diverged, 1 errored, 1 NaN value" in notes
    assert "3 trials stopped early by ASHA" in notes
    assert "1 cell without a usable value" in notes and "1 cell of the grid not run" in notes


def test_other_metrics_and_colour_direction(ag_results):
    loss = alpha_gamma_heatmap(ag_results, "final_test_loss")
    i, j = cell(0.5, 0.2)
    expected = fakes.mean(1.5 - fakes.ag_acc(0.5, 0.2, s) for s in fakes.AG_SEEDS)
    assert loss.data[0].z[i][j] == pytest.approx(expected)
    # bright = good: accuracy uses Viridis, loss the reversed scale
    acc = alpha_gamma_heatmap(ag_results, "final_test_acc")
    assert acc.data[0].colorscale != loss.data[0].colorscale


def test_smaller_grid_keeps_sweep_order_and_only_present_values():
    results, _ = fakes.alpha_gamma_frames(seeds=(0,), sweep=(0.5, -0.5, 0.0, -1.0), special=False)
    fig = alpha_gamma_heatmap(tidy_results(results))
    assert list(fig.data[0].x) == ["-1", "-0.5", "0", "0.5"]
    assert list(fig.data[0].y) == ["-1", "-0.5", "0", "0.5"]
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (4, 4) and not np.isnan(z).any()
    assert z[2, 3] == pytest.approx(fakes.ag_acc(0.0, 0.5, 0))  # alpha 0, gamma 0.5
    assert get_notes(fig) == []


def test_frozen_fast_weights_none_goes_last():
    rows = [
        fakes.trial("a", 0.6, 0.9, alpha=None, gamma=0.5),
        fakes.trial("b", 0.7, 0.8, alpha=0.5, gamma=0.5),
        fakes.trial("c", 0.5, 1.0, alpha=-1.0, gamma=0.5),
    ]
    results, _ = fakes.frames(rows)
    fig = alpha_gamma_heatmap(tidy_results(results))
    assert list(fig.data[0].y) == ["-1", "0.5", "None"]
    assert fig.data[0].z[2][0] == pytest.approx(0.6)
