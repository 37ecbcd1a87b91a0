"""``python -m workflows notebooks [NAME ...] --out DIR``: the story notebooks, executed top to
bottom on synthetic (and public) data, written as HTML pages with their outputs and figures.

The committed notebooks carry no outputs (nothing from a run is published by accident), so a
reader browsing the repository sees no figure; this writes what they show.  Each notebook runs
in a fresh kernel from the repository root, with short chains (``WORKBENCH_QUICK=1``) unless
``--full``; the executed copy is kept in memory and never written back to ``notebooks/``.
``tests/test_notebooks.py`` executes and renders them the same way.  Output: ``<notebook>.html``
for each, an ``index.html`` linking them, and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import time
from pathlib import Path
from typing import Iterator

from workflows import atomic, paths, provenance
from workflows.errors import UserError

NOTEBOOK_DIR = paths.REPO_ROOT / "notebooks"
#: The kernel the notebooks name (``make lab`` registers it); execution defaults to the
#: interpreter's own "python3" kernel, which needs no registration.
KERNEL_NAME = "csc-workbench"


def notebook_paths(names: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """The story notebooks (``notebooks/NN_*.ipynb``), or those whose file name starts with
    one of ``names`` (``02``, ``02_social_gradient``)."""
    found = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return found
    chosen = [p for p in found if any(p.name.startswith(n) for n in names)]
    missing = [n for n in names if not any(p.name.startswith(n) for p in found)]
    if missing:
        raise UserError(f"no notebook {', '.join(missing)} in {NOTEBOOK_DIR}; there are "
                        + ", ".join(p.stem for p in found))
    return chosen


@contextlib.contextmanager
def _kernel_environment(quick: bool) -> Iterator[None]:
    """The kernel inherits this process's environment: short chains, no display."""
    wanted = {"MPLBACKEND": "Agg", **({"WORKBENCH_QUICK": "1"} if quick else {})}
    saved = {k: os.environ.get(k) for k in (*wanted, "WORKBENCH_QUICK")}
    os.environ.update(wanted)
    if not quick:
        os.environ.pop("WORKBENCH_QUICK", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute(path: Path, kernel_name: str = "python3", quick: bool = True, timeout: int = 900):
    """``path`` executed top to bottom in a fresh kernel (cwd: the repository root); the
    executed notebook (an ``nbformat`` node), never written back.  Raises nbclient's
    ``CellExecutionError``, naming the failing cell, on any error."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(paths.REPO_ROOT)}})
    with _kernel_environment(quick):
        client.execute()
    return nb


def to_html(nb) -> str:
    """An executed notebook as one HTML page (nbconvert's ``HTMLExporter``, JupyterLab's
    look); figures are embedded, so the page stands alone."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body


def index_html(title: str, entries: list[tuple[str, str]]) -> str:
    """A page of links: ``entries`` are (relative href, text)."""
    items = "".join(f'<li><a href="{html.escape(href)}">{html.escape(text)}</a></li>' for href, text in entries)
    style = "body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;color:#222}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><ul>{items}</ul></body></html>\n")


def write_notebooks_html(out: Path, names: list[str] | tuple[str, ...] = (), quick: bool = True,
                         kernel_name: str = "python3", log=print) -> Path:
    """Execute the chosen notebooks and write each as ``out/<stem>.html``, with an
    ``index.html`` and a manifest; the folder is moved into place whole."""
    chosen = notebook_paths(names)
    started = time.perf_counter()
    with atomic.atomic_dir(out) as tmp:
        entries, seconds = [], {}
        for i, path in enumerate(chosen, 1):
            log(f"[{i}/{len(chosen)}] {path.name} ...")
            t0 = time.perf_counter()
            (tmp / f"{path.stem}.html").write_text(to_html(execute(path, kernel_name, quick)), encoding="utf-8")
            seconds[path.name] = round(time.perf_counter() - t0, 1)
            entries.append((f"{path.stem}.html", path.stem.replace("_", " ")))
        mode = "short chains (WORKBENCH_QUICK=1)" if quick else "full-length chains"
        (tmp / "index.html").write_text(index_html(f"Story notebooks, executed ({mode})", entries), encoding="utf-8")
        man = provenance.manifest("notebooks", quick=quick, kernel=kernel_name, notebook_seconds=seconds,
                                  seconds=round(time.perf_counter() - started, 1))
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=str) + "\n")
    return Path(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="notebooks to run, by number or name (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/notebooks)")
    parser.add_argument("--full", action="store_true", help="full-length chains (default: short, WORKBENCH_QUICK=1)")
    parser.add_argument("--kernel", default="python3",
                        help=f"Jupyter kernel to run them in (default: python3; `make lab` registers {KERNEL_NAME})")


def run(args: argparse.Namespace) -> int:
    out = atomic.output_dir(args.out, paths.RESULTS_DIR / "notebooks")
    notebook_paths(args.names)  # an unknown name fails before any work
    write_notebooks_html(out, args.names, quick=not args.full, kernel_name=args.kernel,
                         log=lambda m: print(m, flush=True))
    print(f"notebooks: {out / 'index.html'}")
    return 0
