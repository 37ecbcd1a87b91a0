"""Latent class regression with distal outcomes: sufficient statistic, labels, recovery.

Recovery uses the simulator's truth.  Its episodes are restricted to three true classes
(Neglect, Domestic Violence, Out-of-control) and twelve factors that tell them apart:
selecting on the class keeps the membership model a multinomial logit with the same
parameters (softmax restricted to the kept classes), and item and outcome probabilities
given the class are unchanged, so the truth of the restricted system is known exactly.
True class-specific outcome rates are the shares among episodes of each true class.

Every stochastic assertion fails with probability <= 1/1000 when the code is right
(tests/README.md).  Several quantities share a reference class (contrasts with Domestic
Violence) or sum to one (prevalences), so their errors are correlated: those are tested
jointly, by their Mahalanobis distance from the truth under the posterior covariance
(chi-square; Hotelling for the ESS), not by counting misses as if independent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytest
from scipy.special import softmax

from _seeds import seed as shifted_seed
from _stats import min_ess, mahalanobis, mahalanobis_bound, max_misses, rhat_limit, z_bound
from models.latent_class.agreement import match_profiles
from models.latent_class.labels import align_labels, permute_classes
from models.latent_class.regression import (
    build_regression_model, collapse_regression, derived_draws, fit_latent_class_regression,
    summarise,
)
from models.sampling import SamplerSettings, convergence_table

CLASSES = ["neglect", "domestic_violence", "out_of_control"]
FACTORS = ["neglect", "emotional_abuse", "mental_health_parent", "domestic_abuse_parent",
           "domestic_abuse_person", "domestic_abuse_child", "going_missing", "cse",
           "socially_unacceptable_behaviour", "drugs_child", "mental_health_child", "self_harm"]
OUTCOMES = ["s47", "cpp", "lac"]
N_EPISODES = 3000


# ---------------------------------------------------------------------------------------
# Structure (no sampling)
# ---------------------------------------------------------------------------------------

def _small(n=250, seed=0):
    rng = np.random.default_rng(shifted_seed(seed))
    klass = rng.integers(0, 2, n)
    prof = np.array([[0.8, 0.2, 0.6, 0.1], [0.1, 0.7, 0.3, 0.5]])
    factors = pd.DataFrame(rng.random((n, 4)) < prof[klass], columns=[f"f{j}" for j in range(4)])
    cov = pd.DataFrame({"age": rng.choice(["a", "b", "c"], n), "sex": rng.choice(["m", "f"], n)})
    la = pd.Series(rng.choice(["L1", "L2", "L3"], n))
    s47 = rng.random(n) < np.where(klass == 0, 0.4, 0.2)
    cpp = s47 & (rng.random(n) < 0.5)
    lac = rng.random(n) < 0.1
    return factors, cov, la, pd.DataFrame({"s47": s47, "cpp": cpp, "lac": lac})


def test_collapse_is_a_lossless_sufficient_statistic():
    factors, cov, la, out = _small()
    d = collapse_regression(factors, cov, la, out, references={"age": "b"})
    assert d.n_episodes == len(factors) and d.n_rows < len(factors)
    row = d.index
    np.testing.assert_array_equal(d.patterns.matrix[d.row_pattern[row]].astype(bool), factors.to_numpy())
    np.testing.assert_array_equal(d.outcome_matrix[d.row_outcome[row]].astype(bool), out.to_numpy())
    cells = d.cells.iloc[d.row_cell[row]]
    np.testing.assert_array_equal(cells["age"].to_numpy(), cov["age"].to_numpy())
    np.testing.assert_array_equal(cells["la"].to_numpy(), la.to_numpy())
    np.testing.assert_array_equal(np.bincount(row, minlength=d.n_rows), d.row_count)
    assert d.references["age"] == "b"
    assert d.references["sex"] == cov["sex"].value_counts().idxmax()  # default: most common level


def test_collapse_errors_name_row_column_and_reason():
    factors, cov, la, out = _small()
    bad = out.copy()
    bad.loc[5, ["s47", "cpp"]] = [False, True]
    with pytest.raises(ValueError, match=r"cpp without s47 in episode row 5"):
        collapse_regression(factors, cov, la, bad)
    cov2 = cov.copy()
    cov2.loc[7, "age"] = None
    with pytest.raises(ValueError, match=r"age: missing value in episode row 7"):
        collapse_regression(factors, cov2, la, out)
    with pytest.raises(ValueError, match=r"reference level 'z' of age"):
        collapse_regression(factors, cov, la, out, references={"age": "z"})


def _brute_loglik(factors, cov, la, out, refs, p):
    """Row-level likelihood, written independently: loops over episodes and classes."""
    total = 0.0
    for i in range(len(factors)):
        eta = p["intercept"].copy()
        for name in cov.columns:
            eta = eta + p[f"effect_{name}"][cov[name].iloc[i]]
        eta = eta + p["la_effect"][la.iloc[i]]
        pk = softmax(eta)
        like = 0.0
        for k in range(len(pk)):
            term = pk[k] * np.prod(np.where(factors.iloc[i], p["item"][k], 1 - p["item"][k]))
            s47, cpp, lac = out.iloc[i]
            q = p["distal_cond"][k]
            term *= q[0] if s47 else 1 - q[0]
            if s47:  # a plan is only at risk after an enquiry
                term *= q[1] if cpp else 1 - q[1]
            term *= q[2] if lac else 1 - q[2]
            like += term
        total += np.log(like)
    return total


def test_weighted_rows_equal_row_level_likelihood():
    factors, cov, la, out = _small(n=120, seed=3)
    d = collapse_regression(factors, cov, la, out, references={"age": "a", "sex": "f"})
    m = build_regression_model(d, 2)
    inputs = [m["item_prob"], m["distal_cond"], m["intercept"], m["effect_age_raw"], m["effect_sex_raw"],
              m["la_sd"], m["la_z"]]
    f = pytensor.function(inputs, m.potentials[0])
    rng = np.random.default_rng(shifted_seed(1))
    for _ in range(3):
        item = rng.uniform(0.05, 0.95, (2, 4))
        distal = rng.uniform(0.05, 0.95, (2, 3))
        zs = lambda *shape: (lambda x: x - x.mean(axis=-1, keepdims=True))(rng.normal(size=shape))
        intercept, age_raw, sex_raw, la_z = zs(2), zs(2, 2), zs(1, 2), zs(3, 2)
        la_sd = rng.uniform(0.1, 1.0, 2)
        scaled = la_z * la_sd
        la_eff = scaled - scaled.mean(axis=1, keepdims=True)
        params = {"item": item, "distal_cond": distal, "intercept": intercept,
                  "effect_age": {"a": np.zeros(2), "b": age_raw[0], "c": age_raw[1]},
                  "effect_sex": {"f": np.zeros(2), "m": sex_raw[0]},
                  "la_effect": dict(zip(["L1", "L2", "L3"], la_eff))}
        got = float(f(item, distal, intercept, age_raw, sex_raw, la_sd, la_z))
        assert got == pytest.approx(_brute_loglik(factors, cov, la, out, d.references, params), abs=1e-8)


def test_model_dims_and_coding():
    factors, cov, la, out = _small()
    d = collapse_regression(factors, cov, la, out, references={"age": "b"})
    m = build_regression_model(d, 2)
    assert m.named_vars_to_dims["effect_age"] == ("age", "class")
    assert m.named_vars_to_dims["effect_age_raw"] == ("age_contrast", "class")
    assert list(m.coords["age_contrast"]) == ["a", "c"]
    assert m.named_vars_to_dims["la_effect"] == ("la", "class")
    assert m.named_vars_to_dims["distal_prob"] == ("class", "outcome")
    with pytest.raises(ValueError):
        build_regression_model(d, 1)


# ---------------------------------------------------------------------------------------
# Recovery against the simulator
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recovery(simulated):
    sim = simulated("six-la", 11)
    cls = sim.classes.to_numpy()
    keep = np.flatnonzero(sim.episodes["assessment"].to_numpy().astype(bool) & np.isin(cls, CLASSES))
    sel = np.sort(np.random.default_rng(shifted_seed(3)).choice(keep, N_EPISODES, replace=False))
    ep = sim.episodes.iloc[sel].reset_index(drop=True)
    data = collapse_regression(sim.factors.iloc[sel][FACTORS].reset_index(drop=True),
                               ep[["age_group", "gender", "ethnicity"]], ep["la_code"], ep[OUTCOMES],
                               references={"age_group": "10_15"})
    settings = SamplerSettings(draws=400, tune=300, chains=2, seed=shifted_seed(3))
    fitted = fit_latent_class_regression(data, 3, settings, n_starts=10, em_seed=shifted_seed(0))
    truth = sim.truth["classes"]
    true_profiles = np.array([[truth["profiles"][c][f] for f in FACTORS] for c in CLASSES])
    est = fitted.idata.posterior["item_prob"].mean(("chain", "draw")).to_numpy()
    perm = match_profiles(est, true_profiles)  # perm[j]: fitted class of true class j
    return fitted, data, ep, cls[sel], sim.truth, perm



def _sample_matrix(draws):
    """sample x quantity matrix of an xarray of draws (chain, draw first)."""
    values = np.asarray(draws.transpose("chain", "draw", ...))
    return values.reshape(values.shape[0] * values.shape[1], -1)


def test_distal_probabilities_cover_the_truth(recovery):
    fitted, data, ep, true_class, truth, perm = recovery
    draws = derived_draws(fitted.idata, data)["distal_prob"]
    table = summarise(derived_draws(fitted.idata, data), 0.95)
    ess = min_ess(draws)
    misses, z = {}, {}
    for j, c in enumerate(CLASSES):
        members = true_class == c
        for o in OUTCOMES:
            true = ep.loc[members, o].mean()
            sel = {"class": fitted.idata.posterior["class"].to_numpy()[perm[j]], "outcome": o}
            lo, hi = float(table["distal_prob_lower"].sel(sel)), float(table["distal_prob_upper"].sel(sel))
            if not lo <= true <= hi:
                misses[(c, o)] = (round(true, 3), round(lo, 3), round(hi, 3))
            z[(c, o)] = round((float(draws.sel(sel).mean()) - true) / float(draws.sel(sel).std()), 2)
    print(f"distal probabilities: z {z}")
    # The truths are the shares among each true class's own episodes, which the posterior of
    # P(outcome | class) brackets conservatively (its SD also holds the binomial sampling of
    # those episodes).  So calibrated bounds are upper bounds here: at most 3 of the 9 95%
    # intervals miss (P = 6.4e-4), every mean within z_bound(9) = 3.9 SDs (P = 1e-3).
    assert len(misses) <= max_misses(9, 0.95), misses
    assert max(map(abs, z.values())) <= z_bound(9, ess=ess), z


def _age_contrast(post, perm, age, k):
    """Log odds ratio (age vs 10_15) of true class k against Domestic Violence, draws."""
    eff = post["effect_age_group"].sel(age_group=age)
    return (eff.isel({"class": perm[k]}) - eff.isel({"class": perm[1]})).to_numpy().ravel()


def test_covariate_effects_signs_and_intervals(recovery):
    fitted, data, ep, true_class, truth, perm = recovery
    post = fitted.idata.posterior
    age = truth["classes"]["age_effect"]
    contrasts, trues = [], []
    for a in ("under_1", "1_4", "5_9", "16_plus"):
        for k in (0, 2):
            c, dv = CLASSES[k], CLASSES[1]
            trues.append((age[c][a] - age[c]["10_15"]) - (age[dv][a] - age[dv]["10_15"]))
            contrasts.append(_age_contrast(post, perm, a, k))
    contrasts, trues = np.column_stack(contrasts), np.array(trues)
    ess = min(min_ess(post["effect_age_group"]), min_ess(post["effect_gender"]), min_ess(post["effect_ethnicity"]))
    # The 8 age contrasts share Domestic Violence as reference: jointly, chi-square(8), P = 1e-3.
    d2, bound = mahalanobis(contrasts, trues), mahalanobis_bound(len(trues), ess)
    print(f"age contrasts: Mahalanobis {d2:.1f} (bound {bound:.1f})")
    assert d2 <= bound, (d2, bound)
    # Strong effects: the 95% interval excludes zero, on the right side, wherever the truth is
    # far enough from zero for that to be guaranteed: |truth| >= (1.96 + z) posterior SDs, z
    # one-sided over the 8 (P <= 1e-3 for all that qualify).
    z_need = 1.96 + z_bound(len(trues), p_false=2e-3, ess=ess)
    sd = contrasts.std(axis=0)
    lo, hi = np.quantile(contrasts, [0.025, 0.975], axis=0)
    strong = np.abs(trues) >= z_need * sd
    print(f"age contrasts |truth| / SD {np.round(np.abs(trues) / sd, 1)}; sign asserted where >= {z_need:.1f}")
    assert strong.any()  # the design has effects the data guarantee (truth up to 1.5 on the log odds)
    assert (np.sign(trues[strong]) * lo[strong] > 0).all() and (np.sign(trues[strong]) * hi[strong] > 0).all()
    # Gender and ethnicity have no effect on class in the simulator: their contrasts with
    # Domestic Violence sit at zero, jointly: chi-square(n), P = 1e-3.
    zero = []
    for cov in ("gender", "ethnicity"):
        eff = post[f"effect_{cov}"]
        for level in data.levels[cov]:
            if level == data.references[cov]:
                continue
            for k in (0, 2):
                zero.append((eff.sel({cov: level}).isel({"class": perm[k]})
                             - eff.sel({cov: level}).isel({"class": perm[1]})).to_numpy().ravel())
    zero = np.column_stack(zero)
    d2, bound = mahalanobis(zero, np.zeros(zero.shape[1])), mahalanobis_bound(zero.shape[1], ess)
    print(f"null effects: Mahalanobis {d2:.1f} over {zero.shape[1]} (bound {bound:.1f})")
    assert d2 <= bound, (d2, bound)


def _true_prevalence(data, truth, by):
    """Standardised class prevalence under the truth (softmax restricted to CLASSES)."""
    cls = truth["classes"]
    share = data.cell_count / data.n_episodes
    levels = data.levels["age_group"] if by == "age_group" else data.las
    out = []
    for v in levels:
        probs = []
        for cell in data.cells.itertuples():
            a = v if by == "age_group" else cell.age_group
            la = v if by == "la" else cell.la
            eta = np.array([cls["base_logit"][c] + cls["age_effect"][c][a]
                            + truth["la_effects"][la]["class_logit"][c] for c in CLASSES])
            probs.append(softmax(eta))
        out.append(np.array(probs).T @ share)
    return np.array(out)  # level x true class


@pytest.mark.parametrize("by", ["age_group", "la"])
def test_standardised_prevalence_covers_the_truth(recovery, by):
    fitted, data, ep, true_class, truth, perm = recovery
    name = f"prevalence_by_{by}"
    draws = derived_draws(fitted.idata, data)[name]
    table = summarise(derived_draws(fitted.idata, data), 0.9)
    true = _true_prevalence(data, truth, by)
    assert table[f"{name}_mean"].dims == (by, "class")
    lo = table[f"{name}_lower"].to_numpy()[:, perm]
    hi = table[f"{name}_upper"].to_numpy()[:, perm]
    mean = table[f"{name}_mean"].to_numpy()[:, perm]
    coverage = np.mean((lo <= true) & (true <= hi))
    # Each level's class shares sum to one: drop the last class, test the rest jointly
    # (levels x 2 quantities): chi-square, P = 1e-3.
    flat = np.asarray(draws.transpose("chain", "draw", by, "class"))[..., perm[:-1]]
    flat = flat.reshape(flat.shape[0] * flat.shape[1], -1)
    d2, bound = mahalanobis(flat, true[:, :-1].ravel()), mahalanobis_bound(flat.shape[1], min_ess(draws))
    print(f"{by}: coverage {coverage:.2f}, max error {np.abs(mean - true).max():.3f}, "
          f"Mahalanobis {d2:.1f} over {flat.shape[1]} (bound {bound:.1f})")
    assert d2 <= bound, (d2, bound)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, atol=1e-9)


def test_diagnostics_after_alignment(recovery):
    fitted, data, *_ = recovery
    assert not fitted.alignment.multimodal
    table = fitted.convergence
    print(f"regression: max R-hat {table['r_hat'].max():.3f}, min bulk ESS {table['ess_bulk'].min():.0f}")
    # Short test chains (2 x 400): bulk ESS >= 20 is measured, not derived (the LA scale of six
    # LAs mixes slowest); from it, correctly sampled chains keep every R-hat under
    # rhat_limit(20, n) but for P <= 1e-3 (a chain on another labelling gives far more).
    assert table["ess_bulk"].min() >= 20
    assert table["r_hat"].max() < rhat_limit(20, len(table))
    index = list(table.index)
    assert any(i.startswith("effect_age_group[1_4") for i in index)
    assert not any(i.startswith("effect_age_group[10_15") for i in index)  # reference zeros
    assert any(i.startswith("la_effect[") for i in index) and any(i.startswith("distal_prob[") for i in index)
    assert set(fitted.gate) >= {"max_r_hat", "min_ess_bulk", "divergences", "passed"}
    post = fitted.idata.posterior
    np.testing.assert_allclose(post["intercept"].sum("class"), 0.0, atol=1e-8)  # sum-to-zero kept


def test_relabelled_chain_is_aligned_back_with_every_class_quantity(recovery):
    """Swap the labels of chain 1 in every class-indexed variable: alignment undoes it."""
    fitted, data, *_ = recovery
    post = fitted.idata.posterior
    n_chain, n_draw, k = post.sizes["chain"], post.sizes["draw"], post.sizes["class"]
    perm = np.broadcast_to(np.arange(k), (n_chain, n_draw, k)).copy()
    perm[1] = [2, 0, 1]
    scrambled = fitted.idata.copy()
    scrambled.posterior = permute_classes(post, perm)
    assert not np.allclose(scrambled.posterior["distal_prob"].isel(chain=1), post["distal_prob"].isel(chain=1))
    raw_rhat = convergence_table(scrambled, ["distal_prob"])["r_hat"].max()
    assert raw_rhat > 1.5  # diagnostics before alignment measure the label switch, not convergence
    aligned = align_labels(scrambled).idata.posterior
    for name in ("item_prob", "distal_prob", "intercept", "effect_age_group", "la_effect", "la_sd", "class_weight"):
        np.testing.assert_allclose(aligned[name].to_numpy(), post[name].to_numpy(), err_msg=name)
