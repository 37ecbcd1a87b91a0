"""Every validation rule fires on exactly the input it is meant for, with the right row.

Each case mutates a small clean extract in one way and checks that exactly that rule
fires, at the spreadsheet row (header = 1) and column an analyst would look at.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from models.validation import RULES, ValidationReport, validate_extract

TODAY = "2024-01-01"
PORTSMOUTH, BCP, BOURNEMOUTH = "E06000044", "E06000058", "E06000028"
P1, P2, P3 = "E01017013", "E01017014", "E01015395"


def lsoa_table() -> pd.DataFrame:
    """A few reference rows: two Portsmouth LSOAs and one Bournemouth (now BCP) LSOA."""
    return pd.DataFrame({
        "lsoa_code": [P1, P2, P3],
        "la_code": [PORTSMOUTH, PORTSMOUTH, BCP],
        "la_code_pre2019": [PORTSMOUTH, PORTSMOUTH, BOURNEMOUTH],
        "idaci_score": [0.2, 0.1, 0.3],
        "idaci_decile": [3, 6, 2],
        "children_0_15": [300, 250, 280],
    })


COLUMNS = ["child_id", "episode_id", "la_code", "lsoa_code", "referral_date", "date_of_birth",
           "age_at_referral", "gender", "ethnicity", "disability", "referral_nfa", "assessment",
           "s47", "icpc", "cpp", "lac", "assessment_factors", "cpp_category", "assessment_date",
           "s47_date", "icpc_date", "cpp_date", "lac_date"]
ROWS = [
    ["C1", "E1", PORTSMOUTH, P1, "2021-05-10", "2015-03-01", "6", "female", "WBRI", "false",
     "false", "true", "true", "true", "true", "false", "3B;16A", "neglect", "2021-05-12",
     "2021-05-13", "2021-05-30", "2021-05-30", ""],
    ["C2", "E2", PORTSMOUTH, P2, "2021-06-01", "2010-01-01", "11", "male", "APKN", "false",
     "true", "false", "false", "false", "false", "false", "", "", "", "", "", "", ""],
    ["C1", "E3", PORTSMOUTH, P1, "2022-01-10", "2015-03-01", "6", "2", "BAFR", "true",
     "false", "true", "false", "false", "false", "true", "4A", "", "2022-01-20", "", "", "",
     "2022-02-01"],
    ["C3", "E4", BOURNEMOUTH, P3, "2018-11-05", "2008-07-07", "10", "unknown", "WOTH", "false",
     "false", "true", "false", "false", "false", "false", "21", "", "", "", "", "", ""],
    ["C4", "E5", BCP, P3, "2020-02-02", "", "3", "female", "MWBC", "",
     "false", "true", "true", "false", "false", "false", "Neglect", "", "", "", "", "", ""],
]


def clean_raw() -> pd.DataFrame:
    """The clean all-string extract (as read with dtype=str, keep_default_na=False)."""
    return pd.DataFrame(ROWS, columns=COLUMNS, dtype=object)


def run(raw: pd.DataFrame) -> ValidationReport:
    return validate_extract(raw, lsoa_table(), source="x.csv", today=TODAY)


def test_clean_extract_has_no_issues():
    report = run(clean_raw())
    assert report.issues == [], report.format()
    assert report.ok and report.n_rows == 5


def _set(pos: int, **values):
    def mutate(df):
        for col, val in values.items():
            df.loc[pos, col] = val
        return df
    return mutate


def _drop(*cols):
    return lambda df: df.drop(columns=list(cols))


def _blank_row_at(pos):
    def mutate(df):
        blank = pd.DataFrame([[""] * df.shape[1]], columns=df.columns, dtype=object)
        return pd.concat([df.iloc[:pos], blank, df.iloc[pos:]], ignore_index=True)
    return mutate


def _add_column(name, value=""):
    def mutate(df):
        df = df.copy()
        df.insert(len(df.columns), name, value, allow_duplicates=True)
        return df
    return mutate


# (rule, mutation, row, column, value)
CASES = [
    ("no_rows", lambda df: df.iloc[0:0], None, "", ""),
    ("spreadsheet_formula", _set(1, ethnicity='=HYPERLINK("http://x.example","WBRI")'), 3, "ethnicity",
     '=HYPERLINK("http://x.example","WBRI")'),
    ("spreadsheet_formula", _set(1, episode_id="@SUM(A1:A9)"), 3, "episode_id", "@SUM(A1:A9)"),
    ("missing_column", _drop("gender"), None, "gender", ""),
    ("missing_column", _drop("date_of_birth", "age_at_referral"), None,
     "date_of_birth/age_at_referral", ""),
    ("duplicate_column", _add_column(" Gender ", "male"), None, "gender", ""),
    ("required_blank", _set(1, child_id=""), 3, "child_id", ""),
    ("required_blank", _set(2, lsoa_code=" "), 4, "lsoa_code", ""),
    ("bad_date", _set(1, referral_date="2021-13-01"), 3, "referral_date", "2021-13-01"),
    ("bad_date", _set(0, icpc_date="30/02/2021"), 2, "icpc_date", "30/02/2021"),
    ("bad_bool", _set(1, disability="maybe"), 3, "disability", "maybe"),
    ("bad_bool", _set(1, lac="2"), 3, "lac", "2"),
    ("bad_age", _set(1, age_at_referral="six"), 3, "age_at_referral", "six"),
    ("bad_age", _set(1, age_at_referral="10.5"), 3, "age_at_referral", "10.5"),
    ("age_missing", _set(4, age_at_referral=""), 6, "age_at_referral", ""),
    ("age_out_of_range", _set(4, age_at_referral="18"), 6, "age_at_referral", "18"),
    ("age_out_of_range", _set(4, age_at_referral="-1"), 6, "age_at_referral", "-1"),
    ("age_out_of_range", _set(1, date_of_birth="2000-01-01"), 3, "date_of_birth", "2000-01-01"),
    ("age_mismatch", _set(1, age_at_referral="13"), 3, "age_at_referral", "13"),
    ("dob_after_referral", _set(4, date_of_birth="2021-01-01"), 6, "date_of_birth",
     "2021-01-01"),
    ("pre_birth_referral", _set(4, date_of_birth="2020-05-01", age_at_referral="0"), 6,
     "date_of_birth", "2020-05-01"),
    ("unknown_la_code", _set(1, la_code="E06999999"), 3, "la_code", "E06999999"),
    ("unknown_la_code", _set(1, la_code="portsmouth"), 3, "la_code", "PORTSMOUTH"),
    ("unknown_lsoa", _set(1, lsoa_code="E01999999"), 3, "lsoa_code", "E01999999"),
    ("lsoa_outside_la", _set(1, lsoa_code=P3), 3, "lsoa_code", P3),
    # After April 2019 the old Bournemouth code no longer matches a BCP LSOA.
    ("lsoa_outside_la", _set(4, la_code=BOURNEMOUTH), 6, "lsoa_code", P3),
    ("duplicate_episode_id", _set(2, episode_id="E1"), 4, "episode_id", "E1"),
    ("date_order", _set(0, s47_date="2021-05-11"), 2, "s47_date", "2021-05-11"),
    ("date_order", _set(0, assessment_date="2021-05-01"), 2, "assessment_date", "2021-05-01"),
    ("date_order", _set(2, lac_date="2022-01-01"), 4, "lac_date", "2022-01-01"),
    ("nfa_with_later_stage", _set(1, assessment="true"), 3, "referral_nfa", "true"),
    ("icpc_without_s47", _set(0, s47="false", s47_date=""), 2, "icpc", "true"),
    ("cpp_without_icpc", _set(0, icpc="false", icpc_date=""), 2, "cpp", "true"),
    ("factors_without_assessment", _set(1, assessment_factors="16A"), 3, "assessment_factors",
     "16A"),
    ("cpp_category_without_cpp", _set(1, cpp_category="neglect"), 3, "cpp_category", "neglect"),
    ("unknown_gender", _set(1, gender="M?"), 3, "gender", "M?"),
    ("unknown_ethnicity", _set(1, ethnicity="ZZZZ"), 3, "ethnicity", "ZZZZ"),
    ("unknown_factor", _set(0, assessment_factors="3B; 99Z"), 2, "assessment_factors", "99Z"),
    ("unknown_cpp_category", _set(0, cpp_category="X"), 2, "cpp_category", "X"),
    ("cpp_without_category", _set(0, cpp_category=""), 2, "cpp_category", ""),
    ("s47_without_assessment", _set(4, assessment="false", assessment_factors=""), 6, "s47",
     "true"),
    ("lac_without_assessment",
     _set(2, assessment="false", assessment_factors="", assessment_date=""), 4, "lac", "true"),
    ("blank_ethnicity", _set(1, ethnicity=""), 3, "ethnicity", ""),
    ("blank_gender", _set(1, gender=""), 3, "gender", ""),
    ("blank_flag", _set(1, lac=""), None, "lac", ""),
    ("extra_column", _add_column("notes", "x"), None, "notes", ""),
    ("date_in_future", _set(4, referral_date="2025-06-01"), 6, "referral_date", "2025-06-01"),
    ("date_in_future", _set(2, lac_date="2024-06-01"), 4, "lac_date", "2024-06-01"),
    ("blank_row", _blank_row_at(2), None, "", ""),
    ("referral_date_before_2000", _set(4, referral_date="1999-06-01"), 6, "referral_date",
     "1999-06-01"),
    ("date_without_flag", _set(1, cpp_date="2021-07-01"), 3, "cpp_date", "2021-07-01"),
]


@pytest.mark.parametrize("rule, mutate, row, column, value", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_rule_fires_alone(rule, mutate, row, column, value):
    report = run(mutate(clean_raw()))
    fired = {i.rule for i in report.issues}
    assert fired == {rule}, report.format()
    (issue,) = report.issues
    assert (issue.row, issue.column, issue.value) == (row, column, value)
    assert issue.severity == RULES[rule][0]
    assert issue.file == "x.csv"
    assert report.ok == (issue.severity == "warning")


def test_every_rule_has_a_case():
    assert {c[0] for c in CASES} == set(RULES)


def test_duplicate_reason_names_first_row_and_every_duplicate_reported():
    raw = clean_raw()
    raw.loc[2, "episode_id"] = "E1"
    raw.loc[3, "episode_id"] = "E1"
    report = run(raw)
    dups = [i for i in report.issues if i.rule == "duplicate_episode_id"]
    assert [i.row for i in dups] == [4, 5]
    assert all("duplicates row 2" in i.reason for i in dups)


def test_all_problems_reported_at_once():
    raw = clean_raw()
    raw.loc[0, "gender"] = "??"
    raw.loc[1, "lsoa_code"] = "E01999999"
    raw.loc[2, "referral_date"] = "yesterday"
    raw.loc[4, "ethnicity"] = ""
    report = run(raw)
    assert {i.rule for i in report.issues} == {"unknown_gender", "unknown_lsoa", "bad_date",
                                               "blank_ethnicity"}
    assert len(report.errors) == 3 and len(report.warnings) == 1
    frame = report.to_frame()
    assert list(frame.columns) == ["severity", "rule", "file", "row", "column", "value", "reason"]
    assert frame["row"].tolist() == [2, 3, 4, 6]


def test_accepted_variants_are_clean():
    raw = clean_raw()
    raw.columns = [f"  {c.upper()} " if i % 2 else c for i, c in enumerate(raw.columns)]
    raw.iloc[0, 4] = "10/05/2021"  # referral_date as DD/MM/YYYY
    raw.iloc[:, 10] = ["N", "yes", "0", "f", "F"]  # referral_nfa
    raw.iloc[:, 11] = ["Y", "no", "T", "1", "TRUE"]  # assessment
    raw.iloc[0, 16] = "Domestic_Abuse_parent | neglect"
    raw.iloc[0, 17] = "N"
    raw.iloc[1, 8] = "asian"
    raw.iloc[2, 8] = "bafr"
    report = run(raw)
    assert report.issues == [], report.format()


def test_pre2019_code_accepted_only_before_april_2019():
    raw = clean_raw()
    raw.loc[3, "referral_date"] = "2019-03-31"
    assert run(raw).issues == []
    raw.loc[3, "referral_date"] = "2019-04-01"
    assert [i.rule for i in run(raw).issues] == ["lsoa_outside_la"]


def test_format_limits_lines_per_rule_but_keeps_all_issues():
    raw = pd.concat([clean_raw()] * 30, ignore_index=True)
    raw["episode_id"] = [f"E{i}" for i in range(len(raw))]
    raw["gender"] = "bad"
    report = run(raw)
    assert len(report.errors) == 150
    text = report.format(max_per_rule=5)
    assert "... and 145 more" in text
    assert text.count("unknown_gender") == 1
    assert "150 error(s)" in text.splitlines()[-1]


def test_header_only_extract_is_an_error():
    """An extract with no episodes is not a valid extract (it used to pass, then every
    analysis failed later with a traceback)."""
    report = run(clean_raw().iloc[0:0])
    assert not report.ok and report.n_rows == 0
    assert [i.rule for i in report.errors] == ["no_rows"]


def test_blank_rows_are_ignored_and_rows_keep_their_spreadsheet_numbers():
    raw = _blank_row_at(1)(_blank_row_at(4)(clean_raw()))  # E1, -, E2, E3, E4, -, E5: rows 2-8
    raw.loc[6, "gender"] = "M?"  # E5, row 8 of the spreadsheet
    report = run(raw)
    assert report.n_rows == 5
    blank = [i for i in report.issues if i.rule == "blank_row"]
    assert len(blank) == 1 and "2 blank row(s)" in blank[0].reason and "3, 7" in blank[0].reason
    (gender,) = [i for i in report.issues if i.rule == "unknown_gender"]
    assert gender.row == 8


def test_duplicate_column_names_every_position():
    raw = clean_raw()
    raw.insert(7, "Referral_Date", raw["referral_date"], allow_duplicates=True)
    report = run(raw)
    (issue,) = report.errors
    assert issue.rule == "duplicate_column" and issue.column == "referral_date"
    assert "columns 5 (E) and 8 (H)" in issue.reason


def test_misspelt_required_column_is_named_with_its_likely_meaning():
    raw = clean_raw().rename(columns={"referral_date": "refferal_date", "cpp_category": "cpp_categroy"})
    report = run(raw)
    (missing,) = [i for i in report.errors if i.rule == "missing_column"]
    assert missing.column == "referral_date"
    assert "column 5 (E) is headed 'refferal_date': a misspelling of referral_date?" in missing.reason
    extra = {i.column: i.reason for i in report.issues if i.rule == "extra_column"}
    assert "did you mean cpp_category?" in extra["cpp_categroy"]
    assert "did you mean" not in extra["refferal_date"]  # already named by the error


def test_a_formula_is_shown_as_text_in_the_issue_table():
    raw = clean_raw()
    raw.loc[1, "episode_id"] = '=HYPERLINK("http://x.example","E2")'
    frame = run(raw).to_frame()
    assert frame["value"].tolist() == ['\'=HYPERLINK("http://x.example","E2")']


def test_numbers_are_not_formulas_but_signs_before_codes_are():
    raw = clean_raw()
    raw.loc[0, "age_at_referral"] = "+6"
    raw.loc[1, "lsoa_code"] = "-E01017014"
    report = run(raw)
    assert [(i.rule, i.row, i.column) for i in report.issues] == [("spreadsheet_formula", 3, "lsoa_code")]


@pytest.mark.slow
def test_validation_passes_100k_clean_rows():
    """100,000 clean rows give no issue (row-wise rules at scale).  How fast: measured in
    benchmarks/bench_validate_1m.py, not asserted here (no test depends on the machine's speed)."""
    raw = pd.concat([clean_raw()] * 20_000, ignore_index=True)
    raw["episode_id"] = np.char.add("E", np.arange(len(raw)).astype(str)).astype(object)
    report = run(raw)
    assert report.ok and report.issues == [], report.issues[:5]
