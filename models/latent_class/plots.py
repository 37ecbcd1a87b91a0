"""Figures of the latent class model: matplotlib only, returned to the caller, never saved here.

A profile heatmap (factor x class, named classes, shares in the column labels), the
K-selection panel (PSIS-LOO elpd with SEs, BIC and entropy against K) and class sizes with
credible intervals.  All take aggregate summaries, never episodes.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from models.vocabulary import FACTOR_BY_NAME


def factor_label(name: str) -> str:
    """The vocabulary's label for a factor, or the name itself for other items."""
    factor = FACTOR_BY_NAME.get(str(name))
    return factor.label if factor is not None else str(name)


def plot_profile_heatmap(table: xr.Dataset, names: list[str] | None = None, min_prob: float = 0.0,
                         annotate: bool = True, ax=None):
    """P(factor recorded | class) as a factor x class heatmap.

    ``table``: :func:`models.latent_class.profiles.profile_table` (means and interval
    bounds, class x factor; class weights give the shares in the column labels).
    ``names``: descriptive class names in class order (default: the ``class`` coords).
    ``min_prob``: factors below this in every class are left out (a readable figure from
    39 factors); the caption should say so.  Cells show the mean in percent.
    """
    mean = table["item_prob_mean"].transpose("class", "factor")
    keep = (mean.max("class") >= min_prob).to_numpy()
    mean = mean.isel(factor=np.flatnonzero(keep))
    values = mean.to_numpy().T                                   # factor x class
    classes = [str(c) for c in mean["class"].to_numpy()]
    names = classes if names is None else list(names)
    if len(names) != len(classes):
        raise ValueError(f"{len(names)} names for {len(classes)} classes")
    shares = table["class_weight_mean"].sel({"class": mean["class"]}).to_numpy()
    columns = [f"{n}\n({s:.0%})" for n, s in zip(names, shares)]
    rows = [factor_label(f) for f in mean["factor"].to_numpy()]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * len(columns) + 3.5, 0.28 * len(rows) + 1.8))
    image = ax.imshow(values, aspect="auto", cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(columns)), columns, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    if annotate:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                if v >= 0.005:
                    ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6.5,
                            color="white" if v > 0.6 else "#222")
    ax.figure.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="P(factor recorded | class)")
    prob = table.attrs.get("interval_prob")
    ax.set_title("Class profiles: posterior mean P(factor | class), %"
                 + (f" ({prob:.0%} intervals in the table)" if prob else ""), fontsize=9)
    return ax.figure


def plot_k_selection(table: pd.DataFrame, chosen: int | None = None, se_multiplier: float = 2.0):
    """elpd (PSIS-LOO, +- ``se_multiplier`` SE of the difference from the best), BIC and
    entropy against K.  Hollow markers: a K with an empty or tiny class (never chosen)."""
    ks = table.index.to_numpy()
    flagged = table["empty_or_tiny_class"].astype(bool).to_numpy()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))

    def points(ax, y, err=None):
        ax.plot(ks, y, "-", color="0.6", lw=1)
        for solid in (True, False):
            sel = flagged != solid
            if sel.any():
                ax.errorbar(ks[sel], y[sel], yerr=None if err is None else err[sel], fmt="o", color="C0",
                            mfc="C0" if solid else "white", capsize=3, label=None if solid else "empty/tiny class")
        if chosen is not None:
            ax.axvline(chosen, color="C3", lw=1, ls="--", label=f"chosen K = {chosen}")
        ax.set_xticks(ks)
        ax.set_xlabel("K (classes)")

    points(axes[0], table["elpd_diff"].to_numpy(), se_multiplier * table["se_diff"].to_numpy())
    axes[0].axhline(0, color="0.8", lw=0.8)
    axes[0].set_ylabel("elpd difference from the best")
    axes[0].set_title(f"PSIS-LOO (+- {se_multiplier:g} SE of the difference)", fontsize=9)
    points(axes[1], table["bic"].to_numpy())
    axes[1].set_ylabel("BIC (lower is better)")
    axes[1].set_title("BIC at the posterior mode", fontsize=9)
    points(axes[2], table["entropy"].to_numpy())
    axes[2].set_ylim(0, 1.02)
    axes[2].set_ylabel("relative entropy")
    axes[2].set_title("Classification entropy at the mode", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_class_sizes(table: xr.Dataset, names: list[str] | None = None, truth: dict | None = None, ax=None):
    """Class shares with their credible intervals (from :func:`profile_table`); ``truth``
    (name -> share) adds crosses."""
    w = table["class_weight_mean"]
    lo, hi = table["class_weight_lower"], table["class_weight_upper"]
    classes = [str(c) for c in w["class"].to_numpy()]
    names = classes if names is None else list(names)
    y = np.arange(len(classes))[::-1]
    ax = ax or plt.subplots(figsize=(6, 0.4 * len(classes) + 1.2))[1]
    ax.errorbar(w.to_numpy(), y, xerr=[w.to_numpy() - lo.to_numpy(), hi.to_numpy() - w.to_numpy()],
                fmt="o", color="C0", capsize=3)
    if truth:
        for yi, name in zip(y, names):
            if name in truth:
                ax.plot(truth[name], yi, "x", color="C3", ms=7)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("share of assessed episodes")
    prob = table.attrs.get("interval_prob")
    ax.set_title("Class sizes" + (f" ({prob:.0%} credible intervals)" if prob else ""), fontsize=9)
    ax.set_xlim(left=0)
    return ax.figure
