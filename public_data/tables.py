"""Loaders for the reference tables in data/reference, with explicit dtypes.

Everyone else (simulator, models, reports) reads the tables through these functions, so codes
stay strings ("846", never 846), counts stay int64 and flags stay bool wherever they are used.
Tables at the default path are read once and cached; callers get a copy they may modify.
Columns that can be blank by design use pandas' missing-aware types: ``in_force_from`` and
``in_force_to`` are strings with NaN, ``idaci_published`` is float with NaN and
``idaci_published_rank`` is nullable ``Int64`` (blank for the three pre-2019 authorities).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pandas as pd

from workflows import paths
from workflows.errors import UserError

LSOA_DTYPES: dict[str, str] = {
    "lsoa_code": "str", "lsoa_name": "str", "lad19_code": "str", "lad19_name": "str",
    "la_code": "str", "la_name": "str", "la_code_pre2019": "str", "la_name_pre2019": "str",
    "region_code": "str", "region_name": "str", "idaci_rank": "int64", "idaci_decile": "int64",
    "idaci_score": "float64", "idaci_score_imputed": "bool", "children_0_15": "int64",
}
LA_DTYPES: dict[str, str] = {
    "la_code": "str", "la_name": "str", "region_code": "str", "region_name": "str",
    "old_la_code": "str", "in_force_from": "str", "in_force_to": "str", "n_lsoa": "int64",
    "children_0_15": "int64", "idaci_mean": "float64", "idaci_published": "float64",
    "idaci_published_rank": "Int64",
}
FACTOR_PREVALENCE_DTYPES: dict[str, str] = {
    "factor": "str", "code": "str", "c3_column": "str", "label": "str", "year": "int64",
    "episodes": "int64", "episodes_with_any_factor": "int64", "share": "float64",
}


def _read(path: Path, dtypes: dict[str, str]) -> pd.DataFrame:
    """Read one reference CSV, insisting on exactly the documented columns."""
    if not path.exists():
        raise UserError(f"missing reference table {path}; rebuild it with "
                        "`python -m workflows build-reference`")
    table = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""])
    if list(table.columns) != list(dtypes):
        raise UserError(f"{path} has columns {list(table.columns)}, expected {list(dtypes)}")
    return table


@functools.lru_cache(maxsize=8)
def _cached(path: str, kind: str) -> pd.DataFrame:
    return _read(Path(path), _DTYPES[kind])


def _load(path: str | os.PathLike | None, kind: str) -> pd.DataFrame:
    """A fresh copy of a table; the default path is cached, explicit paths are re-read."""
    if path is None:
        return _cached(str(paths.REFERENCE_DIR / f"{kind}.csv"), kind).copy()
    return _read(Path(path), _DTYPES[kind])


_DTYPES = {"lsoa": LSOA_DTYPES, "la": LA_DTYPES, "factor_prevalence": FACTOR_PREVALENCE_DTYPES}


def load_lsoa_table(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per LSOA 2011 in England: authority, region, IDACI rank/decile/score, children."""
    return _load(path, "lsoa")


def load_la_table(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per children's services authority (151 April-2019 plus 3 pre-2019)."""
    return _load(path, "la")


def load_factor_prevalence(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """National share of assessments with each factor of ``models.vocabulary.FACTORS``."""
    return _load(path, "factor_prevalence")
