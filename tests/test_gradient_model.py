"""The gradient model's structure: cells are sufficient statistics, labels are right, the
binomial likelihood on cells is the Bernoulli likelihood on episodes (same posterior)."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
from scipy.special import gammaln

from _seeds import seed as shifted_seed
from models.cells import population_cells, transition_cells
from models.gradient.model import GradientSpec, build_gradient_model, centring_plan
from models.priors import PRIOR_SETS, get_prior_set

STAGES = ("assessment", "s47", "icpc", "cpp", "lac")


@pytest.fixture(scope="module")
def national(national_geography):
    return national_geography


@pytest.fixture(scope="module")
def tiny_episodes(simulated):
    return simulated("tiny", 3).episodes


@pytest.fixture(scope="module")
def tiny_geography(simulated, national):
    """The tiny preset samples 40 LSOAs per LA: population cells must use only those."""
    return national[national["lsoa_code"].isin(simulated("tiny", 3).lsoas)]


def test_transition_cells_are_sufficient_statistics(tiny_episodes, national):
    ep = tiny_episodes
    cells = transition_cells(ep, national, covariates=("age_group",))
    parent = {"assessment": np.ones(len(ep), bool), "s47": ep["assessment"], "icpc": ep["s47"],
              "cpp": ep["icpc"], "lac": ep["assessment"]}
    for stage in STAGES:
        c = cells[cells["stage"] == stage]
        assert c["trials"].sum() == int(np.sum(parent[stage]))
        assert c["successes"].sum() == int(ep[stage].sum())
        assert (c["successes"] <= c["trials"]).all()
    # Every cell is one (stage, LSOA, year, age group) combination, seen once.
    assert not cells.duplicated(["stage", "lsoa_code", "year", "age_group"]).any()
    assert len(cells) < sum(int(np.sum(p)) for p in parent.values())  # real aggregation

    rows = transition_cells(ep, national, covariates=("age_group",), aggregate=False)
    assert (rows["trials"] == 1).all() and len(rows) == cells["trials"].sum()

    reach = transition_cells(ep, national, given="referral")
    assert (reach.groupby("stage", observed=True)["trials"].sum() == len(ep)).all()
    with pytest.raises(ValueError, match="given must be"):
        transition_cells(ep, national, given="assessment")


def test_population_cells_include_every_lsoa_and_zero_counts(tiny_episodes, tiny_geography):
    ep = tiny_episodes
    cells = population_cells(ep, tiny_geography, stages=("referral", "cpp"))
    lsoas = tiny_geography
    years = ep["year_ending_march"].nunique()
    assert len(cells) == 2 * len(lsoas) * years
    assert cells.loc[cells["stage"] == "referral", "count"].sum() == len(ep)
    assert cells.loc[cells["stage"] == "cpp", "count"].sum() == int(ep["cpp"].sum())
    assert (cells["count"] == 0).any()  # unsampled LSOAs and rare stages keep their zeros
    assert (cells["exposure"] > 0).all()


def _random_points(model, n, seed):
    rng = np.random.default_rng(shifted_seed(seed))
    ip = model.initial_point()
    return [{k: v + rng.normal(0, 0.3, size=np.shape(v)) for k, v in ip.items()} for _ in range(n)]


def test_binomial_cells_give_the_bernoulli_posterior(tiny_episodes, national):
    """log p(theta | cells) - log p(theta | rows) is the same constant at every theta (the
    log binomial coefficients), and the gradients agree: the two posteriors are identical."""
    ep = tiny_episodes
    covs = ("age_group",)
    cells = transition_cells(ep, national, stages=("s47", "lac"), covariates=covs)
    rows = transition_cells(ep, national, stages=("s47", "lac"), covariates=covs, aggregate=False)
    prior = get_prior_set("default")
    spec = GradientSpec(covariates=covs, centred=())
    m_cells = build_gradient_model(cells, spec, prior)
    m_rows = build_gradient_model(rows, GradientSpec(covariates=covs, centred=(), likelihood="bernoulli"), prior)
    assert {v.name for v in m_cells.free_RVs} == {v.name for v in m_rows.free_RVs}
    logp_c, logp_r = m_cells.compile_logp(), m_rows.compile_logp()
    dlogp_c, dlogp_r = m_cells.compile_dlogp(), m_rows.compile_dlogp()
    n, k = cells["trials"].to_numpy(float), cells["successes"].to_numpy(float)
    log_choose = float(np.sum(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)))
    for point in _random_points(m_cells, 5, seed=1):
        assert logp_c(point) - logp_r(point) == pytest.approx(log_choose, rel=1e-9, abs=1e-6)
        np.testing.assert_allclose(dlogp_c(point), dlogp_r(point), rtol=1e-7, atol=1e-7)
    with pytest.raises(ValueError, match="one row per episode"):
        build_gradient_model(cells, GradientSpec(covariates=covs, likelihood="bernoulli"), prior)


def test_parameters_carry_named_dims(tiny_episodes, national):
    cells = transition_cells(tiny_episodes, national, covariates=("ethnicity",))
    model = build_gradient_model(cells, GradientSpec(covariates=("ethnicity",)), get_prior_set("default"))
    dims = model.named_vars_to_dims
    assert dims["within_effect"] == ("stage",)
    assert dims["la_effect"] == ("la", "stage")
    assert dims["la_slope"] == ("la", "stage")
    assert dims["ethnicity_gradient_shift"] == ("ethnicity", "stage")
    assert dims["year_effect"] == ("year", "stage")
    assert list(model.coords["stage"]) == list(STAGES)
    assert set(model.coords["la"]) == set(tiny_episodes["la_code"])
    # Reference coding: the reference level's effect is a structural zero.
    ref = model.coords["ethnicity"].index("white_british")
    draw = pm.draw(model["ethnicity_effect"], random_seed=shifted_seed(1))
    assert np.all(draw[ref] == 0) and np.all(np.delete(draw, ref, axis=0) != 0)  # a normal draw is 0 w.p. 0


def test_spec_and_prior_errors_are_specific(tiny_episodes, national):
    cells = transition_cells(tiny_episodes, national, covariates=("ethnicity",))
    with pytest.raises(ValueError, match="likelihood 'poisson' does not fit scale 'transition'"):
        GradientSpec(scale="transition", likelihood="poisson")
    with pytest.raises(ValueError, match="scale must be"):
        GradientSpec(scale="rates")
    with pytest.raises(ValueError, match="reference level 'nobody' of ethnicity is absent"):
        build_gradient_model(cells, GradientSpec(covariates=("ethnicity",), reference={"ethnicity": "nobody"}),
                             get_prior_set("default"))
    with pytest.raises(KeyError, match="choose one of default, wide, pc"):
        get_prior_set("flat")
    assert {"default", "wide", "pc"} <= set(PRIOR_SETS)
    for prior in PRIOR_SETS.values():  # every set builds and names every prior
        build_gradient_model(cells, GradientSpec(), prior)
        assert len(prior.describe()) == 8


def test_auto_centring_follows_the_data_strength(tiny_episodes, tiny_geography):
    pop = population_cells(tiny_episodes, tiny_geography, stages=("referral", "lac"))
    plan = centring_plan(pop, GradientSpec(scale="population"), ["referral", "lac"])
    per_la = pop.groupby(["stage", "la_code"], observed=True)["count"].sum().groupby("stage", observed=True).mean()
    per_lsoa = pop.groupby(["stage", "lsoa_code"], observed=True)["count"].sum().groupby("stage", observed=True).mean()
    # The premises: thousands of referrals per LA, over 50 per LSOA, a few LAC per LSOA (information 50 needed).
    assert per_la["referral"] > 1000 and per_lsoa["referral"] > 50 and per_lsoa["lac"] < 20
    assert plan["la"][0] and plan["lsoa"].tolist() == [True, False] and not plan["la_slope"].any()
    # Binomial information is n p (1 - p): near-certain transitions carry little of it.
    trans = transition_cells(tiny_episodes, tiny_geography, stages=("assessment",))
    assert not centring_plan(trans, GradientSpec(), ["assessment"])["lsoa"][0]
    explicit = centring_plan(pop, GradientSpec(scale="population", centred=("lsoa",)), ["referral", "lac"])
    assert explicit["lsoa"].all() and not explicit["la"].any()


def test_correlated_stages_and_negative_binomial_build_valid_models(tiny_episodes, tiny_geography):
    pop = population_cells(tiny_episodes, tiny_geography, stages=("referral", "cpp", "lac"))
    spec = GradientSpec(scale="population", likelihood="negbin", correlated_stages=True)
    model = build_gradient_model(pop, spec, get_prior_set("default"))
    assert model.named_vars_to_dims["la_corr"] == ("stage", "stage_b")
    assert model.named_vars_to_dims["nb_inverse_dispersion"] == ("stage",)
    corr = pm.draw(model["la_corr"], draws=20, random_seed=shifted_seed(2))
    assert np.allclose(corr, np.swapaxes(corr, 1, 2)) and np.allclose(corr[:, [0, 1, 2], [0, 1, 2]], 1.0)
    assert (np.linalg.eigvalsh(corr) > 0).all()  # every prior draw is a correlation matrix
    assert np.isfinite(model.compile_logp()(model.initial_point()))


def test_numpyro_is_selectable_and_says_how_to_install_it(tiny_episodes, national):
    from models.sampling import SamplerSettings, fit, sampler_available

    assert SamplerSettings(sampler="numpyro").sampler == "numpyro"
    with pytest.raises(ValueError, match="choose one of nutpie, pymc, numpyro"):
        SamplerSettings(sampler="stan")
    if sampler_available("numpyro"):
        pytest.skip("numpyro installed here: the GPU path is exercised by the benchmark")
    cells = transition_cells(tiny_episodes, national, stages=("lac",))
    model = build_gradient_model(cells, GradientSpec(), get_prior_set("default"))
    with pytest.raises(RuntimeError, match="pip install numpyro jax"):
        fit(model, SamplerSettings(sampler="numpyro", draws=10, tune=10, chains=1))
