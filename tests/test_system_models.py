"""System-conditions models (issue 6): recovery on panel-shaped simulated data with known
parameters, and missing (suppressed) cells modelled rather than dropped.

One small fit per model (30 LAs x 6 years, 2 chains x 300 draws), shared by the tests of
that model.  Simulated truths: :mod:`models.system.simulate`.

Every stochastic assertion fails with probability <= 1/1000 when the code is right (bounds in
tests/_stats.py, table in tests/README.md).  The national values are compared with what the
30 LAs drawn actually carry (the generator's ``*_sample`` truths: national value plus the
drawn LAs' mean effect), about which the posterior of the national value is conservative:
its SD also holds the uncertainty about the LAs not drawn.  So normal z bounds computed
with the national posterior SD are upper bounds on the false-failure probability.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _seeds import seed
from _stats import min_ess, corr_floor, max_block_misses, max_misses, sign_floor, z_bound, z_score
from models.sampling import SamplerSettings, fit
from models.system import conditions, data as sysdata, gradient, trends
from models.system.components import get_priors
from models.system.simulate import (simulate_conditions_panel, simulate_gradient_panel,
                                    simulate_trend_panel)

SETTINGS = SamplerSettings(draws=300, tune=300, chains=2, seed=seed(11))
PRIORS = get_priors("default")


def _q(draws, prob=0.9):
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    q = draws.quantile([lo, 0.5, hi], dim=("chain", "draw"))
    return q.isel(quantile=0).values, q.isel(quantile=1).values, q.isel(quantile=2).values


def _covers(draws, truth, prob=0.9):
    lo, _, hi = _q(draws, prob)
    return (lo <= truth) & (truth <= hi)



def _sd(draws):
    return draws.std(("chain", "draw")).values


# --------------------------------------------------------------------------------------------
# Data layer (no sampling)
# --------------------------------------------------------------------------------------------


def test_missing_counts_stay_out_of_the_cells_and_are_never_zero():
    panel, _ = simulate_trend_panel(n_la=5, years=range(2018, 2021), seed=seed(4))
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
    panel, _ = simulate_trend_panel(n_la=4, years=range(2018, 2020), seed=seed(4))
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
    panel, _ = simulate_conditions_panel(n_la=6, years=range(2016, 2020), seed=seed(5))
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
    panel, truth = simulate_trend_panel(n_la=30, years=range(2015, 2021), seed=seed(1))
    rng = np.random.default_rng(seed(7))
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
    ess = min(min_ess(post["slope"]), min_ess(post["intercept"]))
    # 3 slopes and 3 intercepts against the drawn LAs' values: each set within z_bound(3)
    # (3.6) posterior SDs, P <= 1e-3 per set (normal: 30 LAs; conservative, module docstring).
    z_slope = z_score(post["slope"], truth["slope_sample"])
    assert np.abs(z_slope).max() <= z_bound(3, ess=ess), z_slope
    z_intercept = z_score(post["intercept"], truth["intercept_sample"])
    assert np.abs(z_intercept).max() <= z_bound(3, ess=ess), z_intercept
    # LA levels: medians correlate with the true levels as closely as their posterior SDs
    # allow (corr_floor: the 1/1000 quantile for calibrated medians: 0.95 for referrals, 0.72
    # for CPP, whose three LAs without counts are predicted through the correlations; a fixed
    # 0.9 would fail CPP about 1% of the time).  A scrambled or mis-indexed LA effect gives
    # about 0, so the floor must also say something (> 0.5, set by the design, not by chance).
    _, med, _ = _q(post["la_level"])
    sd = _sd(post["la_level"])
    for j in range(len(spec.stages)):
        r, floor = np.corrcoef(med[:, j], truth["la_level"][:, j])[0, 1], corr_floor(truth["la_level"][:, j], sd[:, j])
        print(f"la_level {spec.stages[j]}: corr {r:.3f}, floor {floor:.3f}")
        assert r >= floor > 0.5, (spec.stages[j], r, floor)
    # The SD of the 30 LA levels actually drawn (not the generator's 0.3, which one sample
    # of 30 LAs estimates only to +-13%): at most one of the three 99% intervals misses it
    # (P(2 or 3 of 3 miss) = 3e-4; all three covering fails 3% of the time).
    realised = truth["la_level"].std(axis=0, ddof=1)
    missed = ~_covers(post["la_level_sd"], realised, 0.99)
    assert missed.sum() <= max_misses(3, 0.99), (realised, _q(post["la_level_sd"], 0.99))


def test_trend_model_finds_the_shift_to_late_intervention(trend_fit):
    _, _, truth, spec, _, idata, _ = trend_fit
    eff = trends.trend_effects(idata, spec)
    rel = eff["relative_trend_pct"]
    true_rel = 100 * np.expm1(truth["slope_sample"][1:] - truth["slope_sample"][0])  # about +3%, +4%
    ess = min_ess(rel)
    # Both relative trends within z_bound(2) = 3.5 posterior SDs of the drawn LAs' values.
    z_rel = z_score(rel, true_rel)
    assert np.abs(z_rel).max() <= z_bound(2, ess=ess), z_rel
    # The shift is positive with posterior probability > 0.9 where the data guarantee it:
    # sign_floor is 0.9 when the truth is >= 4.4 posterior SDs from 0 (else the lower
    # probability they do guarantee); P(fails) <= 1e-3 for the pair.
    p_pos = (rel > 0).mean(("chain", "draw")).values
    floors = [sign_floor(t, s, 0.9, n=2, ess=ess) for t, s in zip(true_rel, _sd(rel))]
    print(f"relative trends {true_rel.round(2)}, SD {_sd(rel).round(2)}, P(>0) {p_pos.round(3)}, floors {np.round(floors, 3)}")
    assert (p_pos >= floors).all(), (p_pos, floors)
    assert eff["la_relative_trend_pct"].sizes["la"] == 30


def test_suppressed_cells_are_predicted_and_their_las_kept(trend_fit):
    panel, masked, truth, spec, model, idata, gone_las = trend_fit
    assert list(model.coords["la"]) == sorted(panel["la_code"].unique())  # nobody dropped
    rates = trends.expected_rates(idata, masked, spec, model.centre_year)
    t = panel["year"].to_numpy(float) - truth["centre_year"]
    li = sysdata.index_of(panel["la_code"], model.coords["la"])
    hits, n, blocks = 0, 0, []
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
        blocks += np.bincount(li[miss]).tolist()
    # 90% intervals of the missing cells' true rates: the cells of one LA and stage lean on
    # the same LA level and trend, so each such block is counted as missing all together or
    # not at all (the worst case); P(more misses than max_block_misses) <= 1e-3.
    allowed = max_block_misses([b for b in blocks if b], 0.9)
    print(f"suppressed cells: {n - hits} of {n} 90% intervals miss; allowed {allowed}")
    assert n > 30 and n - hits <= allowed, (n, hits, allowed)
    # an LA with no CPP count at all keeps a CPP level, wider than where counts exist,
    # informed by its referrals and CLA through the LKJ correlation
    lo, _, hi = _q(idata.posterior["la_level"].sel(stage="cpp_start"))
    gone = np.isin(model.coords["la"], gone_las)
    assert np.isfinite(lo[gone]).all()
    # Widths are set by the design, not by chance: an LA without CPP counts has an interval
    # near 2 x 1.645 x the LA SD (0.3) shrunk by the correlation with its referrals and CLA;
    # the others are pinned by six years of counts.  Printed ratio: the margin over 3.
    ratio = (hi - lo)[gone].min() / np.median((hi - lo)[~gone])
    print(f"CPP level interval width, LAs without CPP counts / others: {ratio:.1f}")
    assert ratio > 3


# --------------------------------------------------------------------------------------------
# LA deprivation gradient
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gradient_fit():
    stages = ("referrals", "s47", "cpp_start", "cla_31mar")
    panel, truth = simulate_gradient_panel(n_la=30, years=range(2015, 2021), seed=seed(2), stages=stages)
    rng = np.random.default_rng(seed(3))
    panel.loc[rng.random(len(panel)) < 0.08, "s47_n"] = np.nan
    spec = gradient.LAGradientSpec(stages=stages)
    model = gradient.build_la_gradient_model(panel, spec, PRIORS)
    return panel, truth, spec, model, fit(model, SETTINGS)


def test_la_gradient_recovered_and_steepens(gradient_fit):
    panel, truth, spec, model, idata = gradient_fit
    post = idata.posterior
    ess = min_ess(post["gradient"])
    # The four stage gradients against what the 30 drawn LAs' levels carry (their OLS slope
    # on IDACI): within z_bound(4) = 3.7 posterior SDs, P <= 1e-3.
    z_gradient = z_score(post["gradient"], truth["gradient_sample"])
    assert np.abs(z_gradient).max() <= z_bound(4, ess=ess), z_gradient
    # Positive with posterior probability > 0.95 wherever the data guarantee it (sign_floor).
    p_pos = (post["gradient"] > 0).mean(("chain", "draw")).values
    floors = [sign_floor(t, sd, 0.95, n=4, ess=ess) for t, sd in zip(truth["gradient_sample"], _sd(post["gradient"]))]
    print(f"gradients {np.round(truth['gradient_sample'], 3)}, SD {_sd(post['gradient']).round(3)}, "
          f"P(>0) {p_pos.round(3)}, floors {np.round(floors, 3)}")
    assert (p_pos >= floors).all(), (p_pos, floors)
    las, scale = sysdata.la_table(panel)
    eff = gradient.gradient_effects(idata, scale, las)
    steep = eff["steepening_vs_first"].sel(stage="cla_31mar")  # truth: 0.35 vs 0.15 per SD
    # CLA steeper than referrals with probability > 0.9 where the data guarantee it: the
    # steepening is exp(CLA gradient - referral gradient), draw by draw.
    true_diff = truth["gradient_sample"][-1] - truth["gradient_sample"][0]
    floor = sign_floor(true_diff, float(np.log(steep).std()), 0.9, ess=ess)
    print(f"steepening: P(>1) {float((steep > 1).mean()):.3f}, floor {floor:.3f}")
    assert float((steep > 1).mean()) >= floor
    # LA effects: posterior medians correlate with the true ones as their SDs allow.
    _, med, _ = _q(post["la_effect"])
    r = np.corrcoef(med[:, 0], truth["la_effect"][:, 0])[0, 1]
    floor = corr_floor(truth["la_effect"][:, 0], _sd(post["la_effect"])[:, 0])
    print(f"la_effect corr {r:.3f}, floor {floor:.3f}")
    assert r >= floor > 0.5, (r, floor)
    assert len(model.coords["la"]) == 30


# --------------------------------------------------------------------------------------------
# Screen, ration, churn: the multivariate model
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conditions_fit():
    panel, truth = simulate_conditions_panel(n_la=30, years=range(2015, 2021), seed=seed(3))
    workforce = ["caseload_fte", "agency_rate_pct", "turnover_rate_pct", "vacancy_rate_pct"]
    panel.loc[panel["year"] < 2017, workforce] = np.nan  # workforce published later, like 2018+
    no_wf = panel["la_code"].unique()[:2]
    panel.loc[panel["la_code"].isin(no_wf), workforce] = np.nan  # two LAs never report
    panel.loc[np.random.default_rng(seed(5)).random(len(panel)) < 0.08, "referrals_nfa_n"] = np.nan
    spec = conditions.ConditionsSpec()
    model = conditions.build_conditions_model(panel, spec, PRIORS)
    return panel, truth, spec, model, fit(model, SETTINGS), no_wf


def _la_partials(panel, model, idata, truth):
    """What the 30 drawn LAs carry, draw by draw and in truth: the OLS coefficients of every
    LA's value on IDACI and LA demand (the generator's ``*_sample`` truths), and the
    correlation of the residual LA values (agency with vacancy), on each outcome's scale."""
    import xarray as xr

    las, _ = sysdata.la_table(sysdata.select(panel))
    _, between, _ = conditions.demand_terms(sysdata.select(panel), model.spec.demand, las)
    x = np.column_stack([np.ones(len(las)), las["idaci_z"].to_numpy(float), between.to_numpy(float)])
    proj = np.linalg.pinv(x)                                   # coefficient x LA
    post = idata.posterior
    outcomes = list(model.coords["outcome"])
    sd_out = xr.DataArray([model.scales[o]["sd"] for o in outcomes], dims="outcome", coords={"outcome": outcomes})
    z = xr.DataArray(x[:, 1], dims="la", coords={"la": list(model.coords["la"])})
    d = xr.DataArray(x[:, 2], dims="la", coords={"la": list(model.coords["la"])})
    values = (post["intercept"] + post["b_deprivation"] * z + post["b_demand_between"] * d
              + post["la_effect"]).transpose("chain", "draw", "la", "outcome").to_numpy() * sd_out.values
    coef = np.einsum("kl,cdlo->cdko", proj, values)
    resid = values - np.einsum("lk,cdko->cdlo", x, coef)
    a, v = outcomes.index("agency"), outcomes.index("vacancy")
    corr = np.array([[np.corrcoef(r[:, a], r[:, v])[0, 1] for r in chain] for chain in resid])
    true_values = x[:, 1:2] * truth["b_deprivation"] + x[:, 2:3] * truth["b_demand_between"] + truth["la_effect"]
    true_coef = proj @ true_values
    true_resid = true_values - x @ true_coef
    dims = ("chain", "draw", "outcome")
    return {"deprivation": xr.DataArray(coef[:, :, 1], dims=dims, coords={"outcome": outcomes}),
            "demand_between": xr.DataArray(coef[:, :, 2], dims=dims, coords={"outcome": outcomes}),
            "corr": xr.DataArray(corr, dims=("chain", "draw")),
            "true_deprivation": true_coef[1], "true_demand_between": true_coef[2],
            "true_corr": float(np.corrcoef(true_resid[:, a], true_resid[:, v])[0, 1])}


