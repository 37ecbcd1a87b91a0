"""Parameter recovery on the simulator's six-la system: credible intervals cover the true
gradient, contextual effect and SDs at every stage, and the signs are right.

How coverage is asserted: 25 quantities (5 stages x 5 parameters) each inside its 90%
interval would happen only 7% of the time for a perfectly calibrated model, so "all 90%
intervals cover" is not a test one can pass honestly.  Instead: every true value lies in
its 99% interval (a biased or mis-wired parameter fails this), and the share covered by
90% intervals is what calibration allows (at most 6 misses in 25: P = 0.99 for a
calibrated model, while a model whose intervals are half as wide as they should be misses
about 10).

Two fits, one per outcome scale:

- population: referrals per LSOA and year over the child population (Poisson), the exact
  data-generating model for referrals;
- transitions: P(stage | parent) for assessment, s47, ICPC, CPP and LAC (binomial), with
  the true demand class as covariate.  The simulator also steepens the class-stage
  gradients a little by age and ethnicity (+-0.03 per decile); this fit leaves those out, so
  its reference-class gradient is compared with the true one averaged over the children at
  risk (the modifiers are small and uncorrelated with deprivation, so the average is what
  the fit estimates).
"""

from __future__ import annotations

import numpy as np
import pytest

from models.cells import population_cells, transition_cells
from models.gradient import effects
from models.gradient.model import GradientSpec, build_gradient_model
from models.priors import get_prior_set
from models.sampling import ConvergenceGate, SamplerSettings, fit

SEED = 11
SETTINGS = SamplerSettings(draws=500, tune=500, chains=2, seed=2)
#: Short chains in tests: looser than the reporting gate, still catching a broken sampler.
TEST_GATE = ConvergenceGate(max_r_hat=1.05, min_ess_bulk=50, min_ess_tail=50, max_divergences=5)
CORE = ["intercept", "within_effect", "contextual_effect", "la_sd", "lsoa_sd", "la_slope_sd"]


def _misses(checks, post, prob):
    """Labels of (name, variable, true value) checks whose ``prob`` interval misses the truth."""
    return {name: (_interval(post[var], prob), round(value, 3))
            for name, var, value in checks if not _covers(post[var], value, prob)}


def _covers(draws, true_value, prob=0.9) -> bool:
    lo, hi = np.quantile(np.asarray(draws).ravel(), [(1 - prob) / 2, 1 - (1 - prob) / 2])
    return bool(lo <= true_value <= hi)


def _interval(draws, prob=0.9):
    return tuple(np.round(np.quantile(np.asarray(draws).ravel(), [(1 - prob) / 2, 1 - (1 - prob) / 2]), 3))


@pytest.fixture(scope="module")
def six_la(simulated):
    return simulated("six-la", SEED)


@pytest.fixture(scope="module")
def population_fit(six_la, national_geography):
    geography = national_geography[national_geography["lsoa_code"].isin(six_la.lsoas)]
    cells = population_cells(six_la.episodes, geography, stages=("referral",))
    model = build_gradient_model(cells, GradientSpec(scale="population"), get_prior_set("default"))
    return cells, fit(model, SETTINGS)


@pytest.fixture(scope="module")
def transition_fit(six_la, national_geography):
    cells = transition_cells(six_la.episodes, national_geography, classes=six_la.classes)
    spec = GradientSpec(scale="transition", covariates=("demand_class",))
    model = build_gradient_model(cells, spec, get_prior_set("default"))
    return cells, fit(model, SETTINGS)


def test_population_scale_recovers_the_referral_gradient(six_la, population_fit, national_geography):
    _, idata = population_fit
    gate = TEST_GATE.check(idata, CORE)
    assert gate["passed"], gate
    post = idata.posterior.sel(stage="referral")
    true = six_la.truth["referral"]
    checks = [("within", "within_effect", true["within"]), ("contextual", "contextual_effect", true["contextual"]),
              ("sd_la", "la_sd", true["sd_la"]), ("sd_la_slope", "la_slope_sd", true["sd_la_slope"]),
              ("sd_lsoa", "lsoa_sd", true["sd_lsoa"])]
    assert not _misses(checks, post, 0.99), "99% intervals missing the truth"
    misses = _misses(checks, post, 0.9)
    assert len(misses) <= 2, f"90% intervals missing the truth: {misses}"  # P(<= 2 of 5) = 0.99
    assert _covers(post["within_effect"], true["within"], 0.9), "the gradient itself must be covered"
    # Sign and size: a clear social gradient, about x1.19 per decile step.
    assert float(post["within_effect"].quantile(0.05)) > 0.1
    # Derived: the most/least deprived decile ratio covers exp(9 x within).
    scale = effects.DeprivationScale.from_geography(national_geography)
    ratio = effects.extreme_decile_ratio(idata.posterior, GradientSpec(scale="population"), scale)
    assert _covers(ratio.sel(stage="referral"), np.exp(9 * true["within"]))


def _true_reference_gradient(six_la, stage: str) -> float:
    """The simulator's within gradient for the reference class, averaged over the age and
    ethnicity modifiers of the children at risk of the stage."""
    t = six_la.truth["transitions"][stage]
    if "slope_by_class" not in t:
        return t["within"]
    ep = six_la.episodes
    at_risk = np.ones(len(ep), bool) if t["parent"] == "referral" else ep[t["parent"]].to_numpy(bool)
    age = ep.loc[at_risk, "age_group"].astype(str).map(t["slope_by_age"]).to_numpy(float)
    eth = ep.loc[at_risk, "ethnicity"].astype(str).map(t["slope_by_ethnicity"]).to_numpy(float)
    return t["within"] + t["slope_by_class"]["neglect"] + float(np.mean(age + eth))


def test_transition_scale_recovers_gradient_context_and_sds_at_every_stage(six_la, transition_fit):
    _, idata = transition_fit
    gate = TEST_GATE.check(idata, CORE)
    assert gate["passed"], gate
    post = idata.posterior
    wide, narrow = {}, {}
    for stage, t in six_la.truth["transitions"].items():
        p = post.sel(stage=stage)
        checks = [("within", "within_effect", _true_reference_gradient(six_la, stage)),
                  ("contextual", "contextual_effect", t["contextual"]), ("sd_la", "la_sd", t["sd_la"]),
                  ("sd_la_slope", "la_slope_sd", t["sd_la_slope"]), ("sd_lsoa", "lsoa_sd", t["sd_lsoa"])]
        wide.update({(stage, k): v for k, v in _misses(checks, p, 0.99).items()})
        narrow.update({(stage, k): v for k, v in _misses(checks, p, 0.9).items()})
    assert not wide, f"99% intervals missing the truth: {wide}"
    assert len(narrow) <= 6, f"too many 90% intervals miss the truth (calibration): {narrow}"
    # The gradient is clearly positive where it is steep (s47, LAC) ...
    for stage in ("s47", "lac"):
        assert float(post["within_effect"].sel(stage=stage).quantile(0.05)) > 0
    # ... and the class effects come out with the right signs and sizes: Complex Needs II
    # reaches s47 far more often than Neglect, Disability / Mental Health far less.
    cls = post["demand_class_effect"].sel(stage="s47")
    truth = six_la.truth["transitions"]["s47"]["intercept_by_class"]
    for klass in ("complex_needs_2", "disability_mental_health"):
        assert _covers(cls.sel(demand_class=klass), truth[klass] - truth["neglect"], prob=0.95)
