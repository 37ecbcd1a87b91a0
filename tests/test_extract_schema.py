"""Schema round trips, code mapping, pseudonymisation, extract I/O and the validate verb."""

from __future__ import annotations

import contextlib
import io
import os
import stat

import numpy as np
import pandas as pd
import pytest

from models import vocabulary as vocab
from models.extract_schema import (
    COLUMNS, Extract, parse_bool, parse_date, split_factors, year_ending_march,
)
from models.pseudonymise import load_or_create_salt, pseudonym, pseudonymise_ids
from models.validation import normalise_extract
from workflows.errors import UserError
from workflows.extract_io import load_extract, read_extract_raw
from workflows.paths import DATA_DIR

SALT = b"0123456789abcdef0123456789abcdef"
PORTSMOUTH, BCP, BOURNEMOUTH = "E06000044", "E06000058", "E06000028"
P1, P2, P3 = "E01017013", "E01017014", "E01015395"

HEADER = ["child_id", "episode_id", "la_code", "lsoa_code", "referral_date", "date_of_birth",
          "age_at_referral", "gender", "ethnicity", "disability", "referral_nfa", "assessment",
          "s47", "icpc", "cpp", "lac", "assessment_factors", "cpp_category", "assessment_date",
          "s47_date", "icpc_date", "cpp_date", "lac_date"]
ROWS = [
    ["CHILD-A1", "EP1", PORTSMOUTH, P1, "2021-05-10", "2015-03-01", "6", "2", "WBRI", "false",
     "false", "true", "true", "true", "true", "false", "3B;16A", "neglect", "2021-05-12",
     "2021-05-13", "2021-05-30", "2021-05-30", ""],
    ["CHILD-B2", "EP2", PORTSMOUTH, P2, "2022-03-31", "2010-01-01", "12", "male", "APKN", "",
     "true", "false", "false", "false", "false", "false", "", "", "", "", "", "", ""],
    ["CHILD-A1", "EP3", PORTSMOUTH, P1, "2022-04-01", "2015-03-01", "7", "female", "BAFR",
     "true", "false", "true", "false", "false", "false", "true", "4A|Neglect", "",
     "2022-04-20", "", "", "", "2022-05-01"],
    ["CHILD-C3", "EP4", BOURNEMOUTH, P3, "2018-11-05", "2008-07-07", "10", "unknown", "WOTH",
     "false", "false", "true", "false", "false", "false", "false", "21", "", "", "", "", "", ""],
    ["CHILD-D4", "EP5", BCP, P3, "2020-02-02", "2020-05-01", "", "1", "", "false",
     "false", "true", "false", "false", "false", "false", "mental_health_parent", "", "", "",
     "", "", ""],
]


def lsoa_table() -> pd.DataFrame:
    return pd.DataFrame({
        "lsoa_code": [P1, P2, P3],
        "la_code": [PORTSMOUTH, PORTSMOUTH, BCP],
        "la_code_pre2019": [PORTSMOUTH, PORTSMOUTH, BOURNEMOUTH],
        "idaci_score": [0.2, 0.1, 0.3],
    })


def raw() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=HEADER, dtype=object)


def assert_same_extract(a: Extract, b: Extract) -> None:
    pd.testing.assert_frame_equal(a.episodes, b.episodes)
    pd.testing.assert_frame_equal(a.factors, b.factors)


# --- normalisation ----------------------------------------------------------------------

def test_normalised_columns_and_types():
    x = normalise_extract(raw(), lsoa_table(), SALT)
    ep = x.episodes
    assert len(ep) == 5
    assert ep["age_at_referral"].dtype == np.int64
    assert ep["age_at_referral"].tolist() == [6, 12, 7, 10, 0]  # pre-birth referral -> 0
    assert ep["age_group"].tolist() == ["5_9", "10_15", "5_9", "10_15", "under_1"]
    assert ep["pre_birth"].tolist() == [False, False, False, False, True]
    assert ep["year_ending_march"].tolist() == [2022, 2022, 2023, 2019, 2020]
    for flag in ("referral_nfa", "assessment", "s47", "icpc", "cpp", "lac"):
        assert ep[flag].dtype == bool
    assert ep["disability"].dtype == "boolean" and pd.isna(ep["disability"].iloc[1])
    assert ep["referral_date"].dtype.kind == "M"
    # Pre-2019 Bournemouth code becomes the current BCP code.
    assert ep["la_code"].tolist() == [PORTSMOUTH, PORTSMOUTH, PORTSMOUTH, BCP, BCP]
    assert ep["ethnicity"].tolist()[-1] == "unknown"
    assert ep["cpp_category"].tolist()[0] == "neglect" and pd.isna(ep["cpp_category"].iloc[1])
    assert "date_of_birth" not in ep.columns
    assert list(x.factors.columns) == list(vocab.FACTOR_NAMES)
    assert x.factors.index.tolist() == ["EP1", "EP2", "EP3", "EP4", "EP5"]
    assert x.factors.dtypes.eq(bool).all()
    assert x.factors.sum(axis=1).tolist() == [2, 0, 2, 0, 1]


