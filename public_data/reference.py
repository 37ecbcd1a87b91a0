"""The ``build-reference`` verb: turn the public raw files in data/raw into data/reference.

The three reference tables (LSOA, children's services authority, national factor prevalence)
are what the simulator and the models join on, so they are rebuilt from the published files by
one deterministic script instead of being edited by hand.  The transforms are pure functions
(raw DataFrames in, tables out) so the tests can check them without touching the disk; the
file reading and writing sit apart at the bottom of the module.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

from models.vocabulary import FACTORS
from public_data.raw import RawFile, copy_files, stored_path, stored_paths
from workflows import atomic, paths
from workflows.errors import UserError

# --------------------------------------------------------------------------------------------
# Raw inputs
# --------------------------------------------------------------------------------------------

_IOD_URL = "https://www.gov.uk/government/statistics/english-indices-of-deprivation-2019"
_ONS_URL = "https://geoportal.statistics.gov.uk (ONS Open Geography Portal lookups)"
_CIN_URL = ("https://explore-education-statistics.service.gov.uk/find-statistics/"
            "characteristics-of-children-in-need")


#: Every raw file the build reads.  CSVs may be stored gzip-compressed as ``NAME.gz``.
RAW_FILES: tuple[RawFile, ...] = (
    RawFile("idaci_rank", "iod2019/File_3_-_IoD2019_Supplementary_Indices_-_IDACI_and_IDAOPI.csv",
            f"IoD2019 File 3 from {_IOD_URL}"),
    RawFile("denominators", "iod2019/File_6_-_IoD2019_Population_Denominators.csv",
            f"IoD2019 File 6 from {_IOD_URL}"),
    RawFile("indicators", "iod2019/imd2019_england_lsoa11_indicators.csv",
            f"IoD2019 File 8 (underlying indicators) from {_IOD_URL}, "
            "as repackaged by the R package humaniverse/IMD"),
    RawFile("utla_summary", "iod2019/imd-2019.xlsx",
            f"IoD2019 File 11 (upper-tier LA summaries) from {_IOD_URL}"),
    RawFile("ltla_utla", "lookups/lookup_ltla19_utla19.csv",
            f"LAD 2019 to UTLA 2019 lookup from {_ONS_URL}"),
    RawFile("ltla_region", "lookups/lookup_ltla19_region19.csv",
            f"LAD 2019 to region 2019 lookup from {_ONS_URL}"),
    RawFile("lsoa_ltla18", "lookups/lookup_lsoa11_ltla18.csv",
            f"LSOA 2011 to LAD 2018 lookup from {_ONS_URL}"),
    RawFile("c3",
            "dfe_cin/release_2025/c3_factors_identified_at_end_of_assessment_2018_to_2025.csv",
            f"DfE 'Characteristics of children in need' 2024-25 release, table c3, "
            f"from {_CIN_URL}"),
)
RAW_BY_KEY: dict[str, RawFile] = {f.key: f for f in RAW_FILES}

#: Tokens that DfE, ONS and MHCLG files use for suppressed or unavailable values.  They mean
#: "unknown", never zero.
SUPPRESSION_MARKERS: frozenset[str] = frozenset({
    "c", "x", "z", "u", "low", "..", ":", ".", "-", "[x]", "[z]", "[c]", "[u]", "[low]", "m",
    "na", "n/a", "",
})

#: Authorities before April 2019 that the IoD2019 (post-change) geography no longer has.
PRE2019_NAMES: dict[str, str] = {
    "E06000028": "Bournemouth", "E06000029": "Poole", "E10000009": "Dorset",
}
#: LAD 2019 codes created in April 2019 whose LSOAs need a pre-2019 authority.
BCP_2019, DORSET_UA_2019 = "E06000058", "E06000059"
CHANGE_DATE_FROM, CHANGE_DATE_TO = "2019-04-01", "2019-03-31"

LSOA_COLUMNS: tuple[str, ...] = (
    "lsoa_code", "lsoa_name", "lad19_code", "lad19_name", "la_code", "la_name",
    "la_code_pre2019", "la_name_pre2019", "region_code", "region_name", "idaci_rank",
    "idaci_decile", "idaci_score", "idaci_score_imputed", "children_0_15",
)
LA_COLUMNS: tuple[str, ...] = (
    "la_code", "la_name", "region_code", "region_name", "old_la_code", "in_force_from",
    "in_force_to", "n_lsoa", "children_0_15", "idaci_mean", "idaci_published",
    "idaci_published_rank",
)
FACTOR_COLUMNS: tuple[str, ...] = (
    "factor", "code", "c3_column", "label", "year", "episodes", "episodes_with_any_factor",
    "share",
)
#: Decimal places kept for derived shares and scores, so the written CSV equals the table.
DECIMALS = 6

# --------------------------------------------------------------------------------------------
# Pure transforms
# --------------------------------------------------------------------------------------------


def clean_numeric(values: pd.Series) -> pd.Series:
    """Turn a published column into floats, with suppression markers as NaN (never zero).

    Unknown non-numeric tokens raise, so a new marker cannot slip through as a number.
    """
    text = values.astype("string").str.strip()
    marker = text.str.lower().isin(SUPPRESSION_MARKERS) | text.isna()
    numbers = text.where(~marker).str.replace(",", "", regex=False)
    out = pd.to_numeric(numbers, errors="coerce").astype("float64")
    bad = numbers.notna() & out.isna()
    if bad.any():
        tokens = sorted(set(numbers[bad].astype(str)))[:5]
        raise ValueError(f"unrecognised non-numeric values {tokens} in column {values.name!r}")
    return out


def _as_int(values: pd.Series, name: str) -> pd.Series:
    """Whole numbers written as floats ('32806.00') -> int64, refusing gaps or fractions."""
    numbers = clean_numeric(values)
    if numbers.isna().any() or (numbers % 1 != 0).any():
        raise ValueError(f"{name} must be whole numbers with no gaps")
    return numbers.astype("int64")


def tidy_iod(file3: pd.DataFrame, file6: pd.DataFrame,
             indicators: pd.DataFrame) -> pd.DataFrame:
    """One row per LSOA with IDACI rank/decile, child count and IDACI numerator.

    The three IoD files are matched on LSOA code and must cover the same LSOAs, because a
    silent partial join would drop areas from every later total.
    """
    f3 = file3.rename(columns=lambda c: c.strip().lstrip("\ufeff"))
    f6 = file6.rename(columns=lambda c: c.strip().lstrip("\ufeff"))
    rank_col = _column_starting(f3, "Income Deprivation Affecting Children Index (IDACI) Rank")
    decile_col = _column_starting(f3, "Income Deprivation Affecting Children Index (IDACI) Decile")
    kids_col = _column_starting(f6, "Dependent Children aged 0-15")
    base = pd.DataFrame({
        "lsoa_code": f3["LSOA code (2011)"].astype(str),
        "lsoa_name": f3["LSOA name (2011)"].astype(str),
        "lad19_code": f3["Local Authority District code (2019)"].astype(str),
        "lad19_name": f3["Local Authority District name (2019)"].astype(str),
        "idaci_rank": _as_int(f3[rank_col], "IDACI rank"),
        "idaci_decile": _as_int(f3[decile_col], "IDACI decile"),
    })
    kids = pd.DataFrame({"lsoa_code": f6["LSOA code (2011)"].astype(str),
                         "children_0_15": _as_int(f6[kids_col], "children 0-15")})
    num = pd.DataFrame({
        "lsoa_code": indicators["lsoa11_code"].astype(str),
        "idaci_numerator": clean_numeric(
            indicators["income_deprivation_affecting_children_index_idaci_numerator"]),
    })
    out = base.merge(kids, on="lsoa_code", how="outer", validate="1:1", indicator="_k")
    out = out.merge(num, on="lsoa_code", how="outer", validate="1:1", indicator="_n")
    if (out["_k"] != "both").any() or (out["_n"] != "both").any():
        raise ValueError("IoD2019 File 3, File 6 and the indicators file cover different LSOAs")
    return out.drop(columns=["_k", "_n"])


def _column_starting(frame: pd.DataFrame, prefix: str) -> str:
    """The one column whose name starts with ``prefix`` (published headers carry notes)."""
    hits = [c for c in frame.columns if c.startswith(prefix)]
    if len(hits) != 1:
        raise ValueError(f"expected one column starting {prefix!r}, found {hits}")
    return hits[0]


def fit_idaci_score(rank: np.ndarray, numerator: np.ndarray,
                    children: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Estimate the IDACI score of every LSOA as a non-increasing function of its rank.

    The official score is numerator / children, and the official rank orders LSOAs by it, so
    the true scores are non-increasing in rank.  The published numerators are rounded to the
    nearest 5 (noise about 2.5 / children), so the raw ratios are not.  We therefore
    (1) pool tied ranks, then take a weighted isotonic (non-increasing) regression of the raw
    ratio on rank, weight children**2 = inverse variance of the rounding noise;
    (2) fill LSOAs with a suppressed numerator by linear interpolation of that fit between
    their rank neighbours, so a filled value lies between its neighbours' fitted values and
    never above the more deprived one;
    (3) beyond the least deprived observed rank (31,991) hold the last fitted value (a sloped
    extrapolation matched the published authority averages less well), then clip to [0, 1].
    Observed LSOAs get the fitted value too, so the whole column is non-increasing in rank.

    Returns
    -------
    score, imputed : arrays aligned with the inputs; ``imputed`` is True where the numerator
        was missing.
    """
    rank = np.asarray(rank, dtype="float64")
    numerator = np.asarray(numerator, dtype="float64")
    children = np.asarray(children, dtype="float64")
    imputed = np.isnan(numerator)
    ratio = numerator[~imputed] / children[~imputed]
    obs_rank, ratio, weights = _pool_ties(rank[~imputed], ratio, children[~imputed] ** 2)
    fitted = isotonic_regression(ratio, weights=weights, increasing=False).x
    score = np.interp(rank, obs_rank, fitted)  # flat beyond either end
    return np.clip(score, 0.0, 1.0).round(DECIMALS), imputed


