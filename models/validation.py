"""Validation of a case-level extract: every problem at once, with the row a user can find.

Analysts fix their extract in a spreadsheet, so each :class:`Issue` names the spreadsheet
row (header = row 1, first data row = row 2), the column, the offending value and why.  The
validator never stops at the first problem: a report that reveals one error per run wastes
a day per error.  All checks are vectorised; Python objects are only built for rows that
have an issue.

Rules and their severity are listed in :data:`RULES`; ``data/extract_schema.md`` explains
them for users.
"""

from __future__ import annotations

import datetime as _dt
import difflib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from models import extract_schema as xs

ERROR = "error"
WARNING = "warning"

#: rule -> (severity, short description used as the heading in formatted reports).
RULES: dict[str, tuple[str, str]] = {
    "no_rows": (ERROR, "no data rows"),
    "missing_column": (ERROR, "required column missing"),
    "duplicate_column": (ERROR, "column given more than once"),
    "spreadsheet_formula": (ERROR, "spreadsheet formula in a cell"),
    "required_blank": (ERROR, "required value blank"),
    "bad_date": (ERROR, "unparseable date"),
    "bad_bool": (ERROR, "unparseable true/false value"),
    "bad_age": (ERROR, "unparseable age"),
    "age_missing": (ERROR, "neither date of birth nor age given"),
    "age_out_of_range": (ERROR, "impossible age (must be 0-17)"),
    "age_mismatch": (ERROR, "age and date of birth disagree by more than a year"),
    "dob_after_referral": (ERROR, "date of birth more than 9 months after referral"),
    "date_in_future": (ERROR, "date in the future"),
    "unknown_la_code": (ERROR, "unknown la_code"),
    "unknown_lsoa": (ERROR, "unknown LSOA code"),
    "lsoa_outside_la": (ERROR, "LSOA outside its local authority"),
    "duplicate_episode_id": (ERROR, "duplicate episode_id"),
    "date_order": (ERROR, "dates out of pathway order"),
    "nfa_with_later_stage": (ERROR, "referral_nfa with a later stage"),
    "icpc_without_s47": (ERROR, "icpc without s47"),
    "cpp_without_icpc": (ERROR, "cpp without icpc"),
    "factors_without_assessment": (ERROR, "assessment_factors without assessment"),
    "cpp_category_without_cpp": (ERROR, "cpp_category without cpp"),
    "unknown_gender": (ERROR, "unknown gender code"),
    "unknown_ethnicity": (ERROR, "unknown ethnicity code"),
    "unknown_factor": (ERROR, "unknown assessment factor"),
    "unknown_cpp_category": (ERROR, "unknown cpp_category"),
    "cpp_without_category": (WARNING, "cpp without cpp_category"),
    "s47_without_assessment": (WARNING, "s47 without assessment"),
    "lac_without_assessment": (WARNING, "lac without assessment"),
    "blank_ethnicity": (WARNING, "blank ethnicity (read as unknown)"),
    "blank_gender": (WARNING, "blank gender (read as unknown)"),
    "blank_flag": (WARNING, "blank stage flag (read as false)"),
    "pre_birth_referral": (WARNING, "pre-birth referral (age set to 0)"),
    "extra_column": (WARNING, "unknown extra column (dropped)"),
    "blank_row": (WARNING, "blank rows (ignored)"),
    "referral_date_before_2000": (WARNING, "referral_date before 2000"),
    "date_without_flag": (WARNING, "stage date given but stage flag false"),
}


@dataclass(frozen=True)
class Issue:
    """One problem.  ``row`` is the spreadsheet row (2 = first data row); None = whole file."""

    severity: str
    rule: str
    file: str
    row: int | None
    column: str
    value: str
    reason: str


