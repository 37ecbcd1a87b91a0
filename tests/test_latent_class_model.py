"""Latent class model structure: patterns are sufficient, the class is marginalised exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytest
from scipy.special import logsumexp

from models.latent_class.em import fit_em, pattern_loglik
from models.latent_class.model import build_model
from models.latent_class.patterns import Patterns, collapse


def _data(n=300, f=6, seed=0):
    rng = np.random.default_rng(seed)
    klass = rng.integers(0, 3, n)
    prof = rng.uniform(0.05, 0.95, (3, f))
    return pd.DataFrame(rng.random((n, f)) < prof[klass], columns=[f"f{j}" for j in range(f)])


def test_collapse_roundtrip_and_counts():
    data = _data()
    pat = collapse(data)
    assert pat.n_patterns < len(data)
    assert pat.counts.sum() == len(data)
    np.testing.assert_array_equal(pat.expand().astype(bool), data.to_numpy())
    # every pattern unique, counts equal to the number of episodes mapped to it
    assert len(np.unique(pat.matrix, axis=0)) == pat.n_patterns
    np.testing.assert_array_equal(np.bincount(pat.index, minlength=pat.n_patterns), pat.counts)
    assert pat.factors == tuple(data.columns)


def test_collapse_rejects_missing_and_non_binary():
    with pytest.raises(ValueError):
        collapse(pd.DataFrame({"a": [1.0, np.nan]}))
    with pytest.raises(ValueError):
        collapse(np.array([[0, 2]]))


def _row_loglik_bruteforce(rows, w, p):
    """Row-level Bernoulli mixture, written independently of the model: loops, products."""
    total = 0.0
    for y in rows:
        like = sum(w[k] * np.prod(np.where(y, p[k], 1 - p[k])) for k in range(len(w)))
        total += np.log(like)
    return total


def test_pattern_weighted_loglik_equals_row_level():
    data = _data()
    pat = collapse(data)
    rows = Patterns(matrix=data.to_numpy().astype(np.int8), counts=np.ones(len(data), dtype=np.int64),
                    index=np.arange(len(data)), factors=pat.factors)
    fns = []
    for p_ in (pat, rows):
        m = build_model(p_, 3)
        fns.append(pytensor.function([m["class_weight"], m["item_prob"]], m.potentials[0]))
    rng = np.random.default_rng(42)
    for _ in range(5):
        w = rng.dirichlet(np.ones(3))
        p = rng.uniform(0.01, 0.99, (3, data.shape[1]))
        weighted, row_level = (float(f(w, p)) for f in fns)
        brute = _row_loglik_bruteforce(data.to_numpy(), w, p)
        assert weighted == pytest.approx(row_level, abs=1e-8, rel=0)
        assert weighted == pytest.approx(brute, abs=1e-8, rel=0)
        assert float(pat.counts @ pattern_loglik(pat.matrix, w, p)) == pytest.approx(brute, abs=1e-8, rel=0)


def test_model_named_dims_and_em_initial_values():
    data = _data()
    pat = collapse(data)
    em = fit_em(pat, 3, n_starts=5, seed=1)
    m = build_model(pat, 3, initial=em)
    assert m.named_vars_to_dims["item_prob"] == ("class", "factor")
    assert m.named_vars_to_dims["class_weight"] == ("class",)
    assert m.named_vars_to_dims["pattern_count"] == ("pattern",)
    assert list(m.coords["factor"]) == list(data.columns)
    ip = m.initial_point()
    # chains start at the EM solution (on the log-odds scale of item_prob)
    np.testing.assert_allclose(1 / (1 + np.exp(-ip["item_prob_logodds__"])),
                               np.clip(em.profiles, 1e-3, 1 - 1e-3), atol=1e-10)


def test_em_increases_likelihood_over_starts():
    pat = collapse(_data(n=500))
    em = fit_em(pat, 3, n_starts=8, seed=3)
    assert em.converged
    assert em.loglik == pytest.approx(float(pat.counts @ pattern_loglik(pat.matrix, em.weights, em.profiles)))
    assert em.loglik >= em.start_logliks.max() - 1e-6
    assert np.all(np.diff(em.weights) <= 0)  # reported largest first