def test_code_mapping():
    x = normalise_extract(raw(), lsoa_table(), SALT)
    ep, f = x.episodes, x.factors
    assert ep.loc[0, "ethnicity"] == "white_british"  # WBRI
    assert ep.loc[0, "gender"] == "female"  # CIN code 2
    assert ep.loc[4, "gender"] == "male"  # CIN code 1
    assert ep.loc[1, "ethnicity"] == "asian"  # APKN
    assert f.loc["EP1", "domestic_abuse_parent"]  # 3B
    assert f.loc["EP1", "neglect"]  # 16A
    assert f.loc["EP3", "mental_health_child"] and f.loc["EP3", "neglect"]  # 4A, c3 name
    assert f.loc["EP5", "mental_health_parent"]  # canonical name


def test_parsers():
    values, bad = parse_bool(pd.Series(["Yes", " n ", "T", "0", "", "maybe"]))
    assert values.tolist()[:4] == [True, False, True, False]
    assert pd.isna(values.iloc[4]) and bad.tolist() == [False] * 5 + [True]
    dates, bad = parse_date(pd.Series(["2021-04-01", "01/04/2021", "", "2021/04/01"]))
    assert dates.iloc[0] == dates.iloc[1] == pd.Timestamp("2021-04-01")
    assert bad.tolist() == [False, False, False, True]
    long = split_factors(pd.Series(["3b, 16A", "", "21", "x"]))
    assert long["pos"].tolist() == [0, 0, 2, 3]
    assert long["factor"].tolist()[:3] == ["domestic_abuse_parent", "neglect", ""]
    assert pd.isna(long["factor"].iloc[3])
    ym = year_ending_march(pd.Series(pd.to_datetime(["2021-03-31", "2021-04-01", "2022-03-31"])))
    assert ym.tolist() == [2021, 2022, 2022]


def test_factor_codes_are_unique_and_complete():
    codes = [f.code for f in vocab.FACTORS]
    assert len(codes) == len(set(codes)) and "21" not in codes


def test_normalise_refuses_invalid_extract():
    bad = raw()
    bad.loc[0, "lsoa_code"] = "E01999999"
    with pytest.raises(ValueError, match="unknown_lsoa"):
        normalise_extract(bad, lsoa_table(), SALT)


def test_schema_lists_every_example_column():
    example = read_extract_raw(DATA_DIR / "examples" / "extract_example.csv")
    assert list(example.columns) == [c.name for c in COLUMNS]


def test_example_extract_is_clean():
    example = read_extract_raw(DATA_DIR / "examples" / "extract_example.csv")
    table = pd.DataFrame({"lsoa_code": example["lsoa_code"].unique(), "la_code": PORTSMOUTH,
                          "la_code_pre2019": PORTSMOUTH})
    from models.validation import validate_extract
    report = validate_extract(example, table, "example", today="2024-01-01")
    assert report.issues == [], report.format()
    assert 10 <= len(example) <= 20


# --- round trips ------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_round_trip_through_files(tmp_path, suffix):
    expected = normalise_extract(raw(), lsoa_table(), SALT)
    path = tmp_path / f"extract{suffix}"
    if suffix == ".parquet":
        raw().to_parquet(path, index=False)
    else:
        raw().to_csv(path, index=False)
    back = read_extract_raw(path)
    assert back.dtypes.map(lambda d: d == object or pd.api.types.is_string_dtype(d)).all()
    extract, report = load_extract(path, lsoa_table(), salt=SALT, today="2024-01-01")
    assert report.ok
    assert_same_extract(extract, expected)


def test_round_trip_typed_parquet(tmp_path):
    """A Parquet file with real dates, booleans and integer ages reads like the CSV."""
    typed = raw()
    for col in ("referral_date", "date_of_birth", "assessment_date", "lac_date"):
        typed[col] = pd.to_datetime(typed[col].replace("", None))
    for col in ("referral_nfa", "assessment", "s47", "icpc", "cpp", "lac"):
        typed[col] = typed[col] == "true"
    typed["age_at_referral"] = pd.to_numeric(typed["age_at_referral"].replace("", None))
    path = tmp_path / "typed.parquet"
    typed.to_parquet(path, index=False)
    extract, _ = load_extract(path, lsoa_table(), salt=SALT)
    assert_same_extract(extract, normalise_extract(raw(), lsoa_table(), SALT))


