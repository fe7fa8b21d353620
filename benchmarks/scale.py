"""The driver at scale (issue 25): the project's runner, loggers and writer driving trials that
only sleep, against bare Ray Tune on the same workload.

The workload: `--trials` trials (a grid over the seed), each sleeping `--epoch-s` per epoch for
`--epochs` epochs and reporting every epoch what a real trial reports (the keys of
`core.columns.REPORT_KEYS` and `RUNTIME_KEYS`; the robustness keys at the last epoch, as a
study without ASHA computes them), with a checkpoint every epoch of the smoke model's size
(`state.pt` of a real alpha/gamma smoke trial: 423 KB; Tune keeps two per trial, as the runner
says) and a predictions file (core.predictions) of the smoke preset's validation and test
sizes. The knobs of a search (alpha, gamma, lr, ensemble size) are drawn per trial.
Resources are logical, as in Ray's own scalability release tests: each node tells Ray it has
`--cpus` CPUs (more than the cores: the trials sleep), one node, or a
`ray.cluster_utils.Cluster` of `--nodes` nodes on this machine; a trial asks for one CPU.

The cases, each in a fresh process so that the driver's CPU time and peak memory are its own:
  bare     `tune.Tuner` with Tune's defaults (its JSON, CSV and TensorBoard loggers, its progress
           output), the same checkpoints kept and actors reused as the runner's;
  project  the runner's Tuner (`tune_jobs.runner.make_tuner`: its progress table, TensorBoard
           callback, checkpoint retention, actor reuse), `study.json` at the start and the end,
           the writer (`results.parquet`, `history.parquet`) and the report
           (`analysis.report`), each timed on its own.
Printed per case: the Tuner's wall time against the ideal (trials x epochs x epoch_s / slots),
results processed per second, the driver's CPU seconds and the growth of its peak memory per
1,000 trials (peak RSS after the run minus RSS once Ray started), the experiment folder's size
and that of Tune's experiment state (every trial's state, rewritten at each snapshot); then
project / bare. `--cells flat,packed` runs every case with the trials reporting the corruption
cells as columns (as core.trainable did before) and then packed (as it does now).

    python benchmarks/scale.py --trials 1000                 # one node, 16 logical CPUs
    python benchmarks/scale.py --trials 1000 --nodes 8 --cpus 2
    python benchmarks/scale.py --quick                       # 100 trials, a 3-node cluster
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT_BYTES = 423_303  # state.pt of a real smoke trial (simple_cnn, BatchEnsemble x4)
CASES = ("bare", "project")
CELLS = ("flat", "packed")


def rss_mb() -> float:
    """This process's resident memory now, in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """The driver's peak resident memory in MiB (core.cost's measure on the CPU)."""
    import torch

    from core.cost import peak_memory_mb

    return peak_memory_mb(torch.device("cpu"))


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def report_keys() -> tuple[list[str], list[str], list[str], list[str]]:
    """(number keys every epoch, robustness keys of the last epoch, string keys, bool keys)."""
    from core import columns as C

    strings = [C.DEVICE_NAME, C.RESOLVED_DEVICE, C.RESOLVED_PRECISION]
    flags = [C.DIVERGED, C.EARLY_STOPPED, C.RESOLVED_CHANNELS_LAST, C.RESOLVED_COMPILE]
    every = [k for k in (*C.REPORT_KEYS, *C.RUNTIME_KEYS)
             if k not in (*C.ROBUSTNESS_KEYS, C.EPOCH, *strings, *flags)]  # fmt: skip
    return every, list(C.ROBUSTNESS_KEYS), strings, flags


def probs(rng, n: int, classes: int = 10) -> list[list[float]]:
    """n random rows of class probabilities."""
    rows = [[rng.random() for _ in range(classes)] for _ in range(n)]
    return [[v / sum(r) for v in r] for r in rows]


def make_trainable(epochs: int, epoch_s: float, cells: str = "packed"):
    """The sleeping trial: it imports nothing of the project but torch-free core modules (a
    worker starts in a moment). Its reports have the real shape: the robustness keys NaN but
    at the last epoch, and (cells="packed") the corruption cells packed as core.trainable
    reports them (core.report.tune_metrics), or (cells="flat") as columns, as it did before."""
    every, robustness, strings, flags = report_keys()

    def sleeping_trial(config: dict) -> None:
        import random
        import tempfile as tf
        import time as t

        from ray import tune

        from core.predictions import PredictionWriter  # torch-free
        from core.report import tune_metrics  # torch-free

        rng = random.Random(config["cell"]["seed"])  # the bundle of knobs()
        for epoch in range(1, epochs + 1):
            t.sleep(epoch_s)
            metrics = {"epoch": epoch, **{k: rng.random() for k in every}}
            metrics.update({k: "cpu" for k in strings} | {k: False for k in flags})
            last = epoch == epochs
            metrics.update({k: rng.random() if last else float("nan") for k in robustness})
            if cells == "packed":
                metrics = tune_metrics(metrics)
            with tf.TemporaryDirectory() as d:
                with open(f"{d}/state.pt", "wb") as f:
                    f.write(os.urandom(CHECKPOINT_BYTES))
                # the predictions file in the trial's working directory (Ray syncs it into the
                # trial's folder), of the smoke preset's validation and test sizes
                splits = {
                    split: (probs(rng, n), [rng.randrange(10) for _ in range(n)])
                    for split, n in (("val", 400), ("test", 500))
                }
                trial_id = tune.get_context().get_trial_id()
                PredictionWriter(".", trial_id).write(epoch, "val_acc", 4, splits)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    return sleeping_trial


def knobs(trials: int, seed: int = 0) -> dict:
    """The swept part of the space: one bundle per trial (a grid of dicts, as the optimizers
    study sweeps its cells), each a seed and a search's knobs drawn at random, so that the
    report's figures get thousands of distinct configs; plain values, as study.json records."""
    rng = random.Random(seed)
    cells = [
        {
            "seed": i,
            "alpha": rng.uniform(-1.0, 1.0),
            "gamma": rng.uniform(-1.0, 1.0),
            "lr": 10 ** rng.uniform(-4.0, -2.0),
            "ensemble_size": rng.randint(2, 8),
        }
        for i in range(trials)
    ]
    return {"cell": {"grid_search": cells}}


def start_ray(nodes: int, cpus: int):
    import ray

    if nodes == 1:
        ray.init(num_cpus=cpus, include_dashboard=False)
        return None
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    return cluster


def run_case(case: str, trials: int, epochs: int, epoch_s: float, nodes: int, cpus: int,
             root: Path, report_at: int | None = None, cells: str = "packed") -> dict:  # fmt: skip
    """One case in this process: the numbers of the module docstring, as a dict."""
    import ray
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the runner's choice, for both cases
    cluster = start_ray(nodes, cpus)
    trainable = tune.with_resources(make_trainable(epochs, epoch_s, cells), {"cpu": 1})
    if case == "project":  # its modules imported before the memory baseline
        import tune_jobs.results
        import tune_jobs.runner  # noqa: F401
    rss0, cpu0 = rss_mb(), cpu_s()
    write_s = report_s = largest = at_n = None
    name = f"scale_{case}_{cells}"
    t0 = time.monotonic()
    if case == "bare":
        tuner = tune.Tuner(
            trainable,
            param_space=knobs(trials),
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(root),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            ),
        )
        grid = tuner.fit()
        fit_s = time.monotonic() - t0
    else:
        from tune_jobs.extend import tune_run
        from tune_jobs.options import JobOptions
        from tune_jobs.record import write_study_json
        from tune_jobs.results import write_results
        from tune_jobs.runner import make_tuner
        from tune_jobs.study import Study

        opts = JobOptions(smoke=True, storage_path=str(root), name=name, epochs=epochs)
        # a search's study (its report: the search pages, no grid study's), its knobs drawn
        study = Study("search", {**opts.fixed_config(), **knobs(trials)})
        exp = root / name
        exp.mkdir(parents=True, exist_ok=True)
        at = tune_run({}, study, opts, None)
        write_study_json(exp, study, opts)
        tuner = make_tuner(study, opts, trainable, exp, at)
        grid = tuner.fit()
        fit_s = time.monotonic() - t0
        w0 = time.monotonic()
        write_results(grid, study.name, exp)
        write_s = time.monotonic() - w0
        write_study_json(exp, study, opts)
        from analysis.report import build_report

        r0 = time.monotonic()
        report = build_report(exp)
        report_s = time.monotonic() - r0
        largest = largest_page(report.parent)
        if report_at:
            big = root / f"search_{report_at}"
            replicate(exp, big, report_at)
            r0 = time.monotonic()
            report = build_report(big)
            at_n = {"trials": report_at, "report_s": round(time.monotonic() - r0, 1),
                    "largest_page_mb": largest_page(report.parent)}  # fmt: skip
    done = sum(r.metrics.get("epoch") == epochs for r in grid)
    out = {
        "case": case,
        "cells": cells,
        "trials": trials,
        "finished": done,
        "nodes": nodes,
        "cpus_per_node": cpus,
        "fit_s": round(fit_s, 1),
        "ideal_s": round(trials * epochs * epoch_s / (nodes * cpus), 1),
        "results_per_s": round(trials * epochs / fit_s, 1),
        "driver_cpu_s": round(cpu_s() - cpu0, 1),
        "driver_rss_growth_mb_per_1000": round((peak_rss_mb() - rss0) * 1000 / trials, 1),
        "driver_peak_rss_mb": round(peak_rss_mb(), 1),
        "folder_mb": round(folder_mb(root / name), 1),
        # Tune's experiment state at the end: every trial's state, written at each snapshot
        "state_mb": round(state_bytes(root / name) / 2**20, 1),
        "write_s": None if write_s is None else round(write_s, 2),
        "report_s": None if report_s is None else round(report_s, 1),
        "largest_page_mb": largest,
        "report_at": at_n,
    }
    ray.shutdown()
    if cluster is not None:
        cluster.shutdown()
    return out


