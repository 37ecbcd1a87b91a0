"""Agreement of an estimated latent class solution with a known one (recovery and validation).

The adjusted Rand index compares partitions without regard to labels; the profile error
compares item probabilities after matching classes by the Hungarian algorithm.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.special import comb


def adjusted_rand_index(a, b) -> float:
    """Hubert & Arabie's adjusted Rand index of two labellings of the same items."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError("labellings differ in length")
    table = pd.crosstab(pd.Categorical(a), pd.Categorical(b)).to_numpy()
    pairs = comb(table, 2).sum()
    rows, cols = comb(table.sum(axis=1), 2).sum(), comb(table.sum(axis=0), 2).sum()
    expected = rows * cols / comb(a.size, 2)
    top = (rows + cols) / 2
    return 1.0 if top == expected else float((pairs - expected) / (top - expected))


def match_profiles(estimated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``perm[j]``: the estimated class matched to true class ``j`` (min total |difference|)."""
    cost = np.abs(truth[:, None, :] - estimated[None, :, :]).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), dtype=int)
    perm[rows] = cols
    return perm


def profile_error(estimated: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute difference of item probabilities after matching classes."""
    return float(np.abs(estimated[match_profiles(estimated, truth)] - truth).mean())
