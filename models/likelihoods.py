"""Binomial likelihoods on the logit scale, written with one transcendental call per cell.

PyMC's ``Binomial(n, logit_p=eta)`` forms ``p = sigmoid(eta)``, checks ``0 <= p <= 1`` and
takes ``log p`` and ``log(1 - p)`` through two softplus terms per cell, which its gradient
repeats.  The same log-likelihood is

    log C(n, k) + k * eta - n * softplus(eta)

(``log sigmoid(x) = -softplus(-x) = x - softplus(x)``): one softplus per cell, and one
sigmoid in the gradient.  On tens of thousands of cells the logp and gradient are almost
all exp/log calls, so this is the cost of a leapfrog step (benchmarks/bench_likelihood.py
measures both forms side by side).  Values, gradients and pointwise log-likelihoods equal
PyMC's (tests/test_likelihoods.py); draws (prior and posterior predictive) come from PyMC's
own Binomial.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions.dist_math import binomln


def logit_binomial_loglik(successes, trials, eta):
    """``k * eta - n * softplus(eta)``: the binomial log-likelihood without ``log C(n, k)``
    (for a ``pm.Potential`` whose constant does not matter)."""
    return successes * eta - trials * pt.softplus(eta)


def _logp(value, trials, eta):
    lp = binomln(trials, value) + logit_binomial_loglik(value, trials, eta)
    return pt.switch((value >= 0) & (value <= trials), lp, -np.inf)


def _dist(trials, eta, size):
    return pm.Binomial.dist(n=trials, logit_p=eta, size=size)


def LogitBinomial(name: str, trials, eta, **kwargs):
    """``successes ~ Binomial(trials, sigmoid(eta))`` as a model variable (``observed=``,
    ``dims=`` as for ``pm.Binomial``): PyMC's values, one softplus per cell."""
    return pm.CustomDist(name, trials, eta, dist=_dist, logp=_logp, dtype="int64", **kwargs)
