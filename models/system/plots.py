"""Figures of the system models: matplotlib only, returned to the caller, never saved here.

Trends with credible bands (and the observed England-wide rates as points), LA caterpillar
plots, partial relationships, the LA-level gradient and the LA effect correlations.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

SAMPLE = ("chain", "draw")


def _band(draws: xr.DataArray, prob: float):
    q = draws.quantile([(1 - prob) / 2, 0.5, 1 - (1 - prob) / 2], dim=SAMPLE)
    return q.isel(quantile=0).values, q.isel(quantile=1).values, q.isel(quantile=2).values


def plot_trends(rates: xr.DataArray, observed: pd.DataFrame | None = None, prob: float = 0.9,
                labels: dict | None = None, ylabel: str | None = None, log: bool = True):
    """One panel per stage: the typical-LA rate by year with its band; ``observed`` (stage,
    year, observed) adds England-wide rates as points."""
    stages = [str(s) for s in rates["stage"].values]
    fig, axes = plt.subplots(1, len(stages), figsize=(3.3 * len(stages), 3.2), squeeze=False)
    years = rates["year"].values
    for ax, stage in zip(axes[0], stages):
        lo, mid, hi = _band(rates.sel(stage=stage), prob)
        ax.fill_between(years, lo, hi, alpha=0.3, lw=0, color="C0")
        ax.plot(years, mid, color="C0", label="typical LA (model)")
        if observed is not None:
            obs = observed[observed["stage"].astype(str) == stage]
            ax.plot(obs["year"], obs["observed"], "o", ms=3, color="C1", label="England (observed)")
        if log:
            ax.set_yscale("log")
        ax.set_title((labels or {}).get(stage, stage), fontsize=9)
        ax.set_xlabel("year ending 31 March")
    axes[0][0].set_ylabel(ylabel or rates.attrs.get("measure", ""))
    axes[0][0].legend(frameon=False, fontsize=7)
    fig.suptitle(f"{prob:.0%} credible bands", fontsize=9)
    fig.tight_layout()
    return fig


def plot_caterpillar(draws: xr.DataArray, la_names: dict | None = None, prob: float = 0.9,
                     reference: float = 0.0, xlabel: str = "", title: str = "", max_labels: int = 40):
    """LAs sorted by posterior median, each with its interval; names shown when few enough."""
    lo, mid, hi = _band(draws, prob)
    order = np.argsort(mid)
    las = [str(v) for v in draws["la"].values]
    n = len(las)
    fig, ax = plt.subplots(figsize=(6, max(3.0, min(0.16 * n, 24))))
    pos = np.arange(n)
    ax.hlines(pos, lo[order], hi[order], color="C0", lw=1)
    ax.plot(mid[order], pos, "o", ms=2.5, color="C0")
    ax.axvline(reference, color="grey", lw=0.8, ls="--")
    if n <= max_labels or la_names is not None:
        names = [(la_names or {}).get(las[i], las[i]) for i in order]
        ax.set_yticks(pos)
        ax.set_yticklabels(names, fontsize=5 if n > 60 else 7)
    else:
        ax.set_yticks([])
    ax.set_ylim(-1, n)
    ax.set_xlabel(xlabel)
    ax.set_title(title or f"LAs ordered by median ({prob:.0%} credible intervals)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_forest(draws: xr.DataArray, dim: str, prob: float = 0.9, reference: float = 1.0,
                truth: dict | None = None, xlabel: str = "", title: str = ""):
    """One interval per label of ``dim``; optional true values (simulations) as crosses."""
    labels = [str(v) for v in draws[dim].values]
    lo, mid, hi = _band(draws, prob)
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(labels) + 1.2))
    pos = np.arange(len(labels))[::-1]
    ax.hlines(pos, lo, hi, color="C0", lw=2)
    ax.plot(mid, pos, "o", color="C0")
    if truth:
        ax.plot([truth[lab] for lab in labels], pos, "x", color="C3", label="true value")
        ax.legend(frameon=False, fontsize=8)
    ax.axvline(reference, color="grey", lw=0.8, ls="--")
    ax.set_yticks(pos)
    ax.set_yticklabels(labels)
    ax.set_xlabel(xlabel)
    ax.set_title(title or f"{prob:.0%} credible intervals", fontsize=9)
    fig.tight_layout()
    return fig


def plot_partial(curves: xr.DataArray, labels: dict | None = None, prob: float = 0.9,
                 xlabel: str = "LA IDACI (SD from the mean LA)"):
    """One panel per outcome: the predicted outcome along a standardised predictor, with
    its band (typical LA, average year, the other predictor at its mean)."""
    outcomes = [str(o) for o in curves["outcome"].values]
    ncol = min(3, len(outcomes))
    nrow = int(np.ceil(len(outcomes) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.8 * nrow), squeeze=False)
    z = curves["z"].values
    for ax, o in zip(axes.flat, outcomes):
        lo, mid, hi = _band(curves.sel(outcome=o), prob)
        ax.fill_between(z, lo, hi, alpha=0.3, lw=0)
        ax.plot(z, mid)
        ax.set_title((labels or {}).get(o, o), fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
    for ax in list(axes.flat)[len(outcomes):]:
        ax.axis("off")
    fig.suptitle(f"Partial relationships ({prob:.0%} credible bands)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_rate_by_idaci(rates: xr.DataArray, observed: pd.DataFrame | None = None, prob: float = 0.9,
                       labels: dict | None = None):
    """Predicted rate along the LA IDACI score for each stage (log scale), with LA mean
    observed rates (``observed``: la_code, stage, idaci, rate) as faint points."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = rates["idaci"].values
    for i, stage in enumerate(rates["stage"].values):
        lo, mid, hi = _band(rates.sel(stage=stage), prob)
        ax.fill_between(x, lo, hi, alpha=0.25, lw=0, color=f"C{i}")
        ax.plot(x, mid, color=f"C{i}", label=(labels or {}).get(str(stage), str(stage)))
        if observed is not None:
            obs = observed[observed["stage"].astype(str) == str(stage)]
            ax.plot(obs["idaci"], obs["rate"], ".", ms=3, alpha=0.35, color=f"C{i}")
    ax.set_yscale("log")
    ax.set_xlabel("LA IDACI score (IoD2019, child-weighted)")
    ax.set_ylabel(rates.attrs.get("measure", "rate"))
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"LA-level deprivation gradient ({prob:.0%} credible bands; points: LA means)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_correlations(corr: xr.DataArray, dim: str, labels: dict | None = None):
    """Posterior median correlation matrix of LA effects, with P(correlation > 0) in each cell."""
    med = corr.median(SAMPLE).values
    pos = (corr > 0).mean(SAMPLE).values
    names = [(labels or {}).get(str(v), str(v)) for v in corr[dim].values]
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 2.5, 0.9 * len(names) + 1.5))
    im = ax.imshow(med, vmin=-1, vmax=1, cmap="RdBu_r")
    for i in range(len(names)):
        for j in range(len(names)):
            if i != j:
                ax.text(j, i, f"{med[i, j]:.2f}\nP>0 {pos[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.7, label="posterior median correlation")
    ax.set_title("Correlation of LA effects (after deprivation and demand)", fontsize=9)
    fig.tight_layout()
    return fig
