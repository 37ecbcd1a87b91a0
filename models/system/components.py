"""Pieces the three system models share: the prior set, LKJ-correlated LA effects and year
effects centred within each outcome's own years.

Scales: log for rates (counts with a child-population exposure), logit for shares, and
standardised units for continuous outcomes, so one weakly informative set fits all three.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt


@dataclass(frozen=True)
class SystemPriors:
    """Named priors of the system models (link scale; IDACI and demand in SD units)."""

    name: str = "default"
    intercept_sd: float = 1.0     # around the empirical overall log rate / logit / mean
    slope_sd: float = 0.5         # deprivation and demand effects per SD
    trend_sd: float = 0.1         # national log-rate change per year
    la_sd: float = 0.5            # HalfNormal scale of LA intercept SDs
    la_trend_sd: float = 0.05     # HalfNormal scale of LA trend SDs (per year)
    year_sd: float = 0.2          # HalfNormal scale of year-effect SDs
    residual_sd: float = 1.0      # HalfNormal scale of residual SDs (standardised outcomes)
    lkj_eta: float = 2.0          # LKJ shape: 2 leans mildly towards weak correlations
    overdispersion_sd: float = 0.5  # HalfNormal scale of the extra-Poisson / extra-binomial
                                    # coefficient of variation (NB alpha = 1 / cv^2)

    def describe(self) -> dict[str, str]:
        return {
            "intercepts": f"Normal(empirical, {self.intercept_sd:g})",
            "deprivation and demand effects (per SD)": f"Normal(0, {self.slope_sd:g})",
            "national trend (log scale, per year)": f"Normal(0, {self.trend_sd:g})",
            "LA intercept SDs": f"HalfNormal({self.la_sd:g})",
            "LA trend SDs (per year)": f"HalfNormal({self.la_trend_sd:g})",
            "year-effect SDs": f"HalfNormal({self.year_sd:g})",
            "residual SDs (standardised)": f"HalfNormal({self.residual_sd:g})",
            "LA effect correlations": f"LKJ(eta={self.lkj_eta:g})",
            "overdispersion (coefficient of variation)": f"HalfNormal({self.overdispersion_sd:g})",
        }

    def as_dict(self) -> dict:
        return asdict(self)


PRIOR_SETS: dict[str, SystemPriors] = {
    "default": SystemPriors(),
    "wide": SystemPriors("wide", intercept_sd=4.0, slope_sd=2.0, trend_sd=0.4, la_sd=2.0,
                         la_trend_sd=0.2, year_sd=0.8, residual_sd=4.0, lkj_eta=1.0),
}


def get_priors(name: str) -> SystemPriors:
    try:
        return PRIOR_SETS[name]
    except KeyError:
        raise KeyError(f"unknown system prior set {name!r}; choose one of {', '.join(PRIOR_SETS)}") from None


def correlated_la_effects(model: pm.Model, name: str, dim: str, mean, sd_scale, eta: float,
                          centred: bool = True):
    """LA x ``dim`` values ~ MVN(mean, Sigma), Sigma = diag(sd) R diag(sd), R ~ LKJ(eta).

    Returns the LA values themselves (``mean`` + deviation) and stores the deviations as
    ``{name}`` (dims ``la``, ``dim``), ``{name}_sd`` (dims ``dim``) and ``{name}_corr``
    (dims ``dim``, ``{dim}_b``).  Centred by default, on ``mean``: every LA has many
    large-count cells, so its own data pin its values down and the centred form (the LA
    values are the parameters, regressed on the mean) mixes far better than the
    non-centred one (``models.gradient.model.centring_plan`` found the same at LSOA level).
    """
    labels = list(model.coords[dim])
    k = len(labels)
    if f"{dim}_b" not in model.coords:
        model.add_coord(f"{dim}_b", labels)
    sd_dist = pm.HalfNormal.dist(sigma=np.broadcast_to(np.asarray(sd_scale, float), (k,)).copy(), shape=k)
    chol, corr, sds = pm.LKJCholeskyCov(f"{name}_chol", n=k, eta=eta, sd_dist=sd_dist,
                                        compute_corr=True, store_in_trace=False)
    pm.Deterministic(f"{name}_sd", sds, dims=dim)
    pm.Deterministic(f"{name}_corr", corr, dims=(dim, f"{dim}_b"))
    n_la = len(model.coords["la"])
    mean = pt.broadcast_to(pt.as_tensor_variable(mean), (n_la, k))
    if centred:
        # The MVN written as a chain of univariate normals (x_j given x_<j, through the
        # Cholesky factor), one LA-vector per column: elementwise operations only.
        # pm.MvNormal's triangular solve and an explicit inverse both ran 10-100x slower per
        # gradient under nutpie's numba backend here (measured 4-80 ms against 0.45 ms).
        columns, z_prev = [], []
        for j in range(k):
            mu_j = mean[:, j] + sum(chol[j, i] * z_prev[i] for i in range(j))
            x_j = pm.Normal(f"{name}_value_{j}", mu=mu_j, sigma=chol[j, j], dims="la")
            z_prev.append((x_j - mu_j) / chol[j, j])
            columns.append(x_j)
        values = pt.stack(columns, axis=1)
    else:
        z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=("la", dim))
        values = mean + pt.dot(z, chol.T)
    pm.Deterministic(name, values - mean, dims=("la", dim))
    return values


def scaled_normal(name: str, sd, dims, centred: bool):
    """Normal(0, sd) written centred (the values are the parameters) or non-centred
    (a standard normal times ``sd``): one prior, two geometries (see grouped_year_effects)."""
    if centred:
        return pm.Normal(name, 0.0, sd, dims=dims)
    return pm.Normal(name, 0.0, 1.0, dims=dims) * sd


def grouped_year_effects(name: str, pair_outcome: np.ndarray, n_outcome: int, sd, dims: str,
                         centred: bool = True):
    """Year effects for the observed (outcome, year) pairs, each outcome's summing to zero
    over its own years, so the intercept is that outcome's average over the years it is
    published (workforce 2017-2025, NFA 2012-2025, ...), not a mix with unpublished years.

    ``pair_outcome`` gives the outcome index of each pair; ``sd`` is per outcome.  Centred
    (the effects themselves are the parameters) or non-centred (raw x sd): the same prior.
    Centred suits year effects the data pin down far more tightly than their prior, as the
    real panel's ~150 LAs do for the count models' large year-to-year swings (LA gradient
    model: min bulk ESS 253 centred vs 82 non-centred, year_sd[s47] the worst); non-centred
    suits small or weakly informed year effects (30 simulated LAs: the centred conditions
    model had bulk ESS 12).  Each model's spec chooses (``year_centred``); the figures are in
    benchmarks/RESULTS.md (``benchmarks/bench_system.py``).
    """
    raw = scaled_normal(f"{name}_raw", sd[pair_outcome], dims, centred)
    sums = pt.zeros(n_outcome)
    sums = pt.inc_subtensor(sums[pair_outcome], raw)
    counts = np.bincount(pair_outcome, minlength=n_outcome).astype(float)
    return pm.Deterministic(name, raw - (sums / counts)[pair_outcome], dims=dims)


def negative_binomial_counts(cells, eta, stage_index: np.ndarray, overdispersion_sd: float) -> None:
    """Counts ~ NegativeBinomial(exposure x exp(eta)), with a coefficient of variation of
    the extra-Poisson noise per stage (``overdispersion``): the trend and LA gradient models
    share it."""
    cv = pm.HalfNormal("overdispersion", overdispersion_sd, dims="stage")
    mu = pt.exp(eta + np.log(cells["exposure"].to_numpy(float)))
    pm.NegativeBinomial("count", mu=mu, alpha=1.0 / pt.sqr(cv[stage_index]),
                        observed=cells["count"].to_numpy("int64"), dims="cell")
