"""Descriptive tables of an extract: stage funnel, rates by IDACI decile, factor prevalences.

All tables hold raw counts here; suppression is applied when they are published
(:mod:`models.suppression`), so statistics computed in memory stay exact.

Rates are episodes per 10,000 children aged 0-15 per year.  The denominator is the
IoD2019 mid-2015 child population of *all* the LSOAs of the authorities in the extract
(the population they serve), times the number of reporting years in the extract.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.vocabulary import FACTORS, STAGE_LABELS, STAGES

STAGE_FLAGS = {"referral": None, "assessment": "assessment", "s47": "s47", "icpc": "icpc",
               "cpp": "cpp", "lac": "lac"}


def stage_indicators(episodes: pd.DataFrame) -> pd.DataFrame:
    """Boolean frame episode x stage (every episode is a referral)."""
    out = pd.DataFrame(index=episodes.index)
    for stage, flag in STAGE_FLAGS.items():
        out[stage] = True if flag is None else episodes[flag].astype(bool)
    return out[list(STAGES)]


def stage_funnel(episodes: pd.DataFrame, la_names: dict[str, str] | None = None) -> pd.DataFrame:
    """Episodes reaching each stage, per LA and in total (rows: LA, columns: stages)."""
    ind = stage_indicators(episodes)
    counts = ind.groupby(episodes["la_code"].astype(str)).sum().astype("int64")
    counts.loc["Total"] = counts.sum()
    if la_names:
        counts.index = [f"{la_names.get(c, c)} ({c})" if c != "Total" else c for c in counts.index]
    counts.index.name = "local_authority"
    return counts


def years_covered(episodes: pd.DataFrame) -> int:
    """Number of distinct reporting years (ending March) in the extract."""
    return int(episodes["year_ending_march"].nunique())


def denominators_by_decile(episodes: pd.DataFrame, lsoa_table: pd.DataFrame) -> pd.Series:
    """Children aged 0-15 per IDACI decile in the LAs of the extract, times years covered."""
    las = episodes["la_code"].astype(str).unique()
    served = lsoa_table[lsoa_table["la_code"].isin(las)]
    return served.groupby("idaci_decile")["children_0_15"].sum().astype("int64") * years_covered(episodes)


def counts_by_decile(episodes: pd.DataFrame, lsoa_table: pd.DataFrame) -> pd.DataFrame:
    """Episodes reaching each stage by IDACI decile of the child's LSOA (1 = most deprived)."""
    decile = episodes["lsoa_code"].map(lsoa_table.set_index("lsoa_code")["idaci_decile"])
    if decile.isna().any():
        raise ValueError("episodes with LSOA codes missing from the LSOA table; validate first")
    counts = stage_indicators(episodes).groupby(decile.astype(int).rename("idaci_decile")).sum()
    return counts.reindex(range(1, 11), fill_value=0).astype("int64")


def rates_by_decile(counts: pd.DataFrame, children: pd.Series) -> pd.DataFrame:
    """Rate per 10,000 children per year, decile x stage."""
    return counts.div(children.reindex(counts.index), axis=0) * 10_000


def gradient_summary(rates: pd.DataFrame) -> pd.DataFrame:
    """Per stage: most / least deprived decile rate ratio and the mean ratio per decile step
    (geometric mean of decile-to-decile ratios, from a log-linear fit across deciles)."""
    rows = []
    deciles = rates.index.to_numpy(dtype=float)
    for stage in rates.columns:
        r = rates[stage].to_numpy(dtype=float)
        ok = np.isfinite(r) & (r > 0)
        slope = np.polyfit(deciles[ok], np.log(r[ok]), 1)[0] if ok.sum() >= 3 else np.nan
        extreme = r[0] / r[-1] if r[-1] > 0 else np.nan
        rows.append({"stage": stage, "ratio_decile1_to_decile10": extreme,
                     "ratio_per_decile_step": float(np.exp(-slope))})
    return pd.DataFrame(rows).set_index("stage")


def factor_prevalence(factors: pd.DataFrame, assessed: pd.Series,
                      national: pd.DataFrame | None = None) -> pd.DataFrame:
    """Episodes with each assessment factor, as a share of assessed episodes with any factor.

    The share uses the same denominator as the DfE c3 table (episodes with at least one
    factor) so it can sit beside the national share.
    """
    f = factors.loc[assessed.to_numpy(dtype=bool)]
    any_factor = int(f.any(axis=1).sum())
    table = pd.DataFrame({
        "factor": [x.name for x in FACTORS],
        "code": [x.code for x in FACTORS],
        "label": [x.label for x in FACTORS],
        "episodes": f.sum().reindex([x.name for x in FACTORS]).to_numpy(dtype="int64"),
    })
    table["share"] = table["episodes"] / any_factor if any_factor else np.nan
    if national is not None:
        table["national_share"] = table["factor"].map(national.set_index("factor")["share"])
    table.attrs["episodes_with_any_factor"] = any_factor
    return table.set_index("factor")


def stage_label(stage: str) -> str:
    return STAGE_LABELS[stage]
