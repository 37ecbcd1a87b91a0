"""Latent class model structure: patterns are sufficient, the class is marginalised exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytest

from _seeds import seed as shifted_seed
from models.latent_class.em import fit_em, pattern_loglik
from models.latent_class.model import build_model
from models.latent_class.patterns import Patterns, collapse


def _data(n=300, f=6, seed=0):
    rng = np.random.default_rng(shifted_seed(seed))
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
    rng = np.random.default_rng(shifted_seed(42))
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
    em = fit_em(pat, 3, n_starts=5, seed=shifted_seed(1))
    m = build_model(pat, 3, initial=em)
    assert m.named_vars_to_dims["item_prob"] == ("class", "factor")
    assert m.named_vars_to_dims["class_weight"] == ("class",)
    assert m.named_vars_to_dims["pattern_count"] == ("pattern",)
    assert list(m.coords["factor"]) == list(data.columns)
    ip = m.initial_point()
    # chains start at the EM solution (on the log-odds scale of item_prob)
    np.testing.assert_allclose(1 / (1 + np.exp(-ip["item_prob_logodds__"])),
                               np.clip(em.profiles, 1e-3, 1 - 1e-3), atol=1e-10)


#: Three well-separated classes: EM converges in a few hundred iterations for any seed.  On
#: ``_data``'s random profiles (classes sometimes barely distinct) it needed up to 6,600
#: iterations and missed the default 5,000 in 2 of 200 seeds.
SEPARATED = np.array([[.90, .80, .10, .10, .20, .10],
                      [.10, .15, .90, .80, .10, .20],
                      [.20, .10, .15, .20, .85, .90]])


def test_em_increases_likelihood_over_starts():
    rng = np.random.default_rng(shifted_seed(0))
    klass = rng.choice(3, 500, p=[0.5, 0.3, 0.2])
    data = pd.DataFrame(rng.random((500, 6)) < SEPARATED[klass], columns=[f"f{j}" for j in range(6)])
    pat = collapse(data)
    em = fit_em(pat, 3, n_starts=8, seed=shifted_seed(3))
    assert em.converged
    assert em.loglik == pytest.approx(float(pat.counts @ pattern_loglik(pat.matrix, em.weights, em.profiles)))
    assert em.loglik >= em.start_logliks.max() - 1e-6
    assert np.all(np.diff(em.weights) <= 0)  # reported largest first


def test_unconstrained_copies_are_dropped_before_alignment():
    """nutpie stores ``*__`` transformed-space copies; alignment would not permute them."""
    import arviz as az
    import xarray as xr

    from models.latent_class.fit import drop_unconstrained

    rng = np.random.default_rng(shifted_seed(0))
    post = xr.Dataset({
        "class_weight": (("chain", "draw", "class"), rng.dirichlet(np.ones(3), (2, 5))),
        "item_prob": (("chain", "draw", "class", "factor"), rng.uniform(size=(2, 5, 3, 4))),
        "class_weight_simplex__": (("chain", "draw", "class_weight_simplex___dim_0"), rng.normal(size=(2, 5, 2))),
        "item_prob_logodds__": (("chain", "draw", "item_prob_logodds___dim_0", "item_prob_logodds___dim_1"),
                                rng.normal(size=(2, 5, 3, 4))),
    }, coords={"class": ["0", "1", "2"], "factor": list("abcd"), "class_weight_simplex___dim_0": [0, 1]})
    idata = az.InferenceData(posterior=post)
    clean = drop_unconstrained(idata)
    assert set(clean.posterior.data_vars) == {"class_weight", "item_prob"}
    assert set(clean.posterior.dims) == {"chain", "draw", "class", "factor"}
    assert "class_weight_simplex___dim_0" not in clean.posterior.coords
    assert "item_prob_logodds__" in idata.posterior            # the input is left as it was
    assert drop_unconstrained(clean) is clean


def test_regression_without_distal_outcomes_matches_row_level_likelihood():
    """``distal = false``: no outcome columns, the likelihood is patterns x covariates x LA only."""
    from scipy.special import softmax

    from models.latent_class.regression import build_regression_model, collapse_regression, parameter_names

    rng = np.random.default_rng(shifted_seed(5))
    n = 80
    factors = _data(n=n, f=4, seed=5)
    cov = pd.DataFrame({"age": rng.choice(["a", "b"], n)})
    la = pd.Series(rng.choice(["L1", "L2"], n))
    d = collapse_regression(factors, cov, la, pd.DataFrame(index=range(n)), references={"age": "a"})
    assert d.outcomes == () and "distal_prob" not in parameter_names(d)
    m = build_regression_model(d, 2)
    assert "distal_cond" not in m.named_vars and "distal_prob" not in m.named_vars
    f = pytensor.function([m["item_prob"], m["intercept"], m["effect_age_raw"], m["la_sd"], m["la_z"]],
                          m.potentials[0])
    item = rng.uniform(0.05, 0.95, (2, 4))
    intercept, age_raw, la_z = np.array([0.3, -0.3]), np.array([[0.5, -0.5]]), np.array([[0.2, -0.2], [-0.2, 0.2]])
    la_sd = np.array([0.7, 0.4])
    scaled = la_z * la_sd
    la_eff = dict(zip(["L1", "L2"], scaled - scaled.mean(axis=1, keepdims=True)))
    brute = 0.0
    for i in range(n):
        eta = intercept + (age_raw[0] if cov["age"][i] == "b" else 0.0) + la_eff[la[i]]
        pk = softmax(eta)
        brute += np.log(sum(pk[k] * np.prod(np.where(factors.iloc[i], item[k], 1 - item[k])) for k in range(2)))
    assert float(f(item, intercept, age_raw, la_sd, la_z)) == pytest.approx(brute, abs=1e-8)
