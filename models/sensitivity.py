"""Prior sensitivity: power-scaling diagnostics and comparisons across named prior sets.

Power-scaling (Kallioinen et al. 2023, ArviZ ``psens``): raise the prior (or the
likelihood) to a power near 1 and see, by importance sampling, how much the posterior of
each quantity moves.  A quantity sensitive to both is in *prior-data conflict*; sensitive
to the prior but not the likelihood, its prior dominates (the data say little).  Only
the top-level priors are scaled (intercepts, effects, SDs), not the group-level terms,
which are part of the model's structure rather than prior belief.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

#: Cut-off of the power-scaling sensitivity diagnostic used by priorsense.
PSENS_THRESHOLD = 0.05


def top_level_priors(model: pm.Model) -> list[str]:
    """Free variables with no group dimension (la, lsoa, ...): the priors a user chose."""
    group_dims = {"la", "lsoa", "pattern", "cell"}
    out = []
    for rv in model.free_RVs:
        dims = model.named_vars_to_dims.get(rv.name, ())
        if not group_dims & set(dims) and not rv.name.endswith(("_z", "_centred")):
            out.append(rv.name)
    return out


def add_log_densities(model: pm.Model, idata: az.InferenceData, max_draws: int = 1000) -> az.InferenceData:
    """A thinned copy of ``idata`` with ``log_prior`` (top-level priors) and
    ``log_likelihood`` (summed over cells, one value per draw: all power-scaling needs,
    without storing a value per cell and draw)."""
    n = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    thin = max(1, int(np.ceil(n / max_draws)))
    posterior = idata.posterior.isel(draw=slice(None, None, thin))
    small = az.InferenceData(posterior=posterior)
    pm.compute_log_prior(small, var_names=top_level_priors(model), model=model, progressbar=False)
    pointwise = pm.compute_log_likelihood(small, model=model, extend_inferencedata=False, progressbar=False)
    total = sum(pointwise[v].sum([d for d in pointwise[v].dims if d not in ("chain", "draw")])
                for v in pointwise.data_vars)
    small.add_groups({"log_likelihood": xr.Dataset({"total": total})})
    return small


def power_scaling(model: pm.Model, idata: az.InferenceData, var_names: list[str],
                  max_draws: int = 1000) -> pd.DataFrame:
    """Prior and likelihood sensitivity of each quantity, with priorsense's diagnosis."""
    data = add_log_densities(model, idata, max_draws)
    present = [v for v in var_names if v in data.posterior]
    prior = az.psens(data, component="prior", var_names=present)
    like = az.psens(data, component="likelihood", var_names=present)
    rows = []
    for v in present:
        p, lk = prior[v], like[v]
        for idx in np.ndindex(p.shape):
            label = v + ("" if not p.dims else "[" + ", ".join(str(p[d].values[i]) for d, i in zip(p.dims, idx)) + "]")
            ps, ls = float(p.values[idx]), float(lk.values[idx])
            rows.append({"quantity": label, "prior_sensitivity": ps, "likelihood_sensitivity": ls,
                         "diagnosis": _diagnose(ps, ls)})
    table = pd.DataFrame(rows).set_index("quantity")
    table.attrs["threshold"] = PSENS_THRESHOLD
    return table


def _diagnose(prior: float, likelihood: float) -> str:
    if prior >= PSENS_THRESHOLD and likelihood >= PSENS_THRESHOLD:
        return "prior-data conflict"
    if prior >= PSENS_THRESHOLD:
        return "prior dominates (weak data)"
    return "-"


def compare_prior_sets(summaries: dict[str, pd.DataFrame], baseline: str = "default") -> pd.DataFrame:
    """Side by side: each prior set's median and interval of the same quantities, and how
    far each median moved from the baseline's, in baseline posterior SDs (approximated by
    the interval width / 3.92 for a 95% interval)."""
    if baseline not in summaries:
        raise ValueError(f"baseline prior set {baseline!r} was not fitted; fitted: {sorted(summaries)}")
    base = summaries[baseline]
    sd = (base["upper"] - base["lower"]) / 3.92
    parts = []
    for name, table in summaries.items():
        part = table[["median", "lower", "upper"]].copy()
        part["shift_in_sd"] = (table["median"] - base["median"]) / sd
        part.columns = pd.MultiIndex.from_product([[name], part.columns])
        parts.append(part)
    return pd.concat(parts, axis=1)
