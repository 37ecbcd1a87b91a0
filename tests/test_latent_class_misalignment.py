"""Neglect misalignment: counts, recovery of known shares, suppression.

Two truths: numpy-simulated LA shares drawn from the model itself (known exactly), and the
simulator, whose truth holds no misalignment share as such.  There, plan category and
recorded factors are drawn independently given the demand class, so a neglect plan of
true class k misses neglect at assessment with probability 1 - P(neglect | k); the
expected share among an LA's neglect plans, given their true classes, is the mean of
that over its plans.

Every stochastic assertion fails with probability <= 1/1000 when the code is right
(tests/README.md).  The LA shares share their hyperparameters, so they are tested jointly
on the logit scale: their Mahalanobis distance from the truth under the posterior
covariance (chi-square; Hotelling for the ESS), not by counting misses as if independent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from _seeds import seed
from _stats import min_ess, mahalanobis, mahalanobis_bound, rhat_limit, z_bound, z_score
from models.latent_class.misalignment import (
    MisalignmentCounts, build_misalignment_model, fit_misalignment, misalignment_counts, publishable,
)
from models.sampling import SamplerSettings
from models.suppression import SuppressionRule

#: PyMC's own NUTS: for a model this small its C compile beats numba's (measured ~4 s vs ~10 s CPU).
SETTINGS = SamplerSettings(sampler="pymc", draws=500, tune=500, chains=2, cores=1, seed=seed(4))


def _episodes():
    ep = pd.DataFrame({
        "la_code": ["A", "A", "A", "B", "B", "B", "B"],
        "cpp": [True, True, True, True, True, False, True],
        "cpp_category": ["neglect", "neglect", "multiple", "neglect", "neglect", None, "neglect"],
        "assessment": [True, True, True, True, True, True, False],
    })
    factors = pd.DataFrame({"neglect": [True, False, False, False, False, False, False],
                            "emotional_abuse": [False, True, True, False, True, False, False]})
    return ep, factors


def test_counts_by_la():
    ep, factors = _episodes()
    c = misalignment_counts(ep, factors)
    assert c.table.loc["A"].tolist() == [2, 1]          # plans, not_recorded
    assert c.table.loc["B"].tolist() == [2, 2]          # the unassessed plan is left out
    assert c.unassessed == 1
    wider = misalignment_counts(ep, factors, categories=("neglect", "multiple"))
    assert wider.table.loc["A"].tolist() == [3, 2]
    either = misalignment_counts(ep, factors, neglect_factors=("neglect", "emotional_abuse"))
    assert either.table["not_recorded"].tolist() == [0, 1]


def test_counts_errors_are_clear():
    ep, factors = _episodes()
    with pytest.raises(ValueError, match="cpp_category"):
        misalignment_counts(ep.drop(columns="cpp_category"), factors)
    with pytest.raises(ValueError, match="neglect factor"):
        misalignment_counts(ep, factors.drop(columns="neglect"))
    with pytest.raises(ValueError, match="no assessed child protection plans"):
        misalignment_counts(ep, factors, categories=("sexual",))
    with pytest.raises(ValueError, match="LA X"):
        build_misalignment_model(pd.DataFrame({"plans": [3], "not_recorded": [4]}, index=["X"]))



def _logit_distance(fitted, true: pd.Series) -> tuple[float, float]:
    """Mahalanobis distance of the LAs' true shares from the posterior (logit scale) and the
    value it stays under but for probability 1e-3."""
    share = fitted.idata.posterior["share"].sel(la=list(true.index)).transpose("chain", "draw", "la")
    draws = logit(np.asarray(share))
    flat = draws.reshape(-1, draws.shape[-1])
    return mahalanobis(flat, logit(true.to_numpy(float))), mahalanobis_bound(flat.shape[1], min_ess(draws))


def test_recovers_known_la_shares():
    rng = np.random.default_rng(seed(21))
    n_la, mu, sd = 12, logit(0.25), 0.4
    true = expit(mu + sd * rng.normal(size=n_la))
    # About 400 plans per LA, so that each LA's own data pin its share near its truth: with 90
    # (seed offset 3) the binomial noise hid the LAs' spread, the posterior rightly pooled them
    # to the mean (SD 0.14 against a true 0.4), and a fixed truth sat 60 on a chi-square(12)
    # scale: calibration of a hierarchical posterior holds on average over its hyperparameters,
    # conditionally only where the data determine them.  At 400: Mahalanobis 6.8-23.2 over
    # seed offsets 0-5.
    plans = rng.poisson(400, n_la)
    plans[:2] = [8, 15]  # small LAs: shrunk, with wide intervals
    not_rec = rng.binomial(plans, true)
    table = pd.DataFrame({"plans": plans, "not_recorded": not_rec}, index=[f"L{i:02d}" for i in range(n_la)])
    fitted = fit_misalignment(MisalignmentCounts(table, 0, ("neglect",), ("neglect",)), SETTINGS)
    summary = fitted.summary(0.9)
    las = summary.drop(index="all")
    post = fitted.idata.posterior
    # The 12 LA shares, drawn from the model's own form: jointly, chi-square(12), P = 1e-3.
    d2, bound = _logit_distance(fitted, pd.Series(true, index=table.index))
    covered = int(((las["lower"] <= true) & (true <= las["upper"])).sum())
    print(f"LA shares: {covered} of {n_la} 90% intervals cover; Mahalanobis {d2:.1f} (bound {bound:.1f})")
    assert d2 <= bound, (d2, bound)
    # The pooled share (over 1,000 plans: normal) within z_bound(1) = 3.3 posterior SDs; the
    # typical share, which twelve LAs set (t, 11 df, on the logit scale), within its t bound.
    pooled_true = float((plans * true).sum() / plans.sum())
    z_pooled = float(z_score(post["pooled_share"], pooled_true))
    z_typical = float(z_score(post["mu"], mu))
    print(f"pooled z {z_pooled:.2f}, typical z {z_typical:.2f}")
    assert abs(z_pooled) <= z_bound(1, ess=min_ess(post["pooled_share"]))
    assert abs(z_typical) <= z_bound(1, df=n_la - 1, ess=min_ess(post["mu"]))
    # shrinkage: the smallest LA (8 plans) is less certain of its share, on the logit scale,
    # than the typical LA with about 400 plans: logit SDs 0.35-0.48 against 0.10-0.12 over
    # seed offsets 0-5 (a ratio of 3 or more; with 90 plans the log ratio was 0.62 +- 0.16
    # over 60 seeds, min 0.30, P = 4e-5, and 400 plans only narrow the large LAs).
    sd = np.log(post["share"] / (1 - post["share"])).std(("chain", "draw")).to_series()
    big = table.index[table["plans"] > 50]
    print(f"logit SD: L00 {sd['L00']:.3f}, median of the large LAs {sd[big].median():.3f}")
    assert sd["L00"] > sd[big].median()
    # 2 x 500 draws of a 14-parameter model: bulk ESS >= 100 measured, not derived (over 100
    # seeds: min 125, log ESS mean 5.73, SD 0.24, so P(< 100) ~ 2e-6 for a lognormal); from it,
    # R-hat under rhat_limit(100, n) but for P <= 1e-3 (max over the 100 seeds: 1.03).
    table = fitted.convergence
    print(f"misalignment: max R-hat {table['r_hat'].max():.3f}, min bulk ESS {table['ess_bulk'].min():.0f}")
    assert table["ess_bulk"].min() >= 100
    assert table["r_hat"].max() < rhat_limit(100, len(table))


def test_simulator_misalignment_covered(simulated):
    sim = simulated("six-la", 11)
    counts = misalignment_counts(sim.episodes, sim.factors)
    fitted = fit_misalignment(counts, SETTINGS)
    summary = fitted.summary(0.9)

    # Expected share given the true classes of the plans (see module docstring).
    p_neglect = {c: prof["neglect"] for c, prof in sim.truth["classes"]["profiles"].items()}
    ep = sim.episodes
    plan = (ep["cpp"].to_numpy(dtype=bool) & (ep["cpp_category"].astype(object) == "neglect").to_numpy()
            & ep["assessment"].to_numpy(dtype=bool))
    miss = 1 - sim.classes[plan].map(p_neglect).to_numpy()
    true = pd.Series(miss).groupby(ep.loc[plan, "la_code"].to_numpy()).mean()
    las = summary.drop(index="all")
    assert las["plans"].tolist() == pd.Series(miss).groupby(ep.loc[plan, "la_code"].to_numpy()).size().tolist()
    print(pd.DataFrame({"true": true, "lower": las["lower"], "upper": las["upper"]}))
    # The six LAs' shares jointly (chi-square(6), P = 1e-3; conservative: an LA's plans each
    # have their own probability, whose binomial sum varies less than the model allows).
    d2, bound = _logit_distance(fitted, true)
    print(f"six-la LA shares: Mahalanobis {d2:.1f} (bound {bound:.1f})")
    assert d2 <= bound, (d2, bound)
    post = fitted.idata.posterior
    z_pooled = float(z_score(post["pooled_share"], miss.mean()))
    assert abs(z_pooled) <= z_bound(1, ess=min_ess(post["pooled_share"])), z_pooled
    # the research's "about a quarter": the simulator's neglect plans miss neglect 20-40% of the
    # time (set by its class profiles: the share is near 0.28 for any seed; posterior SD 0.01).
    assert 0.2 < summary.loc["all", "mean"] < 0.4


def test_publishable_suppresses_small_counts():
    summary = pd.DataFrame({"plans": [5, 40, 60, 105], "not_recorded": [2, 12, 15, 29],
                            "observed_share": [0.4, 0.3, 0.25, 29 / 105],
                            "mean": [0.3, 0.3, 0.26, 0.28], "lower": [0.1, 0.2, 0.2, 0.24],
                            "upper": [0.5, 0.4, 0.33, 0.33]}, index=["A", "B", "C", "all"])
    out = publishable(summary, SuppressionRule(10, "c"))
    assert out.loc["A", "plans"] == "c" and out.loc["A", "observed_share"] == "c"
    assert out.loc["B", "plans"] == "c"              # secondary: the total would reveal A
    assert out.loc["C", "plans"] == "60"
    assert out.loc["A", "mean"] == "0.300"           # model estimates are kept
    nearly_all = publishable(summary.assign(not_recorded=[2, 35, 15, 52]), SuppressionRule(10, "c"))
    assert nearly_all.loc["B", "not_recorded"] == "c"  # 5 recorded of 40 is small too
