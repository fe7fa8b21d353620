"""CLI: python -m analysis <experiment folder> [--out DIR] (one study's report), or
python -m analysis A B ... [--out DIR] (one report comparing the experiments)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analysis.compare import build_comparison
from analysis.errors import ReportInputError
from analysis.report import build_report

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    experiments: Annotated[
        list[Path],
        typer.Argument(help="experiment folder(s) written by a study; several: a comparison"),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="report folder (default: <experiment>/report for one folder, "
            "./reports/compare-<names> for several)",
        ),
    ] = None,
) -> None:
    """Write an interactive, offline Plotly report of a study's results, or of several."""
    try:
        if len(experiments) == 1:
            index = build_report(experiments[0], out)
        else:
            index = build_comparison(experiments, out)
    except ReportInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if len(experiments) > 1:
        typer.echo(f"comparison of {len(experiments)} experiments written: {index}")
        return
    pages = sorted(p.name for p in index.parent.glob("*.html") if p.name != "index.html")
    typer.echo(f"report written: {index}")
    typer.echo(f"{len(pages)} figure pages: {', '.join(pages)}")


if __name__ == "__main__":
    app()
