"""The ``build-panel`` verb: a harmonised local authority x year panel, 2010-2025.

One row per children's services authority ("unit") and reporting year (year ending 31 March),
built only from the published files copied into ``data/raw`` and written to
``data/panel/la_panel.csv``.  Every choice is documented in ``data/panel/README.md``; the
short version:

* **Geography.**  The units are the coarsest areas that stay the same over 2010-2025, so no
  count is ever apportioned: BCP + Dorset (Bournemouth, Poole and Dorset County Council to
  2019; BCP and Dorset UA from 2020), Northamptonshire (North + West from 2022) and Cumbria
  (Cumberland + Westmorland and Furness from 2024) are one unit each; re-coded authorities
  with unchanged areas (Buckinghamshire 2020, North Yorkshire and Somerset 2023, Barnsley and
  Sheffield in the 2025 workforce file) keep one unit.  150 units.  Source rows are matched on
  the DfE 3-digit LA number, which survives ONS re-coding.
* **Counts** of a merged unit are the sum of its members' counts; if any member is suppressed
  or missing the unit is missing (never a partial sum, never zero).
* **Rates** per 10,000 children aged 0-17 are recomputed as count / population x 10,000 from
  the summed counts and summed populations, never averaged.  Year t uses the ONS mid-(t-1)
  estimate, as DfE does.
* **Periods.**  Every series sits in the year its publisher gives it (``PERIODS``): counts
  in the year ending 31 March, the workforce snapshot of 30 September Y in year Y, spend in
  the financial year ending 31 March.
* **Suppression markers** (``c``, ``x``, ``z``, ``u``, ``low``, ``..``, ``:``, ``.``, ``-``,
  ``[x]``, ``...``) are missing, never zero; an unknown token stops the build with the file,
  row, column and value.
* **Spend** (children's social care net current expenditure, the same service groups in
  every year): DfE S251 to 2018-19 (panel years to 2019), MHCLG RO3 from 2019-20 (2020 on;
  no 2021-22), marked by ``spend_series``.  The build reads a compact extract that
  ``extract_spend`` writes from the workbooks (see the spend section below).

The transforms are pure functions (raw DataFrames in, tables out); the file reading and
writing sit apart at the bottom of the module, as in ``public_data.reference``.
"""

from __future__ import annotations

import argparse
import gzip
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from public_data.raw import RawFile, copy_files, stored_paths
from workflows import atomic, paths
from workflows.errors import UserError

# --------------------------------------------------------------------------------------------
# Raw inputs
# --------------------------------------------------------------------------------------------

_CIN = ("DfE 'Characteristics of children in need', https://explore-education-statistics."
        "service.gov.uk/find-statistics/characteristics-of-children-in-need")
_CLA = ("DfE 'Children looked after in England including adoptions', https://explore-education-"
        "statistics.service.gov.uk/find-statistics/children-looked-after-in-england-including-"
        "adoptions")
_CSWW = ("DfE 'Children's social work workforce', https://explore-education-statistics.service."
         "gov.uk/find-statistics/children-s-social-work-workforce")
_IOD = "MHCLG English Indices of Deprivation 2019, https://www.gov.uk/government/statistics/" \
       "english-indices-of-deprivation-2019"
_ONS = "ONS Open Geography Portal lookups, https://geoportal.statistics.gov.uk"


#: Every raw file the build reads.  CSVs are stored gzip-compressed as ``NAME.gz``.
RAW_FILES: tuple[RawFile, ...] = (
    RawFile("b1", "dfe_cin/release_2025/b1_children_in_need_2013_to_2025.csv",
            f"{_CIN}, 2024-25 release, table b1"),
    RawFile("c1", "dfe_cin/release_2025/"
            "c1_children_in_need_referrals_and_rereferrals_2013_to_2025.csv",
            f"{_CIN}, 2024-25 release, table c1"),
    RawFile("c4", "dfe_cin/release_2025/"
            "c4_children_in_need_section_47s_and_icpcs_2013_to_2025.csv",
            f"{_CIN}, 2024-25 release, table c4"),
    RawFile("d3", "dfe_cin/release_2025/d3_cpps_subsequent_plan_2013_to_2025.csv",
            f"{_CIN}, 2024-25 release, table d3"),
    RawFile("d5", "dfe_cin/release_2025/d5_cpps_at31march_by_duration_2013_to_2025.csv",
            f"{_CIN}, 2024-25 release, table d5"),
    RawFile("c2", "dfe_cin/release_2022/"
            "c2_children_in_need_assessments_duration_2014_to_2022.csv",
            f"{_CIN}, 2021-22 release, table c2"),
    RawFile("d2", "dfe_cin/release_2022/d2_cpps_starting_by_category_of_abuse_2013_to_2022.csv",
            f"{_CIN}, 2021-22 release, table d2"),
    RawFile("d4", "dfe_cin/release_2022/"
            "d4_cpps_at31march_by_category_of_abuse_2013_to_2022.csv",
            f"{_CIN}, 2021-22 release, table d4"),
    RawFile("cin2010", "dfe_cin/pre2013/osr28-2010ud.csv",
            f"{_CIN}, OSR28/2010 underlying data (year ending 31 March 2010)"),
    RawFile("cin2011", "dfe_cin/pre2013/osr26-2011ud.csv",
            f"{_CIN}, OSR26/2011 underlying data (year ending 31 March 2011)"),
    RawFile("cin2012", "dfe_cin/pre2013/SFR27-2012ud.csv",
            f"{_CIN}, SFR27/2012 underlying data (year ending 31 March 2012)"),
    RawFile("cla2010", "dfe_cla/sfr_underlying/SFR27_2010_March.csv",
            f"{_CLA}, SFR27/2010 LA underlying data"),
    RawFile("cla2011", "dfe_cla/sfr_underlying/SFR21_CLA.csv", f"{_CLA}, SFR21/2011 LA data"),
    RawFile("cla2012", "dfe_cla/sfr_underlying/SFR20_CLA2012.csv", f"{_CLA}, SFR20/2012 LA data"),
    RawFile("cla2013", "dfe_cla/sfr_underlying/SFR36_CLA2013.csv", f"{_CLA}, SFR36/2013 LA data"),
    RawFile("cla2014", "dfe_cla/sfr_underlying/SFR36_CLA2014.csv", f"{_CLA}, SFR36/2014 LA data"),
    RawFile("cla2015", "dfe_cla/sfr_underlying/SFR34_CLA2015.csv", f"{_CLA}, SFR34/2015 LA data"),
    RawFile("cla2016", "dfe_cla/sfr_underlying/SFR41_CLA2016.csv", f"{_CLA}, SFR41/2016 LA data"),
    RawFile("cla2017", "dfe_cla/sfr_underlying/SFR50_CLA2017.csv", f"{_CLA}, SFR50/2017 LA data"),
    RawFile("cla_r2022", "dfe_cla/release_2022/cla_number_and_rate_per_10k_children.csv",
            f"{_CLA}, 2022 release, cla_number_and_rate_per_10k_children"),
    RawFile("cla_r2025", "dfe_cla/release_2025/cla_number_and_rate_per_10k_children.csv",
            f"{_CLA}, 2025 release, cla_number_and_rate_per_10k_children"),
    RawFile("population", "population/ons_mid-year_population_estimates_2012_to_2024.csv",
            f"ONS mid-year estimates of children 0-17 as published with {_CIN}, 2024-25 release"),
    RawFile("workforce", "dfe_workforce/csww_indicators_2017_to_2025.csv",
            f"{_CSWW}, csww_indicators_2017_to_2025"),
    RawFile("idaci_utla", "iod2019/imd-2019.xlsx",
            f"IoD2019 File 11 (upper-tier LA summaries), {_IOD}"),
    RawFile("children_lsoa", "iod2019/File_6_-_IoD2019_Population_Denominators.csv",
            f"IoD2019 File 6 (population denominators), {_IOD}"),
    RawFile("ltla_utla", "lookups/lookup_ltla19_utla19.csv",
            f"LAD 2019 to UTLA 2019 lookup, {_ONS}"),
    RawFile("spend", "expenditure/children_social_care_spend_extract.csv",
            "compact extract of the DfE Section 251 (2009-10 to 2018-19) and MHCLG RO3 "
            "(2019-20 onwards) workbooks, written by public_data.panel.extract_spend; "
            "rebuild it with `python -m workflows build-panel --copy-raw-from DIR`"),
)
#: The spend extract is made from the workbooks, not copied (see ``extract_spend``).
SPEND_EXTRACT = next(f for f in RAW_FILES if f.key == "spend")
RAW_BY_KEY: dict[str, RawFile] = {f.key: f for f in RAW_FILES}

#: Tokens that DfE, ONS and MHCLG files use for suppressed or unavailable values.  They mean
#: "unknown", never zero.  Compared case-insensitively after stripping blanks.
SUPPRESSION_MARKERS: frozenset[str] = frozenset({
    "c", "x", "z", "u", "low", "..", ":", ".", "-", "*", "[x]", "[z]", "[c]", "[u]",
    "[low]", "m", "na", "n/a", "", "...",
})

