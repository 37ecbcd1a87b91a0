"""Derived quantities: each checked against its closed form on a hand-made posterior.

The hand-made posterior is random (seeded through tests/_seeds.py); the assertions that
depend on its draws hold but for negligible probability (noted beside them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from _seeds import seed as shifted_seed
from models.gradient import effects
from models.gradient.model import GradientSpec

STAGES = ["referral", "cpp", "lac"]
LAS = ["E1", "E2", "E3"]


def _posterior(seed=0, chains=2, draws=300) -> xr.Dataset:
    rng = np.random.default_rng(shifted_seed(seed))
    sample = {"chain": np.arange(chains), "draw": np.arange(draws)}

    def var(loc, scale, extra=None):
        extra = extra or {}
        dims = ["chain", "draw", *extra]
        shape = [chains, draws, *[len(v) for v in extra.values()]]
        return xr.DataArray(rng.normal(loc, scale, shape), dims=dims, coords={**sample, **extra})

    # Effects 8-17 SDs from zero, so that every draw has the sign the closed-form checks below
    # assume (a contextual SD of 0.02, 4 SDs, put a positive draw among the 1,800 about 2% of
    # the time): P(any draw of either has the other sign) < 1e-11.
    within = var(np.array([0.17, 0.26, 0.30]), 0.01, {"stage": STAGES})
    contextual = var(np.array([-0.08, -0.10, -0.12]), 0.01, {"stage": STAGES})
    return xr.Dataset({
        "intercept": var(np.log(np.array([500, 40, 50]) / 1e4), 0.02, {"stage": STAGES}),
        "within_effect": within,
        "contextual_effect": contextual,
        "between_effect": within + contextual,
        "la_effect": var(0.0, 0.2, {"la": LAS, "stage": STAGES}),
        "la_slope": var(0.0, 0.03, {"la": LAS, "stage": STAGES}),
    })


SCALE = effects.DeprivationScale(national_centre=5.0, within_sd=2.0, la_p25=-1.0, la_p75=1.5)
POP = GradientSpec(scale="population", la_slopes=True)


def test_gradient_per_decile_and_per_sd():
    post = _posterior()
    per_decile = effects.gradient(post, POP)
    np.testing.assert_allclose(per_decile, np.exp(post["within_effect"]))
    per_sd = effects.gradient(post, POP, per="sd", scale=SCALE)
    np.testing.assert_allclose(per_sd, per_decile ** SCALE.within_sd)
    assert "rate ratio per decile step" in per_decile.attrs["measure"]
    with pytest.raises(ValueError, match="needs the DeprivationScale"):
        effects.gradient(post, POP, per="sd")


def test_rates_by_decile_follow_the_log_linear_gradient():
    post = _posterior()
    rates = effects.rate_by_decile(post, POP, SCALE)
    assert set(rates.dims) == {"chain", "draw", "stage", "decile"}
    # decile 1 (most deprived) is 9 decile steps above decile 10
    ratio = effects.extreme_decile_ratio(post, POP, SCALE)
    np.testing.assert_allclose(ratio, np.exp(9 * post["within_effect"]), rtol=1e-10)
    # In a typical LA at the national centre, decile midpoint 10.5 - d:
    d5 = rates.sel(decile=5)
    expected = np.exp(post["intercept"] + post["within_effect"] * (5.5 - 5.0)) * 1e4
    np.testing.assert_allclose(d5.transpose(*expected.dims), expected, rtol=1e-10)
    # Rates fall from the most to the least deprived decile when the gradient is positive.
    assert (rates.diff("decile") < 0).all()


def test_transition_scale_gives_probabilities():
    post = _posterior()
    spec = GradientSpec(scale="transition")
    probs = effects.rate_by_decile(post, spec, SCALE)
    assert float(probs.min()) > 0 and float(probs.max()) < 1
    odds = probs / (1 - probs)
    np.testing.assert_allclose(odds.sel(decile=1) / odds.sel(decile=2), np.exp(post["within_effect"]), rtol=1e-8)


def test_inverse_intervention_contrast_is_the_contextual_effect_over_the_la_quartiles():
    post = _posterior()
    contrast = effects.inverse_intervention(post, POP, SCALE)
    np.testing.assert_allclose(contrast, np.exp(post["contextual_effect"] * (-2.5)))
    assert (contrast > 1).all()  # negative contextual effect: less deprived LAs intervene more
    # The same number from predictions: one neighbourhood, two LAs.
    dep = 6.0
    low = effects.predict(post, POP, dep, SCALE.la_p25, scale=SCALE)
    high = effects.predict(post, POP, dep, SCALE.la_p75, scale=SCALE)
    np.testing.assert_allclose(low / high, contrast, rtol=1e-10)


def test_la_gradients_and_stage_changes():
    post = _posterior()
    la = effects.la_gradients(post, POP)
    np.testing.assert_allclose(la, np.exp(post["within_effect"] + post["la_slope"]))
    change = effects.gradient_change(post, POP)
    assert list(change["stage"].values) == ["cpp", "lac"]
    np.testing.assert_allclose(change.sel(stage="lac"),
                               np.exp(post["within_effect"].sel(stage="lac") - post["within_effect"].sel(stage="cpp")))
    assert change.attrs["previous_stage"] == {"cpp": "referral", "lac": "cpp"}
    # An LA's own prediction uses its own intercept and slope.
    own = effects.predict(post, POP, 7.0, 0.5, la="E2", scale=SCALE)
    eta = (post["intercept"] + post["la_effect"].sel(la="E2") + (post["within_effect"] + post["la_slope"].sel(la="E2"))
           * (7.0 - 5.5) + post["between_effect"] * 0.5)
    np.testing.assert_allclose(own, np.exp(eta) * 1e4, rtol=1e-10)


def test_covariate_levels_shift_level_and_gradient():
    post = _posterior()
    post["age_group_effect"] = xr.DataArray(np.zeros((2, 300, 2, 3)), dims=("chain", "draw", "age_group", "stage"),
                                            coords={"age_group": ["10_15", "under_1"], "stage": STAGES})
    post["age_group_effect"].loc[{"age_group": "under_1"}] = 0.5
    post["age_group_gradient_shift"] = post["age_group_effect"] * 0.1
    spec = GradientSpec(scale="population", covariates=("age_group",))
    base = effects.rate_by_decile(post, spec, SCALE)
    infants = effects.rate_by_decile(post, spec, SCALE, levels={"age_group": "under_1"})
    ratio = infants / base
    np.testing.assert_allclose(ratio.sel(decile=10), np.exp(0.5 + 0.05 * (0.5 - 5.0)), rtol=1e-10)
    by_age = effects.covariate_gradients(post, spec, "age_group")
    np.testing.assert_allclose(by_age.sel(age_group="under_1"), np.exp(post["within_effect"] + 0.05))
    with pytest.raises(ValueError, match="not in the model"):
        effects.rate_by_decile(post, spec, SCALE, levels={"gender": "female"})
    with pytest.raises(ValueError, match="no level 'teen'"):
        effects.rate_by_decile(post, spec, SCALE, levels={"age_group": "teen"})


def test_summary_has_interval_and_diagnostics_per_label():
    post = _posterior(draws=1000)
    table = effects.summarise(effects.gradient(post, POP), prob=0.9)
    assert list(table.index) == STAGES
    assert {"mean", "median", "lower", "upper", "r_hat", "ess_bulk", "ess_tail"} <= set(table.columns)
    assert (table["lower"] < table["median"]).all() and (table["median"] < table["upper"]).all()
    # 2 x 1000 independent draws: bulk ESS near 2000, so R-hat >= 1.02 needs (R-hat - 1) x ESS
    # >= 40 (P < 1e-20, tests/_stats.py RHAT_ESS_TAIL) and ESS <= 300 is out of reach.  At
    # 2 x 300 draws this check failed about 1 time in 1,000.
    assert table["r_hat"].max() < 1.02 and table["ess_bulk"].min() > 300  # independent draws
    # The truth is the centre of the draws (SD 0.01 on the log scale): inside the 90% interval
    # unless Monte Carlo error moves a 5% quantile by 1.6 SDs, P ~ 0.
    truth = np.exp([0.17, 0.26, 0.30])
    assert ((table["lower"] < truth) & (truth < table["upper"])).all()
    # A stuck chain must show in R-hat.
    bad = post.copy()
    bad["within_effect"] = bad["within_effect"] + xr.DataArray([0.0, 0.2], dims="chain")
    assert effects.summarise(effects.gradient(bad, POP))["r_hat"].min() > 1.1


def test_deprivation_scale_from_the_national_table(national_geography):
    scale = effects.DeprivationScale.from_geography(national_geography)
    assert 4.0 < scale.national_centre < 6.5           # children live in more deprived places
    assert 1.5 < scale.within_sd < 3.0                   # deciles spread widely inside an LA
    assert scale.la_p25 < 0 < scale.la_p75
    assert 1.0 < scale.la_p75 - scale.la_p25 < 4.0
    assert isinstance(national_geography, pd.DataFrame)
