"""Neighbourhood deprivation on one scale, and its within/between-LA (Mundlak) split.

The deprivation measure used throughout is the IDACI 2019 national rank expressed in
*decile units*: ``dep = 10 * (1 - (rank - 0.5) / n_lsoa)``, so 0 is the least deprived
LSOA in England, 10 the most deprived, and one unit is one decile step.  Published rates
of intervention are close to log-linear in decile (about x1.3 per step), which they are
not in the IDACI score itself, so effects "per decile step" are read straight off the
coefficients.  The IDACI score is kept alongside for users who prefer it.

The LA mean is the child-weighted mean over *all* the authority's LSOAs (its context),
not over the LSOAs that happen to appear in an extract.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Number of LSOAs (2011) in England ranked by IoD2019.
N_LSOA_ENGLAND = 32_844


def deprivation_decile_units(idaci_rank: pd.Series | np.ndarray, n_lsoa: int = N_LSOA_ENGLAND):
    """IDACI rank (1 = most deprived) -> deprivation in decile units (10 = most deprived)."""
    rank = np.asarray(idaci_rank, dtype=float)
    if np.any((rank < 1) | (rank > n_lsoa)):
        raise ValueError(f"IDACI ranks must lie in 1..{n_lsoa}")
    return 10.0 * (1.0 - (rank - 0.5) / n_lsoa)


def national_deprivation_centre(lsoa_table: pd.DataFrame) -> float:
    """Child-weighted national mean of the deprivation scale (the between-effect origin)."""
    dep = deprivation_decile_units(lsoa_table["idaci_rank"])
    return float(np.average(dep, weights=lsoa_table["children_0_15"]))


def add_deprivation(lsoa_table: pd.DataFrame, la_column: str = "la_code") -> pd.DataFrame:
    """Return a copy with ``dep``, ``dep_la_mean``, ``dep_within`` and ``dep_between``.

    ``dep_within`` = dep - LA child-weighted mean (the social gradient's covariate);
    ``dep_between`` = LA mean - national child-weighted mean (the contextual covariate).
    The national centre is computed on the table given, so pass the full England table
    (as the reference build does) for nationally comparable values.
    """
    out = lsoa_table.copy()
    out["dep"] = deprivation_decile_units(out["idaci_rank"])
    weights = out["children_0_15"].astype(float)
    weighted = (out["dep"] * weights).groupby(out[la_column]).sum()
    la_mean = weighted / weights.groupby(out[la_column]).sum()
    out["dep_la_mean"] = out[la_column].map(la_mean).astype(float)
    centre = float(np.average(out["dep"], weights=weights))
    out["dep_within"] = out["dep"] - out["dep_la_mean"]
    out["dep_between"] = out["dep_la_mean"] - centre
    return out
