"""core.report: one epoch's report as Ray Tune gets it."""

from __future__ import annotations

import json
import math

import numpy as np

from core import columns as C
from core.report import tune_metrics


def measured() -> dict:
    """A report of an epoch that measured robustness: every cell a distinct number (one NaN:
    a cell that could not be measured), as core.train makes it (NumPy floats among them)."""
    rep = {C.EPOCH: 3, C.TEST_ACC: 0.5, C.corrupt_metric("acc"): 0.4, C.DEVICE_NAME: "cpu"}
    rep.update({k: np.float32(i / 1000) for i, k in enumerate(C.CORRUPT_CELLS)})
    rep[C.CORRUPT_CELLS[7]] = math.nan
    return rep


def test_the_cells_travel_as_one_json_text_and_the_rest_as_it_was():
    rep = measured()
    out = tune_metrics(rep)
    assert not set(C.CORRUPT_CELLS) & set(out)
    assert {k: v for k, v in out.items() if k != C.CORRUPT_CELLS_JSON} == {
        k: v for k, v in rep.items() if k not in C.CORRUPT_CELLS
    }
    cells = json.loads(out[C.CORRUPT_CELLS_JSON])
    assert list(cells) == list(C.CORRUPT_CELLS)
    assert math.isnan(cells.pop(C.CORRUPT_CELLS[7]))
    assert cells == {k: float(rep[k]) for k in C.CORRUPT_CELLS if k != C.CORRUPT_CELLS[7]}
    assert rep[C.CORRUPT_CELLS[0]] == 0.0  # the report handed in is left as it was


def test_an_epoch_that_measured_no_cell_carries_no_text():
    rep = {C.EPOCH: 1, C.TEST_ACC: 0.3, **{k: math.nan for k in C.ROBUSTNESS_KEYS}}
    out = tune_metrics(rep)
    assert C.CORRUPT_CELLS_JSON not in out and not set(C.CORRUPT_CELLS) & set(out)
    assert math.isnan(out[C.corrupt_metric("acc")])  # the means stay metrics, NaN or not
    assert tune_metrics({C.EPOCH: 1}) == {C.EPOCH: 1}
