"""What a report is made of: its pages (a figure or several, notes, the CSV tables they show)
and the plan of them that `analysis.pages` makes for an experiment; a smoke study's note."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

from analysis.figures.style import get_notes


@dataclass
class Page:
    slug: str  # file name without .html
    title: str
    description: str
    figures: list[go.Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # CSV names (keys of Plan.tables)
    message: str | None = None  # shown instead of a figure (e.g. too few trials)
    headline: bool = False  # its first figure is drawn on the overview (index.html) too

    def all_notes(self) -> list[str]:
        notes = list(self.notes)
        for fig in self.figures:
            notes += get_notes(fig)
        return list(dict.fromkeys(notes))


@dataclass
class Plan:
    pages: list[Page] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # CSV name -> table
    skipped: list[str] = field(default_factory=list)  # applicable pages that could not be drawn


def missing(df: pd.DataFrame | None, columns: tuple[str, ...]) -> list[str]:
    return list(columns) if df is None else [c for c in columns if c not in df]


# A smoke study (study.json's `smoke`): every page and the index say what it is.
SMOKE_NOTE = (
    "This is a smoke study: a pipeline check (the small CNN, a few thousand training images, a "
    "few epochs, a reduced grid) that shows the study runs and its files and figures are "
    "complete. It learns a little, but its numbers answer none of the study's questions: run "
    "the cpu or full preset for that."
)


def is_smoke(meta: dict) -> bool:
    return bool(meta.get("smoke")) or meta.get("preset") == "smoke"
