"""Panel -> model inputs: long tables of the observed cells, and what is missing.

The LA x year panel (``workflows.build_panel``) has suppressed or unpublished cells as
missing.  The models here write their likelihood only over the observed cells (index
arrays into LA x year x outcome), so a missing cell contributes nothing and is never read
as zero, and an LA with gaps keeps every observed cell and its LA effect.  Predictions
for the missing cells come from the posterior like any other cell
(:func:`models.system.trends.expected_rates`).

Pure functions on DataFrames: nothing here reads files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Columns every system model needs from the panel.
KEY_COLUMNS = ("la_code", "la_name", "year", "population_0_17", "idaci_2019")
#: Authorities with a few hundred children, whose rates swing between 0% and 100%: the
#: system models leave them out unless asked (``include_micro_authorities``).
MICRO_AUTHORITIES: dict[str, str] = {"E09000001": "City of London", "E06000053": "Isles of Scilly"}
#: Workforce percentages at 0 or 100 (the Isles of Scilly report no employed social
#: workers) are clipped to this range before the logit, so they stay finite.
PCT_CLIP = (0.5, 99.5)
TRANSFORMS = ("log", "logit_pct", "identity")


def check_columns(panel: pd.DataFrame, columns) -> None:
    """ValueError naming every required column the panel lacks."""
    missing = [c for c in columns if c not in panel.columns]
    if missing:
        raise ValueError(f"the panel lacks column(s) {missing}; it has {list(panel.columns)[:10]}...")


def select(panel: pd.DataFrame, years=None, las=None) -> pd.DataFrame:
    """Rows of the chosen years and LAs (None: all), sorted by LA and year."""
    check_columns(panel, KEY_COLUMNS)
    out = panel
    if years is not None:
        out = out[out["year"].isin(list(years))]
    if las is not None:
        unknown = sorted(set(las) - set(panel["la_code"]))
        if unknown:
            raise ValueError(f"LA codes {unknown} are not in the panel")
        out = out[out["la_code"].isin(list(las))]
    if out.empty:
        raise ValueError("no panel rows left after selecting years and LAs")
    return out.sort_values(["la_code", "year"]).reset_index(drop=True)


@dataclass(frozen=True)
class IdaciScale:
    """LA IDACI standardised over LAs: z = (score - mean) / sd.  Kept so effects can be
    reported per 0.1 of the IDACI score (10 percentage points of children in
    income-deprived families) as well as per SD."""

    mean: float
    sd: float

    def z(self, score):
        return (np.asarray(score, dtype=float) - self.mean) / self.sd

    def score(self, z):
        return np.asarray(z, dtype=float) * self.sd + self.mean


def la_table(panel: pd.DataFrame) -> tuple[pd.DataFrame, IdaciScale]:
    """One row per LA (sorted codes): name, region, IDACI score and its z-score."""
    check_columns(panel, KEY_COLUMNS)
    las = (panel.sort_values("year").groupby("la_code", sort=True)
           .agg(la_name=("la_name", "last"), idaci=("idaci_2019", "first")))
    if "region_name" in panel:
        las["region_name"] = panel.groupby("la_code", sort=True)["region_name"].last()
    if las["idaci"].isna().any():
        bad = las.index[las["idaci"].isna()].tolist()
        raise ValueError(f"idaci_2019 is missing for LA(s) {bad[:5]}: every LA needs its IDACI score")
    scale = IdaciScale(float(las["idaci"].mean()), float(las["idaci"].std(ddof=0)))
    if not scale.sd > 0:
        raise ValueError("idaci_2019 does not vary between the LAs selected: the gradient is not identified")
    las["idaci_z"] = scale.z(las["idaci"])
    return las, scale


def index_of(values: pd.Series | np.ndarray, labels: list) -> np.ndarray:
    """Positions of ``values`` in ``labels`` (every value must be a label)."""
    lookup = {lab: i for i, lab in enumerate(labels)}
    out = pd.Series(np.asarray(values)).map(lookup)
    if out.isna().any():
        raise ValueError(f"values {sorted(set(pd.Series(np.asarray(values))[out.isna()]))[:5]} "
                         f"are not among the labels")
    return out.to_numpy(dtype="int64")


def count_cells(panel: pd.DataFrame, measures: dict[str, str], label: str = "stage") -> pd.DataFrame:
    """Observed count cells: ``la_code, year, <label>, count, exposure``.

    ``measures`` maps a label (e.g. ``"cpp_start"``) to its panel count column.  A cell is
    kept where both the count and the child population are present; missing counts are left
    out of the likelihood (never zero).
    """
    check_columns(panel, [*KEY_COLUMNS, *measures.values()])
    frames = []
    for name, column in measures.items():
        count = pd.to_numeric(panel[column], errors="coerce").astype(float)
        exposure = pd.to_numeric(panel["population_0_17"], errors="coerce").astype(float)
        keep = count.notna() & exposure.notna() & (exposure > 0)
        if (count[keep] < 0).any():
            raise ValueError(f"column {column} has negative counts")
        frames.append(pd.DataFrame({"la_code": panel.loc[keep, "la_code"].to_numpy(),
                                    "year": panel.loc[keep, "year"].to_numpy(int),
                                    label: name, "count": count[keep].to_numpy(),
                                    "exposure": exposure[keep].to_numpy()}))
    return pd.concat(frames, ignore_index=True)


def transform(values: pd.Series, kind: str) -> pd.Series:
    """A continuous outcome on its modelling scale: ``log`` (positive values; zero or less is
    treated as missing), ``logit_pct`` (a percentage, clipped to ``PCT_CLIP``), ``identity``."""
    x = pd.to_numeric(values, errors="coerce").astype(float)
    if kind == "log":
        return np.log(x.where(x > 0))
    if kind == "logit_pct":
        p = x.clip(*PCT_CLIP) / 100.0
        return np.log(p) - np.log1p(-p)
    if kind == "identity":
        return x
    raise ValueError(f"unknown transform {kind!r}; choose one of {', '.join(TRANSFORMS)}")


def back_transform(values, kind: str):
    """Inverse of :func:`transform` (``logit_pct`` returns a percentage)."""
    values = np.asarray(values, dtype=float) if not hasattr(values, "dims") else values
    if kind == "log":
        return np.exp(values)
    if kind == "logit_pct":
        return 100.0 / (1.0 + np.exp(-values))
    if kind == "identity":
        return values
    raise ValueError(f"unknown transform {kind!r}")


def coverage(panel: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Per outcome: LA-year cells, observed, missing, and LAs with some or all cells missing
    (over the years in which the outcome is published at all)."""
    rows = []
    for name, column in columns.items():
        check_columns(panel, [column])
        present = panel[column].notna()
        published = panel.groupby("year")[column].transform(lambda s: s.notna().any())
        sub = panel[published]
        obs = present[published]
        per_la = obs.groupby(sub["la_code"]).agg(["sum", "size"])
        years = sorted(sub["year"].unique())
        rows.append({"outcome": name, "column": column,
                     "years": f"{years[0]}-{years[-1]}" if years else "",
                     "cells": int(len(sub)), "observed": int(obs.sum()),
                     "missing": int((~obs).sum()),
                     "las_some_missing": int(((per_la["sum"] > 0) & (per_la["sum"] < per_la["size"])).sum()),
                     "las_all_missing": int((per_la["sum"] == 0).sum())})
    return pd.DataFrame(rows).set_index("outcome")


