"""Tests of the reference-data layer: the build from data/raw and the committed tables.

Known values are taken from the published raw files (IoD2019 File 3 / File 6, the ONS LSOA to
LAD 2018 lookup, DfE c3), so a wrong join, a wrong geography change or a suppression marker
read as zero makes a test fail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from scipy.stats import spearmanr

from models.vocabulary import FACTOR_NAMES, FACTORS
from public_data import reference as br
from public_data import tables
from workflows import paths
from workflows.errors import UserError

N_LSOA = 32_844
CHILDREN_0_15 = 10_405_050  # sum of File_6 "Dependent Children aged 0-15: mid 2015"
N_SUPPRESSED_NUMERATORS = 4_553


@pytest.fixture(scope="module")
def lsoa() -> pd.DataFrame:
    return tables.load_lsoa_table()


@pytest.fixture(scope="module")
def la() -> pd.DataFrame:
    return tables.load_la_table()


@pytest.fixture(scope="module")
def factors() -> pd.DataFrame:
    return tables.load_factor_prevalence()


@pytest.fixture(scope="module")
def raw_numerator() -> pd.Series:
    """The IDACI numerator straight from the raw indicators file, indexed by LSOA."""
    path = br.raw_path(paths.RAW_DIR, br.RAW_BY_KEY["indicators"])
    col = "income_deprivation_affecting_children_index_idaci_numerator"
    raw = pd.read_csv(path, usecols=["lsoa11_code", col], dtype={"lsoa11_code": str})
    return raw.set_index("lsoa11_code")[col]


# ---- LSOA table ------------------------------------------------------------------------------


def test_lsoa_rows_and_keys(lsoa):
    assert len(lsoa) == N_LSOA
    assert lsoa["lsoa_code"].is_unique
    assert lsoa["lsoa_code"].str.match(r"^E01\d{6}$").all()
    for col in ("la_code", "la_name", "la_code_pre2019", "region_code", "region_name"):
        assert lsoa[col].notna().all(), col
    assert lsoa["la_code"].nunique() == 151
    assert lsoa["la_code_pre2019"].nunique() == 152
    assert lsoa["region_code"].nunique() == 9


def test_children_total_matches_file6(lsoa):
    path = br.raw_path(paths.RAW_DIR, br.RAW_BY_KEY["denominators"])
    file6 = pd.read_csv(path, encoding="utf-8-sig")
    col = [c for c in file6.columns if c.startswith("Dependent Children aged 0-15")][0]
    assert file6[col].sum() == CHILDREN_0_15
    assert lsoa["children_0_15"].sum() == CHILDREN_0_15


def test_known_lsoa_values(lsoa):
    row = lsoa.set_index("lsoa_code")
    first = row.loc["E01000001"]
    assert (first.idaci_rank, first.idaci_decile, first.children_0_15) == (32806, 10, 175)
    assert first.la_code == "E09000001" and first.region_code == "E12000007"
    christchurch = row.loc["E01020343"]  # Christchurch 001A: E07000048 in the 2018 lookup
    assert christchurch.lad19_code == "E06000058"
    assert christchurch.la_code == "E06000058"
    assert christchurch.la_code_pre2019 == "E10000009"
    assert christchurch.la_name_pre2019 == "Dorset"
    assert row.loc["E01015379"].la_code_pre2019 == "E06000029"  # Poole 002A
    assert row.loc["E01015356"].la_code_pre2019 == "E06000028"  # Bournemouth 009B
    north_dorset = row.loc["E01033154"]  # North Dorset 006E, new Dorset UA
    assert (north_dorset.la_code, north_dorset.la_code_pre2019) == ("E06000059", "E10000009")


def test_pre2019_authority_differs_only_in_bcp_and_dorset(lsoa):
    moved = lsoa[lsoa["la_code_pre2019"] != lsoa["la_code"]]
    assert set(moved["la_code"]) == {"E06000058", "E06000059"}
    assert set(moved["la_code_pre2019"]) == {"E06000028", "E06000029", "E10000009"}
    assert (lsoa.loc[lsoa["la_code"] == "E06000058", "la_code_pre2019"] != "E06000058").all()


def test_idaci_score_monotone_in_rank(lsoa):
    ordered = lsoa.sort_values("idaci_rank")
    assert (np.diff(ordered["idaci_score"].to_numpy()) <= 0).all()
    # IoD gives equal scores equal ranks, so tied ranks must share one score
    assert (ordered.groupby("idaci_rank")["idaci_score"].nunique() == 1).all()
    assert lsoa["idaci_score"].between(0, 1).all()
    rho = spearmanr(lsoa["idaci_score"], lsoa["idaci_rank"]).statistic
    assert rho < -0.99


def test_imputed_flags_match_blank_numerators(lsoa, raw_numerator):
    blank = raw_numerator.isna()
    assert blank.sum() == N_SUPPRESSED_NUMERATORS
    flags = lsoa.set_index("lsoa_code")["idaci_score_imputed"]
    assert flags.sum() == blank.sum()
    assert (flags.loc[blank.index] == blank).all()


def test_observed_scores_stay_close_to_raw_ratio(lsoa, raw_numerator):
    """Isotonic smoothing only removes rounding noise: the median change is tiny."""
    row = lsoa.set_index("lsoa_code")
    ratio = raw_numerator / row.loc[raw_numerator.index, "children_0_15"]
    diff = (row.loc[raw_numerator.index, "idaci_score"] - ratio).dropna().abs()
    assert diff.median() < 0.01


def test_fit_idaci_score_fills_between_neighbours():
    rank = np.array([1, 2, 3, 4, 5, 6])
    children = np.full(6, 100.0)
    numerator = np.array([50.0, 40.0, np.nan, 20.0, 25.0, np.nan])  # 4,5 out of order
    score, imputed = br.fit_idaci_score(rank, numerator, children)
    assert imputed.tolist() == [False, False, True, False, False, True]
    assert np.allclose(score, [0.5, 0.4, 0.3125, 0.225, 0.225, 0.225])
    assert (np.diff(score) <= 0).all()


def test_fit_idaci_score_gives_tied_ranks_one_score():
    rank = np.array([1, 2, 2, 3])
    score, _ = br.fit_idaci_score(rank, np.array([60.0, 30.0, 50.0, 10.0]),
                                  np.array([100.0, 100.0, 100.0, 100.0]))
    assert score[1] == score[2] == pytest.approx(0.4)


# ---- authority table -------------------------------------------------------------------------


def test_la_rows(la, lsoa):
    assert len(la) == 151 + 3
    assert la["la_code"].is_unique
    current = la[la["in_force_to"].isna()]
    assert set(current["la_code"]) == set(lsoa["la_code"])
    assert current["n_lsoa"].sum() == N_LSOA
    assert current["children_0_15"].sum() == CHILDREN_0_15
    old = la[la["in_force_to"].eq("2019-03-31")].set_index("la_code")
    assert old["old_la_code"].to_dict() == {"E06000028": "837", "E06000029": "836",
                                            "E10000009": "835"}
    new = la[la["in_force_from"].eq("2019-04-01")].set_index("la_code")
    assert new["old_la_code"].to_dict() == {"E06000058": "839", "E06000059": "838"}
    assert old["children_0_15"].sum() == new["children_0_15"].sum()
    assert la["old_la_code"].str.match(r"^\d{3}$").all()
    assert la.set_index("la_code").loc["E10000002", "old_la_code"] == "825"  # 2019 code
    assert old["idaci_published"].isna().all() and current["idaci_published"].notna().all()


def test_la_idaci_mean_matches_published(la):
    """Measured on the committed build: r = 0.99996, MAD = 0.0013, max |diff| = 0.0041."""
    pub = la.dropna(subset=["idaci_published"])
    assert len(pub) == 151
    assert np.corrcoef(pub["idaci_mean"], pub["idaci_published"])[0, 1] > 0.98
    diff = (pub["idaci_mean"] - pub["idaci_published"]).abs()
    assert diff.mean() < 0.003
    assert diff.max() < 0.01
    rho = spearmanr(pub["idaci_mean"], -pub["idaci_published_rank"]).statistic
    assert rho > 0.99


# ---- factor prevalence -----------------------------------------------------------------------


def test_factor_prevalence(factors):
    assert factors["factor"].tolist() == list(FACTOR_NAMES)
    assert factors["year"].nunique() == 1 and factors["year"].iloc[0] == 2025
    assert np.allclose(factors["share"],
                       factors["episodes"] / factors["episodes_with_any_factor"], atol=1e-6)
    path = br.raw_path(paths.RAW_DIR, br.RAW_BY_KEY["c3"])
    c3 = pd.read_csv(path, dtype=str)
    nat = c3[c3["geographic_level"].eq("National") & c3["time_period"].eq("2025")].iloc[0]
    neglect = factors.set_index("factor").loc["neglect"]
    assert neglect["episodes"] == int(nat["Neglect"])
    assert neglect["episodes_with_any_factor"] == int(nat["Episodes_with_assessment_factor"])


def test_factor_prevalence_skips_years_with_suppression():
    columns = ["Episodes_with_assessment_factor"] + [f.c3_column for f in FACTORS]
    rows = []
    for year, fill in (("2023", "10"), ("2024", "c")):
        row = {"time_period": year, "geographic_level": "National"}
        row.update({c: "10" for c in columns})
        row["Episodes_with_assessment_factor"] = "100"
        row["Neglect"] = fill
        rows.append(row)
    out = br.build_factor_prevalence(pd.DataFrame(rows))
    assert (out["year"] == 2023).all()
    assert out.set_index("factor").loc["neglect", "episodes"] == 10


# ---- cleaning --------------------------------------------------------------------------------


def test_suppression_markers_become_missing_not_zero():
    raw = pd.Series(["c", "x", "..", "[x]", "0", "12", " 1,234 ", "z", "low", ":", "u", ""])
    out = br.clean_numeric(raw)
    assert out.iloc[:4].isna().all()
    assert out.iloc[4] == 0 and out.iloc[5] == 12 and out.iloc[6] == 1234
    assert out.iloc[7:].isna().all()


def test_unknown_token_is_an_error():
    with pytest.raises(ValueError, match="seven"):
        br.clean_numeric(pd.Series(["1", "seven"], name="n"))


# ---- build and loaders -----------------------------------------------------------------------


def test_build_reproduces_committed_tables(tmp_path):
    br.build(paths.RAW_DIR, tmp_path)
    pdt.assert_frame_equal(tables.load_lsoa_table(tmp_path / "lsoa.csv"),
                           tables.load_lsoa_table())
    pdt.assert_frame_equal(tables.load_la_table(tmp_path / "la.csv"),
                           tables.load_la_table())
    pdt.assert_frame_equal(tables.load_factor_prevalence(tmp_path / "factor_prevalence.csv"),
                           tables.load_factor_prevalence())


def test_missing_raw_file_is_a_user_error(tmp_path):
    missing = br.RAW_BY_KEY["lsoa_ltla18"]
    for spec in br.RAW_FILES:
        if spec is not missing:
            src = br.raw_path(paths.RAW_DIR, spec)
            dst = tmp_path / spec.relpath
            dst = dst.with_name(src.name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    with pytest.raises(UserError, match="lookup_lsoa11_ltla18.csv"):
        br.build(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_loaders_return_copies():
    first = tables.load_la_table()
    first.loc[0, "la_name"] = "changed"
    assert tables.load_la_table().loc[0, "la_name"] != "changed"