def test_conditions_recover_partial_relationships(conditions_fit):
    panel, truth, spec, model, idata, _ = conditions_fit
    post = idata.posterior
    # The national partial effects (10: 5 outcomes x IDACI, LA demand) against the drawn LAs'
    # values, 95% intervals: P(more than 4 of 10 miss) = 6.4e-5 for calibrated intervals, and
    # less here (module docstring).
    covered = np.concatenate([_covers(post["effect_deprivation"], truth["b_deprivation_sample"], 0.95),
                              _covers(post["effect_demand_between"], truth["b_demand_between_sample"], 0.95)])
    assert (~covered).sum() <= max_misses(10, 0.95), covered
    # What the drawn LAs carry, recovered sharply: their partial coefficients computed from the
    # posterior LA values draw by draw (posterior SD about 0.04 for NFA, where the national
    # effects have 0.2: 30 LAs pin down their own values far better than the nation's).
    part = _la_partials(panel, model, idata, truth)
    np.testing.assert_allclose(part["true_deprivation"], truth["b_deprivation_sample"], atol=1e-10)
    np.testing.assert_allclose(part["true_demand_between"], truth["b_demand_between_sample"], atol=1e-10)
    ess_part = min(min_ess(part["deprivation"]), min_ess(part["demand_between"]))
    z_part = np.concatenate([z_score(part["deprivation"], part["true_deprivation"]),
                             z_score(part["demand_between"], part["true_demand_between"])])
    assert np.abs(z_part).max() <= z_bound(10, ess=ess_part), z_part.round(2)  # P <= 1e-3 (normal, 10)
    # Signs where the drawn LAs carry a clear effect (sample truths at seed offset 0: NFA +0.30
    # and vacancy +0.22 per SD of IDACI; NFA -0.24 per SD of LA demand): posterior probability
    # of the true sign > 0.8 wherever the truth and posterior SD guarantee it (sign_floor, over
    # the 3: P <= 1e-3); with SDs near 0.04 they do for any truth beyond about 0.16.
    named = [("deprivation", "nfa"), ("deprivation", "vacancy"), ("demand_between", "nfa")]
    for term, outcome in named:
        draws, t = part[term].sel(outcome=outcome), part[f"true_{term}"][list(model.coords["outcome"]).index(outcome)]
        p_sign = float(((draws > 0) if t > 0 else (draws < 0)).mean())
        floor = sign_floor(t, float(draws.std()), 0.8, n=len(named), ess=ess_part)
        print(f"{term} {outcome}: truth {t:+.3f}, SD {float(draws.std()):.3f}, P(true sign) {p_sign:.3f}, floor {floor:.3f}")
        assert p_sign >= floor, (term, outcome, t, p_sign, floor)
    # Correlated LA effects: agency and vacancy (true correlation 0.6), the drawn LAs'
    # residual correlation within z_bound(1) = 3.3 posterior SDs on the Fisher z scale (where
    # it is near normal), and positive with probability > 0.85 where that is guaranteed.
    fz = np.arctanh(part["corr"].clip(-0.999, 0.999))
    z_corr = float(z_score(fz, np.arctanh(part["true_corr"])))
    assert abs(z_corr) <= z_bound(1, ess=min_ess(fz)), (z_corr, part["true_corr"])
    floor = sign_floor(np.arctanh(part["true_corr"]), float(fz.std()), 0.85, ess=min_ess(fz))
    p_corr = float((part["corr"] > 0).mean())
    print(f"agency-vacancy residual corr: truth {part['true_corr']:.2f}, P(>0) {p_corr:.3f}, floor {floor:.3f}")
    assert p_corr >= floor
    # The model's own LKJ correlation (a national parameter, truth 0.6): positive with
    # probability > 0.85 where its posterior SD on the Fisher z scale guarantees it.
    corr = post["la_effect_corr"].sel(outcome="agency", outcome_b="vacancy")
    fz = np.arctanh(corr.clip(-0.999, 0.999))
    floor = sign_floor(np.arctanh(truth["la_corr"][2, 4]), float(fz.std()), 0.85, ess=min_ess(fz))
    print(f"LKJ corr agency-vacancy: mean {float(corr.mean()):.2f}, P(>0) {float((corr > 0).mean()):.3f}, floor {floor:.3f}")
    assert float((corr > 0).mean()) >= floor


