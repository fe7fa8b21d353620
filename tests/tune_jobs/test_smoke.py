"""Every study's --smoke run against a real local Ray on the real CIFAR-10 images."""

import contextlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import optuna
import pandas as pd
import pytest

from core import columns as C
from core.columns import CALIB_COLUMNS, EPOCH, TEST_ACC, TRAIN_LOSS, VAL_ACC
from core.config import TrialConfig
from core.provenance import code_version, cpu_model
from core.runtime import cpu_bf16_units
from tune_jobs import alpha_gamma, ensemble_size, methods, optimizers, sharing
from tune_jobs.options import JobOptions
from tune_jobs.results import EPOCH_METRICS, HISTORY_COLUMNS
from tune_jobs.study import grid_configs

from .conftest import CI_SIZES, REPO, run_job
from .test_resume import no_ray, report, snapshot

pytestmark = pytest.mark.slow
CONFIG_COLUMNS = [
    "alpha",
    "gamma",
    "ensemble_size",
    "lr",
    "optimizer",
    "sharing_network",
    "sharing_ensemble",
    "ensemble",
    "arch",
    "seed",
    "dataset",
]
RESULT_COLUMNS = [
    "trial_id",
    "study",
    "status",
    "epochs_done",
    "diverged",
    "early_stopped",
    "asha_stopped",
    "node",
    "params",
    "batches_per_s",
    "total_s",
    *(f"{k}_{m}" for k in ("final", "best", "avg") for m in EPOCH_METRICS),
]


