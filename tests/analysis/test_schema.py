"""The results contract: docs/results_schema.md, core.columns, the reader and the fakes agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis import figures, pages, schema
from analysis.figures import alpha_gamma, ensemble_size, optimizers, search, sharing
from core import columns as C
from tests.analysis import fakes

DOC = Path(__file__).resolve().parents[2] / "docs" / "results_schema.md"
PLACEHOLDERS = {
    "<k>": C.EVAL_KEYS,
    "<m>": C.EPOCH_METRICS,
    "<c>": C.CORRUPTIONS,
    "<s>": tuple(str(s) for s in C.SEVERITIES),
    "<r>": C.CORRUPT_KEYS,
    "<score>": C.OOD_SCORES,
}
DERIVED = {"outcome", "model", "regime"}  # columns analysis.tidy adds


def doc_tables() -> dict[str, list[str]]:
    """Heading's constant name -> the backticked names in the first cell of its table rows."""
    tables: dict[str, list[str]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        if line.startswith("#"):
            m = re.search(r"\(([A-Z_]+)\)\s*$", line)
            current = m.group(1) if m else None
            if current:
                tables[current] = []
        elif current and line.startswith("|"):
            first = line.split("|")[1]
            tables[current] += re.findall(r"`([^`]+)`", first)
    return tables


def expand(name: str) -> list[str]:
    for ph, values in PLACEHOLDERS.items():
        if ph in name:
            return [n for v in values for n in expand(name.replace(ph, v))]
    return [name]


@pytest.mark.parametrize(
    "constant",
    [
        "FILES",
        "EVAL_KEYS",
        "KEY_COLUMNS",
        "CONFIG_COLUMNS",
        "HISTORY_COLUMNS",
        "ROBUSTNESS_KEYS",
        "CALIB_COLUMNS",
        "PREDICTION_KEYS",
    ],
)
def test_doc_lists_exactly_the_names_of_core_columns(constant):
    listed = [n for name in doc_tables()[constant] for n in expand(name)]
    expected = list(getattr(C, constant))
    if constant == "CONFIG_COLUMNS":
        expected.append(C.extra_column("<key>"))
    assert sorted(listed) == sorted(expected)
    assert len(listed) == len(set(listed)), "a name listed twice"


def test_doc_lists_exactly_the_results_columns():
    listed = [n for name in doc_tables()["RESULTS_COLUMNS"] for n in expand(name)]
    assert sorted(listed) == sorted(C.RESULTS_COLUMNS)
    assert len(listed) == len(set(listed))
    assert set(doc_tables()) == {
        "FILES",
        "EVAL_KEYS",
        "KEY_COLUMNS",
        "CONFIG_COLUMNS",
        "HISTORY_COLUMNS",
        "RESULTS_COLUMNS",
        "CALIB_COLUMNS",
        "ROBUSTNESS_KEYS",
        "PREDICTION_KEYS",
    }


def test_the_groups_of_core_columns_are_consistent():
    assert C.EPOCH_METRICS == ("train_loss", "train_acc", *C.TEST_METRICS, *C.VAL_METRICS)
    assert C.TEST_METRICS[:2] == ("test_acc", "test_loss") and C.FINAL_TEST_ACC == "final_test_acc"
    assert len(set(C.REPORT_KEYS)) == len(C.REPORT_KEYS)
    assert len(set(C.RESULTS_COLUMNS)) == len(C.RESULTS_COLUMNS)
    written = set(C.HISTORY_COLUMNS) | set(C.RESULTS_COLUMNS) | set(C.CALIB_COLUMNS)
    assert set(C.COST_METRICS) <= written
    # no name means two things: contract columns never collide with config fields
    assert not set(C.CONFIG_COLUMNS) & (set(C.HISTORY_COLUMNS) | set(C.RESULTS_COLUMNS))
    assert not set(C.KEY_COLUMNS) & set(C.CONFIG_COLUMNS)
    assert "extra" not in C.CONFIG_COLUMNS


def test_every_metric_column_has_a_label():
    assert set(schema._NAMES) == set(C.EVAL_KEYS)
    assert set(schema._PREFIX) == set(C.SUMMARY_PREFIXES)
    assert set(schema._SPLIT) == set(C.SPLITS)
    assert set(schema._COST) == set(C.COST_METRICS)
    assert schema.metric_label("final_test_member_acc") == "final test member accuracy"
    assert schema.metric_label("avg_val_kl") == "average validation member KL"
    for col in (*C.EPOCH_METRICS, *C.SUMMARY_COLUMNS, *C.COST_METRICS):
        assert "_" not in schema.metric_label(col), col


def test_every_name_the_reader_needs_is_written():
    results = {*C.KEY_COLUMNS, *C.CONFIG_COLUMNS, *C.RESULTS_COLUMNS, *DERIVED}
    history = {*C.KEY_COLUMNS, *C.CONFIG_COLUMNS, *C.HISTORY_COLUMNS, *DERIVED}
    assert set(schema.RESULTS_REQUIRED) <= results
    assert set(schema.HISTORY_REQUIRED) <= history
    assert set(schema.NUMERIC_REQUIRED) <= results | history
    assert set(schema.NOT_SWEPT) <= set(C.CONFIG_COLUMNS)
    for needs in (alpha_gamma.NEEDS, ensemble_size.NEEDS, sharing.NEEDS):
        assert set(needs) <= results
    assert set(optimizers.NEEDS) <= history
    metrics = (*figures.HEATMAP_METRICS, *figures.LINE_METRICS, *sharing.SHARING_METRICS)
    assert set(metrics) | set(pages.SUMMARY_METRICS) <= results
    assert {c for c, _ in search.COSTS} <= results


def test_fakes_build_the_contract_columns():
    res, hist = fakes.frames([fakes.trial("f", 0.7, 0.5, extra={"tag": "a"})])
    config = [*C.CONFIG_COLUMNS, C.extra_column("tag")]
    assert list(res.columns) == [*C.KEY_COLUMNS, *config, *C.RESULTS_COLUMNS]
    assert list(hist.columns) == [*C.KEY_COLUMNS, *C.HISTORY_COLUMNS, *config]
