"""Numbers benchmarks/README.md reports from committed data match that data."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _benchmark(name: str):
    """benchmarks/<name>.py as a module, loaded from its file: benchmarks/ on sys.path would make
    benchmarks/results importable as `results` for the rest of the session
    (tests/tune_jobs/test_options.py checks that no such name exists)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bf16_accuracy_table_is_the_committed_comparison(capsys):
    """The table under "bf16 on the CPU" is what bf16_accuracy.py --report prints from
    benchmarks/results/bf16_accuracy.csv, row for row."""
    _benchmark("bf16_accuracy").report()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + 4  # header, rule, 2 models x 2 metrics
    readme = (REPO / "benchmarks" / "README.md").read_text().splitlines()
    for row in rows:
        assert row in readme, row


def _plateau_logs(folder: Path, acc: dict[int, float]) -> None:
    """A finished run's log per epochs and seed, its last line as core.train prints it."""
    for epochs, a in acc.items():
        for seed in (0, 1, 2):
            line = f"epoch={epochs}  train_loss=1.0  test_acc={a + seed / 100:.4f}  "
            line += "test_loss=0.9  val_acc=0.7  epoch_s=60.0\n"
            (folder / f"be4_epochs{epochs}_seed{seed}.log").write_text("runtime: ...\n" + line)


def test_the_plateau_verdict_follows_the_1_pp_rule(tmp_path, monkeypatch):
    plateau = _benchmark("plateau")

    monkeypatch.setattr(plateau, "LOGS", tmp_path)
    _plateau_logs(tmp_path, {12: 0.70, 20: 0.709})
    lines = plateau.table()
    assert lines[2] == "| 12 | 0.7000 | 0.7100 | 0.7200 | 0.7100 ± 0.0100 | 0.9000 | 0.7000 |"
    assert lines[-1].endswith("+0.0090; plateau at 12 epochs by the 1 pp rule: reached")
    _plateau_logs(tmp_path, {12: 0.70, 20: 0.72})
    assert plateau.table()[-1].endswith(
        "+0.0200; plateau at 12 epochs by the 1 pp rule: not reached"
    )
    # 30 epochs join the table once all three seeds' runs are there, with their own verdict
    (tmp_path / "be4_epochs30_seed0.log").write_text("epoch=3  test_acc=0.5\n")
    assert len(plateau.table()) == 2 + 2 + 1 + 1
    _plateau_logs(tmp_path, {12: 0.70, 20: 0.72, 30: 0.725})
    lines = plateau.table()
    assert lines[4].startswith("| 30 | 0.7250 |")
    assert lines[-2].endswith("+0.0200; plateau at 12 epochs by the 1 pp rule: not reached")
    assert lines[-1] == (
        "30 - 20 epochs, mean test accuracy: +0.0050; plateau at 20 epochs by the 1 pp rule: "
        "reached"
    )
    (tmp_path / "be4_epochs20_seed2.log").write_text("epoch=7  test_acc=0.5\n")  # cut off
    with pytest.raises(SystemExit, match=r"be4_epochs20_seed2.log: no epoch=20 line"):
        plateau.table()


def test_the_plateau_table_is_the_committed_runs():
    """The plateau check's table and verdict under "The learn preset" are what plateau.py
    prints from the committed logs in findings/plateau/."""
    readme = (REPO / "benchmarks" / "README.md").read_text().splitlines()
    for line in _benchmark("plateau").table():
        if line:
            assert line in readme, line


def test_the_scale_and_optuna_tables_are_the_committed_runs():
    """The rows under "The driver at scale" are the committed runs' numbers."""
    import json

    readme = (REPO / "benchmarks" / "README.md").read_text()
    results = REPO / "benchmarks" / "results"
    names = {"bare": "bare `tune.Tuner`", "project": "project (`runner.make_tuner`, its loggers)"}
    for run in ("1000_trials_1_node", "1000_trials_8_nodes", "300_trials_8_nodes"):
        for r in json.loads((results / f"scale_{run}.json").read_text()):
            writer = "-" if r["write_s"] is None else f"{r['write_s']:.2f} s"
            where = "" if r["nodes"] == 1 else f"{r['nodes']} x {r['cpus_per_node']} CPUs, "
            row = (
                f"| {where}{names[r['case']]} | {r['fit_s']} s | {r['ideal_s']} s | "
                f"{r['results_per_s']} | {r['driver_cpu_s']} s | "
                f"{r['driver_rss_growth_mb_per_1000']:,.0f} MB | {r['folder_mb']:,.0f} MB | "
                f"{writer} |"
            )
            if r["nodes"] > 1:
                row = f"| {r['trials']:,} " + row
            assert row in readme, row
    cells = {"flat": "as columns (before)", "packed": "packed (after)"}
    for r in json.loads((results / "scale_2000_trials_8_nodes.json").read_text()):
        writer = "-" if r["write_s"] is None else f"{r['write_s']:.2f} s"
        built = "-" if r["report_s"] is None else f"{r['report_s']} s"
        row = (
            f"| {cells[r['cells']]} | {names[r['case']]} | {r['fit_s']} s | {r['ideal_s']} s | "
            f"{r['results_per_s']} | {r['driver_cpu_s']} s | "
            f"{r['driver_rss_growth_mb_per_1000']:,.0f} MB | {r['state_mb']} MB | "
            f"{r['folder_mb']:,.0f} MB | {writer} | {built} |"
        )
        assert row in readme, row
    stopped = json.loads((results / "scale_10000_trials_8_nodes_stopped.json").read_text())
    at, state = stopped["at_stop"], stopped["finished_trial_state_kb"]
    for said in (
        f"**{stopped['before_first_trial_s']} s before the first trial started.**",
        f"{stopped['trials_started_at'][0]['trials']} in the first 133 s",
        f"At {at['trials']:,} trials Tune's experiment state",
        f"was {at['experiment_state_mb']} MB, the driver held {at['driver_rss_mb']:,.0f} MB",
        f"{state['all_of_it']} thousand characters for a finished trial, of",
        f"which {state['metric_n_steps']} the per-metric step counters and "
        f"{state['metric_analysis']} the per-metric",
        f"{state['checkpoint_manager']} the kept checkpoints' results and "
        f"{state['last_result']} its last result",
    ):
        assert said in " ".join(readme.split()), said
    cases = {
        "sqlite-tpe": "SQLite defaults + TPE (the search before)",
        "memory-tpe": "in memory + TPE (the sampler's own share)",
        "journal-tpe": "JournalStorage file + TPE",
        "sqlite-nsga2": "SQLite defaults + NSGA-II, 2 objectives",
    }
    cases["wal-tpe"] = "SQLite WAL + TPE (the search now)"
    cases["wal-nsga2"] = "SQLite WAL + NSGA-II, 2 objectives"
    cases["wal-random"] = "SQLite WAL + random (`--sampler random`)"
    runs = (
        "optuna_2000_trials.json",
        "optuna_wal_2000_trials.json",
        "optuna_wal_10000_trials.json",
    )
    for r in (r for run in runs for r in json.loads((results / run).read_text())):
        marks = ("100", "1000", str(r["trials"]))
        at = [f"{round(r['ms_per_trial_at'][m]):.0f} ms" for m in marks]
        row = f"| {cases[r['case']]} | {' | '.join(at)} | {round(r['total_s']):.0f} s |"
        assert row in readme, row
