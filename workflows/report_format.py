"""Small helpers to write reports as Markdown and self-contained HTML (figures embedded).

Reports are built as a list of sections (title, prose, tables, figures); the same list is
rendered twice so the Markdown and the HTML never disagree.

Every report opens the same way (:func:`lead`): the status's first sentence, the report's key
figure and a few headline sentences, before the long prose.  In tables, effective sample
sizes are whole numbers and R-hat has two decimals (:func:`display_table`), each rounded
towards failing the convergence gate (ESS down, R-hat up), so a value shown as passing
passed; the gate itself compares the unrounded values (:mod:`models.sampling`).
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, png path)


@dataclass
class Lead:
    """How a report opens: a few sentences (the status first) and its key figure."""

    summary: list[str]
    figure: tuple[str, Path] | None = None  # (caption, png path)


#: Sections whose first sentences make a report's summary, in this order.
_SUMMARY_SECTIONS = ("Status", "Headlines", "Summary")


def lead(sections: list[Section], figure: str | Path | None = None, sentences: int = 3) -> Lead:
    """The opening of a report built from its own sections: the first sentence of its
    status, then up to ``sentences`` headline sentences, and its key figure: the one whose
    file name or caption is ``figure``, else the first figure of the report."""
    summary: list[str] = []
    for name in _SUMMARY_SECTIONS:
        for s in sections:
            if s.title == name and s.paragraphs:
                summary += s.paragraphs[:1] if name == "Status" else s.paragraphs[:sentences]
    figures = [f for s in sections for f in s.figures]
    chosen = None
    if figure is not None:
        chosen = next((f for f in figures if Path(f[1]).name == str(figure) or f[0] == str(figure)), None)
    if chosen is None and figures:
        chosen = figures[0]
    return Lead(summary, chosen)


_ESS = re.compile(r"(^|_)ess(_|$)", re.IGNORECASE)
_RHAT = re.compile(r"(^|_)r_?hat($|_)", re.IGNORECASE)


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as a reader sees it: ESS columns as whole numbers (rounded down) and R-hat
    columns to two decimals (rounded up), so the rounding never makes a fit look better
    than the gate found it.  Other cells are as given; a cell that is not a number (a
    suppression marker, a blank) is left alone."""
    out = table.copy()
    for i, column in enumerate(out.columns):
        name = str(column[-1] if isinstance(column, tuple) else column)
        if _ESS.search(name):
            fmt = lambda v: f"{math.floor(v + 1e-9):d}"  # noqa: E731
        elif _RHAT.search(name):
            fmt = lambda v: f"{math.ceil(v * 100 - 1e-9) / 100:.2f}"  # noqa: E731
        else:
            continue
        out.isetitem(i, [fmt(float(v)) if _is_number(v) else v for v in out.iloc[:, i]])
    return out


def _is_number(value) -> bool:
    try:
        return math.isfinite(float(value)) and not isinstance(value, (bool, str))
    except (TypeError, ValueError):
        return False


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (index included), diagnostics as :func:`display_table`
    shows them, every other cell as given."""
    frame = display_table(table).reset_index()
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def render_markdown(title: str, sections: list[Section], root: Path, opening: Lead | None = None) -> str:
    """The report as Markdown, opening with ``opening`` (default: :func:`lead` of the
    sections); figures are linked relative to ``root``, the report's folder."""
    opening = lead(sections) if opening is None else opening
    parts = [f"# {title}", ""]
    if opening.summary:
        parts += [f"**{opening.summary[0]}**", ""]
    if opening.figure is not None:
        caption, path = opening.figure
        parts += [f"![{caption}]({Path(path).relative_to(root).as_posix()})", "", f"*{caption}*", ""]
    parts += [f"- {p}" for p in opening.summary[1:]] + ([""] if opening.summary[1:] else [])
    for s in sections:
        parts += [f"## {s.title}", ""]
        for p in s.paragraphs:
            parts += [p, ""]
        for caption, table in s.tables:
            parts += [f"**{caption}**", "", markdown_table(table), ""]
        for caption, path in s.figures:
            if _same_figure((caption, path), opening.figure):
                parts += [f"*{caption}: the figure at the top of this report.*", ""]
                continue
            parts += [f"![{caption}]({Path(path).relative_to(root).as_posix()})", "", f"*{caption}*", ""]
    return "\n".join(parts)


def _same_figure(a: tuple[str, Path], b: tuple[str, Path] | None) -> bool:
    return b is not None and a[0] == b[0] and Path(a[1]) == Path(b[1])


def _html_figure(caption: str, path: Path, anchor: str | None = None) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    ident = f' id="{anchor}"' if anchor else ""
    return (f'<figure{ident}><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_html(title: str, sections: list[Section], opening: Lead | None = None) -> str:
    """The report as one self-contained HTML page (figures embedded), opening with
    ``opening`` (default: :func:`lead` of the sections)."""
    opening = lead(sections) if opening is None else opening
    body = [f"<h1>{html.escape(title)}</h1>"]
    if opening.summary or opening.figure:
        body.append('<section class="lead">')
        if opening.summary:
            body.append(f'<p class="status">{html.escape(opening.summary[0])}</p>')
        if opening.figure is not None:
            body.append(_html_figure(*opening.figure, anchor="key-figure"))
        if opening.summary[1:]:
            body.append("<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in opening.summary[1:]) + "</ul>")
        body.append("</section>")
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        body += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
        for caption, table in s.tables:
            body.append(f"<h4>{html.escape(caption)}</h4>")
            body.append(display_table(table).to_html(border=0, classes="tbl", escape=True))
        for caption, path in s.figures:
            if _same_figure((caption, path), opening.figure):  # embedded once, at the top
                body.append(f'<p class="figref"><a href="#key-figure">{html.escape(caption)}</a>: the figure '
                            "at the top of this report.</p>")
                continue
            body.append(_html_figure(caption, path))
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
             "color:#222}table.tbl{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}"
             ".tbl td,.tbl th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:right}"
             "img{max-width:100%}figcaption{font-style:italic;color:#555}"
             ".lead{border-bottom:2px solid #ddd;margin-bottom:1.5rem;padding-bottom:.5rem}"
             ".lead .status{font-weight:600}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")
