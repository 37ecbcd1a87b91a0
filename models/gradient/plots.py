"""Figures of the gradient model: matplotlib only, returned to the caller, never saved here.

Each takes draws from :mod:`models.gradient.effects` (or a check table) and draws the
picture a policy reader looks at: rates by decile with credible bands, gradients by stage,
LA caterpillars, observed vs predicted.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from models.vocabulary import STAGE_LABELS

SAMPLE = ("chain", "draw")


def _label(stage: str) -> str:
    return STAGE_LABELS.get(stage, stage)


def _band(draws: xr.DataArray, prob: float):
    q = draws.quantile([(1 - prob) / 2, 0.5, 1 - (1 - prob) / 2], dim=SAMPLE)
    return q.isel(quantile=0), q.isel(quantile=1), q.isel(quantile=2)


def plot_rate_by_decile(by_decile: xr.DataArray, observed: pd.DataFrame | None = None,
                        prob: float = 0.9, log: bool = True, ax=None):
    """Predicted rate (or probability) by decile, one line and band per stage; ``observed``
    (a :func:`models.gradient.checks.decile_check` table) adds the observed points."""
    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    deciles = by_decile["decile"].values
    for i, stage in enumerate(by_decile["stage"].values):
        lo, mid, hi = _band(by_decile.sel(stage=stage), prob)
        colour = f"C{i}"
        ax.fill_between(deciles, lo, hi, color=colour, alpha=0.25, lw=0)
        ax.plot(deciles, mid, color=colour, label=_label(str(stage)))
        if observed is not None:
            obs = observed[observed["stage"].astype(str) == str(stage)]
            ax.plot(obs["decile"], obs["observed"], "o", color=colour, ms=4)
    if log:
        ax.set_yscale("log")
    ax.set_xticks(deciles)
    ax.set_xlabel("IDACI decile of the neighbourhood (1 = most deprived)")
    ax.set_ylabel(by_decile.attrs.get("measure", "predicted"))
    ax.invert_xaxis()
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"Predicted by decile, typical LA ({prob:.0%} credible bands"
                 + ("; points observed)" if observed is not None else ")"), fontsize=9)
    return ax.figure


def plot_forest(draws: xr.DataArray, dim: str = "stage", prob: float = 0.9, truth: dict | None = None,
                reference: float = 1.0, ax=None, xlabel: str | None = None):
    """One interval per label of ``dim`` (median, ``prob`` interval), optional true values."""
    labels = [str(v) for v in draws[dim].values]
    ax = ax or plt.subplots(figsize=(6, 0.45 * len(labels) + 1.2))[1]
    lo, mid, hi = _band(draws, prob)
    y = np.arange(len(labels))[::-1]
    ax.hlines(y, lo.values, hi.values, color="C0", lw=2)
    ax.plot(mid.values, y, "o", color="C0")
    if truth:
        ax.plot([truth.get(lab, np.nan) for lab in labels], y, "x", color="C3", label="true value")
        ax.legend(frameon=False, fontsize=8)
    ax.axvline(reference, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels([_label(lab) if dim == "stage" else lab for lab in labels])
    ax.set_xlabel(xlabel or draws.attrs.get("measure", draws.name))
    return ax.figure


def plot_la_caterpillar(la_draws: xr.DataArray, la_names: dict | None = None, prob: float = 0.9,
                        reference: float = 1.0):
    """LA-specific quantities (dims la x stage): one panel per stage, LAs sorted by median."""
    stages = [str(s) for s in la_draws["stage"].values]
    fig, axes = plt.subplots(1, len(stages), figsize=(2.6 * len(stages), 0.35 * la_draws.sizes["la"] + 1.5),
                             sharey=False, squeeze=False)
    for ax, stage in zip(axes[0], stages):
        d = la_draws.sel(stage=stage)
        order = d.median(SAMPLE).argsort().values
        d = d.isel(la=order)
        lo, mid, hi = _band(d, prob)
        y = np.arange(d.sizes["la"])
        ax.hlines(y, lo.values, hi.values, color="C0")
        ax.plot(mid.values, y, "o", color="C0", ms=3)
        ax.axvline(reference, color="grey", lw=0.8, ls="--")
        ax.set_yticks(y)
        names = [str((la_names or {}).get(c, c)) for c in d["la"].values]
        ax.set_yticklabels(names, fontsize=7)
        ax.set_title(_label(stage), fontsize=9)
    fig.supxlabel(la_draws.attrs.get("measure", la_draws.name), fontsize=9)
    fig.tight_layout()
    return fig
