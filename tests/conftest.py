"""Shared fixtures: the national LSOA table and simulated systems, built once per session."""

from __future__ import annotations

from workflows import runtime

runtime.link_blas()  # before anything loads PyTensor: the suite links to a BLAS as the CLI does

import json  # noqa: E402
import os
from dataclasses import dataclass

import pandas as pd
import pytest

from _seeds import OFFSET, seed
from models.areas import add_deprivation
from public_data.tables import load_lsoa_table
from workflows.extract_io import load_extract
from workflows.simulate import write_simulation


@dataclass
class Simulated:
    """A simulated extract as the models see it, with its truth beside it."""

    episodes: pd.DataFrame      # validated, typed episodes (load_extract)
    factors: pd.DataFrame       # episode x factor booleans
    truth: dict                 # truth.json
    classes: pd.Series          # true demand class, aligned with episodes
    lsoas: list[str]            # the LSOAs simulated (a preset may sample an LA's LSOAs)

    @property
    def n(self) -> int:
        return len(self.episodes)


def pytest_addoption(parser):
    parser.addoption("--notebooks-html", default=os.environ.get("CSC_NOTEBOOKS_HTML") or None, metavar="DIR",
                     help="write the executed notebooks as HTML here (default: $CSC_NOTEBOOKS_HTML, else a "
                          "temporary folder of the test)")


@pytest.fixture(scope="session")
def national_geography():
    return add_deprivation(load_lsoa_table())


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """``simulated(preset, base)``: simulate once per session (seed ``seed(base)``, shifted by
    ``CSC_TEST_SEED_OFFSET``), then reuse."""
    cache: dict[tuple[str, int], Simulated] = {}

    def make(preset: str, base: int) -> Simulated:
        key = (preset, seed(base))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"sim-{preset}-{key[1]}")
            write_simulation(out, preset, key[1])
            extract, _ = load_extract(out / "extract.csv", load_lsoa_table(), salt=b"tests")
            truth = json.loads((out / "truth.json").read_text())
            te = pd.read_csv(out / "truth_episodes.csv").set_index("episode_id")
            classes = te.loc[extract.episodes["episode_id"], "demand_class"].reset_index(drop=True)
            effects = pd.read_csv(out / "truth_lsoa_effects.csv")
            lsoas = effects.loc[effects["in_sample"].astype(bool), "lsoa_code"].tolist()
            cache[key] = Simulated(extract.episodes, extract.factors, truth, classes, lsoas)
        return cache[key]

    return make


#: Modules whose fitted fixtures take minutes, slowest first (their times at seed offset 0-3
#: are in tests/README.md): under ``make test`` (``-n auto --dist loadscope
#: --no-loadscope-reorder``) workers take modules in this order, so the longest start at once
#: and the short ones fill in at the end, instead of a long one starting last and holding up
#: the whole run.  (xdist's own reordering, by number of tests, would put them last.)
SLOW_MODULES_FIRST = ("test_confidentiality", "test_notebooks", "test_gradient_recovery", "test_fit_report_compare",
                      "test_joint_model", "test_latent_class_recovery", "test_system_models",
                      "test_system_workflow", "test_latent_class_workflow", "test_latent_class_regression",
                      "test_latent_class_selection", "test_sbc", "test_joint_workflow", "test_sensitivity",
                      "test_gradient_workflow", "test_gradient_model")


def pytest_report_header(config):
    return (f"CSC_TEST_SEED_OFFSET={OFFSET}: every seed the tests use is shifted by {OFFSET} "
            "(tests/_seeds.py; stochastic assertions: tests/README.md)")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        return SLOW_MODULES_FIRST.index(name) if name in SLOW_MODULES_FIRST else len(SLOW_MODULES_FIRST)

    items.sort(key=rank)  # stable: the order within a module is kept
