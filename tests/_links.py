"""Broken links and images in an HTML page, found without a browser (helper).

Every ``href`` and ``src`` is checked: a relative path must name a file that exists relative
to the page, a ``#fragment`` an ``id`` on the page, an embedded ``data:image/png`` a PNG.
Links to the web (``http:``, ``https:``, ``mailto:``) are not followed.
"""

from __future__ import annotations

import base64
import binascii
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

PNG = b"\x89PNG\r\n\x1a\n"


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if name in ("href", "src") and value is not None:
                self.refs.append((tag, name, value))


def references(page: Path) -> tuple[list[tuple[str, str, str]], set[str]]:
    parser = _Refs()
    parser.feed(Path(page).read_text(encoding="utf-8"))
    return parser.refs, parser.ids


def broken_links(page: str | Path) -> list[str]:
    """What is broken in ``page``, one line each (empty when nothing is)."""
    page = Path(page)
    refs, ids = references(page)
    problems = []
    for tag, attr, value in refs:
        where = f"{page.name}: <{tag} {attr}=\"{value[:60]}\">"
        if not value.strip():
            problems.append(f"{where}: empty")
            continue
        if value.startswith("data:"):
            head, _, data = value.partition(",")
            if tag == "img" and head.startswith("data:image/png;base64"):
                try:
                    ok = base64.b64decode(data, validate=True)[:8] == PNG
                except (binascii.Error, ValueError):
                    ok = False
                if not ok:
                    problems.append(f"{where}: not a PNG")
            continue
        parts = urlsplit(value)
        if parts.scheme in ("http", "https", "mailto"):
            continue
        if parts.scheme or parts.netloc:
            problems.append(f"{where}: not a relative link")
            continue
        if not parts.path:
            if parts.fragment and parts.fragment not in ids and unquote(parts.fragment) not in ids:
                problems.append(f"{where}: no id {parts.fragment!r} on the page")
            continue
        target = (page.parent / unquote(parts.path)).resolve()
        if not target.is_file():
            problems.append(f"{where}: {target} does not exist")
        elif tag == "img" and target.suffix == ".png" and target.read_bytes()[:8] != PNG:
            problems.append(f"{where}: {target.name} is not a PNG")
    return problems