FIRST_YEAR, LAST_YEAR = 2010, 2025
YEARS: tuple[int, ...] = tuple(range(FIRST_YEAR, LAST_YEAR + 1))
PER = 10_000  # rates per 10,000 children aged 0-17
RATE_DECIMALS = 3
SHARE_DECIMALS = 4


@dataclass(frozen=True)
class Reorganisation:
    """A unit made of authorities that changed: ``before`` until ``last_year_before``, then
    ``after``.  Members are DfE 3-digit LA numbers; the unit covers the same area throughout."""

    code: str
    name: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    last_year_before: int


#: The three boundary changes that need a merged unit (the reporting year is the year ending
#: 31 March; a change on 1 April Y first shows in reporting year Y + 1).
REORGANISATIONS: tuple[Reorganisation, ...] = (
    Reorganisation("E06000058+E06000059", "Bournemouth, Christchurch and Poole + Dorset",
                   before=("835", "836", "837"), after=("838", "839"), last_year_before=2019),
    Reorganisation("E06000061+E06000062", "North Northamptonshire + West Northamptonshire",
                   before=("928",), after=("940", "941"), last_year_before=2021),
    Reorganisation("E06000063+E06000064", "Cumberland + Westmorland and Furness",
                   before=("909",), after=("942", "943"), last_year_before=2023),
)

#: (measure, label) pairs for which the panel has ``<measure>_n`` and ``<measure>_rate``.
CATEGORIES = ("neglect", "physical", "sexual", "emotional", "multiple")
COUNT_MEASURES: tuple[str, ...] = (
    "cin_31mar", "referrals", "rereferrals", "referrals_nfa", "referrals_not_in_need",
    "initial_assessments", "assessments", "s47", "icpc", "cpp_start",
    *(f"cpp_start_{c}" for c in CATEGORIES), "cpp_31mar", *(f"cpp_31mar_{c}" for c in CATEGORIES),
    "cla_31mar", "cla_start", "cla_31mar_uasc", "cla_31mar_excl_uasc",
)
#: CPP durations at 31 March (table d5): DfE column -> panel suffix of ``cpp_31mar_dur_*_n``.
CPP_DURATIONS: dict[str, str] = {
    "3_months_or_less": "3m_or_less", "more_than_3_months_6_months": "3m_to_6m",
    "more_than_6_months_less_than_1_year": "6m_to_1y", "1_year_less_than_2_years": "1y_to_2y",
    "2_years_or_more": "2y_or_more"}
#: Counts without a per-child rate: parts of another count, read as shares of it.
PART_COUNTS: tuple[str, ...] = (
    "cin_31mar_awaiting_assessment_n", "cpp_subsequent_n",
    *(f"cpp_31mar_dur_{d}_n" for d in CPP_DURATIONS.values()))

PANEL_COLUMNS: tuple[str, ...] = (
    "la_code", "la_name", "region_code", "region_name", "year", "dfe_la_codes",
    "population_0_17", "population_mid_year", "population_source",
    *(c for m in COUNT_MEASURES for c in (f"{m}_n", f"{m}_rate")),
    "rereferral_share", "nfa_share", "not_in_need_share",
    *PART_COUNTS, "cpp_repeat_share", "cpp_2y_or_more_share",
    "sw_fte", "agency_fte", "leavers_fte", "vacancy_fte",
    "caseload_fte", "cin_per_sw_fte", "agency_rate_pct", "turnover_rate_pct",
    "vacancy_rate_pct", "workforce_snapshot", "workforce_joint_with",
    "spend_gbp", "spend_per_child", "spend_per_cin", "spend_series",
    "idaci_2019",
)

#: The alignment convention: every series sits in the panel ``year`` that DfE (or MHCLG, ONS)
#: gives it, never shifted.  Period each column measures, for row ``year`` = Y.
_AT_31_MARCH = "on 31 March Y"
_YEAR_TO_MARCH = "the year 1 April Y-1 to 31 March Y (DfE reporting year Y)"
_SNAPSHOT = ("the workforce snapshot on 30 September Y (DfE reporting year Y), six months "
             "after the 31 March that ends the CIN/CLA year Y")
_FINANCIAL = "the financial year ending 31 March Y (Y-1 to Y)"
PERIODS: dict[str, str] = {
    **{c: "" for c in ("la_code", "la_name", "region_code", "region_name", "year",
                       "dfe_la_codes", "population_source", "workforce_joint_with")},
    "population_0_17": "ONS mid-year estimate for 30 June Y-1 (DfE's denominator for year Y)",
    "population_mid_year": "ONS mid-year estimate for 30 June Y-1 (DfE's denominator for year Y)",
    **{f"{m}{x}": (_AT_31_MARCH if "31mar" in m else _YEAR_TO_MARCH)
       for m in COUNT_MEASURES for x in ("_n", "_rate")},
    **{c: _YEAR_TO_MARCH for c in ("rereferral_share", "nfa_share", "not_in_need_share",
                                   "cpp_subsequent_n", "cpp_repeat_share")},
    **{c: _AT_31_MARCH for c in PART_COUNTS if "31mar" in c},
    "cpp_2y_or_more_share": _AT_31_MARCH,
    **{c: _SNAPSHOT for c in ("sw_fte", "agency_fte", "leavers_fte", "vacancy_fte",
                              "caseload_fte", "agency_rate_pct", "turnover_rate_pct",
                              "vacancy_rate_pct", "workforce_snapshot")},
    "cin_per_sw_fte": f"children in need {_AT_31_MARCH} over social workers (employed and "
                      f"agency) at {_SNAPSHOT}",
    **{c: _FINANCIAL for c in ("spend_gbp", "spend_per_child", "spend_series")},
    "spend_per_cin": f"{_FINANCIAL}, over children in need {_AT_31_MARCH}",
    "idaci_2019": "IoD2019 (income data for 2015), the same in every year",
}


class RawDataError(ValueError):
    """A raw file is not as expected; the message names the file, row, column and value."""


# --------------------------------------------------------------------------------------------
# Cleaning
# --------------------------------------------------------------------------------------------


def source_of(frame: pd.DataFrame) -> str:
    return str(frame.attrs.get("source", "raw table"))


