"""The case-level extract: column specifications, vectorised parsers and normalisation.

An LA analyst supplies one row per referral episode (modelled on the DfE children in need
census).  The file is read with every column as a string so that nothing is coerced before
validation (:mod:`models.validation`) has had a chance to say what is wrong and where.
Only an extract that validated without errors is normalised into :class:`Extract`, the
typed, pseudonymised form the models use (:func:`models.validation.normalise_extract`
validates, then calls :func:`build_extract`).  The human-readable data dictionary is
``data/extract_schema.md``; keep the two in step.

Everything here is vectorised (pandas / numpy) because real extracts run to hundreds of
thousands of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models import vocabulary as vocab
from models.pseudonymise import pseudonymise_ids

# ---------------------------------------------------------------------------------------
# Column specifications (data, so the validator, the docs and the tests share one list)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnSpec:
    """One extract column: header name, whether the column must be present, kind, meaning."""

    name: str
    required: bool
    kind: str  # id, la_code, lsoa_code, date, age, gender, ethnicity, bool, flag, factors, cpp_category
    description: str


COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("child_id", True, "id", "Child identifier (any string); pseudonymised on ingest."),
    ColumnSpec("episode_id", True, "id", "Referral episode identifier, unique in the file."),
    ColumnSpec("la_code", True, "la_code",
               "GSS code of the children's services authority (E06/E08/E09/E10)."),
    ColumnSpec("lsoa_code", True, "lsoa_code", "LSOA 2011 code of the child's home address."),
    ColumnSpec("referral_date", True, "date", "Date of the referral (YYYY-MM-DD or DD/MM/YYYY)."),
    ColumnSpec("date_of_birth", False, "date",
               "Date of birth (or expected date of birth for a pre-birth referral)."),
    ColumnSpec("age_at_referral", False, "age", "Age at referral in completed years, 0-17."),
    ColumnSpec("gender", True, "gender", "male/female/other/unknown or CIN codes 1/2/9/0."),
    ColumnSpec("ethnicity", True, "ethnicity", "CIN ethnicity code (WBRI, ...) or group name."),
    ColumnSpec("disability", False, "bool", "Child has a disability (blank = not recorded)."),
    ColumnSpec("referral_nfa", True, "flag", "Referral closed with no further action."),
    ColumnSpec("assessment", True, "flag", "An assessment was completed."),
    ColumnSpec("s47", True, "flag", "A section 47 enquiry was started."),
    ColumnSpec("icpc", True, "flag", "An initial child protection conference was held."),
    ColumnSpec("cpp", True, "flag", "A child protection plan was started."),
    ColumnSpec("lac", True, "flag", "The child became looked after."),
    ColumnSpec("assessment_factors", False, "factors",
               "Factors identified at the end of assessment, separated by ; , or |."),
    ColumnSpec("cpp_category", False, "cpp_category",
               "Category of abuse of the plan: neglect/physical/sexual/emotional/multiple."),
    ColumnSpec("assessment_date", False, "date", "Date the assessment was completed."),
    ColumnSpec("s47_date", False, "date", "Start date of the section 47 enquiry."),
    ColumnSpec("icpc_date", False, "date", "Date of the initial child protection conference."),
    ColumnSpec("cpp_date", False, "date", "Start date of the child protection plan."),
    ColumnSpec("lac_date", False, "date", "Date the child became looked after."),
)
COLUMN_BY_NAME: dict[str, ColumnSpec] = {c.name: c for c in COLUMNS}
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.required)
#: At least one of these must be present (age is derived from the date of birth if needed).
AGE_COLUMNS: tuple[str, str] = ("date_of_birth", "age_at_referral")
STAGE_FLAGS: tuple[str, ...] = ("referral_nfa",) + vocab.STAGES[1:]
#: Optional stage dates in pathway order (each must not precede the ones before it).
PATHWAY_DATES: tuple[str, ...] = ("assessment_date", "s47_date", "icpc_date", "cpp_date")
STAGE_DATES: tuple[str, ...] = PATHWAY_DATES + ("lac_date",)
DATE_COLUMNS: tuple[str, ...] = ("referral_date", "date_of_birth") + STAGE_DATES

#: A date of birth up to this many months after the referral is a pre-birth referral.
PRE_BIRTH_MONTHS = 9
#: Referrals before this date are suspicious (warning): the CIN census began in 2008-09.
EARLIEST_PLAUSIBLE_REFERRAL = pd.Timestamp("2000-01-01")
#: Local authority reorganisation of Bournemouth, Christchurch, Poole and Dorset.
GEOGRAPHY_CHANGE = pd.Timestamp("2019-04-01")

LA_CODE_RE = r"^E(06|08|09|10)\d{6}$"
LSOA_CODE_RE = r"^E01\d{6}$"
FACTOR_SEPARATORS = r"[;,|]"
#: CIN code meaning "no factors identified"; accepted and contributes no factor.
NO_FACTORS_CODE = "21"

# ---------------------------------------------------------------------------------------
# Code tables (keys are upper-cased so matching is case-insensitive)
# ---------------------------------------------------------------------------------------

TRUE_STRINGS = frozenset({"true", "1", "y", "yes", "t"})
FALSE_STRINGS = frozenset({"false", "0", "n", "no", "f"})
_BOOL_MAP: dict[str, bool] = {**{s: True for s in TRUE_STRINGS}, **{s: False for s in FALSE_STRINGS}}

GENDER_LOOKUP: dict[str, str] = {
    **{g.upper(): g for g in vocab.GENDERS},
    **{k.upper(): v for k, v in vocab.GENDER_CODES.items()},
}
ETHNICITY_LOOKUP: dict[str, str] = {
    **{e.upper(): e for e in vocab.ETHNICITIES},
    **{k.upper(): v for k, v in vocab.ETHNICITY_CODES.items()},
}
CPP_CATEGORY_LOOKUP: dict[str, str] = {
    **{c.upper(): c for c in vocab.CPP_CATEGORIES},
    "N": "neglect", "P": "physical", "S": "sexual", "E": "emotional", "M": "multiple",
}


def _factor_lookup() -> dict[str, str]:
    """Token (upper-cased CIN code, canonical name or c3 column name) -> canonical name."""
    table: dict[str, str] = {}
    for f in vocab.FACTORS:
        for token in (f.code, f.name, f.c3_column):
            key = token.upper()
            if table.get(key, f.name) != f.name:  # a token must never mean two factors
                raise RuntimeError(f"factor token {token!r} is ambiguous in the vocabulary")
            table[key] = f.name
    return table


FACTOR_LOOKUP: dict[str, str] = _factor_lookup()

# ---------------------------------------------------------------------------------------
# Vectorised parsers.  Each returns (parsed values, mask of non-blank values it could not
# parse); blank cells are missing values, never parse failures.
# ---------------------------------------------------------------------------------------


def clean_strings(s: pd.Series) -> pd.Series:
    """Strip surrounding whitespace; the raw frame is all strings, blanks are ''."""
    return s.astype(str).str.strip()


def parse_bool(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse true/false, 1/0, y/n, yes/no, t/f (any case) to a nullable boolean series."""
    clean = clean_strings(s)
    values = clean.str.lower().map(_BOOL_MAP).astype("boolean")
    bad = values.isna().to_numpy() & (clean != "").to_numpy()
    return values, pd.Series(bad, index=s.index)


