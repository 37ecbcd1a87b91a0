"""The joint model (issue 7): its likelihood, its sufficient statistics, and recovery of
class-specific gradients on data drawn from the simulator's truth.

The recovery data come from :func:`models.joint.simulate.simulate_joint`: the six-la
truth (real LSOAs, the true LA effects, the design intercepts by class and the class
shifts of the gradient: Neglect +0.04, Complex Needs II +0.05, Out of control -0.02,
Domestic violence 0), four classes and eleven of their signature factors, Complex Needs II
raised from 3% to 20% of episodes so that a test-sized sample says something about it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.special import expit, logsumexp

from models.joint import effects
from models.joint.data import joint_data
from models.joint.fit import fit_joint
from models.joint.model import JointSpec, build_joint_model, loglik_function
from models.joint.simulate import simulate_joint
from models.latent_class.model import LatentClassPriors
from models.priors import get_prior_set
from models.sampling import ConvergenceGate, SamplerSettings
from models.simulation.presets import get_preset
from models.simulation.truth import draw_truth
from workflows.reference import load_factor_prevalence

CLASSES = ("neglect", "domestic_violence", "complex_needs_2", "out_of_control")
FACTORS = ["alcohol_parent", "drugs_parent", "domestic_abuse_parent", "mental_health_parent",
           "going_missing", "socially_unacceptable_behaviour", "self_harm", "neglect",
           "emotional_abuse", "mental_health_child", "domestic_abuse_person"]
PREVALENCE = {"neglect": .3, "domestic_violence": .25, "complex_needs_2": .2, "out_of_control": .25}
#: Two chains of 600 draws: looser than the reporting gate, still failing a broken geometry
#: (non-centred LA levels gave min bulk ESS 19 and R-hat 1.10).  At 2 x 300 the s47 LA slope
#: SD (six LAs) mixed slowly: R-hat 1.06 on one machine, 1.17 / bulk ESS 10 on another; at
#: 2 x 600 R-hat 1.02, bulk ESS 112, 5 divergences (its funnel).  Divergences are allowed up
#: to 1% of draws; a broken geometry gives far more.
TEST_DRAWS = 600
TEST_GATE = ConvergenceGate(max_r_hat=1.08, min_ess_bulk=30, min_ess_tail=30, max_divergences=TEST_DRAWS * 2 // 100)


@pytest.fixture(scope="module")
def truth(national_geography):
    share = load_factor_prevalence().set_index("factor")["share"]
    return draw_truth(get_preset("six-la"), national_geography, share, 11)


def _simulate(truth, geography, n, seed, lsoa_per_la=10):
    return simulate_joint(truth, geography, CLASSES, n, factors=FACTORS, lsoa_per_la=lsoa_per_la,
                          prevalence=PREVALENCE, seed=seed)


# --------------------------------------------------------------------------------------
# Sufficient statistics and the likelihood itself (no sampling)
# --------------------------------------------------------------------------------------

def test_counts_lose_nothing(truth, national_geography):
    sim = _simulate(truth, national_geography, 3000, seed=3)
    data = joint_data(sim.episodes, sim.factors)
    assert data.n_episodes == 3000
    assert len(data.rows) < 3000  # episodes do share (pattern, cell, path)
    # Every episode maps back to its own pattern, cell and path.
    row = data.episode_row
    np.testing.assert_array_equal(data.patterns.matrix[data.rows["pattern"].to_numpy()[row]],
                                  sim.factors.to_numpy().astype(int))
    cells = data.cells.iloc[data.row_cell()[row]]
    np.testing.assert_array_equal(cells["lsoa_code"].to_numpy(), sim.episodes["lsoa_code"].to_numpy())
    reached = data.reached[data.row_path()[row]].astype(bool)
    np.testing.assert_array_equal(reached, sim.episodes[list(data.stages)].to_numpy(bool))
    # Paths are sequential: ICPC only after s47, CPP only after ICPC; LAC given assessment.
    paths = data.paths.set_index("path")
    assert not (paths["icpc"] & ~paths["s47"]).any() and not (paths["cpp"] & ~paths["icpc"]).any()
    np.testing.assert_array_equal(data.at_risk[:, data.stages.index("lac")], 1.0)


def test_stage_without_parent_is_an_error_naming_the_row(truth, national_geography):
    sim = _simulate(truth, national_geography, 200, seed=4)
    bad = sim.episodes.copy()
    i = int(np.flatnonzero(~bad["s47"].to_numpy())[0])
    bad.loc[i, "icpc"] = True
    with pytest.raises(ValueError, match=rf"row {i}, column 'icpc'"):
        joint_data(bad, sim.factors)


def _numpy_loglik(values, sim, data, la_labels, lsoa_labels):
    """The mixture log-likelihood episode by episode, written out independently of the model."""
    w = values["class_weight"]
    la_class = values["la_class_effect"]
    total = 0.0
    ep = sim.episodes
    y = sim.factors.to_numpy().astype(float)
    for i in range(len(ep)):
        la = la_labels.index(ep["la_code"].iloc[i])
        lsoa = lsoa_labels.index(ep["lsoa_code"].iloc[i])
        logw = np.log(w) + la_class[la]
        logw = logw - logsumexp(logw)
        terms = []
        for k in range(len(w)):
            p = values["item_prob"][k]
            lp = logw[k] + np.sum(y[i] * np.log(p) + (1 - y[i]) * np.log1p(-p))
            for j, s in enumerate(data.stages):
                parent = {"s47": "assessment", "icpc": "s47", "cpp": "icpc", "lac": "assessment"}[s]
                if parent != "assessment" and not ep[parent].iloc[i]:
                    continue
                eta = (values["class_intercept"][j, k] + values["la_effect"][la, j] + values["lsoa_effect"][lsoa, j]
                       + (values["class_gradient"][j, k] + values["la_slope"][la, j]) * ep["dep_within"].iloc[i]
                       + values["between_effect"][j] * ep["dep_between"].iloc[i])
                q = expit(eta)
                lp += np.log(q) if ep[s].iloc[i] else np.log1p(-q)
            terms.append(lp)
        total += logsumexp(terms)
    return total


def test_counts_give_the_row_level_likelihood(truth, national_geography):
    """Aggregated counts, one row per episode, and a plain per-episode loop agree exactly
    at random parameter values (so the posterior is the same)."""
    sim = _simulate(truth, national_geography, 300, seed=5, lsoa_per_la=3)
    sim.factors = sim.factors.iloc[:, :5]
    spec = JointSpec(3)
    prior = get_prior_set("default")
    agg = joint_data(sim.episodes, sim.factors)
    rows = joint_data(sim.episodes, sim.factors, aggregate=False)
    assert len(agg.rows) < len(rows.rows) == 300
    m_agg, m_rows = build_joint_model(agg, spec, prior), build_joint_model(rows, spec, prior)
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in m_agg.initial_point().items()}
    ll_agg = float(loglik_function(m_agg)(point))
    ll_rows = float(loglik_function(m_rows)(point))
    assert ll_agg == pytest.approx(ll_rows, rel=1e-10)
    names = ["class_weight", "item_prob", "class_intercept", "class_gradient", "between_effect",
             "la_effect", "la_slope", "lsoa_effect", "la_class_effect"]
    fn = m_agg.compile_fn(m_agg.replace_rvs_by_values([m_agg[n] for n in names]), inputs=m_agg.value_vars,
                          on_unused_input="ignore")
    values = dict(zip(names, fn(point)))
    expected = _numpy_loglik(values, sim, agg, m_agg.coords["la"], m_agg.coords["lsoa"])
    assert ll_agg == pytest.approx(expected, rel=1e-9)


def test_by_stage_class_slopes_give_the_row_level_likelihood(truth, national_geography):
    """``class_slopes="by_stage"``: one gradient shift per stage and class (zero-sum over
    classes at each stage), and the counts' likelihood equals the per-episode loop with
    those stage-specific class gradients."""
    sim = _simulate(truth, national_geography, 200, seed=6, lsoa_per_la=2)
    sim.factors = sim.factors.iloc[:, :4]
    data = joint_data(sim.episodes, sim.factors)
    model = build_joint_model(data, JointSpec(3, class_slopes="by_stage"), get_prior_set("default"))
    shift = model["class_slope_shift"]
    assert model.named_vars_to_dims["class_slope_shift"] == ("stage", "class")
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in model.initial_point().items()}
    names = ["class_weight", "item_prob", "class_intercept", "class_gradient", "between_effect", "within_effect",
             "la_effect", "la_slope", "lsoa_effect", "la_class_effect"]
    fn = model.compile_fn(model.replace_rvs_by_values([model[n] for n in names] + [shift]),
                          inputs=model.value_vars, on_unused_input="ignore")
    out = fn(point)
    values, shift_value = dict(zip(names, out[:-1])), out[-1]
    assert shift_value.shape == (len(data.stages), 3)
    np.testing.assert_allclose(shift_value.sum(axis=1), 0.0, atol=1e-12)
    # The class gradients differ by stage beyond the stage's common within effect: the
    # shifts are free by stage (under "shared" every stage would repeat one shift vector).
    np.testing.assert_allclose(values["class_gradient"], values["within_effect"][:, None] + shift_value)
    assert np.ptp(shift_value, axis=0).min() > 1e-3
    ll = float(loglik_function(model)(point))
    expected = _numpy_loglik(values, sim, data, model.coords["la"], model.coords["lsoa"])
    assert ll == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recovery(truth, national_geography):
    sim = _simulate(truth, national_geography, 20000, seed=1, lsoa_per_la=5)
    data = joint_data(sim.episodes, sim.factors)
    reference = xr.DataArray([[sim.truth["profiles"][c][f] for f in data.patterns.factors] for c in CLASSES],
                             dims=("class", "factor"), coords={"class": list(CLASSES)})
    fitted = fit_joint(data, JointSpec(len(CLASSES)), SamplerSettings(draws=TEST_DRAWS, tune=TEST_DRAWS, chains=2, seed=4, target_accept=0.95),
                       n_starts=10, reference=reference, gate=TEST_GATE)
    return sim, fitted


def _interval(draws, prob):
    return np.quantile(np.asarray(draws).ravel(), [(1 - prob) / 2, 1 - (1 - prob) / 2])


def test_joint_fit_converges_and_keeps_one_labelling(recovery):
    _, fitted = recovery
    assert not fitted.alignment.multimodal, fitted.alignment.summary()
    assert fitted.gate["passed"], fitted.gate


def test_class_slope_shifts_and_intercepts_cover_the_truth(recovery):
    sim, fitted = recovery
    post = fitted.idata.posterior
    # Slope contrasts against Domestic violence (true shift 0): 3 quantities.
    contrast = effects.slope_contrasts(post, "domestic_violence").sel(stage="s47")
    misses_90 = {}
    for c in CLASSES:
        if c == "domestic_violence":
            continue
        true = sim.truth["slope_shift"][c] - sim.truth["slope_shift"]["domestic_violence"]
        lo, hi = _interval(contrast.sel({"class": c}), 0.99)
        assert lo <= true <= hi, (c, lo, hi, true)
        lo, hi = _interval(contrast.sel({"class": c}), 0.9)
        if not lo <= true <= hi:
            misses_90[c] = (round(lo, 3), round(hi, 3), true)
    assert len(misses_90) <= 1, misses_90  # P(<= 1 miss of 3 | calibrated) = 0.97
    # Class intercepts at every stage, as contrasts with Domestic violence (12 quantities:
    # free of where the six LAs' own effects happen to average): every 99% interval covers,
    # at most 3 of the 90% ones miss (P = 0.97 for a calibrated model).
    wide, narrow = {}, {}
    alpha = post["class_intercept"]
    for s in fitted.data.stages:
        for c in CLASSES:
            if c == "domestic_violence":
                continue
            draws = alpha.sel(stage=s, **{"class": c}) - alpha.sel(stage=s, **{"class": "domestic_violence"})
            true = sim.truth["intercept"][s][c] - sim.truth["intercept"][s]["domestic_violence"]
            for prob, store in ((0.99, wide), (0.9, narrow)):
                lo, hi = _interval(draws, prob)
                if not lo <= true <= hi:
                    store[(s, c)] = (round(lo, 2), round(hi, 2), round(true, 2))
    assert not wide, wide
    assert len(narrow) <= 3, narrow
    # The intercepts themselves (a typical LA) lean on only six LAs, whose true CPP effects
    # average +0.18 in this seed: at most one of 16 misses its 99% interval.
    misses = {(s, c): True for s in fitted.data.stages for c in CLASSES
              if not (lambda lo_hi, t: lo_hi[0] <= t <= lo_hi[1])(
                  _interval(alpha.sel(stage=s, **{"class": c}), 0.99), sim.truth["intercept"][s][c])}
    assert len(misses) <= 1, misses
    # Class weights and profiles land near the truth.
    w = post["class_weight"].mean(("chain", "draw")).sel({"class": list(CLASSES)}).to_numpy()
    share = np.array([sim.truth["class_share"][c] for c in CLASSES])
    assert np.abs(w - share).max() < 0.04


def test_headline_neglect_and_complex_needs_2_are_steepest(recovery):
    sim, fitted = recovery
    post = fitted.idata.posterior
    p = effects.steepest(post, ("neglect", "complex_needs_2"))
    assert p.dims == ("stage",)
    assert float(p.min()) > 0.9, p.to_series()
    ranks = effects.gradient_rank(post).sel(stage="s47")
    assert float(ranks.sel({"class": "out_of_control", "rank": 4})) > 0.5
    # Class gradients as odds ratios carry their labels; the contextual effect per class is
    # the between effect minus the class gradient (steeper class: stronger inverse effect).
    g = effects.class_gradients(post)
    assert set(g.dims) == {"chain", "draw", "stage", "class"}
    ctx = effects.class_contextual(post)
    np.testing.assert_allclose(ctx.sel({"class": "neglect"}),
                               post["between_effect"] - post["class_gradient"].sel({"class": "neglect"}))
    table = effects.summarise(g.sel(stage="lac"), prob=0.9)
    assert {"mean", "lower", "upper", "r_hat", "ess_bulk"} <= set(table.columns)


def test_effects_refuse_unknown_classes(recovery):
    _, fitted = recovery
    with pytest.raises(ValueError, match="not in the posterior"):
        effects.steepest(fitted.idata.posterior, ("neglect", "no_such_class"))
