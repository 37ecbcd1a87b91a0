"""Small-number suppression for published tables (statistical disclosure control).

Counts below a threshold (default 10) are shown as a marker (default ``"c"``, as in DfE
tables), and every figure derived from a suppressed count (a rate, a share) is suppressed
with it.  Where a table shows a total, a single suppressed cell could be recovered by
subtraction, so the next smallest cell in the same group is suppressed too (secondary
suppression).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SuppressionRule:
    threshold: int = 10
    marker: str = "c"

    def __post_init__(self):
        if self.threshold < 0:
            raise ValueError(f"suppression threshold must be >= 0, got {self.threshold}")
        if not self.marker:
            raise ValueError("suppression marker must be a non-empty string")


def primary_mask(counts: pd.DataFrame | pd.Series, rule: SuppressionRule) -> pd.DataFrame | pd.Series:
    """True where a count is positive and below the threshold (zero is not disclosive)."""
    return (counts > 0) & (counts < rule.threshold)


def secondary_mask(counts: pd.DataFrame, mask: pd.DataFrame, axis: int = 0) -> pd.DataFrame:
    """Add the next smallest cell wherever exactly one cell is suppressed along ``axis``.

    Use when the table (or a companion table) publishes the total along that axis.
    """
    mask = mask.copy()
    for _ in range(2):  # a second pass settles the other axis after the first
        lines = mask.T if axis == 0 else mask
        values = counts.T if axis == 0 else counts
        for label in lines.index:
            row = lines.loc[label]
            if int(row.sum()) == 1:
                candidates = values.loc[label][~row & (values.loc[label] > 0)]
                if len(candidates):
                    col = candidates.idxmin()
                    if axis == 0:
                        mask.loc[col, label] = True
                    else:
                        mask.loc[label, col] = True
    return mask


def apply_mask(table: pd.DataFrame, mask: pd.DataFrame, rule: SuppressionRule,
               decimals: int | None = None) -> pd.DataFrame:
    """Format ``table`` for publication: masked cells become the marker, others strings."""
    def fmt(v):
        if pd.isna(v):
            return ""
        if decimals is not None and isinstance(v, (float, np.floating)):
            return f"{v:.{decimals}f}"
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v)

    shown = table.map(fmt)
    aligned = mask.reindex(index=table.index, columns=table.columns, fill_value=False)
    return shown.mask(aligned.astype(bool), rule.marker)


def suppress_counts(counts: pd.DataFrame, rule: SuppressionRule, totals_axis: int | None = None) -> pd.DataFrame:
    """Counts table ready to publish: primary suppression, plus secondary along ``totals_axis``."""
    mask = primary_mask(counts, rule)
    if totals_axis is not None:
        mask = secondary_mask(counts, mask, axis=totals_axis)
    return apply_mask(counts, mask, rule)
