"""The one-softplus binomial (models/likelihoods.py) is PyMC's Binomial(logit_p) to rounding:
values, gradients, pointwise log-likelihoods (LOO) and predictive draws."""

from __future__ import annotations

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import gammaln
from scipy.stats import binom

from _seeds import seed
from models.likelihoods import LogitBinomial, logit_binomial_loglik

TRIALS = np.array([0, 1, 1, 3, 7, 50, 50, 200, 1000, 5])
SUCCESSES = np.array([0, 0, 1, 3, 0, 25, 50, 1, 999, 2])
# Logits from the tails (softplus of +-40 is where a naive log(1 + exp) loses digits) to 0.
ETA = np.array([0.0, -40.0, 40.0, 3.0, -2.5, 0.1, 12.0, -6.0, 7.0, -0.7])


def _models():
    out = []
    for ours in (False, True):
        with pm.Model() as model:
            eta = pm.Normal("eta", 0.0, 10.0, shape=len(TRIALS))
            if ours:
                LogitBinomial("y", TRIALS, eta, observed=SUCCESSES)
            else:
                pm.Binomial("y", n=TRIALS, logit_p=eta, observed=SUCCESSES)
        out.append(model)
    return out


def _exact(eta):
    """log C(n, k) + k eta - n log(1 + e^eta), in numpy (logaddexp is exact in the tails)."""
    const = gammaln(TRIALS + 1) - gammaln(SUCCESSES + 1) - gammaln(TRIALS - SUCCESSES + 1)
    return const + SUCCESSES * eta - TRIALS * np.logaddexp(0.0, eta)


def test_values_and_gradients_equal_pymcs_binomial():
    pymc_model, ours = _models()
    # Where PyMC is finite (|logit| < 30), the two agree; both match the exact value.
    for eta in (np.clip(ETA, -12, 12), ETA * 0.3 - 1.0, -np.clip(ETA, -12, 12)):
        lp_theirs = pymc_model.compile_logp(sum=False)({"eta": eta})[1]
        lp_ours = ours.compile_logp(sum=False)({"eta": eta})[1]
        np.testing.assert_allclose(lp_ours, lp_theirs, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(lp_ours, _exact(eta), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ours.compile_dlogp()({"eta": eta}), pymc_model.compile_dlogp()({"eta": eta}),
                                   rtol=1e-9, atol=1e-9)
    # In the tails PyMC's sigmoid rounds to 1 and its log(1 - p) to -inf (one failure at
    # logit 40 has log-likelihood -40, not -inf); the softplus form stays exact there.
    np.testing.assert_allclose(ours.compile_logp(sum=False)({"eta": ETA})[1], _exact(ETA), rtol=1e-9, atol=1e-9)
    score = SUCCESSES - TRIALS / (1 + np.exp(-ETA)) - ETA / 100.0  # d/d eta, with the N(0, 10) prior
    np.testing.assert_allclose(ours.compile_dlogp()({"eta": ETA}), score, rtol=1e-9, atol=1e-9)


def test_pointwise_log_likelihood_for_loo_equals_pymcs():
    draws = np.random.default_rng(seed(1)).normal(0.0, 3.0, size=(1, 4, len(TRIALS)))
    idata = az.from_dict(posterior={"eta": draws})
    logliks = [pm.compute_log_likelihood(idata.copy(), model=m, progressbar=False).log_likelihood["y"].to_numpy()
               for m in _models()]
    np.testing.assert_allclose(logliks[1], logliks[0], rtol=1e-9, atol=1e-9)


def test_a_count_outside_zero_to_trials_has_zero_probability():
    with pm.Model() as model:
        eta = pm.Normal("eta", 0.0, 1.0, shape=2)
        LogitBinomial("y", np.array([3, 3]), eta, observed=np.array([4, -1]))
    assert np.all(np.isneginf(model.compile_logp(sum=False)({"eta": np.zeros(2)})[1]))


def test_the_potential_form_is_the_log_likelihood_less_log_n_choose_k():
    k, n, eta = pt.dvector(), pt.dvector(), pt.dvector()
    f = pm.compile([k, n, eta], logit_binomial_loglik(k, n, eta))
    const = gammaln(TRIALS + 1) - gammaln(SUCCESSES + 1) - gammaln(TRIALS - SUCCESSES + 1)
    np.testing.assert_allclose(f(SUCCESSES.astype(float), TRIALS.astype(float), ETA) + const, _exact(ETA), rtol=1e-9, atol=1e-9)
    eta_mid = np.clip(ETA, -10, 10)  # against scipy's pmf, which goes through p
    np.testing.assert_allclose(f(SUCCESSES.astype(float), TRIALS.astype(float), eta_mid) + const,
                               binom.logpmf(SUCCESSES, TRIALS, 1 / (1 + np.exp(-eta_mid))), rtol=1e-8)


def test_predictive_draws_follow_the_binomial():
    n = np.full(400, 50)
    eta = np.linspace(-2.0, 2.0, 400)
    with pm.Model():
        y = LogitBinomial("y", n, eta)
        draws = pm.draw(y, draws=25, random_seed=seed(3))
    assert draws.shape == (25, 400) and draws.min() >= 0 and draws.max() <= 50
    p = 1 / (1 + np.exp(-eta))
    # The total of 10,000 independent binomial draws against its mean: |z| > 4 with
    # probability 6e-5 when the draws are right (normal approximation; the variance is
    # known exactly); a wrong p (say sigmoid(-eta), or p for eta + 0.05) moves z by > 20.
    z = (draws.sum() - 25 * (n * p).sum()) / np.sqrt(25 * (n * p * (1 - p)).sum())
    assert abs(z) < 4, z
