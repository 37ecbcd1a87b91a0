"""Recovery of the simulator's seven demand classes (known truth) by the Bayesian fit.

Thresholds are set against what the data allow, not what the code happened to give, each
with its probability of failing when the code is right (tests/README.md):
- ARI: even the true parameters classify episodes imperfectly (classes share factors), so
  the modal assignment under the TRUE model (the oracle, ~0.6 here) is the ceiling; the
  fit must reach 85% of it.  Not derived: measured, the fit reaches 97-100% of it.
- Profile error: mean |estimated - true| item probability after matching classes must be
  under a third of the error of the no-class answer (every class = marginal prevalence);
  the error expected from the posterior SDs, and its spread, are printed beside it.
"""

from __future__ import annotations

import numpy as np
import pytest

from _seeds import seed
from _stats import one_sided_tail, rhat_limit, z_bound
from models.latent_class.agreement import adjusted_rand_index, match_profiles, profile_error
from models.latent_class.em import posterior_membership
from models.latent_class.fit import fit_latent_class
from models.latent_class.profiles import class_names, modal_class, profile_table
from models.sampling import SamplerSettings
from models.vocabulary import FACTOR_NAMES

#: At 5,000 episodes the posterior empties the 3% Complex Needs II class (its 40 parameters
#: are not supported by ~135 episodes: the Occam penalty of a flat-prior mixture); at
#: 15,000 all seven classes are held.  The six-la extract has ~44,000 assessed episodes.
N_EPISODES = 15000


@pytest.fixture(scope="module")
def recovery(simulated):
    sim = simulated("six-la", 11)
    assessed = np.flatnonzero(sim.episodes["assessment"].to_numpy().astype(bool))
    sel = np.sort(np.random.default_rng(seed(7)).choice(assessed, N_EPISODES, replace=False))
    factors = sim.factors.iloc[sel][list(FACTOR_NAMES)]
    true_class = sim.classes.iloc[sel].to_numpy()
    names = sim.truth["classes"]["names"]
    profiles = sim.truth["classes"]["profiles"]
    truth_p = np.array([[profiles[c][f] for f in FACTOR_NAMES] for c in names])
    # 2 x 300 draws left the weights of the three overlapping parental-risk classes mixing
    # slowly (R-hat 1.07, bulk ESS 27 on one machine, < 1.05 on another); 2 x 500: R-hat 1.02.
    settings = SamplerSettings(draws=500, tune=500, chains=2, seed=seed(5))
    fitted = fit_latent_class(factors, 7, settings, n_starts=20, em_seed=seed(0))  # 10 starts: a poor mode
    return fitted, factors, true_class, names, truth_p


def test_modal_assignment_recovers_classes(recovery):
    fitted, factors, true_class, names, truth_p = recovery
    pat = fitted.patterns
    w_true = np.array([np.mean(true_class == c) for c in names])
    oracle = np.array(names)[posterior_membership(pat.matrix, w_true, truth_p).argmax(axis=1)][pat.index]
    ari_oracle = adjusted_rand_index(oracle, true_class)
    ari = adjusted_rand_index(modal_class(fitted.idata, pat), true_class)
    print(f"ARI {ari:.3f} oracle {ari_oracle:.3f} ratio {ari / ari_oracle:.3f}")
    # Measured, not derived: ratio 0.97-1.00 over seed offsets 0-3 (tests/README.md); the
    # parameter errors behind any shortfall are about 0.01 here, so 15% of the oracle is a
    # margin of many times the seed-to-seed spread.
    assert ari >= 0.85 * ari_oracle


