"""Optuna search through Ray Tune over alpha, gamma, ensemble size, lr, optimizer and sharing
(and with `--kinds`, the ensemble kind and its own parameters).

TPE by default on validation accuracy (10% of train held out; test accuracy is reported,
never optimised). `--objectives accuracy,params` (or `accuracy,throughput`, `accuracy,flops`)
runs a multi-objective NSGA-II search and writes the Pareto front. `--sampler` chooses another
(random sampling costs the driver the same at every trial; TPE's cost grows with the trials).
The Optuna study lives in `optuna.db` (SQLite) in the experiment folder so it can be inspected
later (`optuna-dashboard sqlite:///.../optuna.db`).

    python tune_jobs/search.py --smoke --data-dir ../shared/data/cifar10
    python tune_jobs/search.py --objectives accuracy,params --num-samples 200 --address auto
    python tune_jobs/search.py --kinds single,batch,deep,packed,mimo --objectives accuracy,flops

`--kinds` lets the search pick the ensemble kind too, each kind with its own parameters
(tune_jobs.search_space.KIND_PARAMS: alpha/gamma for batch, packed_width/packed_groups for
packed, mimo_rho/mimo_batch_repeat for mimo; the ensemble size for all but single).
"""

from pathlib import Path

import pandas as pd

from core.checks import integer
from core.columns import (
    BATCHES_PER_S,
    DIVERGED,
    FINAL_VAL_ACC,
    OPTUNA_DB,
    PARAMS,
    STATUS,
    STATUS_TERMINATED,
    TRAIN_FLOPS_PER_IMAGE,
)
from core.config import ENSEMBLES
from core.pareto import pareto_mask
from tune_jobs.cli import cli, option
from tune_jobs.errors import JobError
from tune_jobs.options import MAX_TRIALS, JobOptions, check_option
from tune_jobs.search_space import SearchSpace
from tune_jobs.study import Study

# Objective name -> (reported metric, direction).
OBJECTIVES = {
    "accuracy": ("val_acc", "max"),  # validation: the test set never enters selection
    "params": ("params", "min"),
    "throughput": ("batches_per_s", "max"),
    "flops": (TRAIN_FLOPS_PER_IMAGE, "min"),  # training FLOPs per image (core.cost)
}


# --sampler: Optuna's sampler. TPE refits on every trial, so its time per trial grows with the
# study (286 ms at 10,000 trials, NSGA-II 90 ms: benchmarks/README.md, "Optuna as the search
# grows"); random sampling stays flat, for searches of many short trials.
SAMPLERS = {
    "auto": "TPE for one objective, NSGA-II for two",
    "tpe": "TPE (multi-objective TPE for two objectives)",
    "nsga2": "NSGA-II",
    "random": "independent random draws",
}


def make_sampler(kind: str, objectives: int, seed: int):
    """The Optuna sampler `kind` of SAMPLERS for a search of that many objectives."""
    import optuna

    from tune_jobs.samplers import NSGAIISampler

    if kind == "auto":
        kind = "nsga2" if objectives > 1 else "tpe"
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "nsga2":
        # NSGA-II from tune_jobs.samplers: Optuna's own holds a lock Ray cannot pickle.
        return NSGAIISampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def parse_objectives(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in OBJECTIVES]
    if bad or not names or names[0] != "accuracy" or len(names) > 2 or len(set(names)) < len(names):
        raise JobError(
            f"--objectives={text!r}: allowed are 'accuracy', 'accuracy,params', "
            "'accuracy,throughput' and 'accuracy,flops'"
        )
    return names


def pareto_front(results: pd.DataFrame, objectives: list[str]) -> pd.DataFrame:
    """Rows of completed, finite trials that no other such trial dominates."""
    # The results column of each objective's reported metric (accuracy: its final value).
    cols = {
        "accuracy": FINAL_VAL_ACC,
        "params": PARAMS,
        "throughput": BATCHES_PER_S,
        "flops": TRAIN_FLOPS_PER_IMAGE,
    }
    ok = results[(results[STATUS] == STATUS_TERMINATED) & ~results[DIVERGED].astype(bool)]
    mask = pareto_mask(ok[[cols[o] for o in objectives]], [OBJECTIVES[o][1] for o in objectives])
    return ok[mask]


