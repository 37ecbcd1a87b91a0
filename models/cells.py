"""Sufficient statistics: episodes aggregated into cells for binomial and Poisson likelihoods.

Two outcome scales (see DESIGN.md):

- **transitions**: among episodes that reached a stage's parent (``STAGE_PARENT``), how
  many reached the stage; one row per (stage x LA x LSOA x year x covariates), with
  ``trials`` and ``successes``.  Binomial on these rows gives the same posterior as
  Bernoulli on the episodes, far cheaper.
- **population**: episodes reaching a stage per LSOA and year over the LSOA's children
  (``exposure`` in child-years); every LSOA of the LAs appears, zero counts included.

Deprivation columns come from :func:`models.areas.add_deprivation`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.vocabulary import STAGE_PARENT, STAGES

GEO_COLUMNS = ["la_code", "lsoa_code", "dep_within", "dep_between"]


def stage_reached(episodes: pd.DataFrame, stage: str) -> np.ndarray:
    """Boolean: did each episode reach ``stage`` (every episode is a referral)."""
    if stage == "referral":
        return np.ones(len(episodes), dtype=bool)
    return episodes[stage].to_numpy(dtype=bool)


def _with_geography(episodes: pd.DataFrame, geography: pd.DataFrame) -> pd.DataFrame:
    geo = geography.set_index("lsoa_code")[["dep_within", "dep_between", "idaci_decile"]]
    missing = ~episodes["lsoa_code"].isin(geo.index)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} episodes have LSOAs missing from the geography")
    out = episodes.join(geo, on="lsoa_code")
    return out


def transition_cells(episodes: pd.DataFrame, geography: pd.DataFrame,
                     stages: tuple[str, ...] = STAGES[1:], covariates: tuple[str, ...] = (),
                     classes: pd.Series | None = None, given: str = "parent",
                     aggregate: bool = True) -> pd.DataFrame:
    """Binomial cells for P(stage | parent stage), or P(stage | referral) with
    ``given="referral"`` (reaching the stage at all, among referred children).

    ``covariates`` are episode columns to keep (e.g. ``age_group``, ``ethnicity``);
    ``classes`` (aligned with ``episodes``) adds a ``demand_class`` column when a class is
    supplied (e.g. the simulator's truth, or a modal class).  ``aggregate=False`` keeps one
    row per episode at risk (``trials`` = 1): the Bernoulli rows the cells replace.
    """
    if given not in ("parent", "referral"):
        raise ValueError(f"given must be 'parent' or 'referral', got {given!r}")
    ep = _with_geography(episodes, geography)
    ep = ep.assign(year=ep["year_ending_march"].astype(int))
    if classes is not None:
        ep = ep.assign(demand_class=np.asarray(classes))
        covariates = tuple(covariates) + ("demand_class",)
    keys = ["la_code", "lsoa_code", "year", *covariates]
    parts = []
    for stage in stages:
        parent = STAGE_PARENT[stage] if given == "parent" else "referral"
        if STAGE_PARENT[stage] is None:
            raise ValueError("referral has no parent stage: use population_cells for referrals")
        at_risk = stage_reached(ep, parent)
        frame = ep.loc[at_risk, keys + ["dep_within", "dep_between", "idaci_decile"]].copy()
        frame["successes"] = stage_reached(ep, stage)[at_risk].astype("int64")
        if not aggregate:
            frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
            frame.insert(len(keys), "trials", np.ones(len(frame), dtype="int64"))
            frame.insert(0, "stage", stage)
            parts.append(frame)
            continue
        grouped = frame.groupby(keys, observed=True, sort=True).agg(
            trials=("successes", "size"), successes=("successes", "sum"),
            dep_within=("dep_within", "first"), dep_between=("dep_between", "first"),
            idaci_decile=("idaci_decile", "first"))
        grouped = grouped.reset_index()
        grouped.insert(0, "stage", stage)
        parts.append(grouped)
    cells = pd.concat(parts, ignore_index=True)
    cells["stage"] = pd.Categorical(cells["stage"], categories=list(stages))
    cells.attrs["given"] = given
    for col in covariates:
        if not isinstance(cells[col].dtype, pd.CategoricalDtype):
            cells[col] = pd.Categorical(cells[col])
    return cells


def population_cells(episodes: pd.DataFrame, geography: pd.DataFrame,
                     stages: tuple[str, ...] = STAGES) -> pd.DataFrame:
    """Poisson cells: episodes reaching each stage per LSOA and year, with child-years exposure.

    ``geography`` should hold every LSOA of the LAs studied (with ``children_0_15``); LSOAs
    with no episodes enter with zero counts, as they must.
    """
    las = episodes["la_code"].unique()
    geo = geography[geography["la_code"].isin(las)]
    years = np.sort(episodes["year_ending_march"].astype(int).unique())
    base = geo[GEO_COLUMNS + ["idaci_decile", "children_0_15"]].merge(
        pd.DataFrame({"year": years}), how="cross")
    parts = []
    ep_year = episodes["year_ending_march"].astype(int).to_numpy()
    for stage in stages:
        reached = stage_reached(episodes, stage)
        counts = pd.DataFrame({"lsoa_code": episodes["lsoa_code"].to_numpy()[reached],
                               "year": ep_year[reached]}).value_counts().rename("count")
        frame = base.join(counts, on=["lsoa_code", "year"])
        frame["count"] = frame["count"].fillna(0).astype("int64")
        frame.insert(0, "stage", stage)
        parts.append(frame)
    cells = pd.concat(parts, ignore_index=True)
    cells["exposure"] = cells["children_0_15"].astype(float)  # child-years: one year per row
    cells["stage"] = pd.Categorical(cells["stage"], categories=list(stages))
    return cells
