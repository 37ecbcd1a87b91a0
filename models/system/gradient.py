"""The LA-level deprivation gradient of intervention rates.

For stage s (referrals, s47 enquiries, ICPCs, CPP starts, CLA, ...), LA l and year y:

    count[l, y, s] ~ NegBin(mu, alpha[s]),
    log mu = log(children 0-17) + value[l, s] + year[s, y]
    value[l, :] ~ MVN(intercept + gradient x IDACI_z[l], Sigma)   (LKJ prior on Sigma)

``gradient[s]`` is the log rate ratio per SD of LA IDACI (the child-weighted IoD2019 score);
the research expects it to steepen at each later stage, so ``gradient[s] -
gradient[first stage]`` is reported with its interval.  Year effects sum to zero over each
stage's own observed years.  This is the between-LA gradient only: the panel has no
neighbourhood detail, so it mixes the social gradient within LAs with the contextual
(inverse intervention) effect between them (see models/gradient for the split).

Suppressed cells are left out of the likelihood (observed cells only); every LA keeps its
effect at every stage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from models.system import data as sysdata
from models.system.components import (SystemPriors, correlated_la_effects, grouped_year_effects,
                                     negative_binomial_counts)


@dataclass(frozen=True)
class LAGradientSpec:
    #: No ICPCs by default: nearly every conference starts a plan, so an LA's ICPC and CPP
    #: start effects correlate at 0.99 on the real panel; the near-singular covariance made
    #: NUTS take 96-161 leapfrog steps per draw (1520 s at 4 x 1500, bulk ESS 263) where
    #: the four stages below take ~31 (benchmarks/RESULTS.md).  Add "icpc" to see it.
    stages: tuple[str, ...] = ("referrals", "s47", "cpp_start", "cla_31mar")
    year_effects: bool = True
    centred: bool = True
    #: year effects centred: ~150 LAs pin each stage's year swings down (3.8x the bulk ESS per
    #: second of the non-centred form on the real panel; see components.grouped_year_effects)
    year_centred: bool = True

    def __post_init__(self):
        sysdata.measure_columns(self.stages)
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages {list(self.stages)} repeat a stage")

    def as_dict(self) -> dict:
        return asdict(self)


def build_la_gradient_model(panel: pd.DataFrame, spec: LAGradientSpec, priors: SystemPriors) -> pm.Model:
    """Build (not fit) the LA deprivation gradient model on a panel."""
    panel = sysdata.select(panel)
    las, idaci = sysdata.la_table(panel)
    cells = sysdata.count_cells(panel, sysdata.measure_columns(spec.stages))
    years = sorted(int(y) for y in panel["year"].unique())
    stages = list(spec.stages)
    la_idx = sysdata.index_of(cells["la_code"], las.index.tolist())
    s_idx = sysdata.index_of(cells["stage"], stages)
    y_idx = sysdata.index_of(cells["year"].astype(int), years)
    pairs = (pd.DataFrame({"k": s_idx, "year": y_idx}).drop_duplicates().sort_values(["k", "year"])
             .reset_index(drop=True))
    pair_of = {(int(k), int(y)): i for i, (k, y) in enumerate(zip(pairs["k"], pairs["year"]))}
    cell_pair = np.array([pair_of[(int(k), int(y))] for k, y in zip(s_idx, y_idx)], dtype=int)
    empirical = np.array([np.log((cells.loc[cells["stage"] == s, "count"].sum() + 0.5)
                                 / cells.loc[cells["stage"] == s, "exposure"].sum()) for s in stages])
    coords = {"la": las.index.tolist(), "stage": stages, "year": years, "cell": np.arange(len(cells)),
              "stage_year": [f"{stages[int(k)]} {years[int(y)]}" for k, y in zip(pairs["k"], pairs["year"])]}
    z = las["idaci_z"].to_numpy(float)
    with pm.Model(coords=coords) as model:
        model.spec = spec
        model.idaci_scale = idaci
        intercept = pm.Normal("intercept", empirical, priors.intercept_sd, dims="stage")
        gradient = pm.Normal("gradient", 0.0, priors.slope_sd, dims="stage")
        mean = intercept[None, :] + gradient[None, :] * z[:, None]
        values = correlated_la_effects(model, "la_effect", "stage", mean, priors.la_sd, priors.lkj_eta,
                                       spec.centred)
        eta = values[la_idx, s_idx]
        if spec.year_effects and len(years) > 1:
            sd_year = pm.HalfNormal("year_sd", priors.year_sd, dims="stage")
            year = grouped_year_effects("year_effect", pairs["k"].to_numpy(int), len(stages), sd_year, "stage_year",
                                        centred=spec.year_centred)
            eta = eta + year[cell_pair]
        negative_binomial_counts(cells, eta, s_idx, priors.overdispersion_sd)
    model.cells = cells
    return model


GATE_VARS = ("intercept", "gradient", "la_effect_sd", "la_effect_corr", "la_effect", "year_sd",
             "year_effect", "overdispersion")


def gradient_effects(idata, idaci: sysdata.IdaciScale, las: pd.DataFrame, per: float = 10_000,
                     grid=np.linspace(0.05, 0.40, 36)) -> dict[str, xr.DataArray]:
    """Rate ratios per SD and per 0.1 of the IDACI score, the most vs least deprived tenth
    of LAs (90th vs 10th percentile of LA IDACI), the steepening over the first stage, and
    the predicted rate per ``per`` children along the IDACI score for a typical LA."""
    post = idata.posterior
    g = post["gradient"]
    p10, p90 = np.quantile(las["idaci"], [0.1, 0.9])
    first = str(post["stage"].values[0])
    score = xr.DataArray(grid, dims="idaci", coords={"idaci": grid})
    out = {
        "ratio_per_sd": np.exp(g),
        "ratio_per_0.1": np.exp(g * 0.1 / idaci.sd),
        "ratio_p90_vs_p10": np.exp(g * (p90 - p10) / idaci.sd),
        "steepening_vs_first": np.exp(g.isel(stage=slice(1, None)) - g.sel(stage=first)),  # later stages
        "rate_by_idaci": np.exp(post["intercept"] + g * (score - idaci.mean) / idaci.sd) * per,
    }
    out["rate_by_idaci"].attrs["measure"] = f"per {per:,.0f} children, typical LA"
    return out