def missing_units(panel: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Per measure and year (where published at all): LAs without the value and their names.

    A sum or rate over the LAs that report is not DfE's England figure in these years; a
    report must say so beside any national number it shows."""
    rows = []
    for name, column in columns.items():
        check_columns(panel, [column, "la_name"])
        for year, frame in panel.groupby("year", sort=True):
            gone = frame[column].isna()
            if gone.any() and not gone.all():
                rows.append({"measure": name, "year": int(year), "missing": int(gone.sum()),
                             "of": len(frame), "las": "; ".join(frame.loc[gone, "la_name"])})
    return pd.DataFrame(rows, columns=["measure", "year", "missing", "of", "las"])


#: Count measures of the panel the system models know: label -> (count column, description).
MEASURES: dict[str, tuple[str, str]] = {
    "referrals": ("referrals_n", "referrals"),
    "assessments": ("assessments_n", "assessments completed"),
    "s47": ("s47_n", "section 47 enquiries"),
    "icpc": ("icpc_n", "initial child protection conferences"),
    "cpp_start": ("cpp_start_n", "child protection plans started"),
    "cpp_31mar": ("cpp_31mar_n", "children on a plan at 31 March"),
    "cla_31mar": ("cla_31mar_n", "children looked after at 31 March"),
    "cla_start": ("cla_start_n", "children starting to be looked after"),
    "cla_31mar_excl_uasc": ("cla_31mar_excl_uasc_n",
                            "children looked after at 31 March, not unaccompanied asylum seekers"),
    "cin_31mar": ("cin_31mar_n", "children in need at 31 March"),
}


def measure_columns(labels) -> dict[str, str]:
    """Label -> panel count column, with a ValueError naming an unknown label."""
    unknown = [s for s in labels if s not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measure(s) {unknown}; choose from {', '.join(MEASURES)}")
    return {s: MEASURES[s][0] for s in labels}
