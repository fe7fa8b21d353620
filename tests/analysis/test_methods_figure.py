"""The methods study's figure and table: cells as means over seeds, each method's own Pareto
front and the front of all cells, worked out by hand."""

from __future__ import annotations

import pytest

from analysis.figures.methods import METHOD, methods_figure, methods_table
from core import columns as C

from .fakes import frames, trial

# (method, budget, final test accuracy, distinct parameters) of the fabricated cells.
# Accuracy vs parameters (fewer better), all cells: single, deep/params, batch, deep/flops are
# non-dominated; packed/params loses to batch, packed/flops and the trunk to deep/flops.
# Within a method: packed/flops loses to packed/params; every other cell is on its own front.
CELLS = (
    ("single", "reference", 0.70, 1.00e6),
    ("batch", "both", 0.74, 1.07e6),
    ("deep", "params", 0.72, 1.04e6),
    ("deep", "flops", 0.78, 4.00e6),
    ("packed", "params", 0.71, 1.20e6),
    ("packed", "flops", 0.70, 3.80e6),
    ("shared_trunk", "flops", 0.73, 3.40e6),
)
FRONT = {("single", "reference"), ("deep", "params"), ("batch", "both"), ("deep", "flops")}
OFF_OWN_FRONT = {("packed", "flops")}


@pytest.fixture(scope="module")
def results():
    out = []
    for method, budget, acc, params in CELLS:
        for seed, shift in ((0, 0.01), (1, -0.01)):  # the mean is the cell's accuracy
            kw = dict(ensemble="single", ensemble_size=1) if method == "single" else {}
            out.append(
                trial(
                    f"{method}_{budget}_s{seed}",
                    acc + shift,
                    1.5 - acc,
                    params=params,
                    study="methods",
                    seed=seed,
                    epochs=2,
                    extra={"method": method, "budget": budget},
                    **kw,
                )
            )
    return frames(out)[0]


def test_fronts_of_all_cells_and_of_each_method(results):
    table = methods_table(results).set_index([METHOD, C.extra_column("budget")])
    acc = C.FINAL_TEST_ACC
    assert table[f"{acc}_n"].eq(2).all()
    for method, budget, a, params in CELLS:
        assert table.at[(method, budget), f"{acc}_mean"] == pytest.approx(a)
        assert table.at[(method, budget), f"{C.PARAMS}_mean"] == params
    on = table[f"front_{acc}_vs_{C.PARAMS}"]
    assert set(on[on].index) == FRONT
    own = table[f"method_front_{acc}_vs_{C.PARAMS}"]
    assert set(own[~own].index) == OFF_OWN_FRONT
    # NLL: lower is better, so the same ordering of the losses (1.5 - acc) gives the same front
    nll = table[f"front_{C.FINAL_TEST_LOSS}_vs_{C.PARAMS}"]
    assert set(nll[nll].index) == FRONT


def test_the_figure_has_a_panel_per_cost_and_a_legend_entry_per_method(results):
    fig = methods_figure(results, C.FINAL_TEST_ACC)
    titles = [a.text for a in fig.layout.annotations]
    assert any("parameters" in t for t in titles) and any("FLOPs" in t for t in titles)
    shown = {t.name for t in fig.data if t.showlegend}
    assert shown == {m for m, _, _, _ in CELLS}
    # the parameters panel (the first: x axis "x") stars exactly the front of all cells
    first = [t for t in fig.data if t.mode == "markers" and t.xaxis == "x"]
    marks = [(h, s) for t in first for h, s in zip(t.hovertext, t.marker.symbol, strict=True)]
    starred = {h for h, s in marks if s == "star"}
    assert starred == {f"{m}, budget {b}" for m, b in FRONT}