def test_read_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_extract_raw(tmp_path / "absent.csv")
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(UserError, match="unsupported"):
        read_extract_raw(tmp_path / "x.xlsx")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="empty"):
        read_extract_raw(tmp_path / "empty.csv")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="cannot read"):
        read_extract_raw(tmp_path / "bad.parquet")


def test_load_extract_raises_user_error_with_report(tmp_path):
    bad = raw()
    bad.loc[1, "gender"] = "x"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(UserError) as info:
        load_extract(path, lsoa_table(), salt=SALT)
    assert info.value.exit_code == 2
    assert "row 3, column gender" in str(info.value)


# --- pseudonymisation -------------------------------------------------------------------

def test_pseudonyms_deterministic_and_salt_dependent():
    a = normalise_extract(raw(), lsoa_table(), SALT).episodes["child_id"]
    b = normalise_extract(raw(), lsoa_table(), SALT).episodes["child_id"]
    c = normalise_extract(raw(), lsoa_table(), b"another salt").episodes["child_id"]
    assert a.tolist() == b.tolist()
    assert not set(a) & set(c)
    assert a[0] == a[2] != a[1]  # same child, same pseudonym
    assert all(p.startswith("c_") and len(p) == 18 for p in a)
    assert a[0] == pseudonym("CHILD-A1", SALT)
    s = pseudonymise_ids(pd.Series(["CHILD-A1", "CHILD-B2"]), SALT)
    assert s.tolist() == [a[0], a[1]]


def test_no_original_child_id_survives():
    x = normalise_extract(raw(), lsoa_table(), SALT)
    originals = {r[0] for r in ROWS}
    cells = set(map(str, x.episodes.to_numpy(dtype=object).ravel()))
    cells |= set(map(str, x.factors.index))
    cells |= set(map(str, x.episodes.columns)) | set(map(str, x.factors.columns))
    assert not any(o in cell for o in originals for cell in cells)


def test_salt_file_created_private_and_reused(tmp_path, monkeypatch):
    path = tmp_path / "cfg" / "pseudonym.salt"
    monkeypatch.setenv("CSC_PSEUDONYM_SALT_FILE", str(path))
    salt = load_or_create_salt()
    assert path.exists() and len(salt) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_salt() == salt
    assert load_or_create_salt(tmp_path / "other.salt") != salt


def test_load_extract_uses_machine_salt_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("CSC_PSEUDONYM_SALT_FILE", str(tmp_path / "s.salt"))
    path = tmp_path / "e.csv"
    raw().to_csv(path, index=False)
    first, _ = load_extract(path, lsoa_table())
    second, _ = load_extract(path, lsoa_table())
    assert first.episodes["child_id"].tolist() == second.episodes["child_id"].tolist()


# --- the validate verb ------------------------------------------------------------------

@pytest.fixture
def fake_lsoa_loader(monkeypatch):
    """Point the validate verb's LSOA table at the small test table."""
    from workflows import validate

    monkeypatch.setattr(validate, "load_lsoa_table", lambda *a, **k: lsoa_table())


def _cli(argv):
    from workflows.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_cli_validate_clean_file(tmp_path, fake_lsoa_loader):
    path = tmp_path / "clean.csv"
    raw().to_csv(path, index=False)
    before = set(tmp_path.iterdir())
    code, out, _ = _cli(["validate", str(path)])
    assert code == 0
    assert "validation passed: 0 error(s)" in out
    assert "WARNING [blank_ethnicity]" in out and "WARNING [pre_birth_referral]" in out
    assert set(tmp_path.iterdir()) == before  # writes nothing


def test_cli_validate_invalid_file(tmp_path, fake_lsoa_loader):
    bad = raw()
    bad.loc[0, "lsoa_code"] = "E01999999"
    bad.loc[2, "episode_id"] = "EP1"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    code, out, _ = _cli(["validate", str(path), "--max-per-rule", "1"])
    assert code == 2
    assert "ERROR [unknown_lsoa]" in out and "ERROR [duplicate_episode_id]" in out
    assert "row 4, column episode_id, value 'EP1': duplicates row 2" in out
    assert "validation FAILED: 2 error(s)" in out


def test_cli_validate_missing_file_and_salt(tmp_path, fake_lsoa_loader):
    code, _, err = _cli(["validate", str(tmp_path / "nope.csv")])
    assert code == 2 and "not found" in err
    path = tmp_path / "clean.csv"
    raw().to_csv(path, index=False)
    code, _, err = _cli(["validate", str(path), "--salt-file", str(tmp_path / "no.salt")])
    assert code == 2 and "salt file" in err
    assert not (tmp_path / "no.salt").exists()
