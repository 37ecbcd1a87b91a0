"""Reading a case-level extract from disk and turning it into a validated :class:`Extract`.

The file is read with every column as a string so that the validator sees exactly what the
analyst wrote (no silent coercion of ``01/02/2021`` or ``007``).  CSV (also ``.csv.gz``)
and Parquet are accepted; the extension decides.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from models.extract_schema import Extract, build_extract
from models.pseudonymise import load_or_create_salt
from models.validation import ValidationReport, check_extract
from workflows.errors import UserError

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise UserError(f"{path}: unsupported file type; give a .csv, .csv.gz or .parquet file")


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


def read_extract_raw(path: str | os.PathLike) -> pd.DataFrame:
    """Read an extract with every column as a string (blank cells are ``''``).

    Raises
    ------
    UserError
        If the file is missing, unreadable, empty or not CSV/Parquet.
    """
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        if kind == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        frame = pd.read_parquet(path)
        return pd.DataFrame({c: _as_strings(frame[c]) for c in frame.columns})
    except UserError:
        raise
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty (no header row)") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise UserError(f"{path}: cannot read it as {kind}: {err}") from None
    except Exception as err:  # pyarrow raises its own types for corrupt Parquet
        raise UserError(f"{path}: cannot read it as {kind}: {err}") from None


def load_extract(path: str | os.PathLike, lsoa_table: pd.DataFrame,
                 salt: bytes | None = None, today=None) -> tuple[Extract, ValidationReport]:
    """Read, validate and normalise an extract.

    ``salt`` defaults to the per-machine salt (:func:`load_or_create_salt`) so pseudonyms
    are stable across runs.  Raises ``UserError(exit_code=2)`` carrying the formatted
    report when the extract has errors.
    """
    raw = read_extract_raw(path)
    report, parsed = check_extract(raw, lsoa_table, source=str(path), today=today)
    if not report.ok:
        raise UserError(report.format(max_per_rule=50), exit_code=2)
    if salt is None:
        salt = load_or_create_salt()
    return build_extract(parsed, salt), report
