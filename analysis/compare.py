"""build_comparison: one report comparing several experiment folders (`python -m analysis A B`).

Its index.html holds a table with one row per experiment (trials, seeds, the configuration its
selection metric ranks first, and the val-selected test accuracy of that configuration and of
every usable trial), the main metric side by side (analysis.figures.compare), and for the
searches among them their Pareto fronts overlaid. Each experiment's own report is still built
by `python -m analysis <folder>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from plotly.offline import get_plotlyjs

from analysis.errors import ReportInputError
from analysis.figures.compare import MAIN, main_metric_boxes, pareto_overlay
from analysis.html import PLOTLY_JS, TABLE_DIR, comparison_html
from analysis.load import Experiment, load_experiment
from analysis.overview import overview_of
from analysis.plan import is_smoke
from analysis.provenance import provenance_notes
from analysis.report import check_out, fresh_out
from analysis.tidy import is_usable, varying_columns

COMPARE_DIR = Path("reports")  # the default output folder is COMPARE_DIR / compare-<names>
TABLE = "experiments.csv"


def default_out(experiments: Sequence[Path]) -> Path:
    """./reports/compare-<name>-<name>... (the folders' names, in the order given)."""
    return COMPARE_DIR / ("compare-" + "-".join(p.name for p in experiments))


def labels_of(exps: Sequence[Experiment]) -> list[str]:
    """The experiments' names (study.json `name`, else the folder's); folders that share a
    name are told apart by their parent folder."""
    names = [str(e.meta.get("name", e.path.name)) for e in exps]
    return [
        f"{e.path.resolve().parent.name}/{n}" if names.count(n) > 1 else n
        for e, n in zip(exps, names, strict=True)
    ]


def is_search(exp: Experiment) -> bool:
    return exp.study == "search" or exp.pareto is not None or exp.optuna_db is not None


def experiment_row(label: str, exp: Experiment) -> dict[str, object]:
    """One row of the comparison table."""
    res = exp.results
    ov = overview_of(res, varying_columns(res), exp.meta)
    usable = res[is_usable(res, MAIN)][MAIN] if MAIN in res else pd.Series(dtype=float)
    row: dict[str, object] = {
        "experiment": label,
        "study": exp.study or "unknown",
        "dataset": exp.meta.get("dataset", ""),
        "trials": len(res),
        "usable": len(usable),
        "seeds": int(res["seed"].nunique()),
        "selection": ov.selection.column,
        "best_configuration": "",
        "best_selection_mean": float("nan"),
        "best_test_mean": float("nan"),
        "best_test_sd": float("nan"),
        "best_n": 0,
        "test_mean": usable.mean(),
        "test_sd": usable.std(),
    }
    if not ov.best.empty and f"{MAIN}_mean" in ov.best:
        top = ov.best.iloc[0]
        row.update(
            best_configuration=top["configuration"],
            best_selection_mean=top[f"{ov.selection.column}_mean"],
            best_test_mean=top[f"{MAIN}_mean"],
            best_test_sd=top[f"{MAIN}_sd"],
            best_n=int(top[f"{MAIN}_n"]),
        )
    return row


def _notes(exps: Sequence[Experiment], labels: Sequence[str], table: pd.DataFrame) -> list[str]:
    notes = []
    if table["dataset"].nunique() > 1:
        notes.append("the experiments used different datasets: their accuracies do not compare")
    if table["selection"].nunique() > 1:
        notes.append("the experiments rank trials by different selection metrics")
    smoke = [lab for e, lab in zip(exps, labels, strict=True) if is_smoke(e.meta)]
    if smoke:
        notes.append(f"smoke studies (pipeline checks, not results): {', '.join(smoke)}")
    if (table["seeds"] < 2).any():
        one = ", ".join(table.loc[table["seeds"] < 2, "experiment"])
        notes.append(f"one seed in {one}: differences between configurations are untested")
    notes += provenance_notes([e.meta for e in exps], labels)  # code and library versions
    return notes


def build_comparison(
    experiment_dirs: Sequence[str | Path], out_dir: str | Path | None = None
) -> Path:
    """Write one report comparing `experiment_dirs` (two or more) into `out_dir` (default
    default_out) and return its index.html. Raises ReportInputError for a folder given twice,
    any unusable experiment folder (load_experiment's message) or an unusable out_dir."""
    paths = [Path(p) for p in experiment_dirs]
    if len(paths) < 2:
        raise ReportInputError("a comparison needs two or more experiment folders")
    resolved = [p.resolve() for p in paths]
    if dupes := sorted({str(p) for p in paths if resolved.count(p.resolve()) > 1}):
        raise ReportInputError(f"experiment folder(s) {dupes} given more than once")
    exps = [load_experiment(p) for p in paths]
    out = Path(out_dir) if out_dir is not None else default_out(paths)
    check_out(out, *(e.path for e in exps))
    labels = labels_of(exps)
    table = pd.DataFrame([experiment_row(lab, e) for lab, e in zip(labels, exps, strict=True)])
    figures = [main_metric_boxes([(lab, e.results) for lab, e in zip(labels, exps, strict=True)])]
    searches = [(lab, e.results) for lab, e in zip(labels, exps, strict=True) if is_search(e)]
    if searches:
        figures.append(pareto_overlay(searches))
    fresh_out(out)
    (out / PLOTLY_JS).write_text(get_plotlyjs(), encoding="utf-8")
    (out / TABLE_DIR).mkdir()
    table.to_csv(out / TABLE_DIR / TABLE, index=False)
    index = out / "index.html"
    title = f"Comparison of {len(exps)} experiments: {', '.join(labels)}"
    folders = [str(e.path) for e in exps]
    notes = _notes(exps, labels, table)
    if not searches:
        notes.append("no search among the experiments: no Pareto fronts")
    index.write_text(
        comparison_html(title, table, folders, figures, [TABLE], notes), encoding="utf-8"
    )
    return index
