"""Every story notebook runs top to bottom (short chains: ``WORKBENCH_QUICK=1``) and is written
as HTML with its outputs, to ``--notebooks-html DIR`` (or ``$CSC_NOTEBOOKS_HTML``; default a
temporary folder), a folder that does not depend on the run, for publishing."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from _links import broken_links
from workflows.notebooks import KERNEL_NAME, execute, notebook_paths, to_html

NOTEBOOKS = notebook_paths()


@pytest.fixture(scope="module")
def html_dir(request, tmp_path_factory) -> Path:
    given = request.config.getoption("--notebooks-html")
    folder = Path(given).expanduser() if given else tmp_path_factory.mktemp("notebooks-html")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, html_dir):
    nb = execute(path, kernel_name="python3", quick=True)  # raises CellExecutionError, with the failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    page = html_dir / f"{path.stem}.html"
    page.write_text(to_html(nb), encoding="utf-8")
    text = page.read_text(encoding="utf-8")
    assert "data:image/png;base64," in text, "no figure in the rendered notebook"
    assert broken_links(page) == []
    # Committed notebooks carry no outputs: nothing from a run is ever published by accident.
    assert all(not c.get("outputs") for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def test_there_are_notebooks_to_run():
    assert any(p.name.startswith("02_social_gradient") for p in NOTEBOOKS)
    assert any(p.name.startswith("01_system_conditions") for p in NOTEBOOKS)
    assert any(p.name.startswith("05_priors_and_sensitivity") for p in NOTEBOOKS)
    assert any(p.name.startswith("03_demand_classes") for p in NOTEBOOKS)
    assert any(p.name.startswith("04_joint_model") for p in NOTEBOOKS)


def test_notebooks_name_the_project_kernel_and_prepare_first():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["kernelspec"]["name"] == KERNEL_NAME, path.name
        first = next(c for c in nb.cells if c.cell_type == "code").source
        assert first.startswith("from workflows.runtime import prepare"), path.name
