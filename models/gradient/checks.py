"""Prior and posterior predictive checks of the gradient model, by stage and IDACI decile.

The check a reader understands: the observed rate (or transition share) in each stage x
decile beside the interval the model predicts for it.  Under the prior it shows what the
priors allow before seeing data (rates per 10,000 should stay within what is humanly
possible); under the posterior, whether the fitted model reproduces the decile pattern.
"""

from __future__ import annotations

import logging

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm

from models.gradient.model import GradientSpec


def observed_name(spec: GradientSpec) -> str:
    return "successes" if spec.scale == "transition" else "count"


def sample_prior_predictive(model: pm.Model, draws: int = 500, seed: int = 1) -> az.InferenceData:
    """Draws of every parameter and of the data from the priors alone."""
    with model:
        return pm.sample_prior_predictive(draws=draws, random_seed=seed)


def sample_posterior_predictive(model: pm.Model, idata: az.InferenceData, seed: int = 1,
                                thin: int = 1) -> az.InferenceData:
    """Replicated data from the posterior, added to a copy of ``idata``."""
    posterior = idata.posterior.isel(draw=slice(None, None, thin))
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.WARNING)  # not "Sampling: [count]" in the middle of a report run
    try:
        with model:
            pp = pm.sample_posterior_predictive(posterior, random_seed=seed, progressbar=False)
    finally:
        logger.setLevel(level)
    out = idata.copy()
    out.extend(pp)
    return out


def decile_check(cells: pd.DataFrame, idata: az.InferenceData, spec: GradientSpec,
                 group: str = "posterior_predictive", prob: float = 0.9) -> pd.DataFrame:
    """Observed vs predicted rate per stage x IDACI decile.

    Rates per 10,000 child-years (population scale) or the share of the parent stage that
    reached the stage (transition scale); ``inside`` says whether the observed value lies in
    the predictive interval.
    """
    name = observed_name(spec)
    draws = getattr(idata, group)[name]
    draws = draws.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()
    if draws.shape[1] != len(cells):
        raise ValueError(f"{group} has {draws.shape[1]} cells, the cells table {len(cells)}")
    denom_col = "exposure" if spec.scale == "population" else "trials"
    factor = 10_000.0 if spec.scale == "population" else 1.0
    keys = pd.MultiIndex.from_arrays([cells["stage"].astype(str), cells["idaci_decile"].astype(int)],
                                     names=["stage", "decile"])
    lo_q, hi_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    rows = []
    for (stage, decile), positions in pd.Series(np.arange(len(cells)), index=keys).groupby(level=[0, 1]):
        idx = positions.to_numpy()
        denom = float(cells[denom_col].to_numpy()[idx].sum())
        observed = float(cells[name].to_numpy()[idx].sum()) / denom * factor
        predicted = draws[:, idx].sum(axis=1) / denom * factor
        lo, hi = np.quantile(predicted, [lo_q, hi_q])
        rows.append({"stage": stage, "decile": decile, "observed": observed,
                     "predicted_median": float(np.median(predicted)), "lower": float(lo),
                     "upper": float(hi), "inside": bool(lo <= observed <= hi)})
    stages = list(cells["stage"].cat.categories) if hasattr(cells["stage"], "cat") else None
    table = pd.DataFrame(rows)
    if stages:
        table["stage"] = pd.Categorical(table["stage"], categories=[s for s in stages if s in set(table["stage"])])
    table = table.sort_values(["stage", "decile"]).reset_index(drop=True)
    table.attrs["interval"] = f"{prob:.0%} {group.replace('_', ' ')} interval"
    table.attrs["measure"] = ("rate per 10,000 child-years" if spec.scale == "population"
                              else "share of the parent stage reaching the stage")
    return table
