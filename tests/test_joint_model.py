"""The joint model: its likelihood, its sufficient statistics, and recovery of
class-specific gradients on data drawn from the simulator's truth.

The recovery data come from :func:`models.joint.simulate.simulate_joint`: the six-la
truth (real LSOAs, the true LA effects, the design intercepts by class and the class
shifts of the gradient: Neglect +0.04, Complex Needs II +0.05, Out of control -0.02,
Domestic violence 0), four classes and eleven of their signature factors, Complex Needs II
raised from 3% to 20% of episodes so that a test-sized sample says something about it.
For the recovery fit the class shifts are also tripled (+0.12, +0.15, -0.06, 0): with
20,000 episodes the shift contrasts have posterior SD about 0.013, so the design's 0.04
between Neglect and Domestic violence is 3 SDs, and "P(Neglect and Complex Needs II
steepest) > 0.9" would fail in about 5% of seeds; tripled, it is 9 SDs and the headline
holds but for probability < 1e-3 (``order_floor``).  Every stochastic assertion here
fails with probability <= 1/1000 when the code is right (tests/README.md).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import xarray as xr
from scipy.special import expit, logsumexp

from _seeds import seed
from _stats import (min_ess, mahalanobis, mahalanobis_bound, max_block_misses, order_floor, rhat_limit, z_bound,
                    z_score)
from models.joint import effects
from models.joint.data import joint_data
from models.joint.fit import fit_joint
from models.joint.model import JointSpec, build_joint_model, loglik_function
from models.joint.simulate import simulate_joint
from models.priors import get_prior_set
from models.sampling import ConvergenceGate, SamplerSettings
from models.simulation.presets import get_preset
from models.simulation.truth import draw_truth
from public_data.tables import load_factor_prevalence

CLASSES = ("neglect", "domestic_violence", "complex_needs_2", "out_of_control")
FACTORS = ["alcohol_parent", "drugs_parent", "domestic_abuse_parent", "mental_health_parent",
           "going_missing", "socially_unacceptable_behaviour", "self_harm", "neglect",
           "emotional_abuse", "mental_health_child", "domestic_abuse_person"]
PREVALENCE = {"neglect": .3, "domestic_violence": .25, "complex_needs_2": .2, "out_of_control": .25}
#: Two chains of 600 draws: a check for a broken sampler, not the reporting gate.  At 2 x 300
#: the s47 LA slope SD (six LAs) mixed slowly (R-hat 1.06 on one machine, 1.17 / bulk ESS 10
#: on another).  The ESS floor (30) and the divergence cap (1% of draws) are measured, not
#: derived: the smallest bulk / tail ESS over seed offsets 0-3 were 81/34, 51/63, 39/90 and
#: 150/155, with 5, 5, 2 and 2 divergences (tests/README.md), so the floor sits close to the
#: worst seen: a known weak point.  Judging each R-hat against its own ESS
#: (``sampler_check``, as the gradient recovery tests do) failed here at offset 1: a quantity
#: with high bulk ESS crossed through its tails.  The R-hat limit follows from the floor.
TEST_DRAWS = 600
TEST_GATE = ConvergenceGate(max_r_hat=rhat_limit(30, 120), min_ess_bulk=30, min_ess_tail=30,
                            max_divergences=TEST_DRAWS * 2 // 100)


@pytest.fixture(scope="module")
def truth(national_geography):
    share = load_factor_prevalence().set_index("factor")["share"]
    return draw_truth(get_preset("six-la"), national_geography, share, seed(11))


def _simulate(truth, geography, n, base, lsoa_per_la=10):
    return simulate_joint(truth, geography, CLASSES, n, factors=FACTORS, lsoa_per_la=lsoa_per_la,
                          prevalence=PREVALENCE, seed=seed(base))


# --------------------------------------------------------------------------------------
# Sufficient statistics and the likelihood itself (no sampling)
# --------------------------------------------------------------------------------------

def test_counts_lose_nothing(truth, national_geography):
    sim = _simulate(truth, national_geography, 3000, base=3)
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
    sim = _simulate(truth, national_geography, 200, base=4)
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
    sim = _simulate(truth, national_geography, 300, base=5, lsoa_per_la=3)
    sim.factors = sim.factors.iloc[:, :5]
    spec = JointSpec(3)
    prior = get_prior_set("default")
    agg = joint_data(sim.episodes, sim.factors)
    rows = joint_data(sim.episodes, sim.factors, aggregate=False)
    assert len(agg.rows) < len(rows.rows) == 300
    m_agg, m_rows = build_joint_model(agg, spec, prior), build_joint_model(rows, spec, prior)
    rng = np.random.default_rng(seed(0))
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
    sim = _simulate(truth, national_geography, 200, base=6, lsoa_per_la=2)
    sim.factors = sim.factors.iloc[:, :4]
    data = joint_data(sim.episodes, sim.factors)
    model = build_joint_model(data, JointSpec(3, class_slopes="by_stage"), get_prior_set("default"))
    shift = model["class_slope_shift"]
    assert model.named_vars_to_dims["class_slope_shift"] == ("stage", "class")
    rng = np.random.default_rng(seed(1))
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

#: The recovery fit's class shifts of the gradient, times the six-la truth's (module docstring).
SHIFT_SCALE = 3.0


@pytest.fixture(scope="module")
def recovery(truth, national_geography):
    truth = copy.deepcopy(truth)
    for stage in truth["transitions"].values():
        if "slope_by_class" in stage:
            stage["slope_by_class"] = {c: SHIFT_SCALE * v for c, v in stage["slope_by_class"].items()}
    sim = _simulate(truth, national_geography, 20000, base=1, lsoa_per_la=5)
    data = joint_data(sim.episodes, sim.factors)
    reference = xr.DataArray([[sim.truth["profiles"][c][f] for f in data.patterns.factors] for c in CLASSES],
                             dims=("class", "factor"), coords={"class": list(CLASSES)})
    fitted = fit_joint(data, JointSpec(len(CLASSES)), SamplerSettings(draws=TEST_DRAWS, tune=TEST_DRAWS, chains=2, seed=seed(4), target_accept=0.95),
                       n_starts=10, reference=reference, gate=TEST_GATE)
    return sim, fitted


def _interval(draws, prob):
    return np.quantile(np.asarray(draws).ravel(), [(1 - prob) / 2, 1 - (1 - prob) / 2])


def test_joint_fit_converges_and_keeps_one_labelling(recovery):
    _, fitted = recovery
    print(f"joint gate {fitted.gate}")
    # Measured, not derived (TEST_GATE above): one labelling and the loose gate.
    assert not fitted.alignment.multimodal, fitted.alignment.summary()
    assert fitted.gate["passed"], fitted.gate



def _flat(draws, dim):
    """sample x ``dim`` matrix of draws."""
    return np.asarray(draws.stack(sample=("chain", "draw")).transpose("sample", dim))


def test_class_slope_shifts_and_intercepts_cover_the_truth(recovery):
    sim, fitted = recovery
    post = fitted.idata.posterior
    others = [c for c in CLASSES if c != "domestic_violence"]
    # Slope contrasts against Domestic violence (true shift 0): 3 quantities, correlated
    # through the shared reference, tested jointly: their Mahalanobis distance from the truth
    # under the posterior covariance is chi-square(3) for a calibrated near-normal posterior
    # (20,000 episodes); P(> mahalanobis_bound) = 1e-3 (Hotelling, for the ESS).
    contrast = effects.slope_contrasts(post, "domestic_violence").sel(stage="s47", **{"class": others})
    true = [sim.truth["slope_shift"][c] - sim.truth["slope_shift"]["domestic_violence"] for c in others]
    d2, bound = mahalanobis(_flat(contrast, "class"), true), mahalanobis_bound(3, min_ess(contrast))
    assert d2 <= bound, (d2, bound, z_score(contrast, true))
    # Class intercepts at every stage as contrasts with Domestic violence (12 quantities: free
    # of where the six LAs' own effects happen to average), jointly: chi-square(12) as above.
    alpha = post["class_intercept"]
    stages = list(fitted.data.stages)
    diffs = (alpha.sel(**{"class": others}) - alpha.sel(**{"class": "domestic_violence"}, drop=True)).stack(
        q=("stage", "class"))
    true = [sim.truth["intercept"][s][c] - sim.truth["intercept"][s]["domestic_violence"] for s, c in diffs["q"].values]
    flat = np.asarray(diffs.stack(sample=("chain", "draw")).transpose("sample", "q"))
    d2, bound = mahalanobis(flat, true), mahalanobis_bound(12, min_ess(diffs.unstack("q")))
    assert d2 <= bound, (d2, bound)
    # The intercepts themselves (a typical LA) lean on only six LAs, whose true effects shift
    # all four classes of a stage together: 99% intervals counted with each stage's four as a
    # block that misses together (the worst case): at most 4 of 16 miss, P = 6e-4.
    misses = {(s, c): True for s in stages for c in CLASSES
              if not (lambda lo_hi, t: lo_hi[0] <= t <= lo_hi[1])(
                  _interval(alpha.sel(stage=s, **{"class": c}), 0.99), sim.truth["intercept"][s][c])}
    assert len(misses) <= max_block_misses([len(CLASSES)] * len(stages), 0.99), misses
    # Class weights land near the drawn episodes' shares: the typical LA's weights lean on six
    # LAs' class effects (posterior SD about 0.015), so each within a t bound (5 df) over the
    # four: P <= 1e-3.
    w = post["class_weight"].sel({"class": list(CLASSES)})
    share = np.array([sim.truth["class_share"][c] for c in CLASSES])
    z_w = z_score(w, share)
    print(f"class weights: z {z_w.round(2)}, SD {w.std(('chain', 'draw')).to_numpy().round(4)}")
    assert np.abs(z_w).max() <= z_bound(4, df=5, ess=min_ess(w)), z_w


def test_headline_neglect_and_complex_needs_2_are_steepest(recovery):
    sim, fitted = recovery
    post = fitted.idata.posterior
    shift = sim.truth["slope_shift"]   # Neglect +0.12, Complex Needs II +0.15, Out of control -0.06, DV 0
    g = post["class_gradient"].sel(stage="s47")
    ess = min_ess(g)

    def floor(top, rest, level):
        """What the data guarantee for P(every class in ``top`` steeper than every one in ``rest``)."""
        pairs = [(a, b) for a in top for b in rest]
        deltas = [shift[a] - shift[b] for a, b in pairs]
        sds = [float((g.sel({"class": a}) - g.sel({"class": b})).std()) for a, b in pairs]
        return order_floor(deltas, sds, level, ess=ess), dict(zip(pairs, np.round(sds, 4)))

    p = effects.steepest(post, ("neglect", "complex_needs_2"))
    assert p.dims == ("stage",)
    # P(Neglect and Complex Needs II steepest) > 0.9 where the contrasts' SDs guarantee it
    # (order_floor: P <= 1e-3; with the tripled shifts, always); the shifts are shared, so
    # every stage gives the same answer.
    need, sds = floor(("neglect", "complex_needs_2"), ("domestic_violence", "out_of_control"), 0.9)
    print(f"P(steepest) {p.to_series().round(3).to_dict()}, floor {need:.3f}, contrast SDs {sds}")
    assert float(p.min()) >= need, p.to_series()
    ranks = effects.gradient_rank(post).sel(stage="s47")
    need, sds = floor(("neglect", "complex_needs_2", "domestic_violence"), ("out_of_control",), 0.5)
    p_last = float(ranks.sel({"class": "out_of_control", "rank": 4}))
    print(f"P(out of control least steep) {p_last:.3f}, floor {need:.3f}")
    assert p_last >= need
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
