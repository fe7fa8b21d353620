"""CLI: python -m analysis <experiment folder> [--out DIR]."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analysis.errors import ReportInputError
from analysis.report import build_report

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    experiment: Annotated[Path, typer.Argument(help="experiment folder written by a study")],
    out: Annotated[
        Path | None, typer.Option("--out", help="report folder (default: <experiment>/report)")
    ] = None,
) -> None:
    """Write an interactive, offline Plotly report of a study's results."""
    try:
        index = build_report(experiment, out)
    except ReportInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    pages = sorted(p.name for p in index.parent.glob("*.html") if p.name != "index.html")
    typer.echo(f"report written: {index}")
    typer.echo(f"{len(pages)} figure pages: {', '.join(pages)}")


if __name__ == "__main__":
    app()