def _pool_ties(rank: np.ndarray, value: np.ndarray,
               weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted mean value per distinct rank, sorted by rank.

    IoD gives equal scores equal ranks (157 tied pairs in IDACI 2019), so tied LSOAs must get
    one fitted score, not two.
    """
    unique, index = np.unique(rank, return_inverse=True)
    total = np.bincount(index, weights=weights)
    mean = np.bincount(index, weights=weights * value) / total
    return unique, mean, total


def pre2019_authority(lad19_code: pd.Series, ltla18_code: pd.Series,
                      la_code: pd.Series) -> pd.Series:
    """The children's services authority an LSOA belonged to before April 2019.

    Only the LSOAs of the new BCP and Dorset UAs move: the 2018 district tells Bournemouth and
    Poole apart, and Christchurch plus the rest of Dorset were Dorset County Council.
    """
    out = la_code.copy()
    in_bcp = lad19_code.eq(BCP_2019)
    out[in_bcp & ltla18_code.eq("E06000028")] = "E06000028"
    out[in_bcp & ltla18_code.eq("E06000029")] = "E06000029"
    out[in_bcp & ltla18_code.eq("E07000048")] = "E10000009"
    out[lad19_code.eq(DORSET_UA_2019)] = "E10000009"
    unresolved = in_bcp & out.eq(BCP_2019)
    if unresolved.any():
        raise ValueError(f"{int(unresolved.sum())} BCP LSOAs have no 2018 district")
    return out


def build_lsoa_table(file3: pd.DataFrame, file6: pd.DataFrame, indicators: pd.DataFrame,
                     ltla_utla: pd.DataFrame, ltla_region: pd.DataFrame,
                     lsoa_ltla18: pd.DataFrame) -> pd.DataFrame:
    """The LSOA table: IoD2019 child deprivation with both authority geographies and region."""
    lsoa = tidy_iod(file3, file6, indicators)
    utla = ltla_utla.rename(columns={"ltla19_code": "lad19_code", "utla19_code": "la_code",
                                     "utla19_name": "la_name"})
    region = ltla_region.rename(columns={"ltla19_code": "lad19_code",
                                         "region19_code": "region_code",
                                         "region19_name": "region_name"})
    l18 = lsoa_ltla18.rename(columns={"lsoa11_code": "lsoa_code"})
    lsoa = lsoa.merge(utla[["lad19_code", "la_code", "la_name"]], on="lad19_code",
                      how="left", validate="m:1")
    lsoa = lsoa.merge(region[["lad19_code", "region_code", "region_name"]], on="lad19_code",
                      how="left", validate="m:1")
    lsoa = lsoa.merge(l18[["lsoa_code", "ltla18_code"]], on="lsoa_code", how="left",
                      validate="1:1")
    if lsoa[["la_code", "region_code"]].isna().any().any():
        raise ValueError("some LAD 2019 codes are missing from the UTLA or region lookup")
    lsoa["la_code_pre2019"] = pre2019_authority(lsoa["lad19_code"], lsoa["ltla18_code"],
                                                lsoa["la_code"])
    names = dict(zip(lsoa["la_code"], lsoa["la_name"])) | PRE2019_NAMES
    lsoa["la_name_pre2019"] = lsoa["la_code_pre2019"].map(names)
    score, imputed = fit_idaci_score(lsoa["idaci_rank"].to_numpy(),
                                     lsoa["idaci_numerator"].to_numpy(),
                                     lsoa["children_0_15"].to_numpy())
    lsoa["idaci_score"] = score
    lsoa["idaci_score_imputed"] = imputed
    lsoa = lsoa.sort_values("lsoa_code", kind="stable").reset_index(drop=True)
    return lsoa[list(LSOA_COLUMNS)]


def old_la_codes(c3: pd.DataFrame) -> dict[str, str]:
    """Map ONS authority code -> DfE 3-digit number, from the LA rows of a DfE CIN file.

    DfE keeps its number when ONS re-codes an authority (Buckinghamshire 825 was E10000002,
    then E06000060), so one ONS code must never carry two numbers.
    """
    rows = c3[c3["geographic_level"].eq("Local authority")]
    pairs = rows[["new_la_code", "old_la_code"]].astype(str).drop_duplicates()
    clash = pairs["new_la_code"].duplicated(keep=False)
    if clash.any():
        raise ValueError(f"ONS codes with two DfE numbers: {sorted(pairs[clash].new_la_code)}")
    return dict(zip(pairs["new_la_code"], pairs["old_la_code"]))


def tidy_published_idaci(summary: pd.DataFrame) -> pd.DataFrame:
    """The IoD2019 upper-tier IDACI sheet -> la_code, idaci_published, idaci_published_rank."""
    s = summary.rename(columns=lambda c: str(c).strip())
    return pd.DataFrame({
        "la_code": s[_column_starting(s, "Upper Tier Local Authority District code")].astype(str),
        "idaci_published": clean_numeric(s["IDACI - Average score"]),
        "idaci_published_rank": _as_int(s["IDACI - Rank of average score"], "IDACI rank"),
    })


def _summarise(lsoa: pd.DataFrame, code_col: str, name_col: str) -> pd.DataFrame:
    """Per-authority LSOA count, children and child-weighted mean IDACI score."""
    weighted = lsoa["idaci_score"] * lsoa["children_0_15"]
    g = lsoa.assign(_w=weighted).groupby(code_col, sort=True)
    return pd.DataFrame({
        "la_name": g[name_col].first(),
        "region_code": g["region_code"].first(),
        "region_name": g["region_name"].first(),
        "n_lsoa": g.size().astype("int64"),
        "children_0_15": g["children_0_15"].sum().astype("int64"),
        "idaci_mean": (g["_w"].sum() / g["children_0_15"].sum()).round(DECIMALS),
    }).rename_axis("la_code").reset_index()


def build_la_table(lsoa: pd.DataFrame, published: pd.DataFrame,
                   c3: pd.DataFrame) -> pd.DataFrame:
    """The authority table: the 151 April-2019 authorities plus the three they replaced."""
    current = _summarise(lsoa, "la_code", "la_name")
    old = _summarise(lsoa, "la_code_pre2019", "la_name_pre2019")
    old = old[old["la_code"].isin(list(PRE2019_NAMES))]
    current["in_force_from"] = np.where(current["la_code"].isin([BCP_2019, DORSET_UA_2019]),
                                        CHANGE_DATE_FROM, None)
    current["in_force_to"] = None
    old["in_force_from"] = None
    old["in_force_to"] = CHANGE_DATE_TO
    table = pd.concat([current, old], ignore_index=True)
    numbers = old_la_codes(c3)
    table["old_la_code"] = table["la_code"].map(numbers)
    if table["old_la_code"].isna().any():
        missing = sorted(table.loc[table["old_la_code"].isna(), "la_code"])
        raise ValueError(f"no DfE old_la_code for {missing}")
    table = table.merge(published, on="la_code", how="left", validate="1:1")
    unpublished = table["idaci_published"].isna() & ~table["la_code"].isin(list(PRE2019_NAMES))
    if unpublished.any() or len(published) != len(current):
        raise ValueError("IoD2019 upper-tier summary and UTLA lookup disagree on authorities")
    table["idaci_published_rank"] = table["idaci_published_rank"].astype("Int64")
    return table[list(LA_COLUMNS)]


def national_rows(c3: pd.DataFrame) -> pd.DataFrame:
    """England rows of c3, one per year (the 2025 release repeats the 2025 row verbatim)."""
    nat = c3[c3["geographic_level"].eq("National")].drop_duplicates()
    if nat["time_period"].duplicated().any():
        raise ValueError("c3 has two different national rows for one year")
    return nat


def build_factor_prevalence(c3: pd.DataFrame) -> pd.DataFrame:
    """National share of assessments with each factor, in the latest year that has them all.

    A year is used only if no factor count is suppressed, so every share comes from one year.
    """
    nat = national_rows(c3)
    columns = ["Episodes_with_assessment_factor"] + [f.c3_column for f in FACTORS]
    counts = nat[columns].apply(clean_numeric)
    complete = counts.notna().all(axis=1)
    if not complete.any():
        raise ValueError("no year of c3 has every factor unsuppressed")
    years = nat["time_period"].astype("int64")
    year = int(years[complete].max())
    row = counts[complete & years.eq(year)].iloc[0]
    total = int(row["Episodes_with_assessment_factor"])
    return pd.DataFrame({
        "factor": [f.name for f in FACTORS],
        "code": [f.code for f in FACTORS],
        "c3_column": [f.c3_column for f in FACTORS],
        "label": [f.label for f in FACTORS],
        "year": np.full(len(FACTORS), year, dtype="int64"),
        "episodes": np.array([row[f.c3_column] for f in FACTORS], dtype="int64"),
        "episodes_with_any_factor": np.full(len(FACTORS), total, dtype="int64"),
        "share": np.round([row[f.c3_column] / total for f in FACTORS], DECIMALS),
    })


def build_tables(raw: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """All three reference tables from the raw frames keyed as in ``RAW_FILES``."""
    lsoa = build_lsoa_table(raw["idaci_rank"], raw["denominators"], raw["indicators"],
                            raw["ltla_utla"], raw["ltla_region"], raw["lsoa_ltla18"])
    la = build_la_table(lsoa, tidy_published_idaci(raw["utla_summary"]), raw["c3"])
    return {"lsoa": lsoa, "la": la, "factor_prevalence": build_factor_prevalence(raw["c3"])}


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def raw_path(raw_dir: Path, spec: RawFile) -> Path:
    """The stored copy of a raw file (``NAME`` or ``NAME.gz``); UserError if neither exists."""
    return stored_path(raw_dir, spec, "build-reference")


def read_raw(raw_dir: Path) -> dict[str, pd.DataFrame]:
    """Read every raw input as text columns; typing happens in the transforms."""
    found = stored_paths(raw_dir, RAW_FILES, "build-reference")
    frames = {}
    for spec in RAW_FILES:
        path = found[spec.key]
        if spec.relpath.endswith(".xlsx"):
            frames[spec.key] = pd.read_excel(path, sheet_name="IDACI")
        else:
            frames[spec.key] = pd.read_csv(path, dtype=str, keep_default_na=False,
                                           encoding="utf-8-sig")
    frames["ltla_utla"] = _england(frames["ltla_utla"], "ltla19_code")
    frames["ltla_region"] = _england(frames["ltla_region"], "ltla19_code")
    frames["lsoa_ltla18"] = _england(frames["lsoa_ltla18"], "lsoa11_code")
    return frames


def _england(frame: pd.DataFrame, code_col: str) -> pd.DataFrame:
    """Keep English rows: the ONS lookups cover England and Wales."""
    return frame[frame[code_col].str.startswith("E")].reset_index(drop=True)


def copy_raw(source_dir: Path, raw_dir: Path) -> list[Path]:
    """Copy the raw files this build needs from a shared folder, CSVs gzip-compressed."""
    return copy_files(source_dir, raw_dir, RAW_FILES)


def write_tables(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write each table as ``NAME.csv`` atomically."""
    written = []
    for name, table in tables.items():
        target = Path(out_dir) / f"{name}.csv"
        with atomic.atomic_path(target) as tmp:
            table.to_csv(tmp, index=False, lineterminator="\n")
        written.append(target)
    return written


def build(raw_dir: Path, out_dir: Path) -> dict[str, pd.DataFrame]:
    """Read data/raw, build the tables and write them to ``out_dir``."""
    tables = build_tables(read_raw(raw_dir))
    write_tables(tables, out_dir)
    return tables


# --------------------------------------------------------------------------------------------
# Verb
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-dir", type=Path, default=paths.RAW_DIR,
                        help="folder of raw public files (default: data/raw)")
    parser.add_argument("--out-dir", type=Path, default=paths.REFERENCE_DIR,
                        help="where the reference tables go (default: data/reference)")
    parser.add_argument("--copy-raw-from", type=Path, default=None, metavar="DIR",
                        help="first copy the needed raw files from DIR (e.g. "
                             "../shared/data/raw) into --raw-dir")


def run(args: argparse.Namespace) -> int:
    if args.copy_raw_from is not None:
        copy_raw(args.copy_raw_from, args.raw_dir)
    try:
        tables = build(args.raw_dir, args.out_dir)
    except ValueError as err:
        raise UserError(f"raw data in {args.raw_dir} are not as expected: {err}") from err
    lsoa, la = tables["lsoa"], tables["la"]
    print(f"build-reference: {len(lsoa)} LSOAs ({int(lsoa.idaci_score_imputed.sum())} scores "
          f"imputed), {len(la)} authorities, {len(tables['factor_prevalence'])} factors "
          f"-> {args.out_dir}")
    return 0