def read_events(path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, object]]:
    """A TensorBoard event file read back: scalars by tag as (step, value), and the hparams of
    its session start (TFRecords of tensorboardX's Event protobufs: length, CRC, data, CRC)."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    scalars: dict[str, list[tuple[int, float]]] = {}
    hparams: dict[str, object] = {}
    data = path.read_bytes()
    at = 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        event = Event.FromString(data[at + 12 : at + 12 + length])
        at += 12 + length + 4
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                info = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                for name, v in info.session_start_info.hparams.items():
                    hparams[name] = getattr(v, v.WhichOneof("kind"))
            elif value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars, hparams


def smoke_cells(module) -> list[TrialConfig]:
    study = module.make_study(JobOptions(smoke=True))
    return [TrialConfig.from_dict(c) for c in grid_configs(study.space)]


def check_tables(exp, module, study):
    results = pd.read_parquet(exp / "results.parquet")
    history = pd.read_parquet(exp / "history.parquet")
    cells = smoke_cells(module)
    assert len(results) == len(cells) == results["trial_id"].nunique()
    assert set(RESULT_COLUMNS + CONFIG_COLUMNS) <= set(results.columns)
    assert set(["trial_id", "epoch", *HISTORY_COLUMNS] + CONFIG_COLUMNS) <= set(history.columns)
    assert (results["study"] == study).all()
    assert (results["status"] == "TERMINATED").all(), results["error"].tolist()
    assert (results["epochs_done"] >= 1).all()
    # One history row per trial per epoch done, epochs numbered 1..n.
    assert len(history) == results["epochs_done"].sum()
    assert not history.duplicated(["trial_id", "epoch"]).any()
    per_trial = history.groupby("trial_id")["epoch"].agg(["min", "max", "count"])
    assert (per_trial["min"] == 1).all() and (per_trial["max"] == per_trial["count"]).all()
    # Real metrics: probabilities and accuracies in range, throughput measured.
    assert history["test_acc"].between(0, 1).all() and history["test_loss"].gt(0).all()
    assert history["batches_per_s"].gt(0).all() and history["params"].gt(0).all()
    last = history.sort_values("epoch").groupby("trial_id").last()
    merged = results.set_index("trial_id").join(last[["test_acc"]])
    assert (merged["final_test_acc"] == merged["test_acc"]).all()
    info = json.loads((exp / "study.json").read_text())
    assert info["study"] == study and info["smoke"] is True
    # what produced it, and where each trial ran (the trials here run on this machine's CPU)
    produced_by = info[C.PROVENANCE]
    assert produced_by[C.PROV_VERSIONS]["torch"] and produced_by[C.PROV_CPU] == cpu_model()
    assert produced_by[C.PROV_COMMIT] == code_version()[C.PROV_COMMIT]
    assert (results[C.DEVICE_NAME] == cpu_model()).all()
    # auto: bf16 where the CPU has bf16 matrix units (core.runtime), fp32 elsewhere
    assert (results[C.RESOLVED_PRECISION] == ("bf16" if cpu_bf16_units() else "fp32")).all()
    assert not results[C.RESOLVED_COMPILE].any()
    return results, history


def tune_trial_states(exp) -> list[dict]:
    """Each trial's run metadata (its last result, its statistics of every numeric metric) in
    the experiment state Ray Tune saved last."""
    state = sorted(exp.glob("experiment_state-*.json"))[-1]
    return [json.loads(meta) for _, meta in json.loads(state.read_text())["trial_data"]]


def test_alpha_gamma_smoke(alpha_gamma_smoke):
    results, history = check_tables(alpha_gamma_smoke, alpha_gamma, "alpha_gamma")
    # The corruption cells, measured at the last epoch, are in both tables; Tune's state of a
    # trial keeps statistics of none of them (core.report.tune_metrics packs them).
    cells = list(C.CORRUPT_CELLS)
    last = history[history["epoch"] == history.groupby("trial_id")["epoch"].transform("max")]
    assert last[cells].notna().all().all() and results[cells].notna().all().all()
    assert history[history["epoch"] == 1][cells].isna().all().all()
    states = tune_trial_states(alpha_gamma_smoke)
    assert len(states) == len(results)
    for meta in states:
        assert C.corrupt_metric("acc") in meta["metric_analysis"]  # the means stay metrics
        assert not set(cells) & set(meta["metric_analysis"]), sorted(meta["metric_analysis"])
        assert set(json.loads(meta["last_result"][C.CORRUPT_CELLS_JSON])) == set(cells)
    assert set(zip(results["alpha"], results["gamma"], strict=True)) == {
        (a, g) for a in alpha_gamma.SMOKE_SWEEP for g in alpha_gamma.SMOKE_SWEEP
    }
    # Trials reuse worker processes (reuse_actors): no more processes than run at once (one
    # CPU per trial), where a new process per trial would make one per trial.
    pids = set()
    for f in alpha_gamma_smoke.glob("train_*/result.json"):
        pids |= {json.loads(line)["pid"] for line in f.read_text().splitlines() if line.strip()}
    assert 1 <= len(pids) <= min(len(results), os.cpu_count() or 1)


def test_ensemble_size_smoke(tmp_path, cifar10_dir):
    r = run_job(
        "ensemble_size.py",
        "--smoke",
        *CI_SIZES,
        "--data-dir",
        str(cifar10_dir),
        "--storage-path",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    results, _ = check_tables(tmp_path / "ensemble_size_smoke", ensemble_size, "ensemble_size")
    assert sorted(results["ensemble_size"]) == [2, 4]
    assert set(results["batch_size"]) == {128}
    # More members, more fast weights: the distinct parameter count grows with M.
    by_m = results.set_index("ensemble_size")["params"]
    assert by_m[4] > by_m[2]
    # The job tells the researcher where the files are and how to build the report.
    assert "results.parquet" in r.stdout and "python -m analysis" in r.stdout


def test_optimizers_smoke(tmp_path, cifar10_dir, monkeypatch):
    mlruns = tmp_path / "mlruns"
    r = run_job(
        "optimizers.py",
        "--smoke",
        *CI_SIZES,
        "--data-dir",
        str(cifar10_dir),
        "--storage-path",
        str(tmp_path),
        "--mlflow-uri",
        f"file://{mlruns}",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    exp = tmp_path / "optimizers_smoke"
    results, history = check_tables(exp, optimizers, "optimizers")
    assert set(zip(results["ensemble"], results["optimizer"], strict=True)) == {
        (e, o) for e in ("single", "batch") for o in ("adam", "sgd", "ivon")
    } | {("deep", "adam")}
    # Train and validation curves every epoch.
    assert history["val_acc"].notna().all() and history["train_acc"].notna().all()

    # Where to watch, printed before the first progress table.
    head = r.stdout[: r.stdout.index("== Status ==")].splitlines()
    assert f"experiment: {exp}" in head
    assert f"tensorboard: tensorboard --logdir {exp}" in head
    dashboard = next(line for line in head if line.startswith("ray dashboard: "))
    assert re.fullmatch(r"ray dashboard: (http://[\d.]+:\d+|not running .*)", dashboard)
    assert f"mlflow: runs of experiment 'optimizers_smoke' in file://{mlruns}" in head
    # The progress table: the bundle's fields as columns, the selection metric among them
    # (metric columns appear once a trial reported: the last table has them).
    *_, header = (line for line in r.stdout.splitlines() if line.startswith("| Trial name"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert {"ensemble", "ensemble_size", "optimizer", "lr", "val acc", "test acc"} <= set(columns)
    assert "cell" not in columns and "{'ensemble'" not in r.stdout
    # Refreshed every 5 s at most while trials report (Ray's default: every 30 s); the last
    # table, at the end, comes when the study ends.
    times = [
        int(h) * 3600 + int(m) * 60 + float(sec)
        for h, m, sec in re.findall(r"running for (\d+):(\d+):([\d.]+)\)", r.stdout)
    ]
    gaps = [b - a for a, b in zip(times[:-1], times[1:], strict=True)][:-1]
    assert gaps and min(gaps) >= 4.9 and min(gaps) < 30, gaps

    # TensorBoard: one event file per trial, the project's metric names stepped by epoch, and
    # the hyperparameters as the bundle's fields.
    by_id = results.set_index("trial_id")
    for trial_dir in exp.glob("train_*"):
        (events,) = trial_dir.glob("events.out.tfevents.*")
        scalars, hparams = read_events(events)
        trial = by_id.loc[
            json.loads((trial_dir / "result.json").read_text().splitlines()[0])["trial_id"]
        ]
        assert {TEST_ACC, TRAIN_LOSS, VAL_ACC, EPOCH} <= set(scalars)
        assert [step for step, _ in scalars[VAL_ACC]] == [1, 2]
        assert scalars[TEST_ACC][-1][1] == pytest.approx(trial["final_test_acc"])
        assert not any(tag.startswith("ray/") or "_gaussian_noise_" in tag for tag in scalars)
        assert hparams == {
            "ensemble": trial["ensemble"],
            "ensemble_size": float(trial["ensemble_size"]),
            "optimizer": trial["optimizer"],
            "lr": pytest.approx(trial["lr"]),
        }

    # MLflow: one finished run per trial, every config field a param, the curves by epoch.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"file://{mlruns}")
    experiment = client.get_experiment_by_name("optimizers_smoke")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(results) and {run.info.status for run in runs} == {"FINISHED"}
    assert {run.info.run_name for run in runs} == {f"train_{t}" for t in results["trial_id"]}
    for run in runs:
        trial = by_id.loc[run.info.run_name.removeprefix("train_")]
        assert run.data.tags["study"] == "optimizers"
        assert run.data.params["optimizer"] == trial["optimizer"]
        assert run.data.params["arch"] == "simple_cnn"
        curve = client.get_metric_history(run.info.run_id, VAL_ACC)
        assert sorted(m.step for m in curve) == [1, 2]
        assert run.data.metrics[TEST_ACC] == pytest.approx(trial["final_test_acc"])


def test_sharing_smoke(tmp_path, cifar10_dir):
    r = run_job(
        "sharing.py",
        "--smoke",
        *CI_SIZES,
        "--data-dir",
        str(cifar10_dir),
        "--storage-path",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    results, _ = check_tables(tmp_path / "sharing_smoke", sharing, "sharing")
    params = results.set_index(["sharing_network", "sharing_ensemble"])["params"]
    assert params[("all", "all")] < params[("early", "none")] < params[("none", "none")]
    # Throughput timed alone, per regime, once every trial had finished (the Tuner returned:
    # after Ray's last progress table), so no other trial shared the machine.
    for col in CALIB_COLUMNS:
        assert np.isfinite(results[col]).all() and (results[col] > 0).all(), col
    assert r.stdout.rindex("== Status ==") < r.stdout.index("throughput timed alone: 4 regime(s)")
    info = json.loads((tmp_path / "sharing_smoke" / "study.json").read_text())
    assert info["throughput"].startswith("timed alone: after every trial finished")


def test_methods_smoke(tmp_path, cifar10_dir):
    """Every kind trains through the whole pipeline (metrics, robustness, cost columns,
    throughput timed alone), and the report draws the methods page."""
    args = ("--smoke", *CI_SIZES, "--data-dir", str(cifar10_dir), "--storage-path", str(tmp_path))
    r = run_job("methods.py", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    results, _ = check_tables(tmp_path / "methods_smoke", methods, "methods")
    assert set(results["ensemble"]) == {"single", "batch", "deep", "packed", "mimo"}
    assert set(results["extra_method"]) == {m for m, _, _ in methods.CELLS} - {"deep"}
    cost = results.set_index("extra_method")
    assert cost.at["mimo", "params"] < 1.1 * cost.at["single", "params"]
    assert cost.at["mimo", C.TRAIN_FLOPS_PER_IMAGE] > 4 * cost.at["single", C.TRAIN_FLOPS_PER_IMAGE]
    for col in (*CALIB_COLUMNS, C.TRAIN_FLOPS_PER_IMAGE, C.corrupt_metric("acc")):
        assert np.isfinite(results[col]).all() and (results[col] > 0).all(), col
    out = tmp_path / "report"
    rep = subprocess.run(
        [sys.executable, "-m", "analysis", str(tmp_path / "methods_smoke"), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert "Methods at matched cost" in (out / "methods.html").read_text()


def test_search_multi_objective_writes_pareto_front(tmp_path, cifar10_dir):
    r = run_job(
        "search.py",
        "--smoke",
        *CI_SIZES,
        "--data-dir",
        str(cifar10_dir),
        "--storage-path",
        str(tmp_path),
        "--objectives",
        "accuracy,params",
        "--num-samples",
        "3",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    exp = tmp_path / "search_smoke"
    results = pd.read_parquet(exp / "results.parquet")
    assert len(results) == 3 and (results["status"] == "TERMINATED").all()
    front = pd.read_parquet(exp / "pareto_front.parquet")
    assert len(front) >= 1 and set(front["trial_id"]) <= set(results["trial_id"])
    # The Optuna study is kept for later inspection, with the suggested knobs.
    study = optuna.load_study(study_name="search_smoke", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert len(study.trials) == 3
    assert {"optimizer", "lr", "alpha", "gamma", "ensemble_size", "sharing"} <= set(
        study.trials[0].params
    )
    info = json.loads((exp / "study.json").read_text())
    assert info["objectives"] == ["accuracy", "params"]
    # TensorBoard's hparams of a search: the fields Optuna suggested, the sharing pair as its
    # two fields.
    for trial_dir in exp.glob("train_*"):
        (events,) = trial_dir.glob("events.out.tfevents.*")
        _, hparams = read_events(events)
        suggested = {"optimizer", "lr", "alpha", "gamma", "ensemble_size"}
        assert suggested | {"sharing_network", "sharing_ensemble"} == set(hparams)


def test_existing_name_without_resume_is_refused(alpha_gamma_smoke, cifar10_dir):
    before = sorted(p.name for p in alpha_gamma_smoke.iterdir())
    r = run_job(
        "alpha_gamma.py",
        "--smoke",
        "--data-dir",
        str(cifar10_dir),
        "--storage-path",
        str(alpha_gamma_smoke.parent),
    )
    assert r.returncode == 2
    assert "already exists; pass --resume to continue it" in r.stderr
    assert sorted(p.name for p in alpha_gamma_smoke.iterdir()) == before


def test_interrupted_study_resumes_with_every_trial_once(tmp_path, cifar10_dir):
    """Ctrl-C as the study starts, then (resumed) once the first trial checkpointed: each time
    the state is saved and the job says how to resume; the report and a resume with a changed
    option are refused, touching nothing; the resume runs every trial once."""
    args = [
        "--smoke",
        *CI_SIZES,
        "--data-dir",
        str(cifar10_dir),
        "--storage-path",
        str(tmp_path),
        "--max-concurrent",
        "1",
        "--no-asha",
    ]
    exp = tmp_path / "alpha_gamma_smoke"
    log = tmp_path / "study.log"

    def interrupted(*more: str, once) -> tuple[dict, str]:
        """The study started with `more`, Ctrl-C once `once()`: (its study.json, its output)."""
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "tune_jobs/alpha_gamma.py", *args, *more],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 300
        while not once():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{once.__doc__} not within 300 s"
            time.sleep(0.2)  # polling the folder, not waiting a fixed time
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]  # no partial tables
        printed = log.read_text()
        assert "Tuner.restore(" not in printed
        assert not (exp / "results.parquet").exists()
        record = json.loads((exp / "study.json").read_text())
        assert record["state"] == "interrupted"
        assert f"continue it with: {record['resume_command']}" in printed
        return record, printed

    def running() -> bool:
        """the study recorded as running (Tune's Ctrl-C handler not yet installed, mostly)"""
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return json.loads((exp / "study.json").read_text())["state"] == "running"
        return False

    def checkpointed() -> bool:
        """the first trial's checkpoint, while the others have not started"""
        return bool(list(exp.glob("train_*/checkpoint_*")))

    first, _ = interrupted(once=running)
    record, _ = interrupted("--resume", once=checkpointed)
    command = record["resume_command"]
    first_run, second_run = first["provenance"], record["provenance"]
    assert command == first["resume_command"]
    assert command.startswith("python tune_jobs/alpha_gamma.py --preset smoke --data-dir ")
    assert command.endswith(f"--resume --name alpha_gamma_smoke --storage-path {tmp_path}")

    before = snapshot(exp)
    r = report(exp)
    assert r.returncode == 2
    done = record["trials_finished"]
    assert r.stderr == (
        f"error: study 'alpha_gamma_smoke' in {str(exp)!r} was interrupted with {done} of 4 "
        f"trial(s) finished, so it has no results.parquet yet; resume it with: {command}\n"
    )
    r = run_job("alpha_gamma.py", *args, "--resume", "--epochs", "4")
    assert r.returncode == 2 and no_ray(r)
    assert r.stderr == (
        "error: --resume: options differ from the saved study: --epochs 4 (saved: --epochs 2); "
        "resume with the same options, or start a new --name\n"
    )
    assert snapshot(exp) == before

    r = run_job("alpha_gamma.py", *args, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    # The record keeps what made the first run's trials beside what made the resumed run's.
    record = json.loads((exp / "study.json").read_text())
    assert record["provenance_earlier"] == [first_run, second_run]
    assert record["provenance"]["commit"] == first_run["commit"]
    # Ray's per-trial "Failed to fetch metrics" warnings for the trials still to run stay off
    assert "Failed to fetch metrics" not in r.stdout + r.stderr
    results, history = check_tables(exp, alpha_gamma, "alpha_gamma")
    assert (results["epochs_done"] == 2).all()


def test_report_from_a_real_smoke_study(alpha_gamma_smoke, tmp_path):
    out = tmp_path / "report"
    r = subprocess.run(
        [sys.executable, "-m", "analysis", str(alpha_gamma_smoke), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    index = (out / "index.html").read_text()
    pages = sorted(p.name for p in out.glob("*.html") if p.name != "index.html")
    assert pages and all(p in index for p in pages)
    assert any("heatmap" in p or "alpha" in p for p in pages)
    assert not any("sharing" in p or "pareto" in p for p in pages)  # other studies' figures
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    assert len(pd.read_csv(out / "tables" / "trials.csv")) == 4  # one row per trial
    # A smoke study's report says, on its index and every page, that it is a pipeline check.
    assert "smoke study: a pipeline check" in index
    for p in pages:
        assert "This is a smoke study: a pipeline check" in (out / p).read_text()
