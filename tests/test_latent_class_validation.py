"""Validation against a published analysis: Agresti's carcinoma data, poLCA's ML estimates.

The numbers below come from data/validation/README.md (poLCA 1.6), not from this code.
"""

from __future__ import annotations

from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest

from models.latent_class.agreement import match_profiles
from models.latent_class.em import fit_em
from models.latent_class.fit import fit_latent_class
from models.latent_class.labels import align_labels, permute_classes
from models.latent_class.patterns import collapse
from models.sampling import SamplerSettings

DATA = Path(__file__).resolve().parents[1] / "data" / "validation" / "carcinoma.csv"
PUBLISHED_LOGLIK = {1: -524.4648, 2: -317.2568, 3: -293.7050, 4: -289.2858}
PUBLISHED_SHARES = np.array([0.4447, 0.3736, 0.1817])
PUBLISHED_PROFILES = np.array([
    [1.0000, 0.9809, 0.8575, 0.5862, 1.0000, 0.4764, 1.0000],
    [0.0573, 0.1379, 0.0000, 0.0000, 0.0551, 0.0000, 0.0000],
    [0.5128, 1.0000, 0.0000, 0.0576, 0.7506, 0.0000, 0.6307],
])


@pytest.fixture(scope="module")
def carcinoma():
    return pd.read_csv(DATA) == 2  # poLCA coding: 2 = yes


@pytest.fixture(scope="module")
def bayes_fit(carcinoma):
    settings = SamplerSettings(draws=500, tune=500, chains=2, seed=3)
    return fit_latent_class(carcinoma, 3, settings, reference=PUBLISHED_PROFILES)


def test_data_as_published(carcinoma):
    assert carcinoma.shape == (118, 7)
    assert list(carcinoma.columns) == list("ABCDEFG")


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_em_reproduces_published_loglik(carcinoma, k):
    em = fit_em(collapse(carcinoma), k, n_starts=20, seed=1)
    assert em.loglik == pytest.approx(PUBLISHED_LOGLIK[k], abs=1e-3)


def test_em_reproduces_published_mle(carcinoma):
    em = fit_em(collapse(carcinoma), 3, n_starts=20, seed=1)
    perm = match_profiles(em.profiles, PUBLISHED_PROFILES)
    np.testing.assert_allclose(em.profiles[perm], PUBLISHED_PROFILES, atol=1e-3)
    np.testing.assert_allclose(em.weights[perm], PUBLISHED_SHARES, atol=1e-3)


def test_posterior_agrees_with_published_mle(bayes_fit):
    """Flat priors (Beta(1,1), Dirichlet(1)); 118 slides.

    Tolerance: every posterior mean within 0.10 of the MLE (a boundary MLE of 0 or 1 in a
    class of n_k slides has a Beta(1,1) posterior mean near 1/(n_k + 2), 0.02-0.05 here,
    plus class-assignment uncertainty); shares within 0.05; each interior MLE (0.02-0.98)
    inside its 95% credible interval.
    """
    post = bayes_fit.idata.posterior
    mean_p = post["item_prob"].mean(("chain", "draw")).to_numpy()
    mean_w = post["class_weight"].mean(("chain", "draw")).to_numpy()
    assert np.abs(mean_p - PUBLISHED_PROFILES).max() <= 0.10
    assert np.abs(mean_w - PUBLISHED_SHARES).max() <= 0.05
    lo, hi = (post["item_prob"].quantile(q, ("chain", "draw")).to_numpy() for q in (0.025, 0.975))
    interior = (PUBLISHED_PROFILES > 0.02) & (PUBLISHED_PROFILES < 0.98)
    assert np.all((lo <= PUBLISHED_PROFILES) & (PUBLISHED_PROFILES <= hi) | ~interior)
    # boundary MLEs: the posterior leans the same way, with most mass near the boundary
    assert np.all(mean_p[PUBLISHED_PROFILES == 0] < 0.15)
    assert np.all(mean_p[PUBLISHED_PROFILES == 1] > 0.85)


def test_fit_converges_and_is_unimodal(bayes_fit):
    assert not bayes_fit.alignment.multimodal
    assert bayes_fit.gate["divergences"] == 0
    assert bayes_fit.convergence["r_hat"].max() < 1.05


def test_chains_on_permuted_labellings_realigned(bayes_fit):
    """A fit whose second chain carries another labelling (equally valid under exchangeable
    priors): raw R-hat is huge, after alignment it is the aligned fit's, near 1."""
    idata = bayes_fit.idata
    perm = np.tile(np.arange(3), (2, idata.posterior.sizes["draw"], 1))
    perm[1] = [2, 0, 1]
    switched = az.InferenceData(posterior=permute_classes(idata.posterior, perm))
    rhat_raw = float(az.rhat(switched, var_names=["item_prob"]).to_array().max())
    assert rhat_raw > 1.5
    realigned = align_labels(switched, PUBLISHED_PROFILES)
    np.testing.assert_array_equal(realigned.idata.posterior["item_prob"].to_numpy(),
                                  idata.posterior["item_prob"].to_numpy())
    assert float(az.rhat(realigned.idata, var_names=["item_prob", "class_weight"]).to_array().max()) < 1.05
