"""Every story notebook runs top to bottom (short chains: ``WORKBENCH_QUICK=1``)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parents[1])}})
    client.execute()  # raises CellExecutionError, with the failing cell, on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    # Committed notebooks carry no outputs: nothing from a run is ever published by accident.
    assert all(not c.get("outputs") for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def test_there_are_notebooks_to_run():
    assert any(p.name.startswith("02_social_gradient") for p in NOTEBOOKS)
    assert any(p.name.startswith("01_system_conditions") for p in NOTEBOOKS)
    assert any(p.name.startswith("05_priors_and_sensitivity") for p in NOTEBOOKS)
    assert any(p.name.startswith("03_demand_classes") for p in NOTEBOOKS)
    assert any(p.name.startswith("04_joint_model") for p in NOTEBOOKS)
