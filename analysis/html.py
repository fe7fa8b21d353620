"""HTML of the report pages: one page per figure set, and the index (the overview). No network:
plotly.js is referenced as the local file PLOTLY_JS next to the pages."""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from analysis.definitions import DEFINITIONS, better
from analysis.overview import Overview
from analysis.plan import Page
from analysis.provenance import provenance_facts
from analysis.schema import metric_label

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
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
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


def _figure_div(fig: go.Figure, div_id: str) -> str:
    div = pio.to_html(
        fig,
        include_plotlyjs=False,
        include_mathjax=False,
        full_html=False,
        config=CONFIG,
        div_id=div_id,
    )
    return f'<div class="figure">{div}</div>'


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
        parts.append(_figure_div(fig, f"{page.slug}-{k}"))
    parts.append(_table_links(page.tables))
    return _doc(page.title, "\n".join(parts), plotly=bool(page.figures))


def mean_sd(mean: float, sd: float) -> str:
    """'0.712 ± 0.010'; '0.712' when the sd is unknown (one trial); '–' without a mean."""
    if pd.isna(mean):
        return "–"
    return f"{mean:.3f}" if pd.isna(sd) else f"{mean:.3f} ± {sd:.3f}"


def _arrow(column: str) -> str:
    return {"higher is better": " ↑", "lower is better": " ↓"}.get(better(column) or "", "")


def best_table_html(ov: Overview) -> str:
    """The best configurations: rank, swept values, n, selection metric and test metrics."""
    best = ov.best
    if best.empty:
        return "<p>No configuration ranked.</p>"
    metrics = [c.removesuffix("_mean") for c in best.columns if c.endswith("_mean")]
    head = "<tr><th>rank</th><th>configuration</th><th>n</th>"
    for m in metrics:
        role = " (selection)" if m == ov.selection.column else ""
        head += f"<th>{_e(metric_label(m))}{role}{_arrow(m)}</th>"
    rows = []
    for _, r in best.iterrows():
        n = f"{int(r[f'{ov.selection.column}_n'])} of {int(r['n_trials'])}"
        cells = "".join(
            f'<td class="num">{mean_sd(r[f"{m}_mean"], r[f"{m}_sd"])}</td>' for m in metrics
        )
        rows.append(
            f'<tr><td class="num">{int(r["rank"])}</td><td>{_e(r["configuration"])}</td>'
            f'<td class="num">{n}</td>{cells}</tr>'
        )
    return f'<table class="best">{head}</tr>{"".join(rows)}</table>'


def definitions_html() -> str:
    """One sentence per metric (analysis.definitions) and which way is better."""
    rows = "".join(
        f"<tr><th>{_e(d.name)}</th><td>{_e(d.meaning)}</td><td>{_e(d.better)}</td></tr>"
        for d in DEFINITIONS.values()
    )
    head = "<tr><th>metric</th><th>meaning</th><th>better</th></tr>"
    return f'<table class="definitions">{head}{rows}</table>'


def _errors_html(errors: pd.DataFrame) -> str:
    if errors.empty:
        return ""
    rows = "".join(
        f'<tr><td><code>{_e(m)}</code></td><td class="num">{int(k)}</td></tr>'
        for m, k in zip(errors["error"], errors["trials"], strict=True)
    )
    return (
        "<h3>Errors of the errored trials</h3>"
        f'<table class="errors"><tr><th>error</th><th>trials</th></tr>{rows}</table>'
    )


def _links(pages: Sequence[Page]) -> str:
    items = []
    for p in pages:
        n = len(p.all_notes())
        flag = f" <small>({n} note{'s' if n != 1 else ''})</small>" if n else ""
        items.append(
            f'<li><a href="{_e(p.slug)}.html">{_e(p.title)}</a>{flag}<br>'
            f'<span class="desc">{_e(p.description)}</span></li>'
        )
    return f"<ul>{''.join(items)}</ul>" if items else "<p>No figure applies to this study.</p>"


def pages_index_html(title: str, pages: Sequence[Page], tables: Sequence[str]) -> str:
    """A short index of some pages and their tables (a folder without the full report)."""
    body = [f"<h1>{_e(title)}</h1>", _links(pages), "<h2>Tables</h2>", _table_links(tables)]
    return _doc(title, "\n".join(body), plotly=False)


