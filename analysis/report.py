"""build_report: write the report folder (index.html, one page per figure, plotly.min.js once,
CSV tables) for an experiment folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from plotly.offline import get_plotlyjs

from analysis.ensemble.page import add_ensemble_page
from analysis.errors import ReportInputError
from analysis.html import PLOTLY_JS, TABLE_DIR, facts_of, index_html, page_html
from analysis.load import load_experiment
from analysis.overview import overview_of
from analysis.pages import outcome_counts, plan_report
from analysis.plan import SMOKE_NOTE, is_smoke
from analysis.tidy import OUTCOME_TEXT, varying_columns

MARKER = ".analysis-report"  # marks a folder this module wrote (and may replace)


def check_out(out: Path, *experiments: Path) -> None:
    """Refuse an output folder that is, or contains, an experiment folder, or that exists
    with files not written by this module."""
    out_r = out.resolve()
    if any(out_r == e.resolve() or out_r in e.resolve().parents for e in experiments):
        raise ReportInputError(
            f"output folder {str(out)!r} is (or contains) the experiment folder; "
            "choose a folder inside or beside it, e.g. the default <experiment>/report"
        )
    if out.exists():
        if not out.is_dir():
            raise ReportInputError(f"output path {str(out)!r} exists and is not a folder")
        if not (out / MARKER).is_file() and any(out.iterdir()):
            raise ReportInputError(
                f"output folder {str(out)!r} exists and was not written by analysis "
                f"(no {MARKER} file); refusing to overwrite it: choose another --out"
            )


def fresh_out(out: Path) -> None:
    """Empty report folder with its marker (an earlier report is removed as a whole)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by `python -m analysis`; replaced on the next run\n")


def build_report(experiment_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the report of `experiment_dir` into `out_dir` (default <experiment_dir>/report)
    and return the path of its index.html. Raises ReportInputError (one message naming what
    is missing) for a missing / empty folder, missing columns or an unusable out_dir. Only
    the report folder is written; it is replaced only if an earlier report wrote it."""
    exp = load_experiment(experiment_dir)
    out = Path(out_dir) if out_dir is not None else exp.path / "report"
    check_out(out, exp.path)
    plan = plan_report(exp)  # every figure built before anything is written
    add_ensemble_page(plan, exp)  # when the trials kept predictions
    overview = overview_of(exp.results, varying_columns(exp.results), exp.meta)
    if not overview.best.empty:
        plan.tables["best_configurations.csv"] = overview.best
    fresh_out(out)
    (out / PLOTLY_JS).write_text(get_plotlyjs(), encoding="utf-8")
    (out / TABLE_DIR).mkdir()
    for name, table in plan.tables.items():
        table.to_csv(out / TABLE_DIR / name, index=False)
    for page in plan.pages:
        (out / f"{page.slug}.html").write_text(page_html(page), encoding="utf-8")
    notes = list(exp.notes) + [f"not drawn: {s}" for s in plan.skipped]
    if is_smoke(exp.meta):
        notes.insert(0, SMOKE_NOTE)
    outcomes = {OUTCOME_TEXT[k]: v for k, v in outcome_counts(exp.results).items()}
    title = f"Report: {exp.meta.get('name', exp.path.name)}"
    if is_smoke(exp.meta):
        title += " (smoke study: a pipeline check)"
    index = out / "index.html"
    index.write_text(
        index_html(
            title,
            facts_of(exp.meta, exp.results, exp.study),
            outcomes,
            overview,
            plan.pages,
            list(plan.tables),
            notes,
        ),
        encoding="utf-8",
    )
    return index