def state_bytes(exp: Path) -> int:
    """The size of Tune's newest experiment state file in `exp`."""
    return max((p.stat().st_size for p in exp.glob("experiment_state-*.json")), default=0)


def largest_page(folder: Path) -> tuple[str, float]:
    """(name, MiB) of the report's largest page."""
    page = max(folder.glob("*.html"), key=lambda p: p.stat().st_size)
    return page.name, round(page.stat().st_size / 2**20, 2)


def replicate(exp: Path, out: Path, n: int) -> None:
    """An n-trial search's folder made from the project case's: its results and history rows
    repeated under new trial ids, each copy with the knobs drawn again (a trial's history rows
    get its results row's), and its study.json. No trial folders, so no predictions: the
    report's ensemble page is left out (it reads predictions; the project case's own report
    draws it)."""
    import pandas as pd

    from core import columns as C

    results = pd.read_parquet(exp / C.RESULTS_FILE)
    history = pd.read_parquet(exp / C.HISTORY_FILE)
    res_parts, hist_parts = [], []
    for k in range(-(-n // len(results))):
        ids = {t: f"{t}_{k}" for t in results[C.TRIAL_ID]}
        cells = knobs(len(results), seed=k + 1)["cell"]["grid_search"]
        drawn = pd.DataFrame(cells).drop(columns="seed").assign(**{C.TRIAL_ID: list(ids.values())})
        r = results.assign(**{C.TRIAL_ID: results[C.TRIAL_ID].map(ids)})
        r.update(drawn.set_index(C.TRIAL_ID).reindex(r[C.TRIAL_ID]).set_index(r.index))
        h = history.assign(**{C.TRIAL_ID: history[C.TRIAL_ID].map(ids)})
        h.update(drawn.set_index(C.TRIAL_ID).reindex(h[C.TRIAL_ID]).set_index(h.index))
        res_parts.append(r)
        hist_parts.append(h)
    results = pd.concat(res_parts, ignore_index=True).head(n)
    history = pd.concat(hist_parts, ignore_index=True)
    history = history[history[C.TRIAL_ID].isin(results[C.TRIAL_ID])]
    out.mkdir(parents=True)
    results.to_parquet(out / C.RESULTS_FILE, index=False)
    history.to_parquet(out / C.HISTORY_FILE, index=False)
    shutil.copy(exp / C.STUDY_FILE, out / C.STUDY_FILE)


def ratios(a: dict, b: dict, size: str) -> str:
    """a / b of the wall time, the driver's CPU and one size (folder_mb or state_mb)."""
    keys = {"wall": "fit_s", "driver CPU": "driver_cpu_s", size.removesuffix("_mb"): size}
    return ", ".join(f"{name} {a[k] / max(b[k], 1e-9):.2f}" for name, k in keys.items())


def run_in_child(case: str, cells: str, args: argparse.Namespace, root: Path) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--cells", cells, "--trials", str(args.trials),
           "--epochs", str(args.epochs), "--epoch-s", str(args.epoch_s), "--nodes",
           str(args.nodes), "--cpus", str(args.cpus), "--root", str(root)]  # fmt: skip
    if args.report_at:
        cmd += ["--report-at", str(args.report_at)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"scale: the {case} case failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--epoch-s", type=float, default=0.5, help="seconds a trial sleeps per epoch")
    p.add_argument("--nodes", type=int, default=1, help="1: this node; more: a local Cluster")
    p.add_argument("--cpus", type=int, default=16, help="logical CPUs per node")
    p.add_argument("--quick", action="store_true", help="100 trials on a 3-node cluster")
    p.add_argument("--cases", default=",".join(CASES), help="bare,project (in this order)")
    p.add_argument("--cells", default="packed", help="the corruption cells reported "
                   "packed (as core.trainable does), flat (as before) or flat,packed")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--report-at", type=int, help="also time the report of this many trials "
                   "(the project case's tables repeated, knobs drawn again)")  # fmt: skip
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # one case, in this process
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.trials, args.nodes, args.cpus, args.epochs, args.epoch_s = 100, 3, 4, 2, 0.2
    if args.case:
        row = run_case(args.case, args.trials, args.epochs, args.epoch_s, args.nodes,
                       args.cpus, args.root, args.report_at, args.cells)  # fmt: skip
        print(json.dumps(row))
        return [row]
    cases, cells = args.cases.split(","), args.cells.split(",")
    for option, values, allowed in (("--cases", cases, CASES), ("--cells", cells, CELLS)):
        if not set(values) <= set(allowed):  # before Ray starts
            print(f"error: {option}={','.join(values)!r}: allowed a comma-separated list of "
                  f"{', '.join(allowed)}", file=sys.stderr)  # fmt: skip
            raise SystemExit(2)
    rows = []
    root = Path(tempfile.mkdtemp(prefix="scale_"))
    try:
        for how in cells:  # before (flat) and after (packed) in one run
            for case in cases:
                rows.append(run_in_child(case, how, args, root))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    by = {(r["case"], r["cells"]): r for r in rows}
    for how in cells:
        if ("bare", how) in by and ("project", how) in by:
            print(
                f"{how}: project / bare: "
                + ratios(by["project", how], by["bare", how], "folder_mb")
            )
    for case in cases:
        if (case, "flat") in by and (case, "packed") in by:
            print(
                f"{case}: packed / flat: "
                + ratios(by[case, "packed"], by[case, "flat"], "state_mb")
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
