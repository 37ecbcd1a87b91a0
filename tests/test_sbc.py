"""Simulation-based calibration: the gradient model's ranks are uniform when the data come
from its own prior, and the check fails when they do not (a generator whose LA SD prior is
four times wider than the one fitted), so a pass means something."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from models import sbc
from models.priors import SDPrior, get_prior_set
from models.sampling import SamplerSettings

SETTINGS = SamplerSettings(draws=150, tune=150, chains=2, seed=5, target_accept=0.9)
N_RANKS = 49
REPLICATES = 20


@pytest.fixture(scope="module")
def calibrated():
    return sbc.run_sbc(sbc.get_design("tiny"), "default", REPLICATES, SETTINGS, n_ranks=N_RANKS, seed=11)


@pytest.fixture(scope="module")
def miscalibrated():
    wider = replace(get_prior_set("default"), name="la-sd-x4", la_sd=SDPrior("halfnormal", 2.0))
    return sbc.run_sbc(sbc.get_design("tiny"), "default", REPLICATES, SETTINGS, generator_prior=wider,
                       n_ranks=N_RANKS, seed=11)


def test_ranks_of_a_correct_model_are_uniform(calibrated):
    table = calibrated.uniformity
    assert set(table.index) == {f"{v}[referral]" for v in
                                ("intercept", "within_effect", "contextual_effect", "la_sd", "la_slope_sd", "lsoa_sd")}
    assert calibrated.ranks.shape == (REPLICATES, 6)
    assert calibrated.ranks.to_numpy().min() >= 0 and calibrated.ranks.to_numpy().max() <= N_RANKS
    # Well inside what chance allows for 20 replicates ...
    assert (table["p_value"] > 0.001).all(), table
    assert table["outside_band"].sum() <= 1, table
    assert table["mean_rank"].between(0.3, 0.7).all(), table
    # ... and the fits behind them were real fits (short chains, so R-hat only roughly 1).
    assert calibrated.diagnostics["max_r_hat"].median() < 1.1
    assert (calibrated.diagnostics["divergences"] == 0).mean() >= 0.5


def test_a_prior_mismatch_is_detected(miscalibrated, calibrated):
    row = miscalibrated.uniformity.loc["la_sd[referral]"]
    # True LA SDs drawn from a prior four times wider sit above the fitted posteriors.
    assert not row["calibrated"] and row["outside_band"] and row["p_value"] < 0.001
    assert row["mean_rank"] > 0.65
    assert row["mean_rank"] > calibrated.uniformity.loc["la_sd[referral]", "mean_rank"] + 0.1


def test_rank_statistic_and_uniformity_on_known_inputs():
    rng = np.random.default_rng(0)
    draws = np.arange(10.0)
    assert sbc.rank_of(-1.0, draws, rng) == 0 and sbc.rank_of(100.0, draws, rng) == 10
    assert sbc.rank_of(4.5, draws, rng) == 5
    assert sbc.rank_of(4.0, draws, rng) in (4, 5)  # a tie goes either way
    uniform = pd.DataFrame({"ok": rng.integers(0, 50, 400), "skewed": rng.integers(35, 50, 400)})
    table = sbc.uniformity(uniform, 49)
    assert table.loc["ok", "calibrated"] and not table.loc["skewed", "calibrated"]
    assert table.loc["skewed", "outside_band"] and table.loc["skewed", "mean_rank"] > 0.8
    assert abs(table.loc["ok", "sd_rank"] - 0.289) < 0.03


def test_design_and_errors():
    cells = sbc.design_cells(sbc.get_design("small"))
    assert len(cells) == 6 * 8 * 2 * 2
    assert set(cells["stage"].astype(str)) == {"referral", "cpp"}
    with pytest.raises(KeyError, match="unknown SBC preset 'huge'; choose one of tiny, small"):
        sbc.get_design("huge")
    with pytest.raises(ValueError, match="at least 2 replicates"):
        sbc.run_sbc(sbc.get_design("tiny"), "default", 1, SETTINGS)


def test_sbc_workflow_writes_report_and_reuses_an_unchanged_run(tmp_path, calibrated):
    import json

    from workflows.sbc import SBCRun, write_sbc_report

    config = SBCRun(preset="tiny", replicates=4, draws=150, tune=150, chains=2, n_ranks=N_RANKS, seed=5)
    out = tmp_path / "sbc"
    messages = []
    write_sbc_report(out, config, n_workers=1, progress=False, log=messages.append)
    for name in ("report.md", "report.html", "manifest.json", "tables/uniformity.csv", "tables/uniformity.md",
                 "tables/ranks.csv", "tables/replicates.csv"):
        assert (out / name).is_file(), name
    assert (out / "figures" / "rank_ecdf.png").stat().st_size > 10_000
    ranks = pd.read_csv(out / "tables" / "ranks.csv", index_col=0)
    assert ranks.shape == (4, 6) and ranks.to_numpy().max() <= N_RANKS
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["replicates"] == 4 and manifest["seed"] == 5
    report = (out / "report.md").read_text()
    assert "## Status" in report and ("calibrated" in report.lower())
    stamp = (out / "report.html").stat().st_mtime_ns
    write_sbc_report(out, config, n_workers=1, progress=False, log=messages.append)
    assert any("unchanged" in m for m in messages)
    assert (out / "report.html").stat().st_mtime_ns == stamp
