"""Label switching: permuted chains and draws are realigned exactly; real disagreement is reported.

The posteriors are hand-made and random (seeded through tests/_seeds.py): every assertion
held for each of 300 seed offsets (tests/README.md); those about draws are derived beside them."""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from _seeds import seed as shifted_seed
from models.latent_class.labels import align_labels

#: 400 draws a chain: the aligned posteriors' R-hat then has bulk ESS near 1,200, so R-hat
#: >= 1.05 needs (R-hat - 1) x ESS >= 60 (P ~ 0, tests/_stats.py RHAT_ESS_TAIL); at 60 draws
#: (ESS near 180) one of the 28 quantities crossed 1.05 in about 5% of seeds.
K, F, CHAINS, DRAWS = 4, 6, 3, 400
TRUE_W = np.array([0.4, 0.3, 0.2, 0.1])          # distinct, descending: the reported order
TRUE_P = np.array([[.9, .8, .1, .1, .1, .2],
                   [.1, .1, .9, .8, .1, .1],
                   [.1, .2, .1, .1, .9, .9],
                   [.6, .1, .6, .1, .6, .1]])


def _posterior(seed=0, chain_perms=None, draw_switch=0.0, noise=0.02, profiles=None):
    """A labelled posterior near (TRUE_W, TRUE_P), with chosen chains/draws relabelled."""
    rng = np.random.default_rng(shifted_seed(seed))
    prof = TRUE_P if profiles is None else profiles
    p = np.clip(prof[None, None] + rng.normal(0, noise, (CHAINS, DRAWS, K, F)), 0.001, 0.999)
    w = TRUE_W[None, None] + rng.normal(0, 0.005, (CHAINS, DRAWS, K))
    w /= w.sum(axis=-1, keepdims=True)
    truth_p, truth_w = p.copy(), w.copy()
    perms = np.tile(np.arange(K), (CHAINS, DRAWS, 1))
    for c in range(CHAINS):
        base = np.arange(K) if chain_perms is None else np.asarray(chain_perms[c])
        for d in range(DRAWS):
            perms[c, d] = rng.permutation(K) if rng.random() < draw_switch else base
    # sampled label perms[c, d, j] carries true class j
    p_obs, w_obs = np.empty_like(p), np.empty_like(w)
    for c in range(CHAINS):
        for d in range(DRAWS):
            p_obs[c, d, perms[c, d]] = p[c, d]
            w_obs[c, d, perms[c, d]] = w[c, d]
    coords = {"class": [f"c{k + 1}" for k in range(K)], "factor": [f"f{j}" for j in range(F)]}
    idata = az.from_dict(posterior={"item_prob": p_obs, "class_weight": w_obs,
                                    "other": rng.normal(size=(CHAINS, DRAWS))},
                         coords=coords, dims={"item_prob": ["class", "factor"], "class_weight": ["class"]})
    return idata, truth_p, truth_w


def _rhat_max(idata):
    return float(az.rhat(idata, var_names=["item_prob", "class_weight"]).to_array().max())


def test_permuted_chains_realigned_exactly():
    idata, truth_p, truth_w = _posterior(chain_perms=[[0, 1, 2, 3], [2, 0, 3, 1], [3, 2, 1, 0]])
    assert _rhat_max(idata) > 1.5  # unaligned: R-hat measures the switching
    for level in ("chain", "draw"):
        al = align_labels(idata, level=level)
        np.testing.assert_array_equal(al.idata.posterior["item_prob"].to_numpy(), truth_p)
        np.testing.assert_array_equal(al.idata.posterior["class_weight"].to_numpy(), truth_w)
        assert not al.multimodal
        assert _rhat_max(al.idata) < 1.05
    # variables without a class dim are untouched
    np.testing.assert_array_equal(al.idata.posterior["other"], idata.posterior["other"])


def test_switching_within_chains_realigned_exactly():
    idata, truth_p, truth_w = _posterior(seed=1, chain_perms=[[1, 0, 3, 2]] * CHAINS, draw_switch=0.3)
    al = align_labels(idata, level="draw")
    np.testing.assert_array_equal(al.idata.posterior["item_prob"].to_numpy(), truth_p)
    # reported, not hidden: 30% of draws switch (23 of 24 permutations differ from the base),
    # so a chain's share below 10% is a binomial(400, 0.29) tail under 1e-20
    assert float(al.switched_share.max()) > 0.1
    # chain-level alignment cannot fix switching inside a chain: its chain means are blurred
    assert not np.array_equal(align_labels(idata, level="chain").idata.posterior["item_prob"].to_numpy(), truth_p)


def test_order_is_deterministic_and_reference_names_classes():
    a, _, _ = _posterior(seed=2, chain_perms=[[3, 1, 0, 2]] * CHAINS)
    b, _, _ = _posterior(seed=2, chain_perms=[[2, 0, 1, 3]] * CHAINS)
    xa, xb = (align_labels(x).idata.posterior["item_prob"] for x in (a, b))
    xr.testing.assert_equal(xa, xb)
    # reference rows given in another order, with names: reported classes follow it
    order = [2, 0, 3, 1]
    names = ["gamma", "alpha", "delta", "beta"]
    ref = xr.DataArray(TRUE_P[order], dims=("class", "factor"),
                       coords={"class": names, "factor": [f"f{j}" for j in range(F)]})
    al = align_labels(a, ref)
    assert list(al.idata.posterior["class"].to_numpy()) == names
    # means of 1,200 draws with noise SD 0.02: SD 0.0006, so 0.01 is 17 SDs (P ~ 0)
    np.testing.assert_allclose(al.idata.posterior["item_prob"].mean(("chain", "draw")), TRUE_P[order], atol=0.01)


def test_genuine_multimodality_is_reported():
    idata, _, _ = _posterior(seed=3)
    other = TRUE_P.copy()
    other[3] = other[0]            # a different solution: class 4 duplicates class 1
    alt, _, _ = _posterior(seed=4, profiles=other)
    post = idata.posterior.copy(deep=True)
    post["item_prob"][2] = alt.posterior["item_prob"][2]   # chain 2 sits in the other mode
    mixed = az.InferenceData(posterior=post)
    al = align_labels(mixed)
    assert al.multimodal
    assert int(al.chain_distance.argmax("chain")) == 2
    assert not align_labels(idata).multimodal
