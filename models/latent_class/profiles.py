"""Class profiles with credible intervals, memberships and descriptive class names.

All on an aligned posterior (:mod:`.labels`): before alignment a class label means
nothing across draws.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from models.latent_class.patterns import Patterns


def profile_table(idata: az.InferenceData, prob: float = 0.9) -> xr.Dataset:
    """class x factor item probabilities and class weights: mean, lower, upper (equal-tailed)."""
    post = idata.posterior
    q = [(1 - prob) / 2, 1 - (1 - prob) / 2]
    out = {}
    for name in ("item_prob", "class_weight"):
        var = post[name]
        bounds = var.quantile(q, dim=("chain", "draw"))
        out[f"{name}_mean"] = var.mean(("chain", "draw"))
        out[f"{name}_lower"] = bounds.isel(quantile=0, drop=True)
        out[f"{name}_upper"] = bounds.isel(quantile=1, drop=True)
    return xr.Dataset(out, attrs={"interval_prob": prob, "interval": "equal-tailed"})


def membership(idata: az.InferenceData, patterns: Patterns) -> xr.DataArray:
    """P(class | pattern), averaged over posterior draws: pattern x class."""
    post = idata.posterior
    p = post["item_prob"].transpose("chain", "draw", "class", "factor").to_numpy()
    w = post["class_weight"].transpose("chain", "draw", "class").to_numpy()
    p = p.reshape(-1, *p.shape[2:])
    w = w.reshape(-1, w.shape[-1])
    y = patterns.matrix.astype(float)
    total = np.zeros((y.shape[0], w.shape[1]))
    for wd, pd_ in zip(w, p):  # draw by draw: memory stays pattern x class
        joint = np.log(wd)[None] + y @ np.log(pd_).T + (1 - y) @ np.log1p(-pd_).T
        total += np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    return xr.DataArray(total / len(w), dims=("pattern", "class"),
                        coords={"pattern": np.arange(y.shape[0]), "class": post["class"].to_numpy()},
                        name="membership")


def modal_class(idata: az.InferenceData, patterns: Patterns) -> np.ndarray:
    """Most probable class label per episode (episodes in the order they were collapsed)."""
    member = membership(idata, patterns)
    labels = member["class"].to_numpy()
    return labels[member.to_numpy().argmax(axis=1)][patterns.index]


def class_names(mean_profiles: xr.DataArray, threshold: float = 0.4, max_factors: int = 2,
                marginal: xr.DataArray | None = None) -> list[str]:
    """Descriptive names from each class's dominant factors.

    A factor is dominant where P(factor | class) >= ``threshold``; up to ``max_factors``,
    highest first, joined by ``+``.  A class with none is named by its most over-represented
    factor against ``marginal`` (or the class average), prefixed ``mostly_``.  Duplicate
    names get ``_2``, ``_3`` in class order.
    """
    prof = mean_profiles.transpose("class", "factor")
    factors = prof["factor"].to_numpy()
    base = (marginal if marginal is not None else prof.mean("class")).sel(factor=factors).to_numpy()
    names: list[str] = []
    for row in prof.to_numpy():
        order = np.argsort(-row, kind="stable")
        top = [str(factors[j]) for j in order[:max_factors] if row[j] >= threshold]
        if top:
            name = "+".join(top)
        else:
            lift = row / np.maximum(base, 1e-12)
            name = "mostly_" + str(factors[int(np.argmax(lift))])
        names.append(name)
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


def name_classes(idata: az.InferenceData, **kwargs) -> az.InferenceData:
    """A copy with ``class`` coords replaced by descriptive names (order unchanged)."""
    names = class_names(idata.posterior["item_prob"].mean(("chain", "draw")), **kwargs)
    named = idata.copy()
    named.posterior = named.posterior.assign_coords({"class": names})
    return named


def profile_frame(table: xr.Dataset) -> pd.DataFrame:
    """Long table (class, factor, mean, lower, upper) for reports."""
    frame = xr.Dataset({"mean": table["item_prob_mean"], "lower": table["item_prob_lower"],
                        "upper": table["item_prob_upper"]}).to_dataframe()
    return frame.reset_index()
