"""The ``system`` verb end to end on the committed LA panel (issue 6): the report, its
tables and figures, the manifest, NOT FOR CITATION marking, and reuse of an unchanged run.

Small on purpose (10 LAs x 2018-2023, 2 chains x 100 draws): the fits fail the convergence
gate, which is what the marking tests need; the real-panel fits at the shipped settings
are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from _seeds import seed
from models.suppression import SuppressionRule
from public_data.panel import PANEL_DIR, PANEL_FILE
from workflows.errors import UserError
from workflows.run_cache import NOT_FOR_CITATION
from workflows.system import SystemRun, write_system_report

PANEL = PANEL_DIR / PANEL_FILE
RUN = SystemRun(draws=100, tune=100, chains=2, seed=seed(3), first_year=2018, last_year=2023, max_las=10,
                outcomes=("nfa", "spend", "caseload", "agency"))
RULE = SuppressionRule(10, "c")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("system") / "out"
    lines = []
    write_system_report(PANEL, out, RUN, RULE, log=lines.append)
    return out, lines


def test_report_has_every_model_with_its_tables_and_figures(report_dir):
    out, lines = report_dir
    report = (out / "report.md").read_text(encoding="utf-8")
    for name in ("trends", "conditions", "gradient"):
        assert f"## Model: {name}" in report
        assert (out / f"posterior_{name}.nc").stat().st_size > 0
    assert (out / "report.html").exists()
    for figure in ("trends_rates.png", "conditions_partial_deprivation.png", "gradient_by_idaci.png"):
        assert (out / "figures" / figure).stat().st_size > 1000
        assert f"figures/{figure}" in report
    table = pd.read_csv(out / "tables" / "gradient_ratio_p90_vs_p10.csv", index_col=0)
    assert list(table.index) == list(RUN.gradient_stages)
    assert ((table["lower"] <= table["median"]) & (table["median"] <= table["upper"])).all()
    assert (table["median"] > 0).all()
    steep = pd.read_csv(out / "tables" / "gradient_steepening_vs_first.csv", index_col=0)
    assert list(steep.index) == list(RUN.gradient_stages[1:])   # no trivial reference row
    assert steep["P(steeper)"].between(0, 1).all()
    offset = pd.read_csv(out / "tables" / "conditions_series_break_ratio.csv", index_col=0)
    assert len(offset) == 1 and offset["lower"].iloc[0] > 0
    assert "Children looked after at 31 March per child" in report   # not "31 march"
    assert "(diag mass matrix)" in report and "10 LAs" in " ".join(lines)


def test_a_fit_that_fails_the_gate_is_marked_in_report_tables_and_manifest(report_dir):
    out, _ = report_dir
    manifest = json.loads((out / "manifest.json").read_text())
    failed = [name for name, gate in manifest["convergence"].items() if not gate["passed"]]
    # 2 x 100 draws of three models with hundreds of quantities cannot pass the reporting gate
    # (ESS >= 400, R-hat <= 1.01 everywhere): P(all pass) is negligible.
    assert failed, "2 chains x 100 draws should not pass the gate"
    report = (out / "report.md").read_text(encoding="utf-8")
    assert NOT_FOR_CITATION in report
    for name in failed:
        tables = list((out / "tables").glob(f"{name}_*.csv"))
        assert tables and all(NOT_FOR_CITATION in t.read_text() for t in tables)
    assert manifest["config"]["draws"] == 100 and manifest["seed"] == seed(3)
    assert len(manifest["inputs"]["panel"]["sha256"]) == 64


def test_an_unchanged_run_is_reused_and_a_changed_one_refitted(report_dir, tmp_path):
    out, _ = report_dir
    before = (out / "manifest.json").read_text()
    lines = []
    write_system_report(PANEL, out, RUN, RULE, log=lines.append)
    assert any("reusing" in line for line in lines)
    assert (out / "manifest.json").read_text() == before


def test_a_missing_panel_is_named(tmp_path):
    with pytest.raises(UserError, match="nowhere.csv not found"):
        write_system_report(tmp_path / "nowhere.csv", tmp_path / "out", RUN, RULE)
    assert not (tmp_path / "out").exists()


def test_micro_authorities_are_left_out_by_default_and_kept_on_request():
    """Issue 22: City of London and the Isles of Scilly (0%/100% workforce rates) are not in
    the system models unless the config says ``include_micro_authorities = true``."""
    from models.system.data import MICRO_AUTHORITIES
    from public_data.panel import load_panel
    from workflows.system import load_system_config, prepare_panel

    panel = load_panel(PANEL)
    micro = set(MICRO_AUTHORITIES)
    assert micro <= set(panel["la_code"])
    shipped = SystemRun.from_config(load_system_config("system")["system"], "system.toml")
    assert shipped.include_micro_authorities is False
    default = prepare_panel(panel, SystemRun())
    assert not default["la_code"].isin(micro).any()
    assert default["la_code"].nunique() == panel["la_code"].nunique() - 2
    kept = prepare_panel(panel, SystemRun(include_micro_authorities=True))
    assert micro <= set(kept["la_code"]) and kept["la_code"].nunique() == panel["la_code"].nunique()
    # an explicit exclude still applies when they are kept
    one = prepare_panel(panel, SystemRun(include_micro_authorities=True, exclude=("E06000053",)))
    assert set(one["la_code"]) & micro == {"E09000001"}
    with pytest.raises(UserError, match="include_micro_authorities 'yes'"):
        SystemRun.from_config({"include_micro_authorities": "yes"}, "system.toml")


def test_national_figures_carry_a_note_where_las_are_missing():
    """Issue 22: a sum over LAs is not England where LAs are suppressed; the report says where
    (referrals 2024: Hampshire and Herefordshire), and says nothing is missing when so."""
    from models.system.data import missing_units
    from public_data.panel import load_panel
    from workflows.system import national_note

    panel = load_panel(PANEL)
    gaps = missing_units(panel, {"referrals": "referrals_n"}).set_index("year")
    assert {"Hampshire", "Herefordshire, County of"} <= set(gaps.loc[2024, "las"].split("; "))
    assert 2025 not in gaps.index  # every LA reports referrals in 2025
    note = national_note(panel, {"referrals": "referrals_n"}, shown=100)
    assert "referrals 2024: 2 of 150 LAs" in note and "england_totals.csv" in note
    full = panel[panel["year"].eq(2025)]
    assert "are England totals" in national_note(full, {"referrals": "referrals_n"})