def test_profiles_recovered(recovery):
    fitted, factors, true_class, names, truth_p = recovery
    post = fitted.idata.posterior
    ess = float(fitted.convergence["ess_bulk"].min())
    est = post["item_prob"].mean(("chain", "draw")).to_numpy()
    null = np.abs(truth_p - factors.mean().to_numpy()[None]).mean()
    err = profile_error(est, truth_p)
    # For calibrated, near-normal posteriors each |error| has mean sqrt(2/pi) SD and variance
    # (1 - 2/pi) SD^2; the mean over the 273 item probabilities is then near normal with the
    # centre and spread printed: null / 3 lies tens of spreads above it, P << 1e-3.
    sd = post["item_prob"].std(("chain", "draw")).to_numpy()
    expected, spread = np.sqrt(2 / np.pi) * sd.mean(), np.sqrt((1 - 2 / np.pi) * (sd ** 2).sum()) / sd.size
    print(f"profile error {err:.4f} (expected {expected:.4f} +- {spread:.4f}), null {null:.4f}, "
          f"P(> null / 3) = {one_sided_tail((null / 3 - expected) / spread):.1e}")
    assert err < null / 3
    perm = match_profiles(est, truth_p)
    w = post["class_weight"].mean(("chain", "draw")).to_numpy()[perm]
    w_sd = post["class_weight"].std(("chain", "draw")).to_numpy()[perm]
    w_true = np.array([np.mean(true_class == c) for c in names])
    # Weights against the 15,000 episodes' true shares, each within z_bound(7) = 3.8 posterior
    # SDs (P <= 1e-3).  The SDs run from 0.003 to 0.02 (the three overlapping parental-risk
    # classes trade episodes): a fixed 0.06 was under 3 SDs for those, P about 1e-2.
    z_w = (w - w_true) / w_sd
    print(f"class weights: |error| {np.abs(w - w_true).round(4)}, SD {w_sd.round(4)}, z {z_w.round(2)}")
    assert np.abs(z_w).max() <= z_bound(len(w), ess=ess), z_w


def test_fit_diagnostics_reported_after_alignment(recovery):
    fitted = recovery[0]
    table = fitted.convergence
    print(f"latent class recovery: max R-hat {table['r_hat'].max():.3f}, min bulk ESS {table['ess_bulk'].min():.0f}, "
          f"multimodal {fitted.alignment.multimodal}")
    # Measured, not derived: one labelling across chains and bulk ESS >= 30 (2 x 500 draws).
    # Derived from that floor: correctly sampled chains keep all 280 quantities' R-hat under
    # rhat_limit(30, 280) = 1.58 but for P <= 1e-3 (a chain in another mode gives far more).
    assert not fitted.alignment.multimodal
    assert table["ess_bulk"].min() >= 30
    assert table["r_hat"].max() < rhat_limit(30, len(table))
    assert set(fitted.gate) >= {"max_r_hat", "min_ess_bulk", "divergences", "passed"}


def test_profile_table_and_names(recovery):
    fitted, factors, true_class, names, truth_p = recovery
    table = profile_table(fitted.idata, prob=0.9)
    assert table["item_prob_mean"].dims == ("class", "factor")
    assert bool((table["item_prob_lower"] <= table["item_prob_mean"]).all())
    assert bool((table["item_prob_mean"] <= table["item_prob_upper"]).all())
    est = table["item_prob_mean"]
    perm = match_profiles(est.to_numpy(), truth_p)
    labels = class_names(est)
    assert len(set(labels)) == len(labels)
    # the single-factor classes are named by their signature factor (in truth it leads the
    # class's next factor by a wide margin, many posterior SDs: not a matter of chance)
    for true_name, factor in [("neglect", "neglect"), ("domestic_violence", "domestic_abuse_parent"),
                              ("physical_abuse", "physical_abuse_adult_on_child")]:
        assert labels[perm[names.index(true_name)]].split("+")[0] == factor
    # 90% intervals cover most true item probabilities: fewer than 75% of 273 covering means
    # over 68 misses where 27 are expected: P = 4e-13 (binomial; independent items).
    lo, hi = table["item_prob_lower"].to_numpy()[perm], table["item_prob_upper"].to_numpy()[perm]
    coverage = np.mean((lo <= truth_p) & (truth_p <= hi))
    print(f"coverage {coverage:.3f}")
    assert coverage >= 0.75
