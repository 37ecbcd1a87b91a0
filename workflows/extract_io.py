"""Reading a case-level extract from disk and turning it into a validated :class:`Extract`.

The file is read with every column as a string so that the validator sees exactly what the
analyst wrote (no silent coercion of ``01/02/2021`` or ``007``).  CSV (also ``.csv.gz``)
and Parquet are accepted; the extension decides.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd

from models.extract_schema import COLUMN_BY_NAME, Extract, build_extract, normalise_header
from models.pseudonymise import load_or_create_salt
from models.validation import ValidationReport, check_extract
from workflows.errors import UserError

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: File types people export by mistake, and what to do instead.
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")
#: How many problem rows a file-level error lists (all are counted).
MAX_LISTED = 20
#: Bytes read to recognise what a file is before parsing it.
SNIFF_BYTES = 64 * 1024
SAVE_AS_CSV = "in Excel: File > Save As > 'CSV UTF-8 (Comma delimited) (*.csv)'"
#: Start of a file -> what it is (checked before any parsing).
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx workbook?), not CSV text: save the sheet as CSV "
                    f"({SAVE_AS_CSV})"),
    (b"\xd0\xcf\x11\xe0", f"an old Excel .xls workbook, not CSV text: save the sheet as CSV ({SAVE_AS_CSV})"),
    (b"PAR1", "a Parquet file, not CSV text: give it the .parquet extension"),
    (b"\x1f\x8b", "gzip-compressed: give it the .csv.gz extension"),
    (b"\xff\xfe", f"UTF-16 text: save it as UTF-8 ({SAVE_AS_CSV})"),
    (b"\xfe\xff", f"UTF-16 text: save it as UTF-8 ({SAVE_AS_CSV})"),
)
OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}
_BOM = b"\xef\xbb\xbf"


def check_input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path if it names a readable regular file; otherwise a UserError that
    says what is there instead (nothing, a folder, a device, a file that cannot be read)."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise UserError(f"{path}: file not found (a link to {os.readlink(path)}, which does not exist)")
        parent = next((p for p in path.parents if p.exists()), None)
        hint = "" if parent == path.parent else f" (the folder {path.parent} does not exist either)"
        raise UserError(f"{path}: file not found{hint}")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file; give the path of the {what} itself")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file; give the path of the {what} itself")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as err:
        raise UserError(f"{path}: cannot be read: {err.strerror or err}") from None
    return path


def check_input_folder(folder: str | os.PathLike, needs: str) -> Path:
    """``folder`` as a Path if it is a folder; otherwise a UserError saying what is there
    instead (nothing, a file).  ``needs`` says which folder the verb wants."""
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder}: no such folder; give {needs}")
    if not folder.is_dir():
        raise UserError(f"{folder}: is a file, not a folder; give {needs}")
    return folder


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(SPREADSHEET_SUFFIXES):
        raise UserError(f"{path}: unsupported file type: a spreadsheet workbook; save the sheet as CSV "
                        f"({SAVE_AS_CSV}) or give a .csv, .csv.gz or .parquet file")
    raise UserError(f"{path}: unsupported file type; give a .csv, .csv.gz or .parquet file")


def _open_bytes(path: Path):
    if path.name.lower().endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")


def _head(path: Path) -> bytes:
    """The first bytes of the file (decompressed for .csv.gz)."""
    import gzip
    import zlib

    try:
        with _open_bytes(path) as handle:
            return handle.read(SNIFF_BYTES)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise UserError(f"{path}: cannot read it as csv.gz: not a valid gzip file ({err})") from None


def _sniff_csv(path: Path, head: bytes) -> None:
    """Refuse, before parsing, what is plainly not CSV text."""
    if not head.removeprefix(_BOM).strip():
        raise UserError(f"{path}: the file is empty (no header row)")
    for magic, what in MAGIC:
        if head.startswith(magic):
            if magic == b"\x1f\x8b" and path.name.lower().endswith(".gz"):
                continue  # doubly compressed: left to the reader
            raise UserError(f"{path}: cannot read it as csv: the file is {what}")
    if b"\x00" in head:
        raise UserError(f"{path}: cannot read it as csv: the file holds binary data (NUL bytes), not CSV text; "
                        f"give the extract as CSV ({SAVE_AS_CSV}) or Parquet")


def _header_fields(first: bytes) -> list[str]:
    line = first.removeprefix(_BOM).decode("utf-8").rstrip("\r\n")
    return next(csv.reader([line])) if line else []


def _check_delimiter(path: Path, first: bytes) -> None:
    """A header that splits into schema columns on ';', tab or '|' but not on ',' was saved
    with another delimiter (Excel in many European locales uses ';')."""
    try:
        line = first.removeprefix(_BOM).decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return  # reported by the row scan
    try:
        known = sum(normalise_header(h) in COLUMN_BY_NAME for h in _header_fields(first))
    except csv.Error:
        return  # reported by the row scan
    for delimiter, name in OTHER_DELIMITERS.items():
        other = sum(normalise_header(h.strip('"')) in COLUMN_BY_NAME for h in line.split(delimiter))
        if other >= 3 and other > known:
            shown = "\\t" if delimiter == "\t" else delimiter
            raise UserError(f"{path}: row 1 (the header) is separated by {name} ('{shown}'), not commas: "
                            f"save the file as comma-separated CSV ({SAVE_AS_CSV}), or replace the delimiter")


def _bad_utf8_column(fields: list[bytes], header: list[str]) -> tuple[str, bytes]:
    """The first field of a row that is not UTF-8, as (column name, the field's bytes)."""
    for j, field in enumerate(fields):
        try:
            field.decode("utf-8")
        except UnicodeDecodeError:
            name = header[j] if j < len(header) else f"{j + 1} (beyond the header)"
            return name, field
    return "", b""


def _describe_bytes(field: bytes) -> str:
    """A field that is not UTF-8, shown as what it most likely was (Windows-1252)."""
    bad = next((b for b in field if b >= 0x80), None)
    text = field.decode("cp1252", errors="replace").strip()
    return f"byte 0x{bad:02x} (the cell reads {text!r} as Windows-1252 text)" if bad is not None else ""


def scan_csv(path: Path) -> tuple[list[str], int]:
    """One streaming pass over a CSV file: every row that is not UTF-8 text and every row
    whose number of fields differs from the header's, with spreadsheet row numbers (header
    = row 1).  Raises a UserError listing them all; returns (header names, data rows).

    Rows are lines unless the file quotes a value (then the csv module reads the records,
    so a quoted value spanning lines is one row, as in a spreadsheet).  Memory stays at
    one line whatever the file's size.
    """
    with _open_bytes(path) as handle:
        first = handle.readline()
        if b"\r" in first.rstrip(b"\r\n") or b'"' in first:
            return _scan_csv_records(path)
        try:
            header = _header_fields(first)
        except UnicodeDecodeError:
            header = [f.decode("utf-8", errors="replace") for f in first.removeprefix(_BOM).rstrip(b"\r\n").split(b",")]
            encoding = [(1, "", "the header row: " + _describe_bytes(first))]
        else:
            encoding = []
        expected = first.count(b",")
        fields_wrong: list[tuple[int, int]] = []
        n_enc, n_fields, rows = len(encoding), 0, 0
        for row, line in enumerate(handle, start=2):
            rows += 1
            if b'"' in line:
                return _scan_csv_records(path)
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                n_enc += 1
                if len(encoding) < MAX_LISTED:
                    column, field = _bad_utf8_column(line.rstrip(b"\r\n").split(b","), header)
                    encoding.append((row, column, _describe_bytes(field)))
            count = line.count(b",")
            if count != expected and line.strip():
                n_fields += 1
                if len(fields_wrong) < MAX_LISTED:
                    fields_wrong.append((row, count + 1, ""))
    _raise_scan_problems(path, len(header), encoding, n_enc, fields_wrong, n_fields)
    return header, rows


def _scan_csv_records(path: Path) -> tuple[list[str], int]:
    """:func:`scan_csv` for a file with quoted values: the csv module finds the records."""
    import io
    import re

    surrogate = re.compile("[\udc80-\udcff]")  # undecodable bytes, kept by surrogateescape
    encoding, fields_wrong = [], []
    n_enc = n_fields = rows = 0
    with _open_bytes(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        header = next(reader, [])
        if surrogate.search(",".join(header)):
            n_enc += 1
            encoding.append((1, "", "the header row"))
        header = [surrogate.sub("?", h) for h in header]
        for row_number, record in enumerate(reader, start=2):
            rows += 1
            if surrogate.search(",".join(record)):
                n_enc += 1
                if len(encoding) < MAX_LISTED:
                    j = next(j for j, v in enumerate(record) if surrogate.search(v))
                    field = record[j].encode("utf-8", errors="surrogateescape")
                    name = header[j] if j < len(header) else f"{j + 1} (beyond the header)"
                    encoding.append((row_number, name, _describe_bytes(field)))
            if len(record) != len(header) and any(v.strip() for v in record):
                n_fields += 1
                if len(fields_wrong) < MAX_LISTED:
                    spans = sum(v.rstrip("\r\n").count("\n") for v in record)
                    fields_wrong.append((row_number, len(record), f" (a quoted value runs over {spans + 1} lines: "
                                         "is a double quote left open?)" if spans else ""))
    _raise_scan_problems(path, len(header), encoding, n_enc, fields_wrong, n_fields)
    return header, rows


def _raise_scan_problems(path: Path, n_header: int, encoding: list, n_enc: int,
                         fields_wrong: list, n_fields: int) -> None:
    lines = []
    if n_enc:
        lines.append(f"  {n_enc} row(s) are not UTF-8 text:")
        for row, column, what in encoding:
            lines.append(f"    row {row}" + (f", column {column}" if column else "") + (f": {what}" if what else ""))
        if n_enc > len(encoding):
            lines.append(f"    ... and {n_enc - len(encoding)} more")
        lines.append(f"  Save the file as UTF-8 ({SAVE_AS_CSV}), or convert it to UTF-8.")
    if n_fields:
        lines.append(f"  {n_fields} row(s) do not have the {n_header} fields of the header row:")
        for row, count, note in fields_wrong:
            lines.append(f"    row {row}: {count} field(s){note}")
        if n_fields > len(fields_wrong):
            lines.append(f"    ... and {n_fields - len(fields_wrong)} more")
        lines.append("  A value holding a comma must be in double quotes; a row cut short has lost its last values.")
    if lines:
        raise UserError(f"{path}: cannot read it as csv:\n" + "\n".join(lines))


def _as_strings(col: pd.Series) -> pd.Series:
    """Render a typed Parquet column as the strings a CSV would have held ('' for missing)."""
    missing = col.isna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(col):
        out = col.dt.strftime("%Y-%m-%d")
    elif pd.api.types.is_bool_dtype(col):
        out = col.map({True: "true", False: "false"})
    elif pd.api.types.is_float_dtype(col):
        vals = col.to_numpy(dtype=float, na_value=np.nan)
        strs = col.astype(str).to_numpy(dtype=object)
        whole = np.isfinite(vals) & (vals == np.round(vals))
        strs[whole] = vals[whole].astype("int64").astype(str)  # age 5.0 -> "5"
        out = pd.Series(strs, index=col.index)
    else:
        out = col.astype(str)
    out = out.astype(object)
    out[missing] = ""
    return out


def _read_parquet(path: Path, head: bytes) -> pd.DataFrame:
    if not head.startswith(b"PAR1"):
        what = ("it looks like text (CSV? then give it the .csv extension)" if head and b"\x00" not in head
                else "it does not start with the Parquet signature PAR1")
        raise UserError(f"{path}: cannot read it as parquet: not a Parquet file; {what}")
    if len(head) < 12:
        raise UserError(f"{path}: cannot read it as parquet: the file is truncated")
    try:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise UserError(f"{path}: column(s) {', '.join(dupes)} given more than once")
        frame = pd.read_parquet(path)
    except UserError:
        raise
    except Exception as err:  # pyarrow raises its own types for corrupt Parquet
        raise UserError(f"{path}: cannot read it as parquet: {err}") from None
    return pd.DataFrame({c: _as_strings(frame[c]) for c in frame.columns})


def read_extract_raw(path: str | os.PathLike) -> pd.DataFrame:
    """Read an extract with every column as a string (blank cells are ``''``).

    The header is kept as written (a column name given twice stays twice, for the
    validator to report); blank lines are kept as blank rows, so that row positions are
    spreadsheet rows (header = row 1).

    Raises
    ------
    UserError
        If the path is not a readable file, is not CSV (UTF-8 text, comma-separated, the
        same number of fields on every row) or Parquet, or is empty; every row at fault is
        named.
    """
    path = check_input_file(path, what="extract")
    kind = _kind(path)
    head = _head(path)
    if kind == "parquet":
        return _read_parquet(path, head)
    _sniff_csv(path, head)
    first = head.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n", 1)[0]  # any line ending
    if not first.removeprefix(_BOM).strip():
        raise UserError(f"{path}: row 1 is blank: the first row must be the header (the column names)")
    _check_delimiter(path, first)
    import gzip
    import zlib

    try:
        header, _ = scan_csv(path)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=False,
                            encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty (no header row)") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise UserError(f"{path}: cannot read it as csv.gz: the compressed data is damaged ({err})") from None
    except csv.Error as err:  # e.g. a quote never closed: the rest of the file is one value
        raise UserError(f"{path}: cannot read it as csv: {err} (is a double quote left open?)") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise UserError(f"{path}: cannot read it as csv: {err}") from None
    if len(header) == frame.shape[1]:
        frame.columns = header  # as written: pandas renames a repeated name to name.1
    return frame


def load_extract(path: str | os.PathLike, lsoa_table: pd.DataFrame,
                 salt: bytes | None = None, today=None) -> tuple[Extract, ValidationReport]:
    """Read, validate and normalise an extract.

    ``salt`` defaults to the per-machine salt (:func:`load_or_create_salt`) so pseudonyms
    are stable across runs.  Raises ``UserError(exit_code=2)`` carrying the formatted
    report when the extract has errors.
    """
    # The raw frame is handed over, not kept: it is freed once parsed.
    report, parsed = check_extract(read_extract_raw(path), lsoa_table, source=str(path), today=today)
    if not report.ok:
        raise UserError(report.format(max_per_rule=50), exit_code=2)
    if salt is None:
        salt = load_or_create_salt()
    return build_extract(parsed, salt), report


# ---------------------------------------------------------------------------------------
# What an analysis needs from a valid extract, checked before anything is fitted
# ---------------------------------------------------------------------------------------

#: Fewer referral episodes than this: no gradient model is worth fitting.
MIN_EPISODES_GRADIENT = 50
#: Fewer assessed episodes than this: no latent class (or joint) model is worth fitting.
MIN_ASSESSED = 50
#: Fewer LAs than this: the between-LA (contextual) effect and the LA SDs are set by the priors.
MIN_LAS_CONTEXTUAL = 3


def require_episodes(path, episodes: pd.DataFrame, what: str = "the social gradient model",
                     minimum: int = MIN_EPISODES_GRADIENT) -> None:
    """A UserError, before any fit, when the extract has too few episodes for ``what``."""
    n = len(episodes)
    if n < minimum:
        raise UserError(f"{path}: {n} referral episode(s): {what} needs at least {minimum}; "
                        "nothing was fitted")


def require_assessed(path, episodes: pd.DataFrame, factors: pd.DataFrame, what: str,
                     minimum: int = MIN_ASSESSED) -> None:
    """A UserError, before any fit, when too few episodes were assessed (or too few factors
    recorded at assessment) for a model of the assessment factors."""
    assessed = episodes["assessment"].fillna(False).to_numpy(dtype=bool)
    n = int(assessed.sum())
    if n < minimum:
        raise UserError(f"{path}: {n} assessed episode(s) (assessment = true): {what} needs at least "
                        f"{minimum}; check the 'assessment' and 'assessment_factors' columns. Nothing was fitted")
    recorded = int(factors.iloc[np.flatnonzero(assessed)].any(axis=0).sum())
    if recorded < 2:
        raise UserError(f"{path}: {recorded} assessment factor(s) recorded in the {n} assessed episodes: "
                        f"{what} needs several; check the 'assessment_factors' column. Nothing was fitted")


def contextual_note(path, episodes: pd.DataFrame) -> str | None:
    """What to tell the user before fitting when the extract has too few LAs for the
    between-LA (contextual, inverse intervention) effect (None when it has enough)."""
    n_la = int(episodes["la_code"].nunique())
    if n_la >= MIN_LAS_CONTEXTUAL:
        return None
    return (f"note: {path} holds episodes of {n_la} local authorit{'y' if n_la == 1 else 'ies'}: the "
            "contextual (between-LA, inverse intervention) effect and the LA SDs cannot be estimated from it "
            f"(they need {MIN_LAS_CONTEXTUAL} or more LAs) and will be set by the priors: do not cite them. "
            "The within-LA gradient is estimated from the data.")