def require(frame: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RawDataError(f"{source_of(frame)}: column(s) {missing} not found; the file has "
                           f"{list(frame.columns)[:12]}...")


def to_number(frame: pd.DataFrame, column: str) -> pd.Series:
    """A published column as floats, suppression markers as NaN (never zero).

    Thousands separators are removed.  An unknown non-numeric token raises RawDataError with
    the file, the line (header = line 1), the column and the value.
    """
    require(frame, column)
    text = frame[column].astype("string").str.strip()
    marker = text.str.lower().isin(SUPPRESSION_MARKERS) | text.isna()
    numbers = text.where(~marker).str.replace(",", "", regex=False)
    out = pd.to_numeric(numbers, errors="coerce").astype("float64")
    bad = numbers.notna() & out.isna()
    if bad.any():
        label = bad[bad].index[0]
        line = int(label) + 2  # frames keep read_csv's row numbers; the header is line 1
        raise RawDataError(
            f"{source_of(frame)}, line {line}, column {column!r}: value {text[label]!r} is "
            f"neither a number nor a known suppression marker "
            f"({', '.join(sorted(m for m in SUPPRESSION_MARKERS if m))})")
    return out


def _tag(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    frame.attrs["source"] = source
    return frame


def la_rows(frame: pd.DataFrame, level_col: str = "geographic_level",
            la_value: str = "Local authority") -> pd.DataFrame:
    require(frame, level_col)
    out = frame[frame[level_col].str.strip().str.lower().eq(la_value.lower())]
    out.attrs.update(frame.attrs)
    return out


def national_rows(frame: pd.DataFrame, level_col: str = "geographic_level") -> pd.DataFrame:
    require(frame, level_col)
    out = frame[frame[level_col].str.strip().str.lower().eq("national")].drop_duplicates()
    out.attrs.update(frame.attrs)
    return out


# --------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------


def build_units(b1: pd.DataFrame) -> pd.DataFrame:
    """The harmonised units and the DfE numbers in each, from the LA rows of CIN table b1.

    Returns one row per DfE number: ``dfe``, ``la_code`` (unit code), ``la_name`` (unit name),
    ``region_code``, ``region_name``, ``first_year``, ``last_year`` (the reporting years in
    which that DfE number is a member).  A unit that did not change is coded by the ONS code
    of its latest row; a merged unit by ``CODE+CODE`` of its current members.
    """
    rows = la_rows(b1)
    require(rows, "old_la_code", "new_la_code", "la_name", "region_code", "region_name")
    rows = rows.assign(year=rows["time_period"].astype(int))
    latest = (rows.sort_values("year").groupby("old_la_code", sort=True).tail(1)
              .set_index("old_la_code"))
    merged = {m: r for r in REORGANISATIONS for m in (*r.before, *r.after)}
    out = []
    for dfe, row in latest.iterrows():
        reorg = merged.get(dfe)
        first, last = FIRST_YEAR, LAST_YEAR
        if reorg is not None:
            if dfe in reorg.before:
                last = reorg.last_year_before
            else:
                first = reorg.last_year_before + 1
        out.append({
            "dfe": dfe,
            "la_code": reorg.code if reorg else row["new_la_code"],
            "la_name": reorg.name if reorg else row["la_name"],
            "region_code": row["region_code"], "region_name": row["region_name"],
            "first_year": first, "last_year": last,
        })
    units = pd.DataFrame(out)
    missing = sorted(set(merged) - set(units["dfe"]))
    if missing:
        raise RawDataError(f"{source_of(b1)}: no rows for DfE LA numbers {missing}")
    return units.sort_values(["la_code", "dfe"]).reset_index(drop=True)


def members(units: pd.DataFrame, year: int, open_ended: bool = False) -> pd.DataFrame:
    """The DfE numbers that make up each unit in reporting ``year``.  ``open_ended``: the
    authorities of the last panel year continue after it (for the September snapshot of the
    last year, whose geography is that of the next reporting year)."""
    last = units["last_year"].where(~(open_ended & units["last_year"].eq(LAST_YEAR)), np.inf)
    return units[(units["first_year"] <= year) & (last >= year)]


def to_units(values: pd.DataFrame, units: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Sum DfE-authority values (``dfe``, ``year``, columns) into unit-years.

    A unit-year value is the sum over the unit's members in that year and is NaN if any
    member's value is missing or suppressed.  A value reported for an authority outside its
    years of existence is an error unless it is missing (files keep abolished authorities with
    ``z``).
    """
    values = values.copy()
    known = values["dfe"].isin(units["dfe"])
    if not known.all():
        bad = sorted(values.loc[~known, "dfe"].unique())
        raise RawDataError(f"{source_of(values)}: DfE LA numbers {bad} are not in the unit table")
    span = units.set_index("dfe")[["first_year", "last_year"]]
    first = values["dfe"].map(span["first_year"])
    last = values["dfe"].map(span["last_year"])
    outside = (values["year"] < first) | (values["year"] > last)
    stray = outside & values[columns].notna().any(axis=1)
    if stray.any():
        r = values[stray].iloc[0]
        raise RawDataError(f"{source_of(values)}: DfE LA {r['dfe']} has values in {r['year']}, "
                           "a year in which that authority did not exist")
    values = values[~outside]
    if values.duplicated(["dfe", "year"]).any():
        r = values[values.duplicated(["dfe", "year"])].iloc[0]
        raise RawDataError(f"{source_of(values)}: two rows for DfE LA {r['dfe']} in {r['year']}")
    years = sorted(values["year"].unique())
    frame = pd.concat([members(units, y).assign(year=y) for y in years], ignore_index=True)
    frame = frame[["dfe", "la_code", "year"]].merge(values, on=["dfe", "year"], how="left")
    grouped = frame.groupby(["la_code", "year"], sort=True)
    n_members = grouped.size()
    out = grouped[columns].sum(min_count=1)
    complete = grouped[columns].count().eq(n_members, axis=0)
    return out.where(complete).reset_index()


# --------------------------------------------------------------------------------------------
# Sources -> (dfe, year, measures)
# --------------------------------------------------------------------------------------------


def _ees(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """LA rows of an Explore Education Statistics table: dfe, year and renamed measures."""
    rows = la_rows(frame)
    out = pd.DataFrame({"dfe": rows["old_la_code"].str.strip(),
                        "year": rows["time_period"].astype(int)})
    for src, dst in columns.items():
        out[dst] = to_number(rows, src)
    return _tag(out, source_of(frame))


def cin_2013_on(raw: dict[str, pd.DataFrame]) -> list[pd.DataFrame]:
    """CIN, referrals, s47, ICPC and CPP counts 2013-2025 (2024-25 release) and assessments
    and CPP categories 2013/14-2022 (2021-22 release)."""
    cats = {f"{c.capitalize()}_Initial": c for c in CATEGORIES}
    return [
        _ees(raw["b1"], {"At31_episodes": "cin_31mar_n",
                         "awaiting_assessment": "cin_31mar_awaiting_assessment_n"}),
        _ees(raw["c1"], {"referral_count": "referrals_n", "rereferral_count": "rereferrals_n",
                         "no_further_action_count": "referrals_nfa_n",
                         "not_in_need_count": "referrals_not_in_need_n"}),
        _ees(raw["c4"], {"Section47": "s47_n", "ICPC": "icpc_n"}),
        _ees(raw["d3"], {"CPP_start": "cpp_start_n", "CPP_subsequent": "cpp_subsequent_n"}),
        _ees(raw["d5"], {"CPP_At31": "cpp_31mar_n",
                         **{k: f"cpp_31mar_dur_{v}_n" for k, v in CPP_DURATIONS.items()}}),
        _ees(raw["c2"], {"Assessments_completed": "assessments_n"}),
        _ees(raw["d2"], {k: f"cpp_start_{v}_n" for k, v in cats.items()}),
        _ees(raw["d4"], {k: f"cpp_31mar_{v}_n" for k, v in cats.items()}),
    ]


#: Pre-2013 CIN underlying data: panel column -> column of each year's file ({yy} = e.g. 0910).
PRE2013_CIN: dict[str, dict[int, str]] = {
    "cin_31mar_n": {2010: "CINAt310310", 2011: "CINAt310311", 2012: "CINAt310312"},
    "referrals_n": {2010: "Referrals0910", 2011: "Referrals1011", 2012: "Referrals1112"},
    "rereferrals_n": {2011: "ReferralsWithin12mths1011", 2012: "ReferralsWithin12mths1112"},
    "referrals_nfa_n": {2012: "ReferralsNFA112"},
    "initial_assessments_n": {2010: "IAs0910", 2011: "IAs1011", 2012: "IAs1112"},
    "s47_n": {2010: "S47in0910", 2011: "S47in1011", 2012: "S471112"},
    "icpc_n": {2010: "ICPCin0910", 2011: "ICPCin1011", 2012: "ICPC1112"},
    "cpp_start_n": {2010: "CPPIn0910", 2011: "CPPIn1011", 2012: "CPPStart1112"},
    "cpp_31mar_n": {2010: "CPPAt310310", 2011: "CPPAt310311", 2012: "CPPAt310312"},
    "population_0_17": {2010: "Mid2009Pop0-17", 2011: "Mid2010Pop0-17", 2012: "Mid2011Pop0-17"},
}
_PRE2013_CPP_PREFIX = {
    "cpp_start": {2010: "CPPin0910", 2011: "CPPin1011", 2012: "CPPStart1112"},
    "cpp_31mar": {2010: "CPPat310310", 2011: "CPPat310311", 2012: "CPPat310312"},
}
for _stage, _prefixes in _PRE2013_CPP_PREFIX.items():
    for _c in CATEGORIES:
        PRE2013_CIN[f"{_stage}_{_c}_n"] = {
            y: f"{p}InitialAbuse{_c.capitalize()}" for y, p in _prefixes.items()}


def cin_pre2013(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """CIN measures and the DfE population denominators for 2010-2012 (wide SFR layout)."""
    frames = []
    for year in (2010, 2011, 2012):
        src = raw[f"cin{year}"]
        rows = la_rows(src, "geog_l", "LA")
        out = pd.DataFrame({"dfe": rows["geog_c"].str.strip(), "year": year})
        for column, by_year in PRE2013_CIN.items():
            out[column] = to_number(rows, by_year[year]) if year in by_year else np.nan
        frames.append(out)
    return _tag(pd.concat(frames, ignore_index=True), "pre-2013 CIN underlying data")


#: CLA at 31 March in the SFR underlying files: year -> column.
CLA_SFR_COLUMN: dict[int, str] = {2010: "MarTotal_2010", **{y: f"CLA_Mar{y}"
                                                            for y in range(2011, 2018)}}
#: Unaccompanied asylum-seeking children among them (``CLA_UASC``; not in the 2010 file, and
#: the 2018-2025 releases held have no UASC breakdown).
CLA_SFR_UASC_YEARS = range(2011, 2018)
#: The EES releases: (key, measure column, value column, years, measure label -> panel column).
CLA_RELEASES = (
    ("cla_r2022", "population_count", "number", range(2018, 2021),
     {"Children looked after at 31 March each year": "cla_31mar_n",
      "Children starting to be looked after each year": "cla_start_n"}),
    ("cla_r2025", "population_type", "children_count", range(2021, 2026),
     {"Children looked after on 31 March each year": "cla_31mar_n",
      "Children starting to be looked after each year": "cla_start_n"}),
)


def cla(raw: dict[str, pd.DataFrame], national: bool = False) -> pd.DataFrame:
    """Children looked after at 31 March (SFR files 2010-2017, 2022 release 2018-2020, 2025
    release 2021-2025: the latest wins), starting in the year (2018-2025) and UASC at 31 March
    (2011-2017).  ``national``: the England rows instead of the LA rows (``dfe`` = "england")."""
    frames = []
    for year, column in CLA_SFR_COLUMN.items():
        src = raw[f"cla{year}"]
        rows = national_rows(src, "geog_l") if national else la_rows(src, "geog_l", "LA")
        frame = pd.DataFrame({"dfe": "england" if national else rows["geog_c"].str.strip(),
                              "year": year, "cla_31mar_n": to_number(rows, column)})
        if year in CLA_SFR_UASC_YEARS:
            frame["cla_31mar_uasc_n"] = to_number(rows, "CLA_UASC")
        frames.append(frame)
    for key, measure_col, value_col, years, labels in CLA_RELEASES:
        src = raw[key]
        require(src, measure_col)
        rows = national_rows(src) if national else la_rows(src)
        rows = rows[rows["time_period"].astype(int).isin(list(years))]
        parts = []
        for label, column in labels.items():
            hit = rows[rows[measure_col].str.strip().eq(label)]
            if hit.empty:
                raise RawDataError(f"{source_of(src)}: no rows with {measure_col} = {label!r}")
            parts.append(pd.DataFrame({
                "dfe": "england" if national else hit["old_la_code"].str.strip(),
                "year": hit["time_period"].astype(int), column: to_number(hit, value_col)})
                .set_index(["dfe", "year"]))
        frames.append(pd.concat(parts, axis=1).reset_index())
    out = pd.concat(frames, ignore_index=True)
    return _tag(out[["dfe", "year", "cla_31mar_n", "cla_start_n", "cla_31mar_uasc_n"]],
                "CLA files")


def population(raw: dict[str, pd.DataFrame], units: pd.DataFrame) -> pd.DataFrame:
    """Children 0-17 per unit for panel years 2013-2025 (mid-(year - 1), revised ONS series).

    Bournemouth, Poole and Dorset CC are ``x`` for mid-2012 to mid-2018 in the revised file,
    which has no back-series for BCP and Dorset UA either.  Their union (our merged unit) is
    then recovered exactly as the South West region total minus the region's other
    authorities; the build checks that region totals equal the sum of their authorities in
    every year where all are published.
    """
    src = raw["population"]
    rows = la_rows(src)
    values = pd.DataFrame({"dfe": rows["old_la_code"].str.strip(),
                           "year": rows["time_period"].astype(int) + 1,
                           "population_0_17": to_number(rows, "population_estimate")})
    values = _tag(values, source_of(src))
    per_unit = to_units(values, units, ["population_0_17"])
    per_unit["population_source"] = "ons_mye_revised"
    # regional residual for units left missing
    reg = src[src["geographic_level"].str.strip().eq("Regional")]
    reg_total = pd.DataFrame({"region_code": reg["region_code"],
                              "year": reg["time_period"].astype(int) + 1,
                              "total": to_number(reg, "population_estimate")})
    la_reg = rows.assign(year=rows["time_period"].astype(int) + 1,
                         v=to_number(rows, "population_estimate"))
    check = la_reg.groupby(["region_code", "year"])["v"].agg(["sum", "count", "size"])
    check = check.join(reg_total.set_index(["region_code", "year"]), how="inner")
    full = check[check["count"].eq(check["size"])]
    off = full[(full["sum"] - full["total"]).abs() > 0.5]
    if not off.empty:
        (region, year), r = next(off.iterrows())
        raise RawDataError(f"{source_of(src)}: region {region} mid-{year - 1} total "
                           f"{r['total']:.0f} differs from the sum of its authorities "
                           f"{r['sum']:.0f}")
    unit_region = units.drop_duplicates("la_code").set_index("la_code")["region_code"]
    for i in per_unit.index[per_unit["population_0_17"].isna()]:
        code, year = per_unit.at[i, "la_code"], per_unit.at[i, "year"]
        region = unit_region[code]
        others = per_unit[(per_unit["year"] == year) & (per_unit["la_code"] != code)
                          & per_unit["la_code"].map(unit_region).eq(region)]
        total = reg_total[(reg_total["region_code"] == region) & (reg_total["year"] == year)]
        if len(total) == 1 and others["population_0_17"].notna().all():
            per_unit.at[i, "population_0_17"] = (float(total["total"].iloc[0])
                                                 - others["population_0_17"].sum())
            per_unit.at[i, "population_source"] = "ons_mye_revised_region_residual"
    return per_unit


def workforce(raw: dict[str, pd.DataFrame], units: pd.DataFrame) -> pd.DataFrame:
    """Social work workforce per unit.  DfE's reporting year Y (the snapshot at 30 September
    Y) is placed in panel ``year`` Y, under the label DfE gives it (see ``PERIODS``); its
    authorities are those in force from 1 April Y, i.e. the members of reporting year Y + 1.

    Rates are DfE's published rates where one published row is the whole unit; where a unit
    is the sum of several published rows (BCP + Dorset members, Cumberland + Westmorland and
    Furness) they are recomputed from the summed FTE counts with DfE's definitions.  Rows DfE
    reports jointly for two units (Kingston upon Thames / Richmond upon Thames) give both
    units the joint rates (``workforce_joint_with`` names the partner); no FTE count is
    assigned to either, so totals are not double counted.
    """
    src = raw["workforce"]
    rows = la_rows(src)
    counts = ["inpost_fte", "leavers_fte", "agency_fte", "vacancy_fte", "case_holders_fte",
              "cases"]
    rates = {"turnover_rate_fte": "turnover_rate_pct", "agency_rate_fte": "agency_rate_pct",
             "vacancy_rate_fte": "vacancy_rate_pct", "caseload_fte": "caseload_fte"}
    data = pd.DataFrame({"codes": rows["old_la_code"].str.split("/"),
                         "year": rows["time_period"].astype(int),
                         "snapshot": rows["time_period"].astype(int)})
    for c in counts:
        data[c] = to_number(rows, c)
    for c in rates:
        data[f"pub_{c}"] = to_number(rows, c)
    data = data[data["year"].between(FIRST_YEAR, LAST_YEAR)]
    dfe_to_unit = units.set_index("dfe")["la_code"]
    out = []
    for (year, snapshot), group in data.groupby(["year", "snapshot"], sort=True):
        expected = members(units, snapshot + 1, open_ended=True)  # geography of 30 Sept
        seen: dict[str, list] = {}
        for _, r in group.iterrows():
            codes = [c.strip() for c in r["codes"]]
            unknown = [c for c in codes if c not in dfe_to_unit.index]
            if unknown:
                raise RawDataError(f"{source_of(src)}: DfE LA {unknown} in {snapshot} is not "
                                   "in the unit table")
            unit_codes = sorted(set(dfe_to_unit[codes]))
            key = "|".join(unit_codes)
            seen.setdefault(key, []).append((codes, r))
        for key, items in seen.items():
            unit_codes = key.split("|")
            codes = sorted(c for cs, _ in items for c in cs)
            want = sorted(expected[expected["la_code"].isin(unit_codes)]["dfe"])
            if codes != want:
                continue  # incomplete coverage of a unit: leave it missing
            rec = {"year": year, "workforce_snapshot": f"{snapshot}-09-30"}
            if len(items) == 1:
                r = items[0][1]
                rec.update({dst: r[f"pub_{src_c}"] for src_c, dst in rates.items()})
                tot = r[counts]
            else:
                tot = pd.DataFrame([r[counts] for _, r in items]).sum(min_count=len(items))
                tot = tot.where(pd.DataFrame([r[counts] for _, r in items]).notna().all())
                rec.update(workforce_rates(tot))
            own = {"sw_fte": tot["inpost_fte"], **{WORKFORCE_FTE[c]: tot[c] for c in WORKFORCE_FTE}}
            if len(unit_codes) == 1:
                rec.update({"la_code": unit_codes[0], **own, "workforce_joint_with": ""})
                out.append(rec)
            else:  # joint row: no count to either unit, so no total counts it twice
                for u in unit_codes:
                    out.append({**rec, "la_code": u, **{k: np.nan for k in own},
                                "workforce_joint_with": "+".join(x for x in unit_codes if x != u),
                                **{f"_joint_{k}": v for k, v in own.items()}})
    frame = pd.DataFrame(out)
    if frame.duplicated(["la_code", "year"]).any():
        raise RawDataError(f"{source_of(src)}: a unit has two workforce rows in one year")
    return frame


#: Workforce FTE counts carried in the panel besides ``sw_fte`` (DfE column -> panel column),
#: so England rates can be recomputed from the units.
WORKFORCE_FTE = {"agency_fte": "agency_fte", "leavers_fte": "leavers_fte",
                 "vacancy_fte": "vacancy_fte"}


def workforce_rates(tot: pd.Series) -> dict[str, float]:
    """DfE workforce rates from FTE counts (percentages, caseload in cases per FTE)."""
    inpost = tot["inpost_fte"]
    return {
        "turnover_rate_pct": 100 * tot["leavers_fte"] / inpost,
        "agency_rate_pct": 100 * tot["agency_fte"] / (tot["agency_fte"] + inpost),
        "vacancy_rate_pct": 100 * tot["vacancy_fte"] / (tot["vacancy_fte"] + inpost),
        "caseload_fte": tot["cases"] / tot["case_holders_fte"],
    }


def idaci(raw: dict[str, pd.DataFrame], b1: pd.DataFrame, units: pd.DataFrame) -> pd.Series:
    """IoD2019 child-weighted average IDACI score per unit.

    The published upper-tier "IDACI - Average score" (File 11) is a child-weighted mean of
    LSOA scores; a merged unit (only BCP + Dorset UA spans two 2019 upper-tier authorities)
    gets the mean of its authorities' scores weighted by their children 0-15 (File 6).
    """
    sheet = raw["idaci_utla"].rename(columns=lambda c: str(c).strip())
    code_col = next((c for c in sheet.columns
                     if c.startswith("Upper Tier Local Authority District code")), None)
    if code_col is None or "IDACI - Average score" not in sheet.columns:
        raise RawDataError(f"{source_of(raw['idaci_utla'])}: sheet IDACI lacks the upper-tier "
                           "code or 'IDACI - Average score' column")
    score = pd.Series(to_number(sheet, "IDACI - Average score").to_numpy(),
                      index=sheet[code_col].astype(str).str.strip())
    f6 = raw["children_lsoa"].rename(columns=lambda c: c.strip())
    kids_col = next(c for c in f6.columns if c.startswith("Dependent Children aged 0-15"))
    lad = f6["Local Authority District code (2019)"].str.strip()
    lookup = raw["ltla_utla"].set_index("ltla19_code")["utla19_code"]
    utla = lad.map(lookup)
    if utla.isna().any():
        raise RawDataError(f"{source_of(raw['ltla_utla'])}: LAD 2019 codes "
                           f"{sorted(lad[utla.isna()].unique())[:5]} have no upper-tier code")
    kids = to_number(f6, kids_col).groupby(utla).sum()
    # ONS code (any vintage seen in b1) -> DfE number -> unit
    rows = la_rows(b1)
    ons_to_dfe = dict(zip(rows["new_la_code"].str.strip(), rows["old_la_code"].str.strip()))
    dfe_to_unit = units.set_index("dfe")["la_code"]
    unit_of = pd.Series({c: dfe_to_unit[ons_to_dfe[c]] for c in score.index if c in ons_to_dfe})
    if len(unit_of) != len(score):
        extra = sorted(set(score.index) - set(unit_of.index))
        raise RawDataError(f"IoD2019 upper-tier codes {extra} match no DfE authority")
    weighted = (score * kids.reindex(score.index)).groupby(unit_of).sum()
    return (weighted / kids.reindex(score.index).groupby(unit_of).sum()).round(SHARE_DECIMALS)


# --------------------------------------------------------------------------------------------
# Children's social care spend: S251 (DfE) to 2018-19, RO3 (MHCLG) from 2019-20
# --------------------------------------------------------------------------------------------
#
# The published workbooks (about 10 MB, one layout per era) are not copied into data/raw.
# ``extract_spend`` reads them from the shared raw folder once and writes the compact extract
# ``SPEND_EXTRACT`` (one row per authority x year x line, the value as printed, with the file,
# sheet and row it came from); the build reads only that extract.
#
# "Children's social care" is the same set of service groups in every year, so the series is
# as comparable as the returns allow: children looked after (including asylum-seeking
# children), safeguarding (social work, commissioning and strategy, the safeguarding board),
# family support and other children's and family services; net current expenditure
# (expenditure less income).  Sure Start / early years, services for young people and youth
# justice are left out in every era.  The S251 groups were renumbered and regrouped in
# 2012-13 (adoption and special guardianship moved into looked after children, the strategy
# lines into safeguarding), so each era names its own lines below; the total of the groups
# is the same service scope.  RO3 is a different return (MHCLG's revenue outturn, GBP
# thousand) with its own definitions: the panel marks the switch in ``spend_series``.

_S251 = ("DfE Section 251 outturn, Table A1 (LA and school expenditure), https://www.gov.uk/"
         "government/collections/section-251-materials")
_RO3 = ("MHCLG Revenue outturn RO3 (social care and public health), https://www.gov.uk/"
        "government/collections/local-authority-revenue-expenditure-and-financing")


@dataclass(frozen=True)
class SpendSource:
    """One spend workbook: the panel ``year`` (financial year ending 31 March of it), its
    ``series``, path under the shared raw folder and the lines summed into ``spend_gbp``:
    (line code, component, pattern).  For S251 the pattern is matched against the line's
    description (lower case, blanks collapsed, leading line number removed); for RO3 against
    "service - column" of a net-current-expenditure column."""

    year: int
    series: str
    relpath: str
    lines: tuple[tuple[str, str, str], ...]


_CLA = r"^total children looked after$"
_FS = r"^total family support services$"
_SAFETY = r"^total children and young people's safety"          # 2009-10 to 2011-12
_OTHER_TOTAL = r"^total other children's and families services$"  # 2009-10 to 2011-12
_SAFEGUARDING = r"^total +safeguarding children and young peoples?'?s? services$"  # 2012-13+
_OTHER = r"^other children'?s? and famil(?:y|ies) services$"         # 2012-13+


def _s251(year: int, name: str, lines) -> SpendSource:
    return SpendSource(year, "S251", f"expenditure/s251/{name}", tuple(lines))


def _s251_from_2013(year: int, name: str, codes: tuple[str, str, str, str]) -> SpendSource:
    cla, other, safe, fs = codes
    return _s251(year, name, ((cla, "looked_after", _CLA), (other, "other_children_families", _OTHER),
                              (safe, "safeguarding", _SAFEGUARDING), (fs, "family_support", _FS)))


_RO3_LINES = (
    ("RO3 children looked after", "looked_after",
     r"^children's social care - children looked after - net current expenditure"),
    ("RO3 other children's and families services", "other_children_families",
     r"^children's social care - other children's and families services - net current"),
    ("RO3 family support services", "family_support",
     r"^children's social care - family support services - net current"),
    ("RO3 safeguarding children and young people's services", "safeguarding",
     r"^children's social care: safeguarding children and young people's services - net current"),
    ("RO3 asylum seekers", "asylum_seekers",
     r"^children's social care - asylum seekers - net current"),
    # carried for reference only (component "reference"): RO3's own total also includes Sure
    # Start / early years, services for young people and youth justice
    ("RO3 total children social care", "reference",
     r"^total children social care - net current"),
)

#: Every spend workbook and the lines taken from it.  s251ye2009 (2008-09) precedes the panel.
SPEND_SOURCES: tuple[SpendSource, ...] = (
    _s251(2010, "s251ye2010.xls", (
        ("17", "looked_after", _CLA), ("22", "safeguarding", _SAFETY),
        ("31", "family_support", _FS), ("35", "other_children_families", _OTHER_TOTAL),
        ("40", "strategy", r"^total children's services strategy$"))),
    _s251(2011, "s251ye2011.xls", (
        ("19", "looked_after", _CLA), ("23", "safeguarding", _SAFETY),
        ("30", "family_support", _FS), ("34", "other_children_families", _OTHER_TOTAL),
        ("38", "strategy", r"^total children's services strategy$"),
        # in 2010-11 only, "Commissioning and social work" sits outside every group total
        # (in 2009-10 it is inside the strategy total, in 2011-12 inside the safety total)
        ("39", "social_work", r"^commissioning and social work$"))),
    _s251(2012, "s251ye2012.xlsx", (
        ("12", "looked_after", _CLA), ("16", "safeguarding", _SAFETY),
        ("23", "family_support", _FS), ("27", "other_children_families", _OTHER_TOTAL),
        ("28", "strategy", r"^children's services strategy$"))),
    _s251_from_2013(2013, "s251ye2013.xlsx", ("15", "16", "20", "26")),
    _s251_from_2013(2014, "s251ye2014.ods", ("16", "17", "21", "27")),
    _s251_from_2013(2015, "s251ye2015.xlsx", ("16", "17", "21", "27")),
    _s251_from_2013(2016, "s251ye2016.xlsx", ("16", "17", "21", "27")),
    _s251_from_2013(2017, "s251ye2017.xlsx", ("3.1.11", "3.2.1", "3.3.4", "3.4.6")),
    _s251_from_2013(2018, "S251ye2018.xlsx", ("3.1.11", "3.2.1", "3.3.4", "3.4.6")),
    _s251_from_2013(2019, "S251ye2019.xlsx", ("3.1.11", "3.2.1", "3.3.4", "3.4.6")),
    SpendSource(2020, "RO3", "expenditure/ro3/RO3_2019-20_data_by_LA.ods", _RO3_LINES),
    SpendSource(2021, "RO3", "expenditure/ro3/RO3_2020-21_data_by_LA.ods", _RO3_LINES),
    SpendSource(2023, "RO3", "expenditure/ro3/RO3_2022-23_data_by_LA.ods", _RO3_LINES),
    SpendSource(2024, "RO3", "expenditure/ro3/RO3_2023-24_data_by_LA.ods", _RO3_LINES),
    SpendSource(2025, "RO3", "expenditure/ro3/RO3_LA_Data_2024-25_data_by_LA.ods", _RO3_LINES),
)
SPEND_SERIES_FIRST_RO3 = 2020
#: Spend per child below this fraction of the year's median over units is not credible for
#: a children's services authority and is treated as not reported (missing).
SPEND_IMPLAUSIBLE_FRACTION = 0.1
#: RO3 classes of authority that run children's services (unitary, metropolitan district,
#: London borough, shire county); shire districts and other bodies are left out.
RO3_UPPER_TIER = frozenset({"UA", "MD", "L", "LB", "SC"})
SPEND_EXTRACT_COLUMNS = ("series", "year", "financial_year", "dfe_la_code", "ons_code", "la_name",
                         "line", "component", "description", "value", "unit", "file", "sheet",
                         "row")


def _norm(text) -> str:
    text = str(text).replace("\u2019", "'").replace("\n", " ").lower()
    return " ".join(re.sub(r"\[note \d+\]", " ", text).split())


def _financial_year(year: int) -> str:
    return f"{year - 1}-{str(year)[2:]}"


def _read_sheets(path: Path) -> dict[str, pd.DataFrame]:
    try:
        return pd.read_excel(path, sheet_name=None, header=None, dtype=str)
    except (ValueError, OSError, ImportError) as err:
        raise UserError(f"cannot read spend workbook {path}: {err}") from err


def _extract_s251(path: Path, source: SpendSource) -> list[dict]:
    sheets = {k: v for k, v in _read_sheets(path).items() if not v.empty}
    if len(sheets) != 1:
        raise RawDataError(f"{path}: expected one non-empty sheet, found {list(sheets)}")
    (sheet, frame), = sheets.items()
    header = next((i for i in range(min(8, len(frame)))
                   if str(frame.iat[i, 0]).strip() in ("LA", "LEA", "ident")), None)
    if header is None:
        raise RawDataError(f"{path}, sheet {sheet}: no header row starting LA/LEA/ident")
    cols = [str(c).strip() for c in frame.iloc[header]]
    body = frame.iloc[header + 1:].copy()
    body.columns = cols
    la = "LA" if "LA" in cols else "LEA"
    name = "LA Name" if "LA Name" in cols else "LEA Name"
    desc = next((c for c in ("Description", "S52 Line Reference", "CYPServiceDescription")
                 if c in cols), None)
    value = next((c for c in cols if _norm(c).replace(" ", "").startswith("netcurrentexpenditure")),
                 None)
    if desc is None or value is None:
        raise RawDataError(f"{path}, sheet {sheet}: no line description or net current "
                           f"expenditure column in {cols}")
    body = body[body[la].astype(str).str.strip().str.fullmatch(r"\d{3}")]
    stripped = body[desc].map(lambda d: re.sub(r"^\d+(\.\d+)*\.?\s*", "", _norm(d)))
    out = []
    for code, component, pattern in source.lines:
        hit = body[stripped.str.contains(pattern, regex=True)]
        if hit[desc].map(_norm).nunique() != 1 or hit[la].duplicated().any():
            raise RawDataError(f"{path}: line {code} ({pattern!r}) matches "
                               f"{sorted(hit[desc].map(_norm).unique())}, not one line per LA")
        for label, r in hit.iterrows():
            out.append({"series": "S251", "year": source.year,
                        "financial_year": _financial_year(source.year),
                        "dfe_la_code": str(r[la]).strip(), "ons_code": "",
                        "la_name": str(r[name]).strip(), "line": code, "component": component,
                        "description": " ".join(str(r[desc]).split()),
                        "value": str(r[value]).strip(), "unit": "GBP",
                        "file": path.name, "sheet": sheet, "row": int(label) + 1})
    return out


def _extract_ro3(path: Path, source: SpendSource) -> list[dict]:
    sheets = _read_sheets(path)
    data = [k for k in sheets if k.startswith("RO3_LA_Data")]
    if len(data) != 1:
        raise RawDataError(f"{path}: expected one RO3_LA_Data sheet, found {list(sheets)}")
    sheet = data[0]
    frame = sheets[sheet]
    header = next((i for i in range(min(20, len(frame)))
                   if str(frame.iat[i, 0]).strip() == "E-code"), None)
    if header is None:
        raise RawDataError(f"{path}, sheet {sheet}: no header row starting 'E-code'")
    above = frame.iloc[:header]
    service_rows = [i for i in range(header) if above.iloc[i].fillna("").astype(str).str.upper()
                    .str.contains("TOTAL CHILDREN SOCIAL CARE").any()]
    services = frame.iloc[service_rows[-1]].ffill() if service_rows else None
    labels = []
    for j in range(frame.shape[1]):
        head = _norm(frame.iat[header, j])
        labels.append(f"{_norm(services.iat[j])} - {head}" if services is not None else head)
    labels = pd.Series(labels)
    cols = [_norm(c) for c in frame.iloc[header, :7]]
    body = frame.iloc[header + 1:]
    # the first table ends at the first row without an E-code (a second table may follow)
    ecode = body.iloc[:, 0].astype(str).str.strip()
    end = ecode.str.fullmatch(r"E\d{4}")
    first_bad = np.flatnonzero(~end.to_numpy())
    body = body.iloc[:first_bad[0]] if len(first_bad) else body
    klass = body.iloc[:, cols.index("class")].astype(str).str.strip()
    body = body[klass.isin(RO3_UPPER_TIER)]
    out = []
    for code, component, pattern in source.lines:
        j = np.flatnonzero(labels.str.contains(pattern, regex=True).to_numpy())
        if len(j) != 1:
            raise RawDataError(f"{path}, sheet {sheet}: {len(j)} columns match {pattern!r}")
        j = int(j[0])
        for label, r in body.iterrows():
            out.append({"series": "RO3", "year": source.year,
                        "financial_year": _financial_year(source.year), "dfe_la_code": "",
                        "ons_code": str(r.iloc[1]).strip(), "la_name": str(r.iloc[2]).strip(),
                        "line": code, "component": component,
                        "description": labels.iat[j], "value": str(r.iloc[j]).strip(),
                        "unit": "GBP thousand", "file": path.name, "sheet": sheet,
                        "row": int(label) + 1})
    return out


def extract_spend(source_dir: Path) -> pd.DataFrame:
    """The compact spend extract from the published S251 and RO3 workbooks under
    ``source_dir`` (the shared raw folder).  ``row`` is the 1-based row of the sheet (as read
    by ``pandas.read_excel(header=None)``); ``value`` is the cell text as published,
    markers included."""
    rows = []
    for source in SPEND_SOURCES:
        path = Path(source_dir) / source.relpath
        if not path.exists():
            raise UserError(f"missing spend workbook {path}; {_S251 if source.series == 'S251' else _RO3}")
        reader = _extract_s251 if source.series == "S251" else _extract_ro3
        rows.extend(reader(path, source))
    out = pd.DataFrame(rows, columns=list(SPEND_EXTRACT_COLUMNS))
    return out.sort_values(["year", "dfe_la_code", "ons_code", "line"], kind="stable").reset_index(drop=True)


def write_spend_extract(source_dir: Path, raw_dir: Path) -> Path:
    """Write the compact extract (gzip, mtime 0) to its place under ``raw_dir``."""
    extract = extract_spend(source_dir)
    text = extract.to_csv(index=False, lineterminator="\n").encode("utf-8")
    target = Path(raw_dir) / (SPEND_EXTRACT.relpath + ".gz")
    return atomic.write_bytes(target, gzip.compress(text, compresslevel=9, mtime=0))


def spend(raw: dict[str, pd.DataFrame], units: pd.DataFrame) -> pd.DataFrame:
    """Children's social care net current expenditure per unit and year: ``spend_gbp``
    (GBP, nominal) and ``spend_series``.

    Per authority and year the lines of ``SPEND_SOURCES`` (component "reference" excluded)
    are summed, RO3 thousands turned into pounds; a missing or marked line makes the
    authority-year missing, and a merged unit is missing if any member is (``to_units``).
    RO3 rows are matched on their ONS code through the codes that CIN b1 gives each DfE
    number in any year.
    """
    src = raw["spend"]
    require(src, *SPEND_EXTRACT_COLUMNS)
    src = src[src["component"].ne("reference")]
    value = to_number(src, "value") * np.where(src["unit"].eq("GBP thousand"), 1000.0, 1.0)
    rows = la_rows(raw["b1"])
    ons_to_dfe = dict(zip(rows["new_la_code"].str.strip(), rows["old_la_code"].str.strip()))
    ons = src["ons_code"].fillna("").str.strip()
    dfe = src["dfe_la_code"].fillna("").str.strip()
    dfe = dfe.where(dfe.ne(""), ons.map(ons_to_dfe))
    unknown = dfe.isna() & value.notna()
    if unknown.any():
        r = src[unknown].iloc[0]
        raise RawDataError(f"{source_of(src)}: RO3 authority {r['ons_code']} ({r['la_name']}) "
                           f"in {r['file']} matches no DfE LA number")
    frame = pd.DataFrame({"dfe": dfe, "year": src["year"].astype(int), "line": src["line"],
                          "v": value}).dropna(subset=["dfe"])
    per_la = (frame.groupby(["dfe", "year"])["v"].agg(["sum", "count", "size"]).reset_index())
    per_la["spend_gbp"] = per_la["sum"].where(per_la["count"].eq(per_la["size"]))
    per_la = _tag(per_la[["dfe", "year", "spend_gbp"]], source_of(src))
    per_unit = to_units(per_la, units, ["spend_gbp"])
    series = src.groupby(src["year"].astype(int))["series"].agg(lambda s: "+".join(sorted(set(s))))
    if series.str.contains(r"\+").any():
        raise RawDataError(f"{source_of(src)}: a year mixes the S251 and RO3 series")
    per_unit["spend_series"] = per_unit["year"].map(series)
    return per_unit


# --------------------------------------------------------------------------------------------
# The panel
# --------------------------------------------------------------------------------------------


def build_panel(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The harmonised LA x year panel from the raw frames keyed as in ``RAW_FILES``."""
    units = build_units(raw["b1"])
    unit_info = units.drop_duplicates("la_code").set_index("la_code")[
        ["la_name", "region_code", "region_name"]]
    grid = pd.MultiIndex.from_product([sorted(unit_info.index), YEARS],
                                      names=["la_code", "year"]).to_frame(index=False)
    panel = grid.merge(unit_info.reset_index(), on="la_code", how="left")
    member_codes = pd.concat([members(units, y).assign(year=y) for y in YEARS])
    member_codes = (member_codes.groupby(["la_code", "year"])["dfe"]
                    .agg(lambda s: "+".join(sorted(s))).rename("dfe_la_codes").reset_index())
    panel = panel.merge(member_codes, on=["la_code", "year"], how="left")

    # counts: 2013+ sources, then 2010-2012 (which also carries its own populations)
    pieces = [to_units(f, units, [c for c in f.columns if c not in ("dfe", "year")])
              for f in cin_2013_on(raw)]
    pre = cin_pre2013(raw)
    pieces.append(to_units(pre, units, [c for c in pre.columns if c not in ("dfe", "year")]))
    cla_frame = cla(raw)
    pieces.append(to_units(cla_frame, units, [c for c in cla_frame.columns
                                              if c not in ("dfe", "year")]))
    counts = pd.DataFrame(columns=["la_code", "year"])
    for piece in pieces:
        counts = counts.merge(piece, on=["la_code", "year"], how="outer",
                              suffixes=("", "_dup"))
        dup = [c for c in counts.columns if c.endswith("_dup")]
        for d in dup:  # same measure from two sources in disjoint years: combine
            base = d[:-4]
            both = counts[base].notna() & counts[d].notna()
            if both.any():
                raise RawDataError(f"two sources give {base} for the same unit-year")
            counts[base] = counts[base].fillna(counts[d])
        counts = counts.drop(columns=dup)
    counts["year"] = counts["year"].astype(int)
    panel = panel.merge(counts, on=["la_code", "year"], how="left")

    # populations: pre-2013 files for 2010-2012, revised ONS series for 2013-2025
    pop = population(raw, units)
    pop = pop[pop["year"].between(2013, LAST_YEAR)]
    panel = panel.merge(pop, on=["la_code", "year"], how="left", suffixes=("", "_mye"))
    early = panel["year"] < 2013
    panel["population_0_17"] = panel["population_0_17"].where(early, panel["population_0_17_mye"])
    panel["population_source"] = panel["population_source"].where(
        ~early, np.where(panel["population_0_17"].notna(), "dfe_cin_underlying", None))
    panel = panel.drop(columns=["population_0_17_mye"])
    panel["population_mid_year"] = panel["year"] - 1

    panel["cla_31mar_excl_uasc_n"] = panel["cla_31mar_n"] - panel["cla_31mar_uasc_n"]
    for m in COUNT_MEASURES:
        col = f"{m}_n"
        if col not in panel:
            panel[col] = np.nan
        panel[f"{m}_rate"] = (panel[col] / panel["population_0_17"] * PER).round(RATE_DECIMALS)
    ref = panel["referrals_n"]
    panel["rereferral_share"] = (panel["rereferrals_n"] / ref).round(SHARE_DECIMALS)
    panel["nfa_share"] = (panel["referrals_nfa_n"] / ref).round(SHARE_DECIMALS)
    panel["not_in_need_share"] = (panel["referrals_not_in_need_n"] / ref).round(SHARE_DECIMALS)
    panel["cpp_repeat_share"] = (panel["cpp_subsequent_n"]
                                 / panel["cpp_start_n"]).round(SHARE_DECIMALS)
    panel["cpp_2y_or_more_share"] = (panel["cpp_31mar_dur_2y_or_more_n"]
                                     / panel["cpp_31mar_n"]).round(SHARE_DECIMALS)

    wf = workforce(raw, units)
    panel = panel.merge(wf, on=["la_code", "year"], how="left")
    # cin per social worker: own CIN over own FTE, or for joint rows joint CIN over joint FTE;
    # social workers are everyone working the cases, employed (in post) and agency
    partner = panel["workforce_joint_with"].fillna("")
    partner_cin = panel.merge(
        panel[["la_code", "year", "cin_31mar_n"]].rename(
            columns={"la_code": "workforce_joint_with", "cin_31mar_n": "_partner_cin"}),
        on=["workforce_joint_with", "year"], how="left")["_partner_cin"]
    cin_for_sw = np.where(partner.ne(""), panel["cin_31mar_n"] + partner_cin.to_numpy(),
                          panel["cin_31mar_n"])
    own_fte = panel["sw_fte"] + panel["agency_fte"]
    joint_fte = (panel["_joint_sw_fte"] + panel["_joint_agency_fte"]
                 if "_joint_sw_fte" in panel else np.nan)
    fte_for_sw = np.where(partner.ne(""), joint_fte, own_fte)
    panel["cin_per_sw_fte"] = (pd.Series(cin_for_sw, index=panel.index).astype(float)
                               / pd.Series(fte_for_sw, index=panel.index).astype(float))
    panel["workforce_joint_with"] = panel["workforce_joint_with"].where(partner.ne(""))
    for c in ("caseload_fte", "cin_per_sw_fte", "agency_rate_pct", "turnover_rate_pct",
              "vacancy_rate_pct", "sw_fte", *WORKFORCE_FTE.values()):
        panel[c] = panel[c].astype(float).round(2)

    # children's social care spend (nominal GBP), per child aged 0-17 of the year's denominator
    panel = panel.merge(spend(raw, units), on=["la_code", "year"], how="left")
    panel["spend_gbp"] = panel["spend_gbp"].astype(float).round()
    panel["spend_per_child"] = (panel["spend_gbp"]
                                / panel["population_0_17"].astype(float)).round(2)
    # a children's services authority cannot spend nothing on children's social care: a total
    # of 0 (S251 prints a return not made as 0s) or under a tenth of the year's median per
    # child is "not reported", missing (Stockton-on-Tees 2010, Slough 2020; README)
    median = panel.groupby("year")["spend_per_child"].transform("median")
    implausible = (panel["spend_gbp"].le(0)
                   | panel["spend_per_child"].lt(SPEND_IMPLAUSIBLE_FRACTION * median))
    panel.loc[implausible, ["spend_gbp", "spend_per_child"]] = np.nan
    # per child in need: the year's spend over the children in need at its end (31 March)
    panel["spend_per_cin"] = (panel["spend_gbp"] / panel["cin_31mar_n"].astype(float)).round(2)

    panel["idaci_2019"] = panel["la_code"].map(idaci(raw, raw["b1"], units))
    panel = panel.sort_values(["la_code", "year"], kind="stable").reset_index(drop=True)
    return finalise(panel)


def finalise(panel: pd.DataFrame) -> pd.DataFrame:
    """Column order and dtypes: counts and populations as nullable integers."""
    panel = panel[list(PANEL_COLUMNS)].copy()
    for c in PANEL_COLUMNS:
        if c.endswith("_n") or c in ("population_0_17", "spend_gbp"):
            values = panel[c].astype(float)
            if ((values.dropna() % 1) != 0).any():
                raise RawDataError(f"column {c} has fractional counts")
            panel[c] = values.round().astype("Int64")
    panel["year"] = panel["year"].astype("int64")
    panel["population_mid_year"] = panel["population_mid_year"].astype("int64")
    return panel


def published_england(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """England totals as published in the national rows of the files (year x measure count).

    Used by the tests to check that the panel's sums reproduce them.
    """
    frames = []
    spec = [("b1", {"At31_episodes": "cin_31mar_n",
                    "awaiting_assessment": "cin_31mar_awaiting_assessment_n"}),
            ("c1", {"referral_count": "referrals_n", "rereferral_count": "rereferrals_n",
                    "no_further_action_count": "referrals_nfa_n",
                    "not_in_need_count": "referrals_not_in_need_n"}),
            ("c4", {"Section47": "s47_n", "ICPC": "icpc_n"}),
            ("d3", {"CPP_start": "cpp_start_n", "CPP_subsequent": "cpp_subsequent_n"}),
            ("d5", {"CPP_At31": "cpp_31mar_n",
                    **{k: f"cpp_31mar_dur_{v}_n" for k, v in CPP_DURATIONS.items()}}),
            ("c2", {"Assessments_completed": "assessments_n"}),
            ("d2", {"Neglect_Initial": "cpp_start_neglect_n"}),
            ("d4", {"Neglect_Initial": "cpp_31mar_neglect_n"})]
    for key, cols in spec:
        nat = national_rows(raw[key])
        f = pd.DataFrame({"year": nat["time_period"].astype(int)})
        for s, d in cols.items():
            f[d] = to_number(nat, s)
        frames.append(f.set_index("year"))
    for year in (2010, 2011, 2012):
        nat = national_rows(raw[f"cin{year}"], "geog_l")
        f = pd.DataFrame({"year": [year]})
        for col, by_year in PRE2013_CIN.items():
            if year in by_year and col != "population_0_17":
                f[col] = to_number(nat, by_year[year]).to_numpy()
        frames.append(f.set_index("year"))
    frames.append(cla(raw, national=True).drop(columns="dfe").set_index("year"))
    out = pd.concat(frames).groupby(level=0).first()  # disjoint columns per year: combine
    return out.sort_index()


#: England rows are rounded to the nearest 10 (100 in the 2009-10 files): a sum of complete
#: units within this of the England row is equal to it.
ENGLAND_ROUNDING = {2010: 50.0}
ENGLAND_ROUNDING_DEFAULT = 5.0
_WORKFORCE_ENGLAND = {"sw_fte": "inpost_fte", **{c: c for c in WORKFORCE_FTE}}
ENGLAND_COLUMNS = ("year", "measure", "units_reported", "units_missing", "sum_of_units",
                   "england_published", "difference_pct", "note")


def england_totals(panel: pd.DataFrame, raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each count summed over the units beside the publisher's England figure, with a note
    wherever suppressed or unpublished units make the sum fall short of it.

    A sum over units is not England where units are missing (referrals 2024: Hampshire and
    Herefordshire), so every national figure read off the panel should carry this note.
    """
    published = published_england(raw)
    nat_pop = national_rows(raw["population"])
    published["population_0_17"] = pd.Series(
        to_number(nat_pop, "population_estimate").to_numpy(),
        index=nat_pop["time_period"].astype(int) + 1)
    nat_wf = national_rows(raw["workforce"])
    for ours, theirs in _WORKFORCE_ENGLAND.items():
        published[ours] = pd.Series(to_number(nat_wf, theirs).to_numpy(),
                                    index=nat_wf["time_period"].astype(int))
    measures = [c for c in PANEL_COLUMNS if c.endswith("_n")
                or c in ("population_0_17", *_WORKFORCE_ENGLAND, "spend_gbp")]
    joint = panel["workforce_joint_with"].notna()
    rows = []
    for year, frame in panel.groupby("year", sort=True):
        for m in measures:
            values = frame[m].astype(float)
            if values.isna().all():
                continue
            pub = published[m].get(year, np.nan) if m in published else np.nan
            missing = values.isna() & ~(joint[frame.index] & (m in _WORKFORCE_ENGLAND))
            total = float(values.sum())
            diff = 100 * (total - pub) / pub if pub == pub and pub else np.nan
            notes = []
            if missing.any():
                names = frame.loc[missing, "la_name"].tolist()
                who = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                notes.append(f"{len(names)} unit(s) suppressed or not published ({who}): "
                             + (f"the sum is {diff:.1f}% against DfE's England total"
                                if diff == diff else "the sum leaves them out"))
            shared = m in _WORKFORCE_ENGLAND and joint[frame.index].any()
            if shared:
                notes.append("Kingston upon Thames and Richmond upon Thames are reported jointly "
                             f"and counted in neither unit: the sum is {diff:.1f}% against DfE's "
                             "England total")
            elif (not missing.any() and diff == diff
                  and abs(total - pub) > ENGLAND_ROUNDING.get(year, ENGLAND_ROUNDING_DEFAULT)):
                notes.append(f"every unit reported; the sum differs from the England figure by "
                             f"{diff:.2f}%")
            rows.append({"year": year, "measure": m, "units_reported": int(values.notna().sum()),
                         "units_missing": int(missing.sum()), "sum_of_units": round(total, 1),
                         "england_published": pub, "difference_pct": round(diff, 2),
                         "note": "; ".join(notes)})
    return pd.DataFrame(rows, columns=list(ENGLAND_COLUMNS))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def read_raw(raw_dir: Path) -> dict[str, pd.DataFrame]:
    """Read every raw input as text columns; typing happens in the transforms."""
    found = stored_paths(raw_dir, RAW_FILES, "build-panel")
    frames = {}
    for spec in RAW_FILES:
        path = found[spec.key]
        try:
            if spec.relpath.endswith(".xlsx"):
                frame = pd.read_excel(path, sheet_name="IDACI", dtype=str)
            else:
                frame = pd.read_csv(path, dtype=str, keep_default_na=False,
                                    encoding="utf-8-sig")
        except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
            raise UserError(f"cannot read raw file {path}: {err}") from err
        frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
        frames[spec.key] = _tag(frame, str(path))
    lookup = frames["ltla_utla"]
    frames["ltla_utla"] = _tag(lookup[lookup["ltla19_code"].str.startswith("E")]
                               .reset_index(drop=True), lookup.attrs["source"])
    return frames


def copy_raw(source_dir: Path, raw_dir: Path) -> list[Path]:
    """Copy the raw files the panel needs, as the reference build copies its own, and write
    the compact spend extract from the S251 and RO3 workbooks (``extract_spend``)."""
    copied = copy_files(source_dir, raw_dir, [f for f in RAW_FILES if f.key != SPEND_EXTRACT.key])
    return [*copied, write_spend_extract(source_dir, raw_dir)]


PANEL_DIR = paths.DATA_DIR / "panel"
PANEL_FILE = "la_panel.csv"
ENGLAND_FILE = "england_totals.csv"


def write_panel(panel: pd.DataFrame, out_dir: Path) -> Path:
    target = Path(out_dir) / PANEL_FILE
    with atomic.atomic_path(target) as tmp:
        panel.to_csv(tmp, index=False, lineterminator="\n")
    return target


def load_panel(path: Path | None = None) -> pd.DataFrame:
    """Read the committed panel with its dtypes (codes as text, counts nullable integers)."""
    path = Path(path) if path is not None else PANEL_DIR / PANEL_FILE
    dtypes = {c: "Int64" for c in PANEL_COLUMNS if c.endswith("_n")}
    dtypes.update({"la_code": str, "la_name": str, "region_code": str, "region_name": str,
                   "dfe_la_codes": str, "population_0_17": "Int64", "population_source": str,
                   "workforce_snapshot": str, "workforce_joint_with": str,
                   "spend_gbp": "Int64", "spend_series": str})
    return pd.read_csv(path, dtype=dtypes, keep_default_na=False,
                       na_values={c: [""] for c in PANEL_COLUMNS if c not in ("la_code",)})


def write_england(totals: pd.DataFrame, out_dir: Path) -> Path:
    target = Path(out_dir) / ENGLAND_FILE
    with atomic.atomic_path(target) as tmp:
        totals.to_csv(tmp, index=False, lineterminator="\n")
    return target


def build(raw_dir: Path, out_dir: Path) -> pd.DataFrame:
    """Read data/raw, build the panel and its England comparison and write both to ``out_dir``."""
    raw = read_raw(raw_dir)
    panel = build_panel(raw)
    write_panel(panel, out_dir)
    write_england(england_totals(panel, raw), out_dir)
    return panel


# --------------------------------------------------------------------------------------------
# Verb
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-dir", type=Path, default=paths.RAW_DIR,
                        help="folder of raw public files (default: data/raw)")
    parser.add_argument("--out-dir", type=Path, default=PANEL_DIR,
                        help="where la_panel.csv goes (default: data/panel)")
    parser.add_argument("--copy-raw-from", type=Path, default=None, metavar="DIR",
                        help="first copy the needed raw files from DIR (e.g. "
                             "../shared/data/raw) into --raw-dir")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.copy_raw_from is not None:
        try:
            copy_raw(args.copy_raw_from, args.raw_dir)
        except RawDataError as err:
            raise UserError(f"spend workbooks in {args.copy_raw_from} are not as expected: "
                            f"{err}") from err
    try:
        panel = build(args.raw_dir, args.out_dir)
    except (RawDataError, KeyError) as err:
        raise UserError(f"raw data in {args.raw_dir} are not as expected: {err}") from err
    per_year = panel.groupby("year")["la_code"].nunique()
    print(f"build-panel: {len(panel)} rows, {panel['la_code'].nunique()} authorities x "
          f"{per_year.index.min()}-{per_year.index.max()} -> "
          f"{Path(args.out_dir) / PANEL_FILE} ({time.perf_counter() - start:.1f} s)")
    return 0
