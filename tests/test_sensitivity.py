"""Prior sensitivity: power-scaling finds what the data cannot pin down, and refits under
other prior sets move weakly identified quantities more than well identified ones."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from _seeds import seed
from models.sampling import SamplerSettings
from workflows.simulate import write_simulation
from workflows.sensitivity import write_sensitivity_report


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    data = tmp_path_factory.mktemp("tiny-sens")
    write_simulation(data, "tiny", seed=seed(3))
    out = tmp_path_factory.mktemp("sens") / "report"
    settings = SamplerSettings(draws=400, tune=400, chains=2, seed=seed(4))
    write_sensitivity_report(data / "extract.csv", out, ["default", "wide"], "population", settings,
                             stages=("referral",), log=lambda m: None)
    return out


def test_power_scaling_flags_the_la_sd_of_two_las_and_not_the_lsoa_sd(report):
    psens = pd.read_csv(report / "tables" / "power_scaling.csv", index_col=0)
    print(psens[["prior_sensitivity", "diagnosis"]].to_string())
    # Set by the design, not by chance (values over seed offsets 0-3 in tests/README.md): two
    # LAs leave the LA SD to its prior whatever the seed, 80 LSOAs with thousands of referrals
    # pin down the LSOA SD; the draws' Monte Carlo error moves these sensitivities by a few
    # hundredths at most.
    # Two LAs cannot pin down a between-LA SD: its posterior leans on the prior ...
    assert psens.loc["la_sd[referral]", "prior_sensitivity"] >= 0.05
    assert psens.loc["la_sd[referral]", "diagnosis"] != "-"
    # ... while 80 LSOAs with thousands of referrals pin down the between-LSOA SD.
    assert psens.loc["lsoa_sd[referral]", "prior_sensitivity"] < 0.05
    assert psens.loc["lsoa_sd[referral]", "diagnosis"] == "-"
    assert psens.loc["la_sd[referral]", "prior_sensitivity"] > 3 * psens.loc["lsoa_sd[referral]", "prior_sensitivity"]


def test_wider_priors_move_the_la_sd_more_than_the_gradient(report):
    grad = pd.read_csv(report / "tables" / "gradient_per_decile_by_prior_set.csv", index_col=0, header=[0, 1])
    la_sd = pd.read_csv(report / "tables" / "la_sd_by_prior_set.csv", index_col=0, header=[0, 1])
    print(f"la_sd by prior set:\n{la_sd.round(3).to_string()}\ngradient shifts:\n{grad.round(3).to_string()}")
    assert set(grad.columns.get_level_values(0)) == {"default", "wide"}
    assert (grad[("default", "shift_in_sd")] == 0).all()  # the baseline against itself
    # Two LAs leave the LA SD to its prior: four times the prior scale moves its median up
    # (0.34 -> 0.84 at seed offset 3).  Not asserted: that the gradient per decile moves less.
    # With two LAs its between-LA part is the prior's too, and at seed offset 3 it moved 2.07
    # SDs against the LA SD's 1.89 (a design property it is not).
    assert la_sd.loc["referral", ("wide", "median")] > la_sd.loc["referral", ("default", "median")]
    assert grad.loc["referral", ("wide", "shift_in_sd")] != 0  # the table compares the two fits
    manifest = json.loads((report / "manifest.json").read_text())
    assert manifest["prior_sets"] == ["default", "wide"] and set(manifest["convergence"]) == {"default", "wide"}
    assert "Power-scaling" in (report / "report.md").read_text()
