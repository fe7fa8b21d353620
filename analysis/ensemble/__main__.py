"""python -m analysis.ensemble EXPERIMENT [--out DIR] [--metric nll|acc] [--max-size K]: an
ensemble assembled greedily from the study's own trials (their predictions files), its page and
tables (selection, members, comparison on the test split) in one folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from plotly.offline import get_plotlyjs

from analysis.ensemble.page import SLUG, plan_ensemble
from analysis.ensemble.selection import METRICS
from analysis.ensemble.tables import DEFAULT_MAX_SIZE, DEFAULT_METRIC
from analysis.errors import ReportInputError
from analysis.html import PLOTLY_JS, TABLE_DIR, page_html, pages_index_html
from analysis.load import load_experiment
from analysis.report import check_out, fresh_out

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def write_ensemble(
    experiment_dir: str | Path,
    out_dir: str | Path | None = None,
    metric: str = DEFAULT_METRIC,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Path:
    """`python -m analysis.ensemble`: the page, its tables and an index linking them into
    `out_dir` (default <experiment>/ensemble); returns the page's path."""
    exp = load_experiment(experiment_dir)
    out = Path(out_dir) if out_dir is not None else exp.path / SLUG
    check_out(out, exp.path)
    page, tables = plan_ensemble(exp, metric, max_size)
    fresh_out(out)
    (out / PLOTLY_JS).write_text(get_plotlyjs(), encoding="utf-8")
    (out / TABLE_DIR).mkdir()
    for name, table in tables.files().items():
        table.to_csv(out / TABLE_DIR / name, index=False)
    path = out / f"{page.slug}.html"
    path.write_text(page_html(page), encoding="utf-8")
    title = f"Ensemble: {exp.meta.get('name', exp.path.name)}"
    (out / "index.html").write_text(
        pages_index_html(title, [page], list(tables.files())), encoding="utf-8"
    )
    return path


@app.command()
def main(
    experiment: Annotated[Path, typer.Argument(help="experiment folder written by a study")],
    out: Annotated[
        Path | None, typer.Option("--out", help="output folder (default: <experiment>/ensemble)")
    ] = None,
    metric: Annotated[
        str,
        typer.Option(
            "--metric", help="validation metric the greedy selection minimises/maximises: nll, acc"
        ),
    ] = DEFAULT_METRIC,
    max_size: Annotated[
        int, typer.Option("--max-size", help="most members (picks, with repeats)")
    ] = DEFAULT_MAX_SIZE,
) -> None:
    """Greedy ensemble of a study's own trials (hyper-deep ensembles), chosen on validation."""
    try:
        if metric not in METRICS:
            raise ReportInputError(f"--metric {metric!r}: allowed {', '.join(sorted(METRICS))}")
        if max_size < 1:
            raise ReportInputError(f"--max-size {max_size}: allowed an integer >= 1")
        page = write_ensemble(experiment, out, metric, max_size)
    except ReportInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"ensemble page written: {page}")


if __name__ == "__main__":
    app()