@dataclass
class ValidationReport:
    """All issues found in one extract (the object keeps every issue; ``format`` trims)."""

    source: str
    n_rows: int
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings do not stop a run)."""
        return not any(i.severity == ERROR for i in self.issues)

    def to_frame(self) -> pd.DataFrame:
        """Issues as a table (e.g. to save next to the extract and filter in a spreadsheet).

        A value a spreadsheet would run as a formula is written with a leading ``'`` (shown
        as text), so that opening the table cannot run what the extract smuggled in."""
        cols = ["severity", "rule", "file", "row", "column", "value", "reason"]
        frame = pd.DataFrame([asdict(i) for i in self.issues], columns=cols)
        frame["row"] = frame["row"].astype("Int64")
        if len(frame):
            value = frame["value"].astype(str)
            frame["value"] = value.where(~xs.formula_mask(value.str.strip()), "'" + value)
        return frame

    def counts(self) -> dict[str, int]:
        """Number of issues per rule, in :data:`RULES` order."""
        tally: dict[str, int] = {}
        for i in self.issues:
            tally[i.rule] = tally.get(i.rule, 0) + 1
        return {r: tally[r] for r in RULES if r in tally}

    def summary(self) -> str:
        n_err, n_warn = len(self.errors), len(self.warnings)
        verdict = "FAILED" if n_err else "passed"
        return (f"{self.source}: validation {verdict}: {n_err} error(s), {n_warn} warning(s) "
                f"in {self.n_rows} data row(s)")

    def format(self, max_per_rule: int = 50) -> str:
        """Readable report: errors then warnings, grouped by rule, ``max_per_rule`` each."""
        lines: list[str] = []
        by_rule: dict[str, list[Issue]] = {}
        for i in self.issues:
            by_rule.setdefault(i.rule, []).append(i)
        for severity, title in ((ERROR, "ERRORS (must be fixed)"),
                                (WARNING, "WARNINGS (check; the run goes ahead)")):
            rules = [r for r in RULES if r in by_rule and RULES[r][0] == severity]
            if not rules:
                continue
            lines.append(title)
            for rule in rules:
                items = by_rule[rule]
                lines.append(f"  {severity.upper()} [{rule}] {RULES[rule][1]}: {len(items)}")
                for i in items[:max_per_rule]:
                    where = f"row {i.row}" if i.row is not None else "file"
                    col = f", column {i.column}" if i.column else ""
                    val = f", value {i.value!r}" if i.value != "" else ""
                    lines.append(f"    {where}{col}{val}: {i.reason}")
                if len(items) > max_per_rule:
                    lines.append(f"    ... and {len(items) - max_per_rule} more")
        lines.append(self.summary())
        return "\n".join(lines)


class _Collector:
    """Turns vectorised masks into :class:`Issue` objects (only for flagged rows)."""

    def __init__(self, source: str, row_numbers: np.ndarray):
        self.source = source
        self.issues: list[Issue] = []
        self.row_numbers = row_numbers  # position in the parsed rows -> spreadsheet row

    def row(self, pos) -> int:
        return int(self.row_numbers[pos])

    def file(self, rule: str, column: str, reason: str, value: str = "") -> None:
        self.issues.append(Issue(RULES[rule][0], rule, self.source, None, column, value, reason))

    def rows(self, rule: str, column: str, mask, values, reason) -> None:
        """Add one issue per True in ``mask``; ``values``/``reason`` are scalars or arrays."""
        pos = np.flatnonzero(np.asarray(mask, dtype=bool))
        if not len(pos):
            return
        vals = _pick(values, pos)
        reasons = _pick(reason, pos)
        severity = RULES[rule][0]
        self.issues.extend(
            Issue(severity, rule, self.source, self.row(p), column, str(v), str(r))
            for p, v, r in zip(pos, vals, reasons))

    def at(self, rule: str, column: str, pos, values, reasons) -> None:
        """Add issues at explicit row positions (several may share a row)."""
        severity = RULES[rule][0]
        self.issues.extend(
            Issue(severity, rule, self.source, self.row(p), column, str(v), str(r))
            for p, v, r in zip(pos, values, reasons))


def _pick(x, pos: np.ndarray) -> list:
    if isinstance(x, (pd.Series, np.ndarray, list)):
        return list(np.asarray(x, dtype=object)[pos])
    return [x] * len(pos)


def _fmt_date(d) -> str:
    return str(np.datetime64(d, "D"))


def _sparse(mask: np.ndarray, reason) -> np.ndarray:
    """Per-row reasons built only where ``mask`` is set (cheap when few rows are flagged)."""
    out = np.full(len(mask), "", dtype=object)
    for p in np.flatnonzero(mask):
        out[p] = reason(p)
    return out


def _arr(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype=bool, na_value=False) if s.dtype == "boolean" else s.to_numpy(dtype=bool)


def _release_arrow_memory() -> None:
    """Hand the memory of freed Arrow-backed text (the raw frame) back to the system: its
    allocator keeps it otherwise, and the checks would add to it."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pandas text is then plain Python objects
        return
    pa.default_memory_pool().release_unused()


