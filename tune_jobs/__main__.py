"""`python -m tune_jobs`: the studies, one line each: its name, what it sweeps (at the default
`--preset full`) and how to run it. Found, not listed: every module of this package that has a
`make_study` is a study, so a new study script shows up here by itself. Neither Ray nor torch
is loaded (a study's space is built from its options alone, `tune_jobs.study`)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

import tune_jobs
from tune_jobs.options import JobOptions
from tune_jobs.search_space import SearchSpace
from tune_jobs.study import Study, grid_configs, swept_fields


def studies() -> list[ModuleType]:
    """The study scripts of the package, in name order: the modules that define `make_study`
    (read from their source first: importing the runner would load Ray and torch)."""
    found = []
    for info in sorted(pkgutil.iter_modules(tune_jobs.__path__), key=lambda i: i.name):
        source = Path(tune_jobs.__path__[0], f"{info.name}.py")
        if info.ispkg or not source.is_file() or "\ndef make_study(" not in source.read_text():
            continue
        found.append(importlib.import_module(f"tune_jobs.{info.name}"))
    return found


class _Suggestions:
    """Stands in for an Optuna trial to read which fields a define-by-run space suggests."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.names.append(name)
        return choices[0]

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        self.names.append(name)
        return low

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        self.names.append(name)
        return low


def sweeps(study: Study) -> str:
    """What the study varies: its swept fields and grid cells, or the fields a search suggests
    (its define-by-run space, `tune_jobs.search_space`) and its trials."""
    if study.make_search_alg is not None:
        trial = _Suggestions()
        SearchSpace(study.space["arch"])(trial)
        return f"Optuna over {', '.join(trial.names)} ({study.num_samples} trials)"
    fields = swept_fields(study.space).values()
    return f"{' x '.join(fields)} ({len(grid_configs(study.space))} cells)"


def lines() -> list[str]:
    """One line per study: name, what it sweeps, the command that runs its smoke check."""
    rows = [(m.__name__.rsplit(".", 1)[-1], sweeps(m.make_study(JobOptions()))) for m in studies()]
    width = max(len(n) for n, _ in rows)
    out = ["studies (python -m tune_jobs.<study> --help lists a study's options):"]
    out += [f"  {n:<{width}}  {what}: python -m tune_jobs.{n} --smoke" for n, what in rows]
    return out


if __name__ == "__main__":
    print("\n".join(lines()))
