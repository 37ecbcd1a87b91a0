"""Episodes to weighted unique response patterns: the sufficient statistic of a latent class model.

Under local independence an episode's likelihood depends only on its response pattern, so
episodes sharing a pattern can be counted once and weighted (same posterior, far cheaper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Patterns:
    """Unique patterns (``matrix``, pattern x factor 0/1), their ``counts``, and ``index``
    (episode -> row of ``matrix``), so any per-pattern result maps back to episodes."""

    matrix: np.ndarray
    counts: np.ndarray
    index: np.ndarray
    factors: tuple[str, ...]

    @property
    def n_patterns(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_episodes(self) -> int:
        return int(self.counts.sum())

    def expand(self) -> np.ndarray:
        """The episode x factor matrix back (a check that nothing was lost)."""
        return self.matrix[self.index]

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.matrix.astype(bool), columns=list(self.factors))
        frame["count"] = self.counts
        frame.index.name = "pattern"
        return frame


def collapse(factors: pd.DataFrame | np.ndarray, names: tuple[str, ...] | None = None) -> Patterns:
    """Collapse an episode x factor boolean matrix to unique patterns in lexicographic order.

    Missing values are not allowed: a factor not recorded is ``False``, not unknown.
    """
    if isinstance(factors, pd.DataFrame):
        names = tuple(str(c) for c in factors.columns) if names is None else tuple(names)
        values = factors.to_numpy()
    else:
        values = np.asarray(factors)
        names = tuple(f"item_{j + 1}" for j in range(values.shape[1])) if names is None else tuple(names)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError("factors must be a non-empty 2-d episode x factor matrix")
    if pd.isna(values).any():
        raise ValueError("factors contain missing values; record a factor not present as False")
    binary = values.astype(np.int8)
    if not np.isin(binary, (0, 1)).all() or not np.array_equal(binary, values.astype(float)):
        raise ValueError("factors must be boolean or 0/1")
    if len(names) != binary.shape[1]:
        raise ValueError(f"{len(names)} names for {binary.shape[1]} factor columns")
    matrix, index, counts = np.unique(binary, axis=0, return_inverse=True, return_counts=True)
    return Patterns(matrix=matrix, counts=counts.astype(np.int64), index=index.ravel().astype(np.int64),
                    factors=names)
