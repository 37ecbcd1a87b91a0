"""Assessed episodes to the joint model's sufficient statistics: (pattern x cell x path) counts.

Given its class, an episode's likelihood depends only on its factor pattern, its cell (LA,
LSOA and any covariates: what sets the outcome's linear predictor) and its *path*: which
of the class stages it reached (s47 -> ICPC -> CPP in sequence, and LAC, each given its
parent stage).  Episodes sharing all three are counted once and weighted: the same posterior
as one mixture row per episode, far cheaper.  The pieces are kept apart so the model
computes each factor once: log P(pattern | class) per unique pattern, the outcome log
probabilities per unique (cell, path) pair, and only the mixture per unique row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.latent_class.patterns import Patterns, collapse
from models.vocabulary import STAGE_PARENT

CLASS_STAGES = ("s47", "icpc", "cpp", "lac")
GEO = ("la_code", "lsoa_code", "dep_within", "dep_between")


@dataclass(frozen=True)
class JointData:
    """Sufficient statistics of the joint model.

    ``cells``: one row per unique (LA, LSOA, covariates), with ``dep_within``/``dep_between``.
    ``paths``: one row per observed path, a boolean per stage (reached); ``at_risk`` and
    ``reached`` are path x stage 0/1 arrays (at risk = the parent stage was reached).
    ``pairs``: unique (cell, path) combinations; ``rows``: unique (pattern, pair) with
    ``count``.  ``episode_row`` maps each episode (in input order) to its row.
    """

    patterns: Patterns
    cells: pd.DataFrame
    paths: pd.DataFrame
    at_risk: np.ndarray
    reached: np.ndarray
    pairs: pd.DataFrame      # cell, path
    rows: pd.DataFrame       # pattern, pair, count
    episode_row: np.ndarray
    stages: tuple[str, ...]
    covariates: tuple[str, ...]

    @property
    def n_episodes(self) -> int:
        return int(self.rows["count"].sum())

    def row_cell(self) -> np.ndarray:
        return self.pairs["cell"].to_numpy()[self.rows["pair"].to_numpy()]

    def row_path(self) -> np.ndarray:
        return self.pairs["path"].to_numpy()[self.rows["pair"].to_numpy()]

    def summary(self) -> dict:
        return {"episodes": self.n_episodes, "patterns": self.patterns.n_patterns,
                "cells": len(self.cells), "paths": len(self.paths), "pairs": len(self.pairs),
                "rows": len(self.rows)}


def path_label(flags: dict[str, bool], stages: tuple[str, ...]) -> str:
    """A readable name for a path: the stages reached, or ``none``."""
    got = [s for s in stages if flags[s]]
    return "+".join(got) if got else "none"


def _geography(episodes: pd.DataFrame, geography: pd.DataFrame | None) -> pd.DataFrame:
    if {"dep_within", "dep_between"} <= set(episodes.columns):
        return episodes
    if geography is None:
        raise ValueError("episodes carry no dep_within/dep_between: pass the geography "
                         "(models.areas.add_deprivation) to join them by lsoa_code")
    geo = geography.set_index("lsoa_code")[["dep_within", "dep_between"]]
    missing = ~episodes["lsoa_code"].isin(geo.index)
    if missing.any():
        first = int(np.flatnonzero(missing.to_numpy())[0])
        raise ValueError(f"{int(missing.sum())} episodes have LSOAs missing from the geography "
                         f"(first: row {first}, lsoa_code {episodes['lsoa_code'].iloc[first]!r})")
    return episodes.join(geo, on="lsoa_code")


def joint_data(episodes: pd.DataFrame, factors: pd.DataFrame, geography: pd.DataFrame | None = None,
               stages: tuple[str, ...] = CLASS_STAGES, covariates: tuple[str, ...] = (),
               aggregate: bool = True) -> JointData:
    """Collapse the assessed episodes of ``episodes`` (aligned with ``factors``) to counts.

    Episodes with ``assessment`` False are dropped (no factors, no class stages).  A stage
    reached without its parent is an error naming the episode row.  ``aggregate=False``
    keeps one row per episode (count 1): the row-level likelihood the counts replace.
    """
    if len(episodes) != len(factors):
        raise ValueError(f"episodes ({len(episodes)} rows) and factors ({len(factors)} rows) are not aligned")
    for s in stages:
        if STAGE_PARENT.get(s) is None:
            raise ValueError(f"{s!r} is not a stage with a parent; class stages are e.g. {CLASS_STAGES}")
    needed = {"la_code", "lsoa_code", *stages, *covariates}
    if "assessment" in episodes:
        needed.add("assessment")
    absent = sorted(needed - set(episodes.columns))
    if absent:
        raise ValueError(f"episodes lack column(s) {absent}")
    keep = episodes["assessment"].to_numpy(bool) if "assessment" in episodes else np.ones(len(episodes), bool)
    if not keep.any():
        raise ValueError("no assessed episodes")
    ep = _geography(episodes.loc[keep].reset_index(drop=True), geography)
    fac = factors.loc[keep].reset_index(drop=True)
    original_row = np.flatnonzero(keep)

    flags = {"assessment": np.ones(len(ep), dtype=bool), "referral": np.ones(len(ep), dtype=bool)}
    for s in stages:
        flags[s] = ep[s].to_numpy(bool)
    for s in stages:
        parent = STAGE_PARENT[s]
        if parent not in flags:
            raise ValueError(f"stage {s!r} needs its parent {parent!r} among the stages")
        bad = flags[s] & ~flags[parent]
        if bad.any():
            r = int(original_row[np.flatnonzero(bad)[0]])
            raise ValueError(f"{int(bad.sum())} episodes reached {s} without {parent} "
                             f"(first: row {r}, column {s!r}, value True, {parent!r} False)")

    patterns = collapse(fac)
    cell_keys = ["la_code", "lsoa_code", *covariates]
    cell_codes, cells = _codes(ep, cell_keys)
    first = pd.Series(np.arange(len(ep))).groupby(cell_codes).first().to_numpy()
    cells = cells.assign(dep_within=ep["dep_within"].to_numpy(float)[first],
                         dep_between=ep["dep_between"].to_numpy(float)[first])
    path_frame = pd.DataFrame({s: flags[s] for s in stages})
    path_codes, paths = _codes(path_frame, list(stages))
    paths.insert(0, "path", [path_label(r, stages) for r in paths.to_dict("records")])
    reached = paths[list(stages)].to_numpy(bool)
    parents = [STAGE_PARENT[s] for s in stages]
    at_risk = np.column_stack([np.ones(len(paths), bool) if p not in stages else reached[:, stages.index(p)]
                               for p in parents])

    pair_codes, pairs = _codes(pd.DataFrame({"cell": cell_codes, "path": path_codes}), ["cell", "path"])
    if aggregate:
        row_codes, rows = _codes(pd.DataFrame({"pattern": patterns.index, "pair": pair_codes}),
                                 ["pattern", "pair"])
        rows["count"] = np.bincount(row_codes, minlength=len(rows)).astype(np.int64)
    else:
        row_codes = np.arange(len(ep))
        rows = pd.DataFrame({"pattern": patterns.index, "pair": pair_codes, "count": np.ones(len(ep), np.int64)})
    episode_row = np.full(len(episodes), -1, dtype=np.int64)
    episode_row[original_row] = row_codes
    return JointData(patterns=patterns, cells=cells, paths=paths, at_risk=at_risk.astype(float),
                     reached=reached.astype(float), pairs=pairs, rows=rows, episode_row=episode_row,
                     stages=tuple(stages), covariates=tuple(covariates))


def _codes(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Integer code of each row's key combination, and the unique combinations (sorted)."""
    grouped = frame[keys].groupby(keys, sort=True, observed=True, dropna=False)
    codes = grouped.ngroup().to_numpy()
    unique = frame[keys].iloc[pd.Series(np.arange(len(frame))).groupby(codes).first().to_numpy()]
    return codes, unique.reset_index(drop=True)
