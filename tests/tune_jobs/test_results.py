"""The parquet writer (tune_jobs.results) on fabricated Ray Tune results: no cluster, no data.

Each trial is a real `ray.tune.Result` whose `metrics_dataframe` holds what core.trainable
reports per epoch, plus the columns Ray Tune adds itself (node_ip, timestamp, config/...).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ray.tune import Result

from analysis.load import load_experiment
from core import columns as C
from core.report import tune_metrics
from tests.analysis import fakes
from tune_jobs.results import collect, config_columns, trial_frames, write_results

NAN = float("nan")
STUDY = "alpha_gamma"
BASE = {"arch": "simple_cnn", "ensemble": "batch", "ensemble_size": 2, "epochs": 3}


# What core.train reports of the device (core.columns.RUNTIME_KEYS): a CPU, and a GPU node.
CPU_RUNTIME = {
    C.DEVICE_NAME: "AMD EPYC",
    C.RESOLVED_DEVICE: "cpu",
    C.RESOLVED_PRECISION: "fp32",
    C.RESOLVED_CHANNELS_LAST: False,
    C.RESOLVED_COMPILE: False,
}
GPU_RUNTIME = {
    C.DEVICE_NAME: "NVIDIA H200 x1",
    C.RESOLVED_DEVICE: "cuda",
    C.RESOLVED_PRECISION: "bf16",
    C.RESOLVED_CHANNELS_LAST: True,
    C.RESOLVED_COMPILE: True,
}


def robustness(epoch: int) -> dict:
    """Robustness keys as measured at `epoch`: 0.001 * (key index) + epoch."""
    return {k: 0.001 * i + epoch for i, k in enumerate(C.ROBUSTNESS_KEYS)}


def report(
    epoch: int,
    acc: float,
    *,
    val: bool = False,
    diverged: bool = False,
    robust: bool = False,
    packed: bool = True,
    **over,
) -> dict:
    """One epoch's report as core.train.train makes it under core.trainable.ray_trainable
    (diverged: metrics NaN; robust: the robustness keys measured, else NaN; packed: the
    corruption cells in one text, as the trainable reports them, else as columns, as it did
    before), plus what Ray Tune adds to every report."""
    rep = {"epoch": epoch, "train_loss": 2.0 - acc, "train_acc": acc + 0.05}
    for split, shift in (("test", 0.0), ("val", 0.01)):
        vals = {
            "acc": acc + shift,
            "loss": 1.5 - acc,
            "ece": 0.05 * epoch,
            "brier": 0.6 - acc / 2,
            "member_acc": acc - 0.02,
            "disagreement": 0.1 / epoch,
            "kl": 0.01 * epoch,
        }
        for k, v in vals.items():
            rep[f"{split}_{k}"] = v if (split == "test" or val) else NAN
    rep.update(
        params=1000,
        batches_per_s=10.0 * epoch,
        images_per_s=1280.0 * epoch,
        train_flops_per_image=6000.0,
        flop_per_s=6000.0 * 1280.0 * epoch,
        peak_memory_mb=100.0 + epoch,
        epoch_s=2.0 * epoch,
        current_lr=1e-3,
        diverged=diverged,
        early_stopped=False,
        node_id="node-a",
        **CPU_RUNTIME,
    )
    rep.update(robustness(epoch) if robust else {k: NAN for k in C.ROBUSTNESS_KEYS})
    if diverged:
        for k in ("train_loss", "train_acc", *C.TEST_METRICS, *C.VAL_METRICS):
            rep[k] = NAN
    rep.update(over)
    if packed:
        rep = tune_metrics(rep)
    # Ray Tune's own columns
    rep.update(
        node_ip=over.get("node_ip", "10.0.0.1"),
        training_iteration=epoch,
        timestamp=1_700_000_000 + epoch,
        time_this_iter_s=2.0,
        done=False,
        hostname="host",
        pid=123,
        **{"config/arch": "simple_cnn", "config/seed": 0},
    )
    return rep


def result(trial_id: str, reports: list[dict] | None, config: dict, error=None) -> Result:
    df = None if reports is None else pd.DataFrame(reports)
    metrics = {"trial_id": trial_id, "config": config}
    if reports:
        metrics = {**reports[-1], **metrics}
    return Result(
        metrics=metrics,
        checkpoint=None,
        error=error,
        path=f"/tmp/exp/train_{trial_id}",
        metrics_dataframe=df,
    )


def fabricated() -> list[Result]:
    return [
        result(
            "t_normal",
            # robustness measured every 2 epochs: epoch 2 is the last measurement
            [report(e, 0.5 + 0.1 * e, val=True, robust=e == 2) for e in (1, 2, 3)],
            {**BASE, "alpha": None, "gamma": -0.5, "val_fraction": 0.1, "extra": {"tag": "a"}},
        ),
        result(
            "t_error",
            [report(1, 0.4)],
            {**BASE, "seed": 1},
            error=RuntimeError("CUDA out of memory " + "x" * 3000),
        ),
        result("t_error0", None, {**BASE, "seed": 2}, error=ValueError("bad data")),
        result(
            "t_diverged",
            [report(1, 0.45), report(2, 0.5, diverged=True)],
            {**BASE, "lr": 0.5},
        ),
        result("t_asha", [report(1, 0.3, node_id=NAN)], {**BASE, "seed": 3}),
        result(
            "t_early",
            [report(1, 0.6, val=True), report(2, 0.62, val=True, early_stopped=True)],
            {**BASE, "val_fraction": 0.1, "patience": 1},
        ),
        # retried from its epoch-1 checkpoint on another node: epoch 2 is reported twice
        result(
            "t_retry",
            [
                report(1, 0.5),
                report(2, 0.9, node_ip="10.0.0.1"),
                report(2, 0.55, node_ip="10.0.0.2", node_id="node-b", **GPU_RUNTIME),
                report(3, 0.6, node_ip="10.0.0.2", node_id="node-b", **GPU_RUNTIME),
            ],
            {**BASE, "seed": 4},
        ),
        result("t_empty", [], {**BASE, "seed": 5}),
    ]


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return collect(fabricated(), STUDY)


def row(results: pd.DataFrame, trial_id: str) -> pd.Series:
    return results.set_index("trial_id").loc[trial_id]


def expected_summaries(reports: list[dict]) -> dict[str, float]:
    """final / best / avg of every per-epoch metric, straight from their definition."""
    out = {}
    for m in C.EPOCH_METRICS:
        vals = [r[m] for r in reports]
        finite = [v for v in vals if not math.isnan(v)]
        best = max if m.endswith("_acc") else min
        out[f"final_{m}"] = vals[-1] if vals else NAN
        out[f"best_{m}"] = best(finite) if finite else NAN
        out[f"avg_{m}"] = sum(finite) / len(finite) if finite else NAN
    return out


def assert_values(actual: pd.Series, expected: dict) -> None:
    for k, v in expected.items():
        a = actual[k]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            assert pd.isna(a), (k, a)
        elif isinstance(v, float):
            assert a == pytest.approx(v, rel=1e-12), (k, a, v)
        else:
            assert a == v, (k, a, v)


def test_results_columns_are_the_contract(frames):
    results, history = frames
    config = [*C.CONFIG_COLUMNS, C.extra_column("tag")]
    assert list(results.columns) == [*C.KEY_COLUMNS, *config, *C.RESULTS_COLUMNS]
    assert list(history.columns) == [*C.KEY_COLUMNS, *C.HISTORY_COLUMNS, *config]
    # one row per trial, sorted; nothing of Ray Tune's own columns is kept
    assert results["trial_id"].tolist() == sorted(r.metrics["trial_id"] for r in fabricated())
    assert not {"timestamp", "node_ip", "config/arch", "training_iteration"} & set(history)
    assert (results["study"] == STUDY).all() and (history["study"] == STUDY).all()


def test_normal_trial_every_value(frames):
    results, history = frames
    # what core.train reported (the trainable packed its corruption cells for Ray Tune)
    reports = [report(e, 0.5 + 0.1 * e, val=True, robust=e == 2, packed=False) for e in (1, 2, 3)]
    r = row(results, "t_normal")
    assert_values(
        r,
        {
            "status": "TERMINATED",
            "error": None,
            "epochs_done": 3,
            "diverged": False,
            "early_stopped": False,
            "asha_stopped": False,
            "node": "10.0.0.1",
            "node_id": "node-a",
            "params": 1000.0,
            "batches_per_s": 20.0,
            "images_per_s": 2560.0,
            "train_flops_per_image": 6000.0,
            "flop_per_s": 6000.0 * 2560.0,  # the mean over epochs
            "peak_memory_mb": 103.0,  # the maximum over epochs
            "total_s": 12.0,
            "final_test_acc": 0.8,
            "best_test_acc": 0.8,
            "avg_test_acc": 0.7,
            "best_test_loss": 0.7,
            "best_test_disagreement": 0.1 / 3,
            "final_val_acc": 0.81,
            **expected_summaries(reports),
        },
    )
    assert pd.isna(r["error"])  # None, or NaN in a pandas string column
    for k, v in robustness(2).items():  # the last measurement, under the key's own name
        assert r[k] == pytest.approx(v), k
    # config: every field, None alpha as NaN, extra flattened
    assert math.isnan(r["alpha"]) and r["gamma"] == -0.5 and r["extra_tag"] == "a"
    assert r["arch"] == "simple_cnn" and r["ensemble_size"] == 2 and r["val_fraction"] == 0.1
    assert r["lr"] == 1e-3 and pd.isna(r["patience"]) and r["seed"] == 0
    h = history[history["trial_id"] == "t_normal"]
    assert h["epoch"].tolist() == [1, 2, 3]
    for col in C.REPORT_KEYS:
        expected = [rep[col] for rep in reports]
        assert h[col].tolist() == pytest.approx(expected, nan_ok=True), col
    assert h["node"].tolist() == ["10.0.0.1"] * 3 and h["node_id"].tolist() == ["node-a"] * 3
    assert h["gamma"].tolist() == [-0.5] * 3 and h["extra_tag"].tolist() == ["a"] * 3


def test_errored_trials(frames):
    results, history = frames
    r = row(results, "t_error")
    assert r["status"] == "ERROR" and r["epochs_done"] == 1
    assert r["error"].startswith("RuntimeError: CUDA out of memory xxx")
    assert len(r["error"]) == C.ERROR_CHARS
    assert not r["asha_stopped"] and not r["diverged"]
    assert r["final_test_acc"] == pytest.approx(0.4) and r["seed"] == 1
    # errored before its first report: a row with its config, no history, metrics NaN
    r0 = row(results, "t_error0")
    assert_values(
        r0,
        {
            "status": "ERROR",
            "error": "ValueError: bad data",
            "epochs_done": 0,
            "diverged": False,
            "early_stopped": False,
            "asha_stopped": False,
            "seed": 2,
        },
    )
    assert pd.isna(r0["node"]) and pd.isna(r0["node_id"])
    for col in (*C.SUMMARY_COLUMNS, *C.RESULT_COST_COLUMNS):
        assert math.isnan(r0[col]), col
    assert "t_error0" not in set(history["trial_id"])


def test_diverged_trial(frames):
    results, history = frames
    r = row(results, "t_diverged")
    assert r["status"] == "TERMINATED" and r["diverged"] and not r["asha_stopped"]
    assert r["epochs_done"] == 2 and r["lr"] == 0.5
    # the diverged epoch's metrics are NaN: final is NaN, best and avg skip it
    assert math.isnan(r["final_test_acc"]) and math.isnan(r["final_train_loss"])
    assert r["best_test_acc"] == pytest.approx(0.45) and r["avg_test_acc"] == pytest.approx(0.45)
    # cost is still measured in the diverged epoch
    assert r["batches_per_s"] == pytest.approx(15.0) and r["total_s"] == pytest.approx(6.0)
    h = history[history["trial_id"] == "t_diverged"]
    assert h["diverged"].tolist() == [False, True]


def test_asha_early_stopped_and_empty_trials(frames):
    results, history = frames
    asha = row(results, "t_asha")
    assert asha["asha_stopped"] and asha["status"] == "TERMINATED" and asha["epochs_done"] == 1
    # a NaN node_id reported: missing, not the string 'nan'
    assert pd.isna(asha["node_id"])
    assert history.loc[history["trial_id"] == "t_asha", "node_id"].isna().all()
    early = row(results, "t_early")
    assert early["early_stopped"] and not early["asha_stopped"] and early["epochs_done"] == 2
    assert early["patience"] == 1
    # an empty history (no report at all, no error): no epochs, nothing measured
    empty = row(results, "t_empty")
    assert empty["epochs_done"] == 0 and empty["status"] == "TERMINATED"
    assert empty["asha_stopped"]  # stopped before `epochs` without an error
    assert math.isnan(empty["final_test_acc"]) and math.isnan(empty["total_s"])
    assert "t_empty" not in set(history["trial_id"])


def test_retried_trial_keeps_the_last_report_of_an_epoch(frames):
    results, history = frames
    h = history[history["trial_id"] == "t_retry"]
    assert h["epoch"].tolist() == [1, 2, 3]
    assert h["test_acc"].tolist() == pytest.approx([0.5, 0.55, 0.6])
    assert h["node"].tolist() == ["10.0.0.1", "10.0.0.2", "10.0.0.2"]
    r = row(results, "t_retry")
    assert r["epochs_done"] == 3 and r["node"] == "10.0.0.2" and r["node_id"] == "node-b"
    assert r["best_test_acc"] == pytest.approx(0.6)  # not the overwritten 0.9
    assert r["avg_test_acc"] == pytest.approx((0.5 + 0.55 + 0.6) / 3)
    assert r["total_s"] == pytest.approx(2.0 + 4.0 + 6.0)
    # where each epoch ran: epoch 1 on the CPU, the retried epochs on the GPU node; the row
    # says where its last epoch ran
    assert h[C.DEVICE_NAME].tolist() == ["AMD EPYC", "NVIDIA H200 x1", "NVIDIA H200 x1"]
    assert h[C.RESOLVED_COMPILE].tolist() == [False, True, True]
    for col, value in GPU_RUNTIME.items():
        assert r[col] == value, col
    for col, value in CPU_RUNTIME.items():
        assert row(results, "t_normal")[col] == value, col


def test_corruption_cells_packed_or_as_columns_give_the_same_tables():
    """A trial reports the corruption cells packed in one text (core.report.tune_metrics);
    one of a study started before did as columns: the tables are the same either way, and a
    study holding both (resumed or extended across the change) reads each trial right."""
    robust = {"val": True, "robust": True}

    def trials(packed: tuple[bool, bool]) -> list[Result]:
        return [
            result(f"t{i}", [report(e, 0.1 * e, **robust, packed=p) for e in (1, 2)], BASE)
            for i, p in enumerate(packed)
        ]

    assert C.CORRUPT_CELLS_JSON in trials((True,))[0].metrics_dataframe
    assert not set(C.CORRUPT_CELLS) & set(trials((True,))[0].metrics_dataframe)
    results, history = collect(trials((True, True)), STUDY)
    for packed in ((False, False), (True, False), (False, True)):
        res, hist = collect(trials(packed), STUDY)
        pd.testing.assert_frame_equal(res, results)
        pd.testing.assert_frame_equal(hist, history)
    cells = history[list(C.CORRUPT_CELLS)]
    expected = [0.001 * C.ROBUSTNESS_KEYS.index(k) for k in C.CORRUPT_CELLS]
    assert np.allclose(cells.to_numpy() - history[["epoch"]].to_numpy(), expected)
    assert C.CORRUPT_CELLS_JSON not in history and C.CORRUPT_CELLS_JSON not in results
    # An epoch that did not measure them carries no text, and its cells are NaN.
    report_1 = report(1, 0.1, val=True)
    assert C.CORRUPT_CELLS_JSON not in report_1
    _, hist = collect([result("t", [report_1, report(2, 0.2, **robust)], BASE)], STUDY)
    assert hist.loc[0, list(C.CORRUPT_CELLS)].isna().all()
    assert hist.loc[1, list(C.CORRUPT_CELLS)].notna().all()


def test_trials_that_did_not_report_their_device_have_none(tmp_path: Path):
    # reports of code from before the runtime was reported, a trial that errored at once
    old = [{k: v for k, v in report(e, 0.5).items() if k not in C.RUNTIME_KEYS} for e in (1, 2)]
    grid = [
        result("t_old", old, {**BASE, "epochs": 2}),
        result("t_new", [report(1, 0.5)], {**BASE, "epochs": 1}),
        result("t_error0", None, BASE, error=ValueError("bad data")),
    ]
    write_results(grid, STUDY, tmp_path)
    results = pd.read_parquet(tmp_path / C.RESULTS_FILE).set_index("trial_id")
    history = pd.read_parquet(tmp_path / C.HISTORY_FILE)
    for col in C.RUNTIME_KEYS:
        assert results.loc[["t_old", "t_error0"], col].isna().all(), col
        assert history.loc[history["trial_id"] == "t_old", col].isna().all(), col
        assert results.at["t_new", col] == CPU_RUNTIME[col], col


def test_dtypes(frames):
    results, history = frames
    assert results["epochs_done"].dtype == np.int64
    for col in ("diverged", "early_stopped", "asha_stopped"):
        assert results[col].dtype == bool, col
    for col in (*C.SUMMARY_COLUMNS, *C.RESULT_COST_COLUMNS, "alpha", "gamma"):
        assert results[col].dtype == np.float64, col
    assert history["epoch"].dtype == np.int64
    assert history["diverged"].dtype == bool and history["early_stopped"].dtype == bool
    for col in (*C.EPOCH_METRICS, "batches_per_s", "epoch_s", "current_lr", "alpha"):
        assert history[col].dtype == np.float64, col
    assert pd.api.types.is_integer_dtype(history["params"])


def test_written_files_read_back_and_load_in_analysis(tmp_path: Path, frames):
    res_path, hist_path, returned = write_results(fabricated(), STUDY, tmp_path / "exp")
    assert (res_path.name, hist_path.name) == (C.RESULTS_FILE, C.HISTORY_FILE)
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == sorted(
        [C.RESULTS_FILE, C.HISTORY_FILE]
    )
    results, history = frames
    pd.testing.assert_frame_equal(returned, results)
    pd.testing.assert_frame_equal(pd.read_parquet(res_path), results)
    pd.testing.assert_frame_equal(pd.read_parquet(hist_path), history)
    # the reader takes what the writer wrote, and sees every trial's outcome
    exp = load_experiment(tmp_path / "exp")
    outcome = exp.results.set_index("trial_id")["outcome"].to_dict()
    assert outcome == {
        "t_asha": "asha_stopped",
        "t_diverged": "diverged",
        "t_early": "early_stopped",
        "t_empty": "asha_stopped",
        "t_error": "error",
        "t_error0": "error",
        "t_normal": "completed",
        "t_retry": "completed",
    }
    assert len(exp.history) == len(history)


def test_no_trials_still_writes_the_contract_columns(tmp_path: Path):
    results, history = collect([], STUDY)
    assert results.empty and history.empty
    assert {*C.KEY_COLUMNS, *C.CONFIG_COLUMNS, *C.RESULTS_COLUMNS} == set(results.columns)
    assert {*C.KEY_COLUMNS, *C.CONFIG_COLUMNS, *C.HISTORY_COLUMNS} == set(history.columns)
    write_results([], STUDY, tmp_path)
    assert pd.read_parquet(tmp_path / C.RESULTS_FILE).empty


def test_a_trial_without_metrics_is_named_by_its_folder():
    res = Result(metrics=None, checkpoint=None, error=None, path="/tmp/exp/train_abc")
    row, history = trial_frames(res, STUDY)
    assert row["trial_id"] == "train_abc" and row["epochs_done"] == 0 and history.empty


def test_a_bad_config_is_kept_raw():
    """An errored trial's config may be one TrialConfig refuses: its values are kept as given
    (dict values other than `extra` dropped), not replaced by defaults."""
    cols = config_columns({"ensemble_size": 0, "alpha": None, "extra": {"k": 1}, "bundle": {}})
    assert set(cols) == {"ensemble_size", "alpha", "extra_k"}
    assert cols["ensemble_size"] == 0 and math.isnan(cols["alpha"]) and cols["extra_k"] == 1


def test_the_search_front_is_the_reports_front():
    """tune_jobs.search.pareto_front and the report's Pareto figure use one core.pareto: on the
    fabricated search trials both give the hand-made fronts (diverged / errored left out)."""
    from tune_jobs.search import pareto_front

    results, _ = fakes.search_frames()
    by_params = pareto_front(results, ["accuracy", "params"])
    by_speed = pareto_front(results, ["accuracy", "throughput"])
    assert set(by_params["trial_id"]) == fakes.PARAMS_FRONT
    assert set(by_speed["trial_id"]) == fakes.THROUGHPUT_FRONT
    assert list(by_params.columns) == list(results.columns)  # whole results rows
    # in 3-D only search_4 is dominated (by search_2: more accurate, as many params, faster)
    both = pareto_front(results, ["accuracy", "params", "throughput"])
    assert set(both["trial_id"]) == {f"search_{k}" for k in (0, 1, 2, 3, 5, 6, 9)}


def test_the_fabricated_frames_of_the_analysis_tests_have_the_writers_columns(frames):
    """tests/analysis/fakes.py fabricates what this writer writes: the same columns."""
    results, history = frames
    fake_results, fake_history = fakes.frames([fakes.trial("f", 0.7, 0.5, extra={"tag": "a"})])
    assert list(fake_results.columns) == list(results.columns)
    assert set(fake_history.columns) == set(history.columns)


def test_test_metrics_at_the_epoch_of_best_validation_accuracy():
    from core import columns as C
    from tune_jobs.results import trial_frames

    reps = [report(e, acc, val=True) for e, acc in ((1, 0.3), (2, 0.6), (3, 0.5))]
    reps[2]["test_acc"] = 0.99  # a higher test accuracy later must not be picked
    row, _ = trial_frames(result("t", reps, {"epochs": 3}), "s")
    assert row[C.EPOCH_AT_BEST_VAL] == 2
    assert row[C.TEST_ACC_AT_BEST_VAL] == pytest.approx(0.6)
    assert row[C.TEST_LOSS_AT_BEST_VAL] == pytest.approx(1.5 - 0.6)
    no_val, _ = trial_frames(result("u", [report(1, 0.4)], {"epochs": 1}), "s")
    assert all(math.isnan(no_val[c]) for c in C.AT_BEST_VAL_COLUMNS)


def test_all_trials_at_once_equal_each_trial_alone():
    """The writer summarises every trial in one frame (a 10,000-trial study in seconds): the
    rows are the ones each trial gives alone, none mixed with another's."""
    grid = fabricated()
    results, history = collect(grid, STUDY)
    alone = [collect([r], STUDY) for r in grid]
    one_by_one = pd.concat([a for a, _ in alone], ignore_index=True)
    one_by_one = one_by_one.sort_values("trial_id", kind="stable").reset_index(drop=True)
    hist = pd.concat([h for _, h in alone if len(h)], ignore_index=True)
    hist = hist.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)

    def values(frame: pd.DataFrame) -> pd.DataFrame:  # a missing value is missing (None, NaN)
        return frame.astype(object).where(frame.notna(), None)

    pd.testing.assert_frame_equal(values(results), values(one_by_one[results.columns]))
    pd.testing.assert_frame_equal(values(history), values(hist[history.columns]))
