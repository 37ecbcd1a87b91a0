"""Small helpers to write reports as Markdown and self-contained HTML (figures embedded).

Reports are built as a list of sections (title, prose, tables, figures); the same list is
rendered twice so the Markdown and the HTML never disagree.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, png path)


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (index included), every cell as given."""
    frame = table.reset_index()
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def render_markdown(title: str, sections: list[Section], root: Path) -> str:
    parts = [f"# {title}", ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        for p in s.paragraphs:
            parts += [p, ""]
        for caption, table in s.tables:
            parts += [f"**{caption}**", "", markdown_table(table), ""]
        for caption, path in s.figures:
            parts += [f"![{caption}]({Path(path).relative_to(root).as_posix()})", "", f"*{caption}*", ""]
    return "\n".join(parts)


def render_html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        body += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
        for caption, table in s.tables:
            body.append(f"<h4>{html.escape(caption)}</h4>")
            body.append(table.to_html(border=0, classes="tbl", escape=True))
        for caption, path in s.figures:
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
             "color:#222}table.tbl{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}"
             ".tbl td,.tbl th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:right}"
             "img{max-width:100%}figcaption{font-style:italic;color:#555}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")