def index_html(
    title: str,
    facts: dict[str, object],
    outcomes: dict[str, int],
    overview: Overview,
    pages: Sequence[Page],
    tables: Sequence[str],
    notes: Sequence[str],
) -> str:
    """The overview: study facts, the headline figures, the best configurations (mean ± sd
    over seeds, ranked by the selection metric), trial outcomes and errors, what each metric
    means; then links to every page and table, and notes."""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts.items())
    out_rows = "".join(
        f'<tr><td>{_e(k)}</td><td class="num">{v}</td></tr>' for k, v in outcomes.items()
    )
    sel = overview.selection
    direction = "highest" if sel.maximise else "lowest"
    shown = len(overview.best)
    body = [f"<h1>{_e(title)}</h1>", f"<table>{rows}</table>"]
    if overview.caveats:
        body.append(_notes(overview.caveats))
    headlines = [p for p in pages if p.headline and p.figures]
    if headlines:
        body.append("<h2>Headline figures</h2>")
        for p in headlines:
            body.append(_figure_div(p.figures[0], f"overview-{p.slug}"))
            body.append(f'<p>More: <a href="{_e(p.slug)}.html">{_e(p.title)}</a></p>')
    body += [
        "<h2>Best configurations</h2>",
        f'<p class="desc">top {shown} of {overview.ranked} configurations by the mean '
        f"{_e(metric_label(sel.column))} over seeds ({direction} first; the selection metric: "
        "the test metrics beside it are never used to rank); mean ± sd over the usable trials, "
        "n of the configuration's trials.</p>",
        best_table_html(overview),
        "<h2>Trials by outcome</h2>",
        f"<table><tr><th>outcome</th><th>trials</th></tr>{out_rows}</table>",
        _errors_html(overview.errors),
        "<h2>What the metrics mean</h2>",
        definitions_html(),
        "<h2>Figures</h2>",
        _links(pages),
        "<h2>Tables</h2>",
        _table_links(tables),
    ]
    if notes:
        body += ["<h2>Notes</h2>", _notes(notes)]
    return _doc(title, "\n".join(body), plotly=bool(headlines))


def comparison_html(
    title: str,
    table: pd.DataFrame,
    folders: Sequence[str],
    figures: Sequence[go.Figure],
    tables: Sequence[str],
    notes: Sequence[str],
) -> str:
    """The index of a comparison (analysis.compare): one row per experiment, the figures."""
    head = (
        "<tr><th>experiment</th><th>study</th><th>trials (usable)</th><th>seeds</th>"
        "<th>best configuration (by selection)</th><th>its selection mean</th>"
        "<th>its val-selected test accuracy ↑</th><th>val-selected test accuracy, all "
        "usable trials ↑</th></tr>"
    )
    rows = []
    for _, r in table.iterrows():
        best_n = f" (n={int(r['best_n'])})" if r["best_n"] else ""
        rows.append(
            f"<tr><td>{_e(r['experiment'])}</td><td>{_e(r['study'])}</td>"
            f'<td class="num">{int(r["trials"])} ({int(r["usable"])})</td>'
            f'<td class="num">{int(r["seeds"])}</td><td>{_e(r["best_configuration"])}</td>'
            f'<td class="num">{mean_sd(r["best_selection_mean"], float("nan"))}</td>'
            f'<td class="num">{mean_sd(r["best_test_mean"], r["best_test_sd"])}{best_n}</td>'
            f'<td class="num">{mean_sd(r["test_mean"], r["test_sd"])}</td></tr>'
        )
    where = "".join(f"<li><code>{_e(f)}</code></li>" for f in folders)
    body = [
        f"<h1>{_e(title)}</h1>",
        _notes(notes),
        f'<table class="experiments">{head}{"".join(rows)}</table>',
        '<p class="desc">mean ± sd; the best configuration is the one whose mean selection '
        "metric (validation) is highest, and its test accuracy is read at each trial's best "
        "validation epoch: nothing here is selected on the test set.</p>",
    ]
    body += [_figure_div(fig, f"compare-{k}") for k, fig in enumerate(figures)]
    body += [
        "<h2>Experiments</h2>",
        f"<ul>{where}</ul>",
        '<p class="desc">each has its own report: <code>python -m analysis &lt;folder&gt;</code>'
        "</p>",
        "<h2>Tables</h2>",
        _table_links(tables),
    ]
    return _doc(title, "\n".join(body), plotly=bool(figures))


def facts_of(meta: dict[str, object], results: pd.DataFrame, study: str | None) -> dict:
    """Key facts for the index table: the study, its trials and seeds, and what produced it
    (analysis.provenance)."""
    facts: dict[str, object] = {"study": study or "unknown (figures chosen from the columns)"}
    for key in ("name", "dataset", "preset", "smoke"):
        if key in meta:
            facts[key] = meta[key]
    facts["trials"] = len(results)
    if "seed" in results:
        facts["seeds"] = results["seed"].nunique()
    facts.update(provenance_facts(meta, results))  # what produced it ("not recorded": older)
    return facts