def blank_rows(raw: pd.DataFrame) -> np.ndarray:
    """True for rows whose every cell is blank (an empty line, or a row of empty cells).

    Cheap on a real extract: the first column with a value on every row ends the search."""
    n = len(raw)
    todo = np.arange(n)
    for j in range(raw.shape[1]):
        if not len(todo):
            break
        col = raw.iloc[:, j]
        if len(todo) < n:
            col = col.iloc[todo]
        blank = col.astype(str).str.strip().eq("").to_numpy(dtype=bool)
        todo = todo[blank]
    out = np.zeros(n, dtype=bool)
    out[todo] = True
    return out


def _close_match(name: str, candidates) -> str | None:
    """The candidate ``name`` is most likely a misspelling of (or None)."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.8)
    return found[0] if found else None


def _header_issues(c: "_Collector", parsed: xs.ParsedExtract, extras: list[tuple[int, str]],
                   duplicated: dict[str, list[int]]) -> None:
    """Duplicate, missing (with the close match, if any, among the unknown columns) and
    unknown columns (with the schema column each may have meant)."""
    R = parsed.raw
    for name, positions in duplicated.items():
        where = ", ".join(xs.spreadsheet_column(p) for p in positions[:-1]) + \
            f" and {xs.spreadsheet_column(positions[-1])}"
        c.file("duplicate_column", name, f"{name} is the header of columns {where}: give it once (header names "
               "are matched ignoring case and spaces; which column was meant cannot be guessed)")
    unknown = {xs.normalise_header(h): (pos, h) for pos, h in extras}
    claimed: set[str] = set()
    for name in xs.REQUIRED_COLUMNS:
        if name not in R:
            match = _close_match(name, set(unknown) - claimed)
            if match is None:
                c.file("missing_column", name, "required column is missing")
            else:
                claimed.add(match)
                pos, header = unknown[match]
                c.file("missing_column", name, f"required column is missing; column "
                       f"{xs.spreadsheet_column(pos)} is headed {header!r}: a misspelling of {name}?")
    if not any(a in R for a in xs.AGE_COLUMNS):
        match = _close_match("date_of_birth", set(unknown) - claimed) or \
            _close_match("age_at_referral", set(unknown) - claimed)
        hint = "" if match is None else (f"; column {xs.spreadsheet_column(unknown[match][0])} is headed "
                                         f"{unknown[match][1]!r}: a misspelling?")
        if match is not None:
            claimed.add(match)
        c.file("missing_column", "date_of_birth/age_at_referral",
               "give date_of_birth or age_at_referral (or both)" + hint)
    absent = [name for name in xs.COLUMN_BY_NAME if name not in R]
    for pos, header in extras:
        key = xs.normalise_header(header)
        where = f"column {xs.spreadsheet_column(pos)}"
        if key == "":
            c.file("extra_column", header, f"{where} has no header name: ignored and dropped on ingest")
            continue
        match = None if key in claimed else _close_match(key, absent)
        c.file("extra_column", header, f"unknown column ({where}): ignored and dropped on ingest"
               + (f"; did you mean {match}?" if match else ""))


def check_extract(raw: pd.DataFrame, lsoa_table: pd.DataFrame, source: str,
                  today=None) -> tuple[ValidationReport, xs.ParsedExtract]:
    """Validate and parse; the parsed form is reused by normalisation (parse once).

    Rows whose every cell is blank are left out (one warning), and every issue still names
    the row as the spreadsheet shows it.  ``raw`` is not needed once parsed: a caller that
    passes the only reference to it (``check_extract(read_extract_raw(path), ...)``) lets
    it be freed before the checks run, which lowers the peak memory of a large extract.
    """
    today = pd.Timestamp(today if today is not None else _dt.date.today()).normalize()
    empty_rows = blank_rows(raw)
    row_numbers = np.arange(len(raw)) + 2
    if empty_rows.any():
        row_numbers = row_numbers[~empty_rows]
        raw = raw.loc[~empty_rows].reset_index(drop=True)
    parsed, extras, duplicated = xs.parse_columns(raw)
    del raw  # every check below works on the parsed columns
    _release_arrow_memory()
    n = parsed.n_rows
    c = _Collector(source, row_numbers)
    R, V, B = parsed.raw, parsed.values, parsed.bad
    blank = {k: (parsed.uniques[k] == "")[parsed.codes[k]] for k in R}
    formula = parsed.formula

    # --- header and rows --------------------------------------------------------------
    if n == 0:
        c.file("no_rows", "", "the file has a header but no data rows: an extract needs at least one "
               "referral episode")
    if empty_rows.any():
        first = np.flatnonzero(empty_rows)[:10] + 2
        c.file("blank_row", "", f"{int(empty_rows.sum())} blank row(s) ignored (first rows: "
               f"{', '.join(map(str, first))})")
    _header_issues(c, parsed, extras, duplicated)

    # --- spreadsheet formulas (CSV injection) -----------------------------------------
    for name in R:
        c.rows("spreadsheet_formula", name, formula[name], R[name],
               "begins with =, +, - or @: a spreadsheet would run it as a formula (CSV injection); export "
               "the value, not a formula")

    # --- blanks and unparseable values ------------------------------------------------
    for name in ("child_id", "episode_id", "la_code", "lsoa_code", "referral_date"):
        if name in R:
            c.rows("required_blank", name, blank[name], "", f"{name} is required")
    unparseable = {"date": ("bad_date", "not a date (use YYYY-MM-DD or DD/MM/YYYY)"),
                   "bool": ("bad_bool", "not true/false, 1/0, y/n, yes/no or t/f"),
                   "flag": ("bad_bool", "not true/false, 1/0, y/n, yes/no or t/f"),
                   "age": ("bad_age", "not a whole number of years"),
                   "gender": ("unknown_gender", "not male/female/other/unknown or 1/2/9/0"),
                   "ethnicity": ("unknown_ethnicity", "not a CIN ethnicity code or group name"),
                   "cpp_category": ("unknown_cpp_category",
                                    "not neglect/physical/sexual/emotional/multiple (N/P/S/E/M)")}
    for name in R:
        kind = xs.COLUMN_BY_NAME[name].kind
        if kind in unparseable:
            rule, reason = unparseable[kind]
            c.rows(rule, name, B[name].to_numpy() & ~formula[name], R[name], reason)
    if parsed.unknown_factors is not None:
        unknown = parsed.unknown_factors
        unknown = unknown[~formula["assessment_factors"][unknown["pos"].to_numpy()]]
        c.at("unknown_factor", "assessment_factors", unknown["pos"].to_numpy(),
             unknown["token"].to_numpy(),
             ["not a CIN factor code, factor name or DfE c3 column name"] * len(unknown))
    if "ethnicity" in R:
        c.rows("blank_ethnicity", "ethnicity", blank["ethnicity"], "", "blank: read as unknown")
    if "gender" in R:
        c.rows("blank_gender", "gender", blank["gender"], "", "blank: read as unknown")
    for name in xs.STAGE_FLAGS:
        if name in R and blank[name].any():
            rows = c.row_numbers[np.flatnonzero(blank[name])[:10]]
            c.file("blank_flag", name, f"{int(blank[name].sum())} blank value(s) read as false "
                   f"(first rows: {', '.join(map(str, rows))})")

    # --- referral date ----------------------------------------------------------------
    ref = V.get("referral_date", pd.Series(pd.NaT, index=pd.RangeIndex(n), dtype="datetime64[ns]"))
    for name in ("referral_date",) + xs.STAGE_DATES:
        if name in V:
            c.rows("date_in_future", name, (V[name] > today).to_numpy(), R[name],
                   f"after today ({today:%Y-%m-%d}): an extract records what has happened")
    if "referral_date" in R:
        c.rows("referral_date_before_2000", "referral_date",
               (ref < xs.EARLIEST_PLAUSIBLE_REFERRAL).to_numpy(), R["referral_date"],
               "before 2000-01-01: check the date")

    # --- age --------------------------------------------------------------------------
    age = pd.Series(pd.NA, index=pd.RangeIndex(n), dtype="Int64")
    pre_birth = np.zeros(n, dtype=bool)
    given = V.get("age_at_referral")
    if given is not None:
        out = ((given < 0) | (given > 17)).fillna(False).to_numpy(dtype=bool)
        c.rows("age_out_of_range", "age_at_referral", out, R["age_at_referral"],
               "age at referral must be 0-17 completed years")
        age = given.where(~out)
    if "date_of_birth" in V:
        dob = V["date_of_birth"]
        both = dob.notna() & ref.notna()
        after = (both & (dob > ref)).to_numpy()
        limit = ref + pd.DateOffset(months=xs.PRE_BIRTH_MONTHS)
        too_late = after & (dob > limit).to_numpy()
        pre_birth = after & ~too_late
        c.rows("dob_after_referral", "date_of_birth", too_late, R["date_of_birth"],
               f"more than {xs.PRE_BIRTH_MONTHS} months after referral_date")
        c.rows("pre_birth_referral", "date_of_birth", pre_birth, R["date_of_birth"],
               "after referral_date: a pre-birth referral, age set to 0")
        from_dob = xs.completed_years(dob, ref).where(~pd.Series(after)).astype("Int64")
        from_dob = from_dob.mask(pd.Series(pre_birth), 0)
        old = (from_dob > 17).fillna(False).to_numpy(dtype=bool)
        c.rows("age_out_of_range", "date_of_birth", old, R["date_of_birth"],
               "child would be 18 or over at referral_date")
        from_dob = from_dob.where(~old)
        if given is not None:
            diff = (given - from_dob).abs()
            mismatch = (diff > 1).fillna(False).to_numpy(dtype=bool)
            fd = from_dob.astype(object).to_numpy()
            reasons = _sparse(mismatch, lambda p: f"date_of_birth gives age {fd[p]}")
            c.rows("age_mismatch", "age_at_referral", mismatch, R["age_at_referral"], reasons)
            age = age.fillna(from_dob)
        else:
            age = from_dob
    present = [a for a in xs.AGE_COLUMNS if a in R]
    if present:
        none = np.logical_and.reduce([blank[a] for a in present])
        c.rows("age_missing", present[-1], none, "", "give date_of_birth or age_at_referral")
    parsed.age = age
    parsed.pre_birth = pd.Series(pre_birth)

    # --- geography --------------------------------------------------------------------
    table = lsoa_table
    cur_col = table["la_code"].astype(str).str.upper().to_numpy(dtype=object)
    old_col = (table["la_code_pre2019"].astype(str).str.upper().to_numpy(dtype=object)
               if "la_code_pre2019" in table.columns else cur_col)
    known_las = set(cur_col) | set(old_col)
    la_ok = np.ones(n, dtype=bool)
    if "la_code" in R:
        la = R["la_code"]
        u = pd.Series(parsed.uniques["la_code"], dtype=object)
        la_ok = (u.str.match(xs.LA_CODE_RE) & u.isin(known_las)).to_numpy(dtype=bool)
        la_ok = la_ok[parsed.codes["la_code"]]
        c.rows("unknown_la_code", "la_code", ~la_ok & ~blank["la_code"] & ~formula["la_code"], la,
               "not a children's services authority code (E06/E08/E09/E10) in the reference table")
    if "lsoa_code" in R:
        lsoa = R["lsoa_code"]
        index = pd.Index(table["lsoa_code"].astype(str).str.upper())
        pos = index.get_indexer(parsed.uniques["lsoa_code"])[parsed.codes["lsoa_code"]]
        found = pos >= 0
        c.rows("unknown_lsoa", "lsoa_code", ~found & ~blank["lsoa_code"] & ~formula["lsoa_code"], lsoa,
               "not an LSOA 2011 code in the reference table")
        cur = np.where(found, cur_col[pos], None)
        old = np.where(found, old_col[pos], None)
        parsed.lsoa_la_code = pd.Series(cur, dtype=object)
        if "la_code" in R:
            given_la = R["la_code"].to_numpy(dtype=object)
            before = (ref < xs.GEOGRAPHY_CHANGE).to_numpy() | ref.isna().to_numpy()
            match = (given_la == cur) | (before & (given_la == old))
            outside = found & la_ok & ~blank["la_code"] & ~match
            reasons = _sparse(outside, lambda p: f"this LSOA lies in {cur[p]}, not {given_la[p]}")
            c.rows("lsoa_outside_la", "lsoa_code", outside, lsoa, reasons)

    # --- duplicate episodes -----------------------------------------------------------
    if "episode_id" in R:
        ep = R["episode_id"]
        codes, uniques = pd.factorize(ep)
        _, first = np.unique(codes, return_index=True)
        first_pos = first[codes]
        dup = (np.arange(n) != first_pos) & ~blank["episode_id"]
        c.rows("duplicate_episode_id", "episode_id", dup, ep,
               _sparse(dup, lambda p: f"duplicates row {c.row(first_pos[p])}"))

    # --- pathway dates ----------------------------------------------------------------
    prev = ref.to_numpy(dtype="datetime64[ns]").copy()
    prev_name = np.full(n, "referral_date", dtype=object)
    for name in xs.PATHWAY_DATES:
        if name not in V:
            continue
        d = V[name].to_numpy(dtype="datetime64[ns]")
        has, has_prev = ~np.isnat(d), ~np.isnat(prev)
        early = has & has_prev & (d < prev)
        if early.any():
            pn, pv = prev_name, prev
            reasons = _sparse(early, lambda p: f"before {pn[p]} ({_fmt_date(pv[p])})")
            c.rows("date_order", name, early, R[name], reasons)
        later = has & (~has_prev | (d > prev))
        prev = np.where(later, d, prev)
        prev_name = np.where(later, name, prev_name)
    if "lac_date" in V:
        early = (V["lac_date"] < ref).to_numpy()
        c.rows("date_order", "lac_date", early, R["lac_date"], "before referral_date")

    # --- stage flags ------------------------------------------------------------------
    F = {k: _arr(V[k].fillna(False)) for k in xs.STAGE_FLAGS if k in V}
    if "referral_nfa" in F:
        later = [k for k in xs.STAGE_FLAGS[1:] if k in F]
        anylater = np.logical_or.reduce([F[k] for k in later]) if later else np.zeros(n, bool)
        bad = F["referral_nfa"] & anylater
        reasons = _sparse(bad, lambda p: "later stage(s) recorded: "
                          + ", ".join(k for k in later if F[k][p]))
        c.rows("nfa_with_later_stage", "referral_nfa", bad, R["referral_nfa"], reasons)
    pairs = (("icpc_without_s47", "icpc", "s47"), ("cpp_without_icpc", "cpp", "icpc"),
             ("s47_without_assessment", "s47", "assessment"),
             ("lac_without_assessment", "lac", "assessment"))
    for rule, stage, needs in pairs:
        if stage in F and needs in F:
            c.rows(rule, stage, F[stage] & ~F[needs], R[stage], f"{stage} is true but {needs} is not")
    if "assessment_factors" in R and "assessment" in F:
        c.rows("factors_without_assessment", "assessment_factors",
               ~blank["assessment_factors"] & ~F["assessment"], R["assessment_factors"],
               "factors are recorded at the end of an assessment, but assessment is not true")
    if "cpp" in F:
        cat_blank = blank["cpp_category"] if "cpp_category" in R else np.ones(n, dtype=bool)
        c.rows("cpp_without_category", "cpp_category", F["cpp"] & cat_blank, "",
               "cpp is true but cpp_category is blank")
        if "cpp_category" in R:
            c.rows("cpp_category_without_cpp", "cpp_category", ~cat_blank & ~F["cpp"],
                   R["cpp_category"], "cpp_category given but cpp is not true")
    for name in xs.STAGE_DATES:
        stage = name.removesuffix("_date")
        if name in V and stage in F:
            c.rows("date_without_flag", name, V[name].notna().to_numpy() & ~F[stage], R[name],
                   f"{name} given but {stage} is not true")

    c.issues.sort(key=lambda i: (i.row is not None, i.row or 0))
    return ValidationReport(source=source, n_rows=n, issues=c.issues), parsed


def validate_extract(raw: pd.DataFrame, lsoa_table: pd.DataFrame, source: str,
                     today=None) -> ValidationReport:
    """Check an all-string extract against the schema and the LSOA reference table.

    Parameters
    ----------
    raw
        The file read with every column as a string (``dtype=str, keep_default_na=False``).
    lsoa_table
        Reference table with ``lsoa_code``, ``la_code`` and ``la_code_pre2019``.
    source
        File name to quote in every issue.
    today
        Date for the "referral in the future" check (default: today); fixed in tests.
    """
    return check_extract(raw, lsoa_table, source, today)[0]


def normalise_extract(raw: pd.DataFrame, lsoa_table: pd.DataFrame, salt: bytes) -> xs.Extract:
    """Validate ``raw`` (all-string frame) and return its typed, pseudonymised form.

    Raises
    ------
    ValueError
        If the extract has validation errors (warnings are allowed): a model must never
        see rows the validator rejected.
    """
    report, parsed = check_extract(raw, lsoa_table, source="<extract>")
    if not report.ok:
        raise ValueError("extract has validation errors:\n" + report.format(max_per_rule=10))
    return xs.build_extract(parsed, salt)
