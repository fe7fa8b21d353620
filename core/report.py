"""One epoch's report as Ray Tune gets it (core.trainable hands it to `ray.tune.report`).

Torch-free, so that a trial that only stands in for a real one (benchmarks/scale.py) reports
the same shape without importing torch.
"""

from __future__ import annotations

import json
import math
from typing import Any

from core.columns import CORRUPT_CELLS, CORRUPT_CELLS_JSON

_CELLS = frozenset(CORRUPT_CELLS)


def tune_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """One report as Ray Tune gets it: the CORRUPT_CELLS as one text, CORRUPT_CELLS_JSON (a
    JSON object of them), in the epochs that measured them, and absent from the others.

    Ray Tune keeps, for every numeric key a trial reported, its min, max, mean and the means
    of its last 5 and 10 values in the trial's state, and writes every trial's state at each
    experiment snapshot; with `CheckpointConfig(num_to_keep)` set it forces a snapshot every
    num_to_keep checkpoints of a trial. The cells were 165 of a report's 211 numeric keys and
    about two thirds of a finished trial's state: a study of thousands of trials spent its
    driver's time writing them (benchmarks/README.md, "The driver at scale"). No scheduler,
    searcher or logger reads a cell (tune_jobs.watch leaves them out); tune_jobs.results
    unpacks them into the tables' columns."""
    out = {k: v for k, v in metrics.items() if k not in _CELLS}
    cells = {k: float(metrics[k]) for k in CORRUPT_CELLS if k in metrics}
    if any(not math.isnan(v) for v in cells.values()):
        out[CORRUPT_CELLS_JSON] = json.dumps(cells)
    return out
