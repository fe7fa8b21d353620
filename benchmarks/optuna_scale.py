"""Optuna at 10,000 trials (issue 25, item 2): the time of one trial's suggestions and its
result as the study grows, for the search study's space, per storage and sampler.

The loop is the one Ray Tune's OptunaSearch runs for every trial (`study.ask()`, the search
space's define-by-run suggestions, later `study.tell()` with the trial's objective), without
Ray: what the searcher itself costs the driver. A trial's objective is random (the sampler's
work does not depend on the values). Printed per case: the median milliseconds of ask +
suggest + tell over the last `--window` trials before each mark (100, 1,000, ..., --trials),
and the whole loop's seconds.

Cases (`--cases`, comma-separated):
  sqlite-tpe     SQLite with its defaults (RDBStorage) + TPESampler (single objective): what
                 tune_jobs/search.py used before 2026-12-03
  wal-tpe        SQLite in WAL mode, normal syncing (tune_jobs.search.optuna_storage) + TPE:
                 what the search uses
  memory-tpe     in-memory storage + TPE: the sampler's own share
  journal-tpe    Optuna's JournalStorage (an append-only file) + TPE
  wal-nsga2      the search's storage + NSGA-II, two objectives (--objectives accuracy,params)
  wal-random     the search's storage + random sampling (--sampler random)

    python benchmarks/optuna_scale.py --trials 10000
    python benchmarks/optuna_scale.py --trials 2000 --cases memory-tpe,sqlite-tpe
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

CASES = ("sqlite-tpe", "wal-tpe", "memory-tpe", "journal-tpe", "wal-nsga2", "wal-random")


def make_study(case: str, folder: Path):
    import optuna

    from tune_jobs.samplers import NSGAIISampler
    from tune_jobs.search import optuna_storage

    storage_kind, sampler_kind = case.split("-")
    if storage_kind == "sqlite":
        storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'optuna.db'}")
    elif storage_kind == "wal":
        storage = optuna_storage(folder / "optuna.db")
    elif storage_kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(str(folder / "journal.log")))
    else:
        storage = None
    multi = sampler_kind == "nsga2"
    samplers = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": NSGAIISampler,
        "random": optuna.samplers.RandomSampler,
    }
    sampler = samplers[sampler_kind](seed=0)
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    return optuna.create_study(
        study_name=case, storage=storage, sampler=sampler, directions=directions
    )


def marks(trials: int) -> list[int]:
    out, m = [], 100
    while m < trials:
        out.append(m)
        m *= 10
    return [*out, trials]


def run_case(case: str, trials: int, window: int) -> dict:
    import optuna

    from tune_jobs.search_space import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace("vgg11")
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        study = make_study(case, Path(tmp))
        multi = len(study.directions) > 1
        times: list[float] = []
        start = time.perf_counter()
        for _ in range(trials):
            t0 = time.perf_counter()
            trial = study.ask()
            space(trial)
            values = [rng.random(), rng.random() * 1e6] if multi else rng.random()
            study.tell(trial, values)
            times.append(time.perf_counter() - t0)
        total = time.perf_counter() - start
    at = {
        m: round(1000 * statistics.median(times[max(0, m - window) : m]), 2) for m in marks(trials)
    }
    return {"case": case, "trials": trials, "ms_per_trial_at": at, "total_s": round(total, 1)}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=10_000)
    p.add_argument("--window", type=int, default=50, help="trials in each median")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    cases = args.cases.split(",")
    if not set(cases) <= set(CASES):  # before any case runs
        print(f"error: --cases={args.cases!r}: allowed a comma-separated list of "
              f"{', '.join(CASES)}", file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    rows = []
    for case in cases:
        rows.append(run_case(case, args.trials, args.window))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
