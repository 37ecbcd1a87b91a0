"""The shift to late intervention: trends of child protection plans and care relative to
referrals, nationally and per LA.

For stage s (e.g. referrals, CPP starts, CLA at 31 March), LA l and year y, with
t = year - centre year:

    count[l, y, s] ~ NegBin(mu, alpha[s]),  log mu = log(children 0-17)
                     + national[s, y] + level[l, s] + trend[l, s] * t
    national[s, y] = intercept[s] + slope[s] * t + deviation[s, y]

``deviation`` is a year-to-year departure from the national straight line, projected to be
orthogonal to (1, t), so ``slope`` is exactly the least-squares linear trend of the
national curve.  ``level`` and ``trend`` (LA-varying intercepts and trends for every stage)
are one vector per LA, correlated through an LKJ prior: an LA whose referrals fell may be
one whose plans rose.  "Relative to referrals" is the difference of log-scale trends:
``slope[s] - slope[referrals]`` is the yearly change of plans (or care) per referral.

The likelihood is written over the observed cells only; suppressed cells are predicted by
:func:`expected_rates`, and LAs with gaps keep all their other cells.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from models.system import data as sysdata
from models.system.components import (SystemPriors, correlated_la_effects, negative_binomial_counts,
                                     scaled_normal)

SAMPLE = ("chain", "draw")


@dataclass(frozen=True)
class TrendSpec:
    """What the trend model contains."""

    stages: tuple[str, ...] = ("referrals", "cpp_start", "cla_31mar")
    reference: str = "referrals"
    la_trends: bool = True
    year_deviations: bool = True
    centred: bool = True
    #: national year deviations centred (see components.grouped_year_effects); on the real
    #: panel the LA trend correlations, not these, limit the ESS either way
    year_centred: bool = True

    def __post_init__(self):
        sysdata.measure_columns(self.stages)
        if self.reference not in self.stages:
            raise ValueError(f"reference stage {self.reference!r} must be one of the stages {list(self.stages)}")
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages {list(self.stages)} repeat a stage")

    def as_dict(self) -> dict:
        return asdict(self)


def _projection(t: np.ndarray) -> np.ndarray:
    """I - X (X'X)^-1 X' for X = [1, t]: removes level and linear trend from a year series."""
    x = np.column_stack([np.ones_like(t), t])
    return np.eye(len(t)) - x @ np.linalg.solve(x.T @ x, x.T)


def build_trend_model(panel: pd.DataFrame, spec: TrendSpec, priors: SystemPriors) -> pm.Model:
    """Build (not fit) the trend model on a panel (rows: LA x year)."""
    panel = sysdata.select(panel)
    las, _ = sysdata.la_table(panel)
    cells = sysdata.count_cells(panel, sysdata.measure_columns(spec.stages))
    years = sorted(int(y) for y in panel["year"].unique())
    centre = float(np.mean(years))
    t_year = np.asarray(years, float) - centre
    stages = list(spec.stages)
    coords = {"la": las.index.tolist(), "year": years, "stage": stages, "cell": np.arange(len(cells))}
    la_idx = sysdata.index_of(cells["la_code"], coords["la"])
    y_idx = sysdata.index_of(cells["year"].astype(int), years)
    s_idx = sysdata.index_of(cells["stage"], stages)
    n_stage = len(stages)
    empirical = np.array([np.log((cells.loc[cells["stage"] == s, "count"].sum() + 0.5)
                                 / cells.loc[cells["stage"] == s, "exposure"].sum()) for s in stages])
    with pm.Model(coords=coords) as model:
        model.spec = spec
        model.centre_year = centre
        intercept = pm.Normal("intercept", empirical, priors.intercept_sd, dims="stage")
        slope = pm.Normal("slope", 0.0, priors.trend_sd, dims="stage")
        national = intercept[:, None] + slope[:, None] * t_year[None, :]
        if spec.year_deviations and len(years) > 2:
            sd_year = pm.HalfNormal("year_sd", priors.year_sd, dims="stage")
            raw = scaled_normal("year_raw", sd_year[:, None], ("stage", "year"), spec.year_centred)
            deviation = pm.Deterministic("year_deviation", pt.dot(raw, _projection(t_year)),
                                         dims=("stage", "year"))
            national = national + deviation
        national = pm.Deterministic("national_log_rate", national, dims=("stage", "year"))

        # LA levels: centred on the national intercepts (each LA's many large counts pin
        # its level down, where the centred form mixes best).  LA trends: non-centred around
        # the national slopes (a few years per LA pin a trend down only loosely).  Each block
        # has its own LKJ correlation across stages.
        levels = correlated_la_effects(model, "la_level", "stage", intercept[None, :], priors.la_sd,
                                       priors.lkj_eta, centred=spec.centred)
        dev = national - intercept[:, None] - slope[:, None] * t_year[None, :]
        eta = dev[s_idx, y_idx] + levels[la_idx, s_idx]
        if spec.la_trends:
            trends = correlated_la_effects(model, "la_trend", "stage", slope[None, :], priors.la_trend_sd,
                                           priors.lkj_eta, centred=False)
            eta = eta + trends[la_idx, s_idx] * t_year[y_idx]
        else:
            eta = eta + slope[s_idx] * t_year[y_idx]
        negative_binomial_counts(cells, eta, s_idx, priors.overdispersion_sd)
    model.cells = cells
    return model


#: Parameters the convergence gate checks (every sampled quantity a report leans on).
GATE_VARS = ("intercept", "slope", "year_sd", "year_deviation", "la_level_sd", "la_level_corr",
             "la_level", "la_trend_sd", "la_trend_corr", "la_trend", "overdispersion")


def trend_effects(idata, spec: TrendSpec, per: float = 10_000) -> dict[str, xr.DataArray]:
    """Derived quantities (draws): national rates per ``per`` children by year; each stage
    per 100 referrals by year; % change per year (nationally and per LA), absolute and
    relative to the reference stage."""
    post = idata.posterior
    ref = spec.reference
    others = [s for s in spec.stages if s != ref]
    nat = post["national_log_rate"]
    out = {
        "national_rate": np.exp(nat) * per,
        "trend_pct": 100 * np.expm1(post["slope"]),
    }
    out["national_rate"].attrs["measure"] = f"per {per:,.0f} children, typical LA"
    if others:
        rel = nat.sel(stage=others) - nat.sel(stage=ref)
        out["per_100_referrals"] = np.exp(rel) * 100
        out["relative_trend_pct"] = 100 * np.expm1(post["slope"].sel(stage=others) - post["slope"].sel(stage=ref))
        if "la_trend" in post:
            la_total = post["slope"] + post["la_trend"]
            out["la_trend_pct"] = 100 * np.expm1(la_total)
            out["la_relative_trend_pct"] = 100 * np.expm1(la_total.sel(stage=others) - la_total.sel(stage=ref))
    elif "la_trend" in post:
        out["la_trend_pct"] = 100 * np.expm1(post["slope"] + post["la_trend"])
    return out


def expected_rates(idata, panel: pd.DataFrame, spec: TrendSpec, centre_year: float) -> xr.DataArray:
    """Posterior of every LA x year x stage expected rate per child, observed or not: the
    model's prediction for suppressed cells (draws, dims chain, draw, la, year, stage)."""
    post = idata.posterior
    years = post["year"]
    eta = post["national_log_rate"] + post["la_level"]
    if "la_trend" in post:
        eta = eta + post["la_trend"] * (years - centre_year)
    return np.exp(eta).transpose("chain", "draw", "la", "year", "stage")


def observed_rates(panel: pd.DataFrame, spec: TrendSpec, per: float = 10_000) -> pd.DataFrame:
    """England-wide observed rate by year and stage over the LAs with that count published
    (sum of counts / sum of children), for the figures: aggregates only."""
    cells = sysdata.count_cells(sysdata.select(panel), sysdata.measure_columns(spec.stages))
    g = cells.groupby(["stage", "year"])[["count", "exposure"]].sum()
    return (g["count"] / g["exposure"] * per).rename("observed").reset_index()