def parse_date(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse ISO ``YYYY-MM-DD`` dates, falling back to UK ``DD/MM/YYYY``."""
    clean = clean_strings(s)
    iso = pd.to_datetime(clean, format="%Y-%m-%d", errors="coerce")
    todo = iso.isna() & clean.str.contains("/", regex=False)
    if todo.any():
        uk = pd.to_datetime(clean[todo], format="%d/%m/%Y", errors="coerce")
        iso = iso.astype("datetime64[ns]")
        iso[todo] = uk.astype("datetime64[ns]")
    iso = iso.astype("datetime64[ns]")
    bad = iso.isna().to_numpy() & (clean != "").to_numpy()
    return iso, pd.Series(bad, index=s.index)


def parse_age(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse a whole number of years (``5`` or ``5.0``); range is checked by the validator."""
    clean = clean_strings(s)
    num = pd.to_numeric(clean.where(clean != ""), errors="coerce")
    whole = num.notna() & (num == np.floor(num))
    bad = (clean != "") & ~whole
    return num.where(whole).astype("Int64"), bad


def parse_code(s: pd.Series, lookup: dict[str, str]) -> tuple[pd.Series, pd.Series]:
    """Map codes or names (case-insensitive) through ``lookup``; unmatched non-blanks are bad."""
    clean = clean_strings(s)
    values = clean.str.upper().map(lookup)
    bad = values.isna() & (clean != "")
    return values, bad


def split_factors(s: pd.Series) -> pd.DataFrame:
    """Long table of factor tokens: ``pos`` (row position), ``token`` (as written), ``factor``.

    ``factor`` is the canonical name, ``""`` for the no-factors code 21, NaN when unknown.
    """
    clean = clean_strings(s)
    has = clean != ""
    if not has.any():
        return pd.DataFrame({"pos": np.array([], dtype=np.int64), "token": [], "factor": []})
    pos = np.flatnonzero(has.to_numpy())
    parts = clean[has].str.split(FACTOR_SEPARATORS, regex=True)
    parts.index = pos
    long = parts.explode()
    tokens = long.astype(str).str.strip()
    keep = tokens != ""
    tokens = tokens[keep]
    lookup = {**FACTOR_LOOKUP, NO_FACTORS_CODE: ""}
    return pd.DataFrame({
        "pos": tokens.index.to_numpy(dtype=np.int64),
        "token": tokens.to_numpy(),
        "factor": tokens.str.upper().map(lookup).to_numpy(),
    })


def completed_years(born: pd.Series, on: pd.Series) -> pd.Series:
    """Age in completed years on date ``on`` for date of birth ``born`` (vectorised)."""
    years = on.dt.year - born.dt.year
    before_birthday = (on.dt.month < born.dt.month) | (
        (on.dt.month == born.dt.month) & (on.dt.day < born.dt.day))
    return (years - before_birthday.astype("Int64")).astype("Int64")


def year_ending_march(d: pd.Series) -> pd.Series:
    """DfE reporting year: 2021-04-01..2022-03-31 -> 2022 (the year ending 31 March)."""
    return (d.dt.year + (d.dt.month >= 4).astype(int)).astype("int64")


# ---------------------------------------------------------------------------------------
# Parsed form shared by the validator and normalisation
# ---------------------------------------------------------------------------------------


def normalise_header(name: object) -> str:
    """Header matching is case-insensitive and tolerates surrounding whitespace."""
    return str(name).strip().lower()


def spreadsheet_column(position: int) -> str:
    """Column ``position`` (0-based) as a spreadsheet shows it: ``4`` -> ``"5 (E)"``."""
    letters, k = "", position + 1
    while k:
        k, r = divmod(k - 1, 26)
        letters = chr(ord("A") + r) + letters
    return f"{position + 1} ({letters})"


#: A cell a spreadsheet would run as a formula (CSV injection): ``=``, ``+``, ``-`` or ``@``
#: first.  Numbers (``-1``, ``+44``) and a lone ``-`` or ``+`` (a placeholder some systems
#: export) are not formulas; they are left to the column's own check.
FORMULA_START = ("=", "+", "-", "@")
_NOT_A_FORMULA_RE = r"^([+-]?(\d+\.?\d*|\.\d+)|[+-])$"


def formula_mask(clean: pd.Series) -> np.ndarray:
    """True where a (stripped) value would be read by a spreadsheet as a formula."""
    starts = np.array(clean.str[:1].isin(FORMULA_START), dtype=bool)
    if starts.any():
        starts &= ~np.array(clean.str.match(_NOT_A_FORMULA_RE), dtype=bool)
    return starts


@dataclass
class ParsedExtract:
    """Typed columns parsed from the raw strings (internal: the validator fills it).

    ``values`` maps canonical column name -> parsed series (positional RangeIndex);
    ``bad`` maps column name -> boolean mask of unparseable cells.  Columns absent from
    the file are absent here.
    """

    n_rows: int
    raw: dict[str, pd.Series] = field(default_factory=dict)
    values: dict[str, pd.Series] = field(default_factory=dict)
    bad: dict[str, pd.Series] = field(default_factory=dict)
    codes: dict[str, np.ndarray] = field(default_factory=dict)  # row -> distinct value
    uniques: dict[str, np.ndarray] = field(default_factory=dict)  # cleaned distinct values
    factor_matrix: np.ndarray | None = None  # rows x FACTOR_NAMES, bool
    unknown_factors: pd.DataFrame | None = None  # pos (row position), token
    age: pd.Series | None = None  # derived age, Int64 (NA where it cannot be derived)
    pre_birth: pd.Series | None = None
    lsoa_la_code: pd.Series | None = None  # current-geography LA of each row's LSOA
    formula: dict[str, np.ndarray] = field(default_factory=dict)  # row masks: a spreadsheet formula
    positions: dict[str, int] = field(default_factory=dict)  # column name -> position in the header


def _factor_matrix(long: pd.DataFrame, n: int) -> np.ndarray:
    """Boolean n x factor matrix from a long token table (unknown and code 21 ignored)."""
    matrix = np.zeros((n, len(vocab.FACTOR_NAMES)), dtype=bool)
    known = long[long["factor"].notna() & (long["factor"] != "")]
    if len(known):
        col_of = {name: i for i, name in enumerate(vocab.FACTOR_NAMES)}
        matrix[known["pos"].to_numpy(), known["factor"].map(col_of).to_numpy()] = True
    return matrix


def parse_columns(raw: pd.DataFrame) -> tuple[ParsedExtract, list[tuple[int, str]], dict[str, list[int]]]:
    """Parse every known column of ``raw``.

    Each column is factorised and only its distinct values are cleaned and parsed, then
    broadcast back to rows: extracts repeat the same dates, codes and flags many times, so
    this is what keeps a million-row file to seconds.

    Returns the parsed extract, the unknown extra columns as (position, header as
    written), and each canonical name that occurs more than once in the header with every
    position it occupies (only the first is parsed).
    """
    n = len(raw)
    index = pd.RangeIndex(n)
    parsed = ParsedExtract(n_rows=n)
    extras: list[tuple[int, str]] = []
    duplicated: dict[str, list[int]] = {}
    for position, header in enumerate(raw.columns):
        name = normalise_header(header)
        if name not in COLUMN_BY_NAME:
            extras.append((position, str(header)))
            continue
        if name in parsed.raw:
            duplicated.setdefault(name, [parsed.positions[name]]).append(position)
            continue
        parsed.positions[name] = position
        codes, uniq = pd.factorize(raw.iloc[:, position])
        uniq = np.append(np.asarray(uniq, dtype=object), "")  # code -1 (missing) -> ""
        codes = np.where(codes < 0, len(uniq) - 1, codes)
        kind = COLUMN_BY_NAME[name].kind
        u = clean_strings(pd.Series(uniq, dtype=object))
        if kind in ("la_code", "lsoa_code"):  # GSS codes are upper case
            u = u.str.upper()
        u_obj = u.to_numpy(dtype=object)
        parsed.formula[name] = formula_mask(u)[codes]
        parsed.codes[name] = codes
        parsed.uniques[name] = u_obj
        parsed.raw[name] = pd.Series(u_obj[codes], index=index, dtype=object)
        bad_u = np.zeros(len(u_obj), dtype=bool)
        if kind in ("bool", "flag"):
            v_u, b = parse_bool(u)
        elif kind == "date":
            v_u, b = parse_date(u)
        elif kind == "age":
            v_u, b = parse_age(u)
        elif kind == "gender":
            v_u, b = parse_code(u, GENDER_LOOKUP)
        elif kind == "ethnicity":
            v_u, b = parse_code(u, ETHNICITY_LOOKUP)
        elif kind == "cpp_category":
            v_u, b = parse_code(u, CPP_CATEGORY_LOOKUP)
        else:
            v_u, b = None, bad_u
        bad_u = np.asarray(b, dtype=bool)
        if kind == "factors":
            long = split_factors(u)
            parsed.factor_matrix = _factor_matrix(long, len(u_obj))[codes]
            unknown = long[long["factor"].isna()]
            if len(unknown):  # expand unknown tokens to every row holding that value
                rows = pd.DataFrame({"row": np.arange(n), "pos": codes})
                unknown = rows.merge(unknown[["pos", "token"]], on="pos").sort_values(
                    ["row"], kind="stable")
                parsed.unknown_factors = pd.DataFrame(
                    {"pos": unknown["row"].to_numpy(), "token": unknown["token"].to_numpy()})
                bad_u[unknown["pos"].to_numpy()] = True
        if v_u is None:
            parsed.values[name] = parsed.raw[name]
        else:
            taken = v_u.take(codes) if hasattr(v_u, "take") else np.asarray(v_u)[codes]
            parsed.values[name] = pd.Series(np.asarray(taken) if not hasattr(taken, "array")
                                            else taken.array, index=index)
        parsed.bad[name] = pd.Series(bad_u[codes], index=index)
    if parsed.factor_matrix is None:
        parsed.factor_matrix = np.zeros((n, len(vocab.FACTOR_NAMES)), dtype=bool)
    return parsed, extras, duplicated


# ---------------------------------------------------------------------------------------
# The normalised extract
# ---------------------------------------------------------------------------------------


@dataclass
class Extract:
    """A validated, typed, pseudonymised extract.

    ``episodes``: one row per referral episode with canonical typed columns (dates of birth
    are dropped: age at referral is all the models need and the date identifies).
    ``factors``: boolean episode x factor matrix, index ``episode_id``, columns
    :data:`models.vocabulary.FACTOR_NAMES` in order.
    """

    episodes: pd.DataFrame
    factors: pd.DataFrame


def _flag(parsed: ParsedExtract, name: str) -> np.ndarray:
    """Stage flag as plain bool (blank read as False, as documented)."""
    if name not in parsed.values:
        return np.zeros(parsed.n_rows, dtype=bool)
    return parsed.values[name].fillna(False).to_numpy(dtype=bool)


def build_extract(parsed: ParsedExtract, salt: bytes) -> Extract:
    """Assemble :class:`Extract` from a parsed extract that validated without errors."""
    n = parsed.n_rows
    v = parsed.values
    ref = v["referral_date"]
    age = parsed.age.astype("int64")
    episodes = pd.DataFrame({
        "episode_id": v["episode_id"].to_numpy(dtype=object),
        "child_id": pseudonymise_ids(v["child_id"], salt).to_numpy(dtype=object),
        "la_code": parsed.lsoa_la_code.to_numpy(dtype=object),
        "lsoa_code": v["lsoa_code"].to_numpy(dtype=object),
        "referral_date": ref.to_numpy(),
        "year_ending_march": year_ending_march(ref).to_numpy(),
        "age_at_referral": age.to_numpy(),
        "age_group": pd.Categorical.from_codes(
            np.searchsorted([hi for _, hi in vocab.AGE_GROUP_BOUNDS], age.to_numpy()),
            categories=list(vocab.AGE_GROUPS)),
        "pre_birth": parsed.pre_birth.to_numpy(dtype=bool),
        "gender": pd.Categorical(v["gender"].fillna("unknown"), categories=list(vocab.GENDERS)),
        "ethnicity": pd.Categorical(v["ethnicity"].fillna("unknown"),
                                    categories=list(vocab.ETHNICITIES)),
        "disability": (v["disability"] if "disability" in v
                       else pd.Series(pd.NA, index=pd.RangeIndex(n), dtype="boolean")).array,
    })
    for flag in STAGE_FLAGS:
        episodes[flag] = _flag(parsed, flag)
    cat = v.get("cpp_category", pd.Series(np.nan, index=pd.RangeIndex(n), dtype=object))
    episodes["cpp_category"] = pd.Categorical(cat, categories=list(vocab.CPP_CATEGORIES))
    for col in STAGE_DATES:
        episodes[col] = (v[col] if col in v
                         else pd.Series(pd.NaT, index=pd.RangeIndex(n), dtype="datetime64[ns]")
                         ).to_numpy()

    factors = pd.DataFrame(parsed.factor_matrix, columns=list(vocab.FACTOR_NAMES),
                           index=pd.Index(episodes["episode_id"], name="episode_id"))
    return Extract(episodes=episodes, factors=factors)


def factor_code_table() -> pd.DataFrame:
    """The assessment-factor codes accepted in ``assessment_factors`` (for documentation)."""
    return pd.DataFrame([(f.code, f.name, f.c3_column, f.label) for f in vocab.FACTORS],
                        columns=["cin_code", "name", "c3_column", "label"])


__all__ = [
    "ColumnSpec", "COLUMNS", "REQUIRED_COLUMNS", "Extract", "build_extract",
    "parse_bool", "parse_date", "parse_age", "parse_code", "split_factors",
    "factor_code_table",
]
