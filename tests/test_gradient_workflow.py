"""``workflows gradient``: the report, its honesty about convergence, caching, suppression and
confidentiality, on the tiny preset with short chains."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from _seeds import seed
from _confidential import assert_no_episode_values

from models.suppression import SuppressionRule
from workflows.errors import UserError
from workflows.gradient import NOT_FOR_CITATION, GradientRun, write_gradient_report
from workflows.simulate import write_simulation

SHORT = GradientRun(draws=100, tune=150, chains=2, seed=seed(3))


@pytest.fixture(scope="module")
def tiny_extract(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-gradient")
    write_simulation(out, "tiny", seed=seed(4))
    return out / "extract.csv"


@pytest.fixture(scope="module")
def report(tiny_extract, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "gradient"
    messages = []
    write_gradient_report(tiny_extract, out, SHORT, SuppressionRule(50), log=messages.append)
    return out, messages


def test_report_has_headlines_tables_figures_and_posterior(report):
    out, _ = report
    md = (out / "report.md").read_text()
    assert "times as likely to be placed on a child protection plan" in md
    assert re.search(r"95% CrI \d+\.\d-\d+\.\d", md)
    for scale in ("population", "transition"):
        for name in ("gradient_per_decile", "decile1_vs_decile10", "inverse_intervention", "la_gradients",
                     "predictive_check"):
            assert (out / "tables" / f"{scale}_{name}.csv").exists(), (scale, name)
        assert (out / f"posterior_{scale}.nc").exists()
        assert (out / "figures" / f"{scale}_by_decile.png").stat().st_size > 10_000
    table = pd.read_csv(out / "tables" / "population_gradient_per_decile.csv", index_col=0)
    assert list(table.index) == ["referral", "assessment", "s47", "icpc", "cpp", "lac"]
    assert (table["lower"] < table["upper"]).all() and {"r_hat", "ess_bulk", "ess_tail"} <= set(table.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["draws"] == 100 and manifest["seed"] == seed(3)
    assert set(manifest["convergence"]) == {"population", "transition"}
    assert "sha256" in manifest["inputs"]["extract"] and "/" not in manifest["inputs"]["extract"]["path"]


def test_short_chains_are_marked_not_for_citation(report):
    out, messages = report
    manifest = json.loads((out / "manifest.json").read_text())
    # 2 x 100 draws cannot pass the reporting gate (bulk ESS >= 400 and R-hat <= 1.01 for every
    # quantity; with ESS near 200, one quantity's R-hat exceeds 1.01 about 40% of the time):
    # P(passes) is negligible, so this never fails by chance.
    assert not manifest["convergence"]["population"]["passed"]
    assert NOT_FOR_CITATION in (out / "report.md").read_text().split("## Headlines")[0]
    table = pd.read_csv(out / "tables" / "population_inverse_intervention.csv")
    assert (table["status"] == NOT_FOR_CITATION).all()
    assert any(NOT_FOR_CITATION in m for m in messages)


def test_small_observed_counts_are_suppressed(report):
    out, _ = report
    check = pd.read_csv(out / "tables" / "population_predictive_check.csv")
    # threshold 50 on the tiny preset: its later stages by decile are tens of children, for
    # any seed (the design, not chance)
    assert check["observed_suppressed"].any()
    assert check.loc[check["observed_suppressed"], "observed"].isna().all()
    assert check.loc[~check["observed_suppressed"], "observed"].notna().all()
    assert "| c |" in (out / "report.md").read_text()


def test_no_episode_level_value_reaches_any_output(report, tiny_extract):
    out, _ = report
    assert_no_episode_values(out, tiny_extract)
    import arviz as az

    for scale in ("population", "transition"):
        idata = az.from_netcdf(out / f"posterior_{scale}.nc")
        assert not any("lsoa" in d for d in idata.posterior.dims)


def test_an_unchanged_run_is_not_refitted(report, tiny_extract):
    out, _ = report
    before = (out / "report.html").stat().st_mtime_ns
    messages = []
    write_gradient_report(tiny_extract, out, SHORT, SuppressionRule(50), log=messages.append)
    assert any("unchanged" in m for m in messages)
    assert (out / "report.html").stat().st_mtime_ns == before


def test_config_errors_name_the_key_and_the_choices():
    with pytest.raises(UserError, match=r"demo.toml: \[gradient\] unknown prior set 'flat'; choose one of default"):
        GradientRun.from_config({"prior": "flat"}, "demo.toml")
    with pytest.raises(UserError, match=r"scales \['rates'\]"):
        GradientRun.from_config({"scales": ["rates"]}, "demo.toml")
    with pytest.raises(UserError, match="sampler 'stan'"):
        GradientRun.from_config({"sampler": "stan"}, "demo.toml")
    assert GradientRun.from_config({"scales": ["population"]}, "x").scales == ("population",)