def test_conditions_keep_las_without_workforce_data(conditions_fit):
    panel, truth, spec, model, idata, no_wf = conditions_fit
    assert len(model.coords["la"]) == 30
    lo, _, hi = _q(idata.posterior["la_effect"].sel(outcome="agency"))
    gone = np.isin(model.coords["la"], no_wf)
    assert np.isfinite(lo[gone]).all()
    assert (hi - lo)[gone].min() > 1.5 * np.median((hi - lo)[~gone])
    # Partial relationship curves: monotone in the direction of the fitted effect (whose sign
    # the data do not fix: national NFA effect 0.30, posterior SD 0.19, so it is negative in
    # about 6% of seeds), and shares strictly inside (0, 1).
    curves = conditions.partial_relationships(idata, model.scales)
    nfa = curves["deprivation"].sel(outcome="nfa").median(("chain", "draw")).values
    direction = np.sign(float(idata.posterior["b_deprivation"].sel(outcome="nfa").median()))
    assert (direction * np.diff(nfa) > 0).all() and 0 < nfa.min() < nfa.max() < 1


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
    # seeds in these configs are only parsed (config errors), never drawn from: not shifted
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
    draws = pm.draw(effect, draws=20_000, random_seed=seed(3))
    np.testing.assert_allclose(draws[:, :4].sum(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(draws[:, 4:].sum(axis=1), 0, atol=1e-9)
    expected = np.r_[np.full(4, 0.5 * np.sqrt(1 - 1 / 4)), np.full(8, 2.0 * np.sqrt(1 - 1 / 8))]
    # 20,000 prior draws: an SD estimate's relative error is 1/sqrt(2 x 20,000) = 0.005, so 5%
    # is 10 of its SDs for each of the 12 (P ~ 1e-22).
    np.testing.assert_allclose(draws.std(axis=0), expected, rtol=0.05)


# --------------------------------------------------------------------------------------------
# Spend per child and its S251 -> RO3 series break (no sampling)
# --------------------------------------------------------------------------------------------


def _spend_panel():
    from public_data.panel import load_panel

    panel = load_panel()
    keep = sorted(panel["la_code"].unique())[:10]
    return panel[panel["la_code"].isin(keep) & panel["year"].between(2016, 2023)].reset_index(drop=True)


def test_added_shares_and_stages_enter_the_models_over_their_observed_cells():
    """Issue 22: not-in-need, repeat plans, long plans and awaiting assessment as outcomes;
    CLA starts as a stage; each on exactly the panel's observed cells (no sampling)."""
    panel = _spend_panel()
    added = ("not_in_need", "cpp_repeat", "cpp_long", "awaiting_assessment")
    model = conditions.build_conditions_model(panel, conditions.ConditionsSpec(outcomes=added),
                                              PRIORS)
    cells = model.cells["binomial"]
    for k, name in enumerate(added):
        column, _, _ = conditions.OUTCOMES[name]
        trials = panel[conditions.BINOMIAL_TRIALS[name]]
        expected = (panel[column].notna() & trials.notna() & (trials.astype(float) > 0)).sum()
        assert (cells["k"] == k).sum() == expected > 20, name
    stages = trends.TrendSpec(stages=("referrals", "cla_start"))
    counts = sysdata.count_cells(panel, sysdata.measure_columns(stages.stages))
    assert (counts["stage"] == "cla_start").sum() == panel["cla_start_n"].notna().sum() > 20


def test_spend_per_child_in_need_gets_its_own_series_offset():
    """Issue 22: spend per child in need is an outcome with the S251 -> RO3 level of its own."""
    panel = _spend_panel()
    spec = conditions.ConditionsSpec(outcomes=("nfa", "spend", "spend_cin"))
    model = conditions.build_conditions_model(panel, spec, PRIORS)
    assert model.coords["series_break"] == ("spend: RO3", "spend_cin: RO3")
    cells = model.cells["continuous"]
    assert (cells["k"] == 2).sum() == panel["spend_per_cin"].notna().sum() > 20


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
    rng = np.random.default_rng(seed(0))
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

    rng = np.random.default_rng(seed(0))
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
