"""HTML of the report pages: one page per figure set, and the index. No network: plotly.js
is referenced as the local file PLOTLY_JS next to the pages."""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd
import plotly.io as pio

from analysis.pages import Page

PLOTLY_JS = "plotly.min.js"
TABLE_DIR = "tables"
CONFIG = {"displaylogo": False, "responsive": True}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1250px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
nav a, li a { color: #1f5fa8; }
.notes { background: #fff8e6; border-left: 4px solid #e0a800; padding: .6rem 1rem .6rem 2rem; }
.message { background: #f3f3f3; border-left: 4px solid #888; padding: .8rem 1rem; }
.figure { margin: 1rem 0 2rem; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .2rem .6rem; }
.desc { color: #555; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _doc(title: str, body: str, plotly: bool) -> str:
    script = f'<script charset="utf-8" src="{PLOTLY_JS}"></script>\n' if plotly else ""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n{script}</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return f'<ul class="notes">{items}</ul>\n'


def _table_links(tables: Sequence[str]) -> str:
    if not tables:
        return ""
    links = ", ".join(f'<a href="{TABLE_DIR}/{_e(t)}">{_e(t)}</a>' for t in tables)
    return f"<p>Data (CSV): {links}</p>\n"


def page_html(page: Page) -> str:
    """A figure page: back link, title, notes, the interactive figures, CSV links."""
    parts = [
        '<nav><a href="index.html">&larr; report index</a></nav>',
        f"<h1>{_e(page.title)}</h1>",
        f'<p class="desc">{_e(page.description)}</p>',
        _notes(page.all_notes()),
    ]
    if page.message:
        parts.append(f'<p class="message">{_e(page.message)}</p>')
    for k, fig in enumerate(page.figures):
        div = pio.to_html(
            fig,
            include_plotlyjs=False,
            include_mathjax=False,
            full_html=False,
            config=CONFIG,
            div_id=f"{page.slug}-{k}",
        )
        parts.append(f'<div class="figure">{div}</div>')
    parts.append(_table_links(page.tables))
    return _doc(page.title, "\n".join(parts), plotly=bool(page.figures))


def index_html(
    title: str,
    facts: dict[str, object],
    outcomes: dict[str, int],
    pages: Sequence[Page],
    tables: Sequence[str],
    notes: Sequence[str],
) -> str:
    """The index: study facts, trial outcomes, links to every page and table, notes."""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts.items())
    out_rows = "".join(f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in outcomes.items())
    items = []
    for p in pages:
        n = len(p.all_notes())
        flag = f" <small>({n} note{'s' if n != 1 else ''})</small>" if n else ""
        items.append(
            f'<li><a href="{_e(p.slug)}.html">{_e(p.title)}</a>{flag}<br>'
            f'<span class="desc">{_e(p.description)}</span></li>'
        )
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<table>{rows}</table>",
        "<h2>Trials by outcome</h2>",
        f"<table><tr><th>outcome</th><th>trials</th></tr>{out_rows}</table>",
        "<h2>Figures</h2>",
        f"<ul>{''.join(items)}</ul>" if items else "<p>No figure applies to this study.</p>",
        "<h2>Tables</h2>",
        _table_links(tables),
    ]
    if notes:
        body += ["<h2>Notes</h2>", _notes(notes)]
    return _doc(title, "\n".join(body), plotly=False)


def facts_of(meta: dict[str, object], results: pd.DataFrame, study: str | None) -> dict:
    """Key facts for the index table."""
    facts: dict[str, object] = {"study": study or "unknown (figures chosen from the columns)"}
    for key in ("name", "dataset", "preset", "smoke"):
        if key in meta:
            facts[key] = meta[key]
    facts["trials"] = len(results)
    if "seed" in results:
        facts["seeds"] = results["seed"].nunique()
    return facts
