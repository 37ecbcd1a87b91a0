"""Parameter recovery on the simulator's six-la system: credible intervals cover the true
gradient, contextual effect and SDs at every stage, and the signs are right.

How coverage is asserted (every bound: P(fails | code right) <= 1/1000, tests/_stats.py):
n true values each inside its 90% interval would happen only 0.9^n of the time for a
perfectly calibrated model (7% for n = 25), so "all 90% intervals cover" is not a test one
can pass honestly, and "all 99% intervals cover" fails 22% of the time at n = 25.  Instead
the misses are counted: at most ``max_misses(n, 0.9)`` of the 90% intervals and
``max_misses(n, 0.99)`` of the 99% intervals (binomial tails; 8 and 3 of 25, 3 and 1 of 5),
which a model whose intervals are half as wide as they should be (about 10 of 25 misses at
90%) fails; and each coefficient (within, contextual, class effects) lies within
``z_bound`` posterior SDs of its truth, which a biased or mis-wired coefficient fails.  The
coefficients that lean on six LAs (the contextual effect; the within effect through the LA
slopes) use Student t bounds (5 or 4 degrees of freedom), not normal ones.

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

from _seeds import seed
from _stats import max_misses, sampler_check, z_bound, z_score
from models.cells import population_cells, transition_cells
from models.gradient import effects
from models.gradient.model import GradientSpec, build_gradient_model
from models.priors import get_prior_set
from models.sampling import SamplerSettings, fit

SEED = 11  # base seeds: shifted by CSC_TEST_SEED_OFFSET (tests/_seeds.py)
SETTINGS = SamplerSettings(draws=500, tune=500, chains=2, seed=seed(2))
#: The transition fit's LSOA and LA-slope SDs (six LAs) make funnels: at target acceptance
#: 0.9, seed offset 1 gave bulk ESS 28 and 15 divergences; at 0.95, ESS 40 and 5.
TRANSITION_SETTINGS = SamplerSettings(draws=500, tune=500, chains=2, seed=seed(2), target_accept=0.95)
CORE = ["intercept", "within_effect", "contextual_effect", "la_sd", "lsoa_sd", "la_slope_sd"]
#: Short chains in tests: a check for a broken sampler, not the reporting gate.  Each
#: quantity's R-hat is judged against its own ESS (``sampler_check``: P <= 1e-3 for chains
#: like the AR(1) ones its tail was measured on; passed at offsets 0-3 here, not a proof for
#: these posteriors' tails); the ESS floor (10) and the divergence cap (10 of 1,000
#: draws) are measured: over seed offsets 0-3 the smallest bulk / tail ESS were 165/188,
#: 76/132 and 104/30 (population) and 87/78, 40/72 and 105/86 (transitions), with 0-5
#: divergences (tests/README.md).  A fixed floor of 30 failed by chance at offset 1.
MAX_DIVERGENCES = 10


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
    return cells, fit(model, TRANSITION_SETTINGS)


def test_population_scale_recovers_the_referral_gradient(six_la, population_fit, national_geography):
    _, idata = population_fit
    gate = sampler_check(idata, CORE, max_divergences=MAX_DIVERGENCES)
    assert gate["passed"], gate
    post = idata.posterior.sel(stage="referral")
    true = six_la.truth["referral"]
    checks = [("within", "within_effect", true["within"]), ("contextual", "contextual_effect", true["contextual"]),
              ("sd_la", "la_sd", true["sd_la"]), ("sd_la_slope", "la_slope_sd", true["sd_la_slope"]),
              ("sd_lsoa", "lsoa_sd", true["sd_lsoa"])]
    # 5 quantities: P(more than 1 of 5 99% intervals miss) = 9.8e-4; P(more than 3 of 5 90%
    # intervals miss) = 4.6e-4 (binomial, calibrated intervals).
    wide, narrow = _misses(checks, post, 0.99), _misses(checks, post, 0.9)
    print(f"population: gate {gate}; misses 99% {len(wide)}, 90% {len(narrow)}")
    assert len(wide) <= max_misses(5, 0.99), f"99% intervals missing the truth: {wide}"
    assert len(narrow) <= max_misses(5, 0.9), f"90% intervals missing the truth: {narrow}"
    # The gradient itself and the contextual effect, each within a t bound of its truth
    # (six LAs: within through the LA slopes, t with 5 df, |z| <= 5.3; contextual, an LA-level
    # coefficient beside the intercept, t with 4 df, |z| <= 6.1): P = 1e-3 each.
    ess = float(gate["min_ess_bulk"])
    z_within = float(z_score(post["within_effect"], true["within"]))
    assert abs(z_within) <= z_bound(1, df=5, ess=ess), z_within
    z_context = float(z_score(post["contextual_effect"], true["contextual"]))
    assert abs(z_context) <= z_bound(1, df=4, ess=ess), z_context
    # Sign and size: a clear social gradient, about x1.19 per decile step.  Truth 0.17,
    # posterior SD 0.008: the 5% quantile (mean - 1.645 SD) falls below 0.1 only if the mean
    # is 7.1 SDs under the truth: P(t5 < -7.1 x 1.29) = 1.3e-4.
    assert float(post["within_effect"].quantile(0.05)) > 0.1
    # Derived: the most/least deprived decile ratio is exp(9 x within), draw by draw (so it
    # covers exp(9 x true within) exactly when within covers its truth, checked above).
    scale = effects.DeprivationScale.from_geography(national_geography)
    ratio = effects.extreme_decile_ratio(idata.posterior, GradientSpec(scale="population"), scale)
    np.testing.assert_allclose(np.log(ratio.sel(stage="referral").transpose("chain", "draw")),
                               9 * post["within_effect"].transpose("chain", "draw"), rtol=1e-10)


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
    gate = sampler_check(idata, CORE, max_divergences=MAX_DIVERGENCES)
    assert gate["passed"], gate
    ess = float(gate["min_ess_bulk"])
    post = idata.posterior
    wide, narrow, z_within, z_context = {}, {}, {}, {}
    for stage, t in six_la.truth["transitions"].items():
        p = post.sel(stage=stage)
        within = _true_reference_gradient(six_la, stage)
        checks = [("within", "within_effect", within),
                  ("contextual", "contextual_effect", t["contextual"]), ("sd_la", "la_sd", t["sd_la"]),
                  ("sd_la_slope", "la_slope_sd", t["sd_la_slope"]), ("sd_lsoa", "lsoa_sd", t["sd_lsoa"])]
        wide.update({(stage, k): v for k, v in _misses(checks, p, 0.99).items()})
        narrow.update({(stage, k): v for k, v in _misses(checks, p, 0.9).items()})
        z_within[stage] = round(float(z_score(p["within_effect"], within)), 2)
        z_context[stage] = round(float(z_score(p["contextual_effect"], t["contextual"])), 2)
    n = 5 * len(six_la.truth["transitions"])  # 25 quantities
    print(f"transitions: gate {gate}; misses 99% {len(wide)}, 90% {len(narrow)}; z within {z_within}, "
          f"z contextual {z_context}")
    # P(more than 3 of 25 99% intervals miss) = 1.1e-4; P(more than 8 of 25 90% ones) = 4.6e-4.
    assert len(wide) <= max_misses(n, 0.99), f"too many 99% intervals miss the truth: {wide}"
    assert len(narrow) <= max_misses(n, 0.9), f"too many 90% intervals miss the truth (calibration): {narrow}"
    # Every stage's gradient and contextual effect within its t bound (Bonferroni over the 5
    # stages; 5 and 4 df, see the module docstring): P <= 1e-3 each assertion.
    assert max(map(abs, z_within.values())) <= z_bound(5, df=5, ess=ess), z_within
    assert max(map(abs, z_context.values())) <= z_bound(5, df=4, ess=ess), z_context
    # The gradient is clearly positive where it is steep (s47, LAC): truths 0.113 and 0.153,
    # posterior SDs 0.020 and 0.022, so the 5% quantile reaches 0 only if the mean is 4.0
    # (s47) or 5.3 (LAC) SDs under its truth.  Six LAs' slopes (true SD 0.02 / sqrt(6)) carry
    # under a fifth of these variances, the episodes the rest: P = 1.4e-4 and 1.8e-5 (the tail
    # of 0.8 N(0, 1) + 0.2 t5 in variance; pure t5 would give 1.8e-3 and 5e-4).
    for stage in ("s47", "lac"):
        assert float(post["within_effect"].sel(stage=stage).quantile(0.05)) > 0
    # ... and the class effects come out with the right signs and sizes: Complex Needs II
    # reaches s47 far more often than Neglect, Disability / Mental Health far less.  Not
    # within a few posterior SDs of the simulator's contrasts: the model fitted here leaves
    # out the simulator's age effects and class-specific slopes, and the classes differ in
    # age, so the contrasts carry an omitted-variable bias (z = -2.9 and -3.9 at seed offset
    # 1: both estimates 0.2-0.25 below the truth).  Asserted: the right sign and the size within 40% of the truth
    # (+1.3, -1.5; posterior SD 0.065, so chance adds at most 0.25 at P = 1e-3, z_bound(2)).
    cls = post["demand_class_effect"].sel(stage="s47")
    truth = six_la.truth["transitions"]["s47"]["intercept_by_class"]
    est = {k: float(cls.sel(demand_class=k).mean()) for k in ("complex_needs_2", "disability_mental_health")}
    true = {k: truth[k] - truth["neglect"] for k in est}
    print(f"s47 class contrasts: estimate {est}, simulator {true}")
    for k in est:
        assert np.sign(est[k]) == np.sign(true[k]) and abs(est[k] - true[k]) <= 0.4 * abs(true[k]), (est, true)
