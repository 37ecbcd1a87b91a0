"""System-conditions models (issue 6): recovery on panel-shaped simulated data with known
parameters, and missing (suppressed) cells modelled rather than dropped.

One small fit per model (30 LAs x 6 years, 2 chains x 300 draws), shared by the tests of
that model.  Simulated truths: :mod:`models.system.simulate`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.sampling import SamplerSettings, fit
from models.system import conditions, data as sysdata, gradient, trends
from models.system.components import get_priors
from models.system.simulate import (simulate_conditions_panel, simulate_gradient_panel,
                                    simulate_trend_panel)

SETTINGS = SamplerSettings(draws=300, tune=300, chains=2, seed=11)
PRIORS = get_priors("default")


def _q(draws, prob=0.9):
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    q = draws.quantile([lo, 0.5, hi], dim=("chain", "draw"))
    return q.isel(quantile=0).values, q.isel(quantile=1).values, q.isel(quantile=2).values


def _covers(draws, truth, prob=0.9):
    lo, _, hi = _q(draws, prob)
    return (lo <= truth) & (truth <= hi)


# --------------------------------------------------------------------------------------------
# Data layer (no sampling)
# --------------------------------------------------------------------------------------------


def test_missing_counts_stay_out_of_the_cells_and_are_never_zero():
    panel, _ = simulate_trend_panel(n_la=5, years=range(2018, 2021), seed=4)
    panel.loc[[0, 4], "cpp_start_n"] = np.nan
    cells = sysdata.count_cells(panel, {"referrals": "referrals_n", "cpp_start": "cpp_start_n"})
    assert len(cells) == 2 * len(panel) - 2
    cpp = cells[cells["stage"] == "cpp_start"]
    assert not ((cpp["la_code"] == panel.at[0, "la_code"]) & (cpp["year"] == panel.at[0, "year"])).any()
    assert (cells["count"] > 0).all()  # no missing cell turned into a zero
    cov = sysdata.coverage(panel, {"cpp_start": "cpp_start_n"})
    assert cov.loc["cpp_start", "missing"] == 2 and cov.loc["cpp_start", "observed"] == len(panel) - 2


def test_transforms_round_trip_and_clip_workforce_extremes():
    pct = pd.Series([0.0, 12.5, 50.0, 100.0])
    back = sysdata.back_transform(sysdata.transform(pct, "logit_pct"), "logit_pct")
    assert np.allclose(back, [0.5, 12.5, 50.0, 99.5])
    assert np.isnan(sysdata.transform(pd.Series([0.0]), "log")).all()


def test_bad_inputs_are_named():
    panel, _ = simulate_trend_panel(n_la=4, years=range(2018, 2020), seed=4)
    with pytest.raises(ValueError, match="cla_31mar_n"):
        sysdata.count_cells(panel.drop(columns="cla_31mar_n"), {"cla": "cla_31mar_n"})
    with pytest.raises(ValueError, match="unknown measure"):
        trends.TrendSpec(stages=("referrals", "plans"))
    with pytest.raises(ValueError, match="unknown outcome"):
        conditions.ConditionsSpec(outcomes=("nfa", "morale"))
    no_idaci = panel.assign(idaci_2019=np.where(panel["la_code"] == panel["la_code"].iloc[0], np.nan, 0.2))
    with pytest.raises(ValueError, match="idaci_2019 is missing"):
        sysdata.la_table(no_idaci)


def test_likelihood_covers_exactly_the_observed_cells():
    panel, _ = simulate_conditions_panel(n_la=6, years=range(2016, 2020), seed=5)
    panel.loc[panel["year"] < 2018, ["caseload_fte", "agency_rate_pct", "turnover_rate_pct",
                                     "vacancy_rate_pct"]] = np.nan
    panel.loc[3, "referrals_nfa_n"] = np.nan
    model = conditions.build_conditions_model(panel, conditions.ConditionsSpec(), PRIORS)
    observed_cont = panel[["caseload_fte", "agency_rate_pct", "turnover_rate_pct", "vacancy_rate_pct"]].notna().sum().sum()
    assert len(model.coords["obs_continuous"]) == observed_cont
    assert len(model.coords["obs_binomial"]) == panel["referrals_nfa_n"].notna().sum()
    assert len(model.coords["la"]) == 6  # no LA dropped
    # year effects exist only where an outcome has data (workforce 2018-2019 here)
    assert "caseload 2016" not in model.coords["outcome_year"] and "caseload 2018" in model.coords["outcome_year"]
    assert "nfa 2016" in model.coords["outcome_year"]


# --------------------------------------------------------------------------------------------
# Trend model: recovery, the late-intervention shift, suppressed cells
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trend_fit():
    panel, truth = simulate_trend_panel(n_la=30, years=range(2015, 2021), seed=1)
    rng = np.random.default_rng(7)
    masked = panel.copy()
    # "suppressed" cells: every CPP count of three LAs, and 10% of all other count cells
    gone_las = masked["la_code"].unique()[:3]
    full_gap = masked["la_code"].isin(gone_las)
    masked.loc[full_gap, "cpp_start_n"] = np.nan
    scatter = pd.DataFrame(rng.random((len(masked), 3)) < 0.10,
                           columns=["referrals_n", "cpp_start_n", "cla_31mar_n"])
    for col in scatter:
        masked.loc[scatter[col].to_numpy(), col] = np.nan
    spec = trends.TrendSpec()
    model = trends.build_trend_model(masked, spec, PRIORS)
    idata = fit(model, SETTINGS)
    return panel, masked, truth, spec, model, idata, gone_las


def test_trend_model_recovers_national_trends_and_la_effects(trend_fit):
    panel, masked, truth, spec, model, idata, _ = trend_fit
    post = idata.posterior
    assert _covers(post["slope"], truth["slope_sample"]).all()
    assert _covers(post["intercept"], truth["intercept_sample"], 0.95).all()
    _, med, _ = _q(post["la_level"])
    for j in range(len(spec.stages)):
        assert np.corrcoef(med[:, j], truth["la_level"][:, j])[0, 1] > 0.9
    # The SD of the 30 LA levels actually drawn (not the generator's 0.3, which one sample
    # of 30 LAs estimates only to +-13%): every 99% interval covers it (a calibrated model
    # fails this about 3% of the time; 95% for all three failed 14% of the time).
    realised = truth["la_level"].std(axis=0, ddof=1)
    assert _covers(post["la_level_sd"], realised, 0.99).all(), (realised, _q(post["la_level_sd"], 0.99))


def test_trend_model_finds_the_shift_to_late_intervention(trend_fit):
    _, _, truth, spec, _, idata, _ = trend_fit
    eff = trends.trend_effects(idata, spec)
    rel = eff["relative_trend_pct"]
    true_rel = 100 * np.expm1(truth["slope_sample"][1:] - truth["slope_sample"][0])  # about +3%, +4%
    assert _covers(rel, true_rel).all()
    assert ((rel > 0).mean(("chain", "draw")).values > 0.9).all()
    assert eff["la_relative_trend_pct"].sizes["la"] == 30


def test_suppressed_cells_are_predicted_and_their_las_kept(trend_fit):
    panel, masked, truth, spec, model, idata, gone_las = trend_fit
    assert list(model.coords["la"]) == sorted(panel["la_code"].unique())  # nobody dropped
    rates = trends.expected_rates(idata, masked, spec, model.centre_year)
    t = panel["year"].to_numpy(float) - truth["centre_year"]
    li = sysdata.index_of(panel["la_code"], model.coords["la"])
    hits, n = 0, 0
    for j, stage in enumerate(spec.stages):
        col = sysdata.MEASURES[stage][0]
        miss = masked[col].isna().to_numpy()
        true_rate = np.exp(truth["intercept"][j] + truth["slope"][j] * t + truth["la_level"][li, j]
                           + truth["la_trend"][li, j] * t)
        draws = rates.sel(stage=stage).values  # chain, draw, la, year
        years = list(model.coords["year"])
        for r in np.flatnonzero(miss):
            d = draws[:, :, li[r], years.index(int(panel.at[r, "year"]))].ravel()
            lo, hi = np.quantile(d, [0.05, 0.95])
            hits += lo <= true_rate[r] <= hi
            n += 1
    assert n > 30 and hits / n >= 0.8
    # an LA with no CPP count at all keeps a CPP level, wider than where counts exist,
    # informed by its referrals and CLA through the LKJ correlation
    lo, _, hi = _q(idata.posterior["la_level"].sel(stage="cpp_start"))
    gone = np.isin(model.coords["la"], gone_las)
    assert np.isfinite(lo[gone]).all()
    assert (hi - lo)[gone].min() > 3 * np.median((hi - lo)[~gone])


# --------------------------------------------------------------------------------------------
# LA deprivation gradient
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gradient_fit():
    stages = ("referrals", "s47", "cpp_start", "cla_31mar")
    panel, truth = simulate_gradient_panel(n_la=30, years=range(2015, 2021), seed=2, stages=stages)
    rng = np.random.default_rng(3)
    panel.loc[rng.random(len(panel)) < 0.08, "s47_n"] = np.nan
    spec = gradient.LAGradientSpec(stages=stages)
    model = gradient.build_la_gradient_model(panel, spec, PRIORS)
    return panel, truth, spec, model, fit(model, SETTINGS)


def test_la_gradient_recovered_and_steepens(gradient_fit):
    panel, truth, spec, model, idata = gradient_fit
    post = idata.posterior
    assert _covers(post["gradient"], truth["gradient_sample"]).all()
    assert ((post["gradient"] > 0).mean(("chain", "draw")).values > 0.95).all()
    las, scale = sysdata.la_table(panel)
    eff = gradient.gradient_effects(idata, scale, las)
    steep = eff["steepening_vs_first"].sel(stage="cla_31mar")
    assert float((steep > 1).mean()) > 0.9  # truth: 0.35 vs 0.15 per SD
    _, med, _ = _q(post["la_effect"])
    assert np.corrcoef(med[:, 0], truth["la_effect"][:, 0])[0, 1] > 0.85
    assert len(model.coords["la"]) == 30


# --------------------------------------------------------------------------------------------
# Screen, ration, churn: the multivariate model
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conditions_fit():
    panel, truth = simulate_conditions_panel(n_la=30, years=range(2015, 2021), seed=3)
    workforce = ["caseload_fte", "agency_rate_pct", "turnover_rate_pct", "vacancy_rate_pct"]
    panel.loc[panel["year"] < 2017, workforce] = np.nan  # workforce published later, like 2018+
    no_wf = panel["la_code"].unique()[:2]
    panel.loc[panel["la_code"].isin(no_wf), workforce] = np.nan  # two LAs never report
    panel.loc[np.random.default_rng(5).random(len(panel)) < 0.08, "referrals_nfa_n"] = np.nan
    spec = conditions.ConditionsSpec()
    model = conditions.build_conditions_model(panel, spec, PRIORS)
    return panel, truth, spec, model, fit(model, SETTINGS), no_wf


def test_conditions_recover_partial_relationships(conditions_fit):
    panel, truth, spec, model, idata, _ = conditions_fit
    post = idata.posterior
    covered = np.concatenate([_covers(post["effect_deprivation"], truth["b_deprivation_sample"], 0.95),
                              _covers(post["effect_demand_between"], truth["b_demand_between_sample"], 0.95)])
    assert covered.mean() >= 0.9
    # signs where the drawn LAs carry a clear effect (sample truths: NFA +0.30 and vacancy
    # +0.22 per SD of IDACI; NFA -0.24 per SD of LA demand)
    p_pos = (post["effect_deprivation"] > 0).mean(("chain", "draw"))
    assert float(p_pos.sel(outcome="nfa")) > 0.8 and float(p_pos.sel(outcome="vacancy")) > 0.8
    assert float((post["effect_demand_between"].sel(outcome="nfa") < 0).mean()) > 0.8
    # correlated LA effects: agency and vacancy (true correlation 0.6)
    corr = post["la_effect_corr"].sel(outcome="agency", outcome_b="vacancy")
    assert float((corr > 0).mean()) > 0.85


def test_conditions_keep_las_without_workforce_data(conditions_fit):
    panel, truth, spec, model, idata, no_wf = conditions_fit
    assert len(model.coords["la"]) == 30
    lo, _, hi = _q(idata.posterior["la_effect"].sel(outcome="agency"))
    gone = np.isin(model.coords["la"], no_wf)
    assert np.isfinite(lo[gone]).all()
    assert (hi - lo)[gone].min() > 1.5 * np.median((hi - lo)[~gone])
    curves = conditions.partial_relationships(idata, model.scales)
    nfa = curves["deprivation"].sel(outcome="nfa").median(("chain", "draw")).values
    assert (np.diff(nfa) > 0).all() and 0 < nfa.min() < nfa.max() < 1


# --------------------------------------------------------------------------------------------
# The workflow's config (no fitting)
# --------------------------------------------------------------------------------------------


def test_system_config_loads_and_mistakes_are_named(tmp_path):
    from workflows.errors import UserError
    from workflows.system import SystemRun, load_system_config

    config = load_system_config("system")
    run = SystemRun.from_config(config["system"], config["_path"])
    assert run.models == ("trends", "conditions", "gradient") and config["report"]["suppression_threshold"] == 10
    bad = tmp_path / "bad.toml"
    bad.write_text('[system]\ndraws = 100\noutcome = ["nfa"]\n', encoding="utf-8")
    with pytest.raises(UserError, match="system.outcome"):
        load_system_config(bad)
    bad.write_text('[system]\noutcomes = ["nfa", "morale"]\n', encoding="utf-8")
    with pytest.raises(UserError, match="morale"):
        SystemRun.from_config(load_system_config(bad)["system"], str(bad))
    bad.write_text('[data]\npreset = "tiny"\nseed = 1\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"unknown section \[data\]"):
        load_system_config(bad)
    assert run.settings().mass_matrix == "low_rank"   # the shipped config
    bad.write_text('[system]\nsampler = "pymc"\nmass_matrix = "low_rank"\n', encoding="utf-8")
    with pytest.raises(UserError, match="low_rank.*needs the nutpie sampler"):
        SystemRun.from_config(load_system_config(bad)["system"], str(bad))
    bad.write_text('[system]\nmass_matrix = "dense"\n', encoding="utf-8")
    with pytest.raises(UserError, match="unknown mass_matrix 'dense'"):
        SystemRun.from_config(load_system_config(bad)["system"], str(bad))


@pytest.mark.parametrize("centred", [True, False])
def test_year_effects_have_the_same_prior_centred_or_not(centred):
    """The centred and non-centred year effects are one prior written two ways: each
    outcome's effects sum to zero over its own years, with SD sd x sqrt(1 - 1/n_years)."""
    import pymc as pm

    from models.system.components import grouped_year_effects

    pair_outcome = np.array([0] * 4 + [1] * 8)
    with pm.Model(coords={"pair": np.arange(12)}):
        sd = np.array([0.5, 2.0])
        effect = grouped_year_effects("year_effect", pair_outcome, 2, sd, "pair", centred=centred)
    draws = pm.draw(effect, draws=20_000, random_seed=3)
    np.testing.assert_allclose(draws[:, :4].sum(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(draws[:, 4:].sum(axis=1), 0, atol=1e-9)
    expected = np.r_[np.full(4, 0.5 * np.sqrt(1 - 1 / 4)), np.full(8, 2.0 * np.sqrt(1 - 1 / 8))]
    np.testing.assert_allclose(draws.std(axis=0), expected, rtol=0.05)


# --------------------------------------------------------------------------------------------
# Spend per child and its S251 -> RO3 series break (no sampling)
# --------------------------------------------------------------------------------------------


def _spend_panel():
    from workflows.build_panel import load_panel

    panel = load_panel()
    keep = sorted(panel["la_code"].unique())[:10]
    return panel[panel["la_code"].isin(keep) & panel["year"].between(2016, 2023)].reset_index(drop=True)


def test_conditions_model_builds_with_spend_and_a_series_break_offset():
    panel = _spend_panel()
    spec = conditions.ConditionsSpec(outcomes=("nfa", "spend", "caseload"))
    model = conditions.build_conditions_model(panel, spec, PRIORS)
    assert model.coords["series_break"] == ("spend: RO3",)
    assert "series_offset" in model.named_vars and "series_offset" in conditions.GATE_VARS
    cells = model.cells["continuous"]
    spend_rows = cells.loc[cells["k"].eq(1), "row"].to_numpy(int)
    assert len(spend_rows) == panel["spend_per_child"].notna().sum()  # missing 2022 left out

    # the offset moves exactly the RO3 spend cells: logp changes with it, and the year
    # effects of spend sum to zero within each series (so the offset is the level shift)
    point = model.initial_point()
    rng = np.random.default_rng(0)
    point = {k: rng.normal(0, 0.3, np.shape(v)) for k, v in point.items()}
    logp = model.compile_logp()
    moved = dict(point, series_offset=point["series_offset"] + 0.5)
    assert logp(moved) != pytest.approx(logp(point))
    import pymc as pm

    needed = {v.name for v in pm.inputvars(model["year_effect"])}
    year_effect = model.compile_fn(model["year_effect"])({k: point[k] for k in needed})
    labels = list(model.coords["outcome_year"])
    s251 = [year_effect[labels.index(f"spend {y}")] for y in range(2016, 2020)]
    ro3 = [year_effect[labels.index(f"spend {y}")] for y in (2020, 2021, 2023)]
    assert "spend 2022" not in labels
    assert abs(sum(s251)) < 1e-9 and abs(sum(ro3)) < 1e-9 and max(map(abs, s251 + ro3)) > 1e-3

    # one series only (years to 2019): no offset; a year that mixes series is named
    early = conditions.build_conditions_model(panel[panel["year"] <= 2019], spec, PRIORS)
    assert "series_offset" not in early.named_vars
    mixed = panel.copy()
    mixed.loc[mixed["year"].eq(2021) & mixed["spend_per_child"].notna(), "spend_series"] = "S251"
    mixed.loc[mixed.index[mixed["year"].eq(2021)][0], "spend_series"] = "RO3"
    with pytest.raises(ValueError, match="mixes series"):
        conditions.build_conditions_model(mixed, spec, PRIORS)


def test_series_break_ratio_is_reported_when_the_model_has_one():
    import arviz as az
    import xarray as xr

    rng = np.random.default_rng(0)
    outcomes = ["nfa_share", "spend"]

    def draws(*dims, **coords):
        shape = (2, 50) + tuple(len(v) for v in coords.values())
        return xr.DataArray(rng.normal(0.1, 0.02, shape), dims=("chain", "draw", *dims), coords=coords)

    post = {f"effect_{n}": draws("outcome", outcome=outcomes)
            for n in ("deprivation", "demand_between", "demand_within")}
    without = conditions.coefficient_ratios(az.InferenceData(posterior=xr.Dataset(post)))
    assert "series_break_ratio" not in without
    post["effect_series_offset"] = draws("series_break", series_break=["spend: RO3"])
    ratios = conditions.coefficient_ratios(az.InferenceData(posterior=xr.Dataset(post)))
    np.testing.assert_allclose(ratios["series_break_ratio"].values, np.exp(post["effect_series_offset"].values))
    np.testing.assert_allclose(ratios["deprivation_per_sd"].values, np.exp(post["effect_deprivation"].values))


def test_low_rank_mass_matrix_reaches_nutpie(monkeypatch):
    """``mass_matrix = "low_rank"`` is passed to nutpie as its low-rank modified mass
    matrix; "diag" passes nothing extra (the sampler's default)."""
    import pymc as pm

    from models import sampling

    seen = []

    def fake_sample(**kwargs):
        seen.append(kwargs)
        raise RuntimeError("stop")

    monkeypatch.setattr(sampling.pm, "sample", fake_sample)
    with pm.Model() as model:
        pm.Normal("x")
    for mass_matrix in ("low_rank", "diag"):
        with pytest.raises(RuntimeError, match="stop"):
            fit(model, SamplerSettings(draws=10, tune=10, chains=1, mass_matrix=mass_matrix))
    assert seen[0]["nuts_sampler"] == "nutpie"
    assert seen[0]["nuts_sampler_kwargs"] == {"low_rank_modified_mass_matrix": True}
    assert "nuts_sampler_kwargs" not in seen[1]