def optuna_storage(path: Path):
    """The search's Optuna storage: the SQLite file `path` in write-ahead-log mode with normal
    syncing. SQLite's default (a rollback journal, a full sync at every commit) cost 105 ms per
    trial's ask and tell at 300 trials, this 47 (benchmarks/optuna_scale.py, 2026-12-03; the
    cost grows with the trials, so a 10,000-trial search spent hours of the driver in it). WAL
    survives a crash of the process; a power cut may lose the last trials, never the file. The
    log (`optuna.db-wal`) is folded into the file when the search ends (`fold_log`), so that
    the file alone, uploaded or copied, holds every trial. The mode is kept in the file; a
    resumed search (whose storage Ray unpickles without this listener) syncs fully again."""
    import optuna
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")

    @event.listens_for(storage.engine, "connect")
    def _wal(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()  # connections opened before the listener get it too
    return storage


def fold_log(path: Path) -> None:
    """Fold SQLite's write-ahead log of `path` into the file (and empty it)."""
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def earlier_trials(storage, study_name: str) -> int:
    """Trials of the Optuna study `study_name` in `storage`; 0 when it has none yet."""
    import optuna

    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # no such study: a new search
        return 0


def parse_kinds(text: str) -> tuple[str, ...]:
    """--kinds: the ensemble kinds the search may pick, comma-separated."""
    kinds = tuple(s.strip() for s in text.split(",") if s.strip())
    if not kinds or any(k not in ENSEMBLES for k in kinds) or len(set(kinds)) < len(kinds):
        raise JobError(
            f"--kinds={text!r}: allowed a comma-separated list of distinct kinds of "
            f"{list(ENSEMBLES)}, e.g. 'batch' or 'batch,deep,packed,mimo'"
        )
    return kinds


def make_study(
    opts: JobOptions,
    objectives: str = "accuracy",
    num_samples: int = 20,
    kinds: str = "batch",
    sampler: str = "auto",
) -> Study:
    names = parse_objectives(objectives)
    picked = parse_kinds(kinds)
    if sampler not in SAMPLERS:
        raise JobError(f"--sampler={sampler!r}: allowed {', '.join(SAMPLERS)}")
    check_option("--num-samples", num_samples, integer(lo=1, hi=MAX_TRIALS))
    if opts.seeds != 1:
        # Optuna proposes one config per trial; replicates would need a grid, which Ray Tune's
        # searchers do not combine with. Rerun the best configs with --seeds in a grid study.
        raise JobError(
            f"--seeds={opts.seeds}: the search runs one seed per suggested config; "
            "allowed: 1 (replicate chosen configs with a grid study's --seeds)"
        )
    if opts.smoke:
        num_samples = min(num_samples, 4)
    # one kind: fixed; several: the searcher picks each trial's (SearchSpace)
    fixed = {"ensemble": picked[0]} if len(picked) == 1 else {}
    space = opts.fixed_config(arch="vgg11", epochs=10, **fixed)
    metric = [OBJECTIVES[n][0] for n in names]
    mode = [OBJECTIVES[n][1] for n in names]

    def make_search_alg(exp_dir: Path):
        from ray.tune.search.optuna import OptunaSearch

        exp_dir.mkdir(parents=True, exist_ok=True)
        storage = optuna_storage(exp_dir / OPTUNA_DB)
        multi = len(names) > 1
        # Seeded by the trials the Optuna study already holds: 0 for a new study; an
        # extension (--extend, which goes on with the saved study) draws other samples than
        # the first run's instead of repeating them.
        seed = earlier_trials(storage, exp_dir.name)
        return OptunaSearch(
            space=SearchSpace(space["arch"], picked),
            metric=metric if multi else metric[0],
            mode=mode if multi else mode[0],
            sampler=make_sampler(sampler, len(names), seed),
            storage=storage,
            study_name=exp_dir.name,
        )

    def after(exp_dir: Path, results: pd.DataFrame, _run_alone=None) -> None:
        fold_log(exp_dir / OPTUNA_DB)  # before the runner uploads it, the report copies it
        if len(names) > 1:
            front = pareto_front(results, names)
            front.to_parquet(exp_dir / "pareto_front.parquet", index=False)
            print(f"pareto front: {exp_dir / 'pareto_front.parquet'} ({len(front)} trial(s))")

    return Study(
        "search",
        space,
        asha=len(names) == 1,
        metric=metric if len(names) > 1 else metric[0],
        mode=mode if len(names) > 1 else mode[0],
        num_samples=num_samples,
        make_search_alg=make_search_alg,
        after=after,
        info={"objectives": names, "kinds": list(picked), "sampler": sampler},
    )


if __name__ == "__main__":
    cli(
        make_study,
        doc=__doc__,
        extra=[
            option(
                "objectives",
                "accuracy",
                str,
                "accuracy (TPE) | accuracy,params | accuracy,throughput | accuracy,flops (NSGA-II)",
            ),
            option("num_samples", 20, int, "Trials the search runs."),
            option(
                "sampler",
                "auto",
                str,
                "Optuna's sampler: " + "; ".join(f"{k}: {v}" for k, v in SAMPLERS.items()),
            ),
            option(
                "kinds",
                "batch",
                str,
                "Ensemble kinds the search picks from, comma-separated (e.g. "
                "batch,deep,packed,mimo); each kind's own parameters only in its trials.",
            ),
        ],
    )
