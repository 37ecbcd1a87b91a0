"""Screen, ration and churn: how demand and deprivation relate to system conditions, as one
multivariate model.

Outcomes k per LA l and year y, each on its own scale:

- ``nfa``: referrals ending in no further action, beta-binomial on the referral counts
  (logit link; overdispersion for year-to-year variation beyond the binomial); the other
  shares (``not_in_need``, ``cpp_repeat``, ``cpp_long``, ``awaiting_assessment``) likewise,
  each on its own total (``BINOMIAL_TRIALS``);
- continuous outcomes (caseload and spend per child on the log scale; agency, turnover and
  vacancy rates on the logit scale), standardised, Normal with a residual SD per outcome.

    eta[l, y, k] = value[l, k] + b_within[k] x demand_within[l, y] + year[k, y]
    value[l, :] ~ MVN(intercept + b_dep x IDACI_z[l] + b_between x demand_between[l], Sigma)

Demand is the log rate of children in need at 31 March, split into the LA's mean over the
years (``demand_between``, standardised over LAs) and the year's deviation from it
(``demand_within``, log units): the between/within (Mundlak) split, so a coefficient is a
partial relationship holding deprivation and the other part of demand fixed.  A missing CIN
count sets that year's within term to 0 (the LA's own mean); the between term uses the
observed years.  ``Sigma`` (LKJ prior) gives the correlations of the LA effects across
outcomes, after deprivation and demand: does an LA that screens out more also carry higher
caseloads and more agency staff?

Spend per child has a **series break**: the panel takes it from DfE's S251 outturn to
2018-19 (panel years to 2019) and from MHCLG's RO3 from 2019-20 (``spend_series``), two
returns with different definitions.  Its RO3 years get their own intercept,
``series_offset`` (``eta += series_offset`` in every RO3 cell), and its year effects sum to
zero within each series, so the offset is the difference between the average (log) level of
the RO3 years and that of the S251 years, estimated rather than read as a change in
spending; the intercept and the partial relationships are on the S251 level.  The offset
absorbs the break together with the growth between the two periods: the two cannot be told
apart from the panel alone.

Missing cells (workforce before 2017, NFA before 2012, suppressed values) are left out of
the likelihood (index arrays over observed cells only); every LA keeps its effect on every
outcome, informed through the correlations where its own cells are missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from models.system import data as sysdata
from models.system.components import SystemPriors, correlated_la_effects, grouped_year_effects

#: outcome -> (panel column, scale, label).  ``binomial`` outcomes take their trials from
#: ``BINOMIAL_TRIALS``.
OUTCOMES: dict[str, tuple[str, str, str]] = {
    "nfa": ("referrals_nfa_n", "binomial", "share of referrals ending in no further action"),
    "not_in_need": ("referrals_not_in_need_n", "binomial",
                    "share of referrals assessed and found not in need"),
    "cpp_repeat": ("cpp_subsequent_n", "binomial",
                   "share of child protection plans started that are a second or later plan"),
    "cpp_long": ("cpp_31mar_dur_2y_or_more_n", "binomial",
                 "share of plans open at 31 March that have lasted 2 years or more"),
    "awaiting_assessment": ("cin_31mar_awaiting_assessment_n", "binomial",
                            "share of children in need at 31 March awaiting assessment"),
    "spend": ("spend_per_child", "log",
              "children's social care spend per child aged 0-17 (GBP, nominal)"),
    "spend_cin": ("spend_per_cin", "log",
                  "children's social care spend per child in need at 31 March (GBP, nominal)"),
    "caseload": ("caseload_fte", "log", "average caseload per case-holding social worker"),
    "cin_per_sw": ("cin_per_sw_fte", "log",
                   "children in need per social worker (FTE, employed and agency)"),
    "agency": ("agency_rate_pct", "logit_pct", "agency workers, % of social worker FTE"),
    "turnover": ("turnover_rate_pct", "logit_pct", "social worker turnover, %"),
    "vacancy": ("vacancy_rate_pct", "logit_pct", "social worker vacancy rate, %"),
}
BINOMIAL_TRIALS = {"nfa": "referrals_n", "not_in_need": "referrals_n", "cpp_repeat": "cpp_start_n",
                   "cpp_long": "cpp_31mar_n", "awaiting_assessment": "cin_31mar_n"}
#: outcome -> (panel column naming the series of each year, the series whose years get the
#: offset ``series_offset``).
SERIES_BREAKS: dict[str, tuple[str, str]] = {"spend": ("spend_series", "RO3"),
                                             "spend_cin": ("spend_series", "RO3")}
SAMPLE = ("chain", "draw")


@dataclass(frozen=True)
class ConditionsSpec:
    """Which outcomes enter the joint model, and the demand measure."""

    outcomes: tuple[str, ...] = ("nfa", "caseload", "agency", "turnover", "vacancy")
    demand: str = "cin_31mar"
    year_effects: bool = True
    centred: bool = True
    #: year effects non-centred: standardised outcomes' year effects are small next to their
    #: noise (see components.grouped_year_effects)
    year_centred: bool = False

    def __post_init__(self):
        unknown = [o for o in self.outcomes if o not in OUTCOMES]
        if unknown:
            raise ValueError(f"unknown outcome(s) {unknown}; choose from {', '.join(OUTCOMES)}")
        if len(self.outcomes) < 2:
            raise ValueError("the multivariate model needs at least two outcomes")
        sysdata.measure_columns([self.demand])

    def as_dict(self) -> dict:
        return asdict(self)


def demand_terms(panel: pd.DataFrame, demand: str, las: pd.DataFrame) -> tuple[np.ndarray, pd.Series, dict]:
    """(within per panel row, between z per LA, scale facts) of the log demand rate."""
    column = sysdata.measure_columns([demand])[demand]
    rate = np.log(pd.to_numeric(panel[column], errors="coerce").astype(float)
                  / panel["population_0_17"].astype(float))
    rate = rate.where(np.isfinite(rate))
    la_mean = rate.groupby(panel["la_code"]).mean().reindex(las.index)
    if la_mean.isna().any():
        raise ValueError(f"LA(s) {la_mean.index[la_mean.isna()].tolist()[:5]} have no {column} in any "
                         "year: demand cannot be measured there")
    centre, sd = float(la_mean.mean()), float(la_mean.std(ddof=0))
    between = (la_mean - centre) / sd
    within = (rate - panel["la_code"].map(la_mean)).fillna(0.0).to_numpy(float)
    return within, between, {"log_rate_mean": centre, "log_rate_sd": sd}


def build_conditions_model(panel: pd.DataFrame, spec: ConditionsSpec, priors: SystemPriors) -> pm.Model:
    """Build (not fit) the multivariate screen/ration/churn model on a panel."""
    panel = sysdata.select(panel)
    cols = [OUTCOMES[o][0] for o in spec.outcomes] + [BINOMIAL_TRIALS[o] for o in spec.outcomes
                                                      if o in BINOMIAL_TRIALS]
    cols += [SERIES_BREAKS[o][0] for o in spec.outcomes if o in SERIES_BREAKS]
    sysdata.check_columns(panel, cols)
    las, _ = sysdata.la_table(panel)
    within, between, demand_scale = demand_terms(panel, spec.demand, las)
    years = sorted(int(y) for y in panel["year"].unique())
    outcomes = list(spec.outcomes)
    la_row = sysdata.index_of(panel["la_code"], las.index.tolist())
    year_row = sysdata.index_of(panel["year"].astype(int), years)

    cont, binom, scales = [], [], {}
    for k, name in enumerate(outcomes):
        column, kind, _ = OUTCOMES[name]
        if kind == "binomial":
            succ = pd.to_numeric(panel[column], errors="coerce").astype(float)
            trials = pd.to_numeric(panel[BINOMIAL_TRIALS[name]], errors="coerce").astype(float)
            keep = (succ.notna() & trials.notna() & (trials > 0)).to_numpy()
            if (succ[keep] > trials[keep]).any():
                raise ValueError(f"{column} exceeds {BINOMIAL_TRIALS[name]} in some rows")
            binom.append(pd.DataFrame({"row": np.flatnonzero(keep), "k": k, "succ": succ[keep].to_numpy(),
                                       "trials": trials[keep].to_numpy()}))
            p = (succ[keep].sum() + 0.5) / (trials[keep].sum() + 1.0)
            scales[name] = {"kind": "binomial", "centre": float(np.log(p / (1 - p))), "mean": 0.0, "sd": 1.0}
        else:
            y = sysdata.transform(panel[column], kind)
            keep = y.notna().to_numpy()
            if keep.sum() < 3:
                raise ValueError(f"outcome {name} ({column}) has fewer than 3 observed values")
            m, s = float(y[keep].mean()), float(y[keep].std(ddof=0)) or 1.0
            cont.append(pd.DataFrame({"row": np.flatnonzero(keep), "k": k,
                                      "y": ((y[keep] - m) / s).to_numpy()}))
            scales[name] = {"kind": kind, "centre": 0.0, "mean": m, "sd": s}
    cont = pd.concat(cont, ignore_index=True) if cont else pd.DataFrame(columns=["row", "k", "y"])
    binom = pd.concat(binom, ignore_index=True) if binom else pd.DataFrame(columns=["row", "k", "succ", "trials"])

    # year effects only for (outcome, year) pairs that have data
    pairs = pd.concat([cont[["row", "k"]], binom[["row", "k"]]])
    pairs = pairs.assign(year=year_row[pairs["row"].to_numpy(int)])[["k", "year"]].drop_duplicates()
    pairs = pairs.sort_values(["k", "year"]).reset_index(drop=True)
    pair_of = {(int(k), int(y)): i for i, (k, y) in enumerate(zip(pairs["k"], pairs["year"]))}
    labels = [f"{outcomes[int(k)]} {years[int(y)]}" for k, y in zip(pairs["k"], pairs["year"])]

    # series breaks: the years of the later series get an offset and their own year-effect group
    breaks = series_breaks(panel, outcomes, pairs, years)
    pair_group = pairs["k"].to_numpy(int).copy()
    group_outcome = list(range(len(outcomes)))
    for k, after_years in breaks.values():
        later = (pairs["k"].eq(k) & pairs["year"].isin(after_years)).to_numpy()
        pair_group[later] = len(group_outcome)
        group_outcome.append(k)
    # per (outcome, year) pair: index of its series offset, or len(breaks) for none
    pair_break = np.full(len(pairs), len(breaks), dtype=int)
    for b, (k, after_years) in enumerate(breaks.values()):
        pair_break[(pairs["k"].eq(k) & pairs["year"].isin(after_years)).to_numpy()] = b
    coords_breaks = list(breaks)

    coords = {"la": las.index.tolist(), "outcome": outcomes, "year": years, "outcome_year": labels,
              "obs_continuous": np.arange(len(cont)), "obs_binomial": np.arange(len(binom)),
              "series_break": coords_breaks}
    centre = np.array([scales[o]["centre"] for o in outcomes])
    sd_out = np.array([scales[o]["sd"] for o in outcomes])
    z_dep = las["idaci_z"].to_numpy(float)
    z_dem = between.to_numpy(float)
    with pm.Model(coords=coords) as model:
        model.spec = spec
        model.scales = scales
        model.demand_scale = demand_scale
        intercept = pm.Normal("intercept", centre, priors.intercept_sd, dims="outcome")
        b_dep = pm.Normal("b_deprivation", 0.0, priors.slope_sd, dims="outcome")
        b_bet = pm.Normal("b_demand_between", 0.0, priors.slope_sd, dims="outcome")
        b_wit = pm.Normal("b_demand_within", 0.0, priors.slope_sd, dims="outcome")
        mean = intercept[None, :] + b_dep[None, :] * z_dep[:, None] + b_bet[None, :] * z_dem[:, None]
        values = correlated_la_effects(model, "la_effect", "outcome", mean, priors.la_sd, priors.lkj_eta,
                                       spec.centred)
        if spec.year_effects and len(years) > 1:
            sd_year = pm.HalfNormal("year_sd", priors.year_sd, dims="outcome")
            year_eff = grouped_year_effects("year_effect", pair_group, len(group_outcome),
                                            sd_year[np.asarray(group_outcome, dtype=int)], "outcome_year",
                                            centred=spec.year_centred)
        else:
            year_eff = pt.zeros(len(pairs))
        if breaks:
            offset = pm.Normal("series_offset", 0.0, priors.intercept_sd, dims="series_break")
            k_break = np.array([k for k, _ in breaks.values()], dtype=int)
            pm.Deterministic("effect_series_offset", offset * sd_out[k_break], dims="series_break")
            year_eff = year_eff + pt.concatenate([offset, pt.zeros(1)])[pair_break]
        # the same coefficients on each outcome's own (unstandardised) scale, for reports
        for name, b in (("deprivation", b_dep), ("demand_between", b_bet), ("demand_within", b_wit)):
            pm.Deterministic(f"effect_{name}", b * sd_out, dims="outcome")

        def eta_of(frame):
            rows, k = frame["row"].to_numpy(int), frame["k"].to_numpy(int)
            pair = np.array([pair_of[(int(kk), int(year_row[r]))] for kk, r in zip(k, rows)], dtype=int)
            return values[la_row[rows], k] + b_wit[k] * within[rows] + year_eff[pair]

        if len(cont):
            k = cont["k"].to_numpy(int)
            sigma = pm.HalfNormal("residual_sd", priors.residual_sd, dims="outcome")
            pm.Normal("y", eta_of(cont), sigma[k], observed=cont["y"].to_numpy(float), dims="obs_continuous")
        if len(binom):
            k = binom["k"].to_numpy(int)
            cv = pm.HalfNormal("overdispersion", priors.overdispersion_sd, dims="outcome")
            phi = 1.0 / pt.sqr(cv[k])
            p = pm.math.invlogit(eta_of(binom))
            p = pt.clip(p, 1e-9, 1 - 1e-9)
            pm.BetaBinomial("successes", n=binom["trials"].to_numpy("int64"), alpha=p * phi,
                            beta=(1 - p) * phi, observed=binom["succ"].to_numpy("int64"), dims="obs_binomial")
    model.cells = {"continuous": cont, "binomial": binom, "pairs": pairs}
    return model


GATE_VARS = ("intercept", "b_deprivation", "b_demand_between", "b_demand_within", "la_effect_sd",
             "la_effect_corr", "la_effect", "year_sd", "year_effect", "residual_sd", "overdispersion",
             "series_offset")


def series_breaks(panel: pd.DataFrame, outcomes: list[str], pairs: pd.DataFrame,
                  years: list[int]) -> dict[str, tuple[int, list[int]]]:
    """``{"<outcome>: <series>": (outcome index, year positions of the later series)}`` for
    each outcome of ``SERIES_BREAKS`` observed in both series.  A year that mixes two
    series is a ValueError (the offset is by year)."""
    out = {}
    for k, name in enumerate(outcomes):
        if name not in SERIES_BREAKS:
            continue
        column, later = SERIES_BREAKS[name]
        observed = panel[OUTCOMES[name][0]].notna()
        per_year = panel.loc[observed].groupby("year")[column].agg(lambda s: set(s.dropna()))
        mixed = per_year[per_year.map(len) > 1]
        if len(mixed):
            raise ValueError(f"{column} mixes series {sorted(mixed.iloc[0])} in year {mixed.index[0]}")
        unlabelled = per_year[per_year.map(len) == 0]
        if len(unlabelled):
            raise ValueError(f"{OUTCOMES[name][0]} is observed in year {unlabelled.index[0]} "
                             f"but {column} is blank there")
        after = sorted(years.index(int(y)) for y, s in per_year.items() if later in s)
        own = set(pairs.loc[pairs["k"].eq(k), "year"].astype(int))
        if after and len(own - set(after)):
            out[f"{name}: {later}"] = (k, after)
    return out


def natural(values, scale: dict):
    """Link-scale (standardised for continuous outcomes) values -> the outcome's own units
    (share for NFA, percentage for rates, caseload or GBP for log outcomes)."""
    if scale["kind"] == "binomial":
        return 1.0 / (1.0 + np.exp(-values))
    return sysdata.back_transform(values * scale["sd"] + scale["mean"], scale["kind"])


def partial_relationships(idata, scales: dict, grid=np.linspace(-2, 2, 21)) -> dict[str, xr.DataArray]:
    """Predicted outcome (own units) for a typical LA in an average year, along IDACI z
    (demand at the national mean) and along LA demand z (IDACI at the mean)."""
    post = idata.posterior
    z = xr.DataArray(grid, dims="z", coords={"z": grid})
    out = {}
    for name, coef in (("deprivation", "b_deprivation"), ("demand_between", "b_demand_between")):
        lin = post["intercept"] + post[coef] * z
        pieces = [natural(lin.sel(outcome=o), scales[o]).expand_dims(outcome=[o]) for o in post["outcome"].values]
        out[name] = xr.concat(pieces, dim="outcome")
    return out


def coefficient_ratios(idata) -> dict[str, xr.DataArray]:
    """Effects per SD of IDACI and of LA demand, and per +10% within-LA demand, as ratios on
    each outcome's link scale: rate ratios (log outcomes) or odds ratios (shares, rates)."""
    post = idata.posterior
    out = {"deprivation_per_sd": np.exp(post["effect_deprivation"]),
           "demand_between_per_sd": np.exp(post["effect_demand_between"]),
           "demand_within_per_10pct": np.exp(post["effect_demand_within"] * np.log(1.1))}
    if "effect_series_offset" in post:
        # RO3 years over S251 years, same LA, year effects averaged within each series: the
        # definition change and the growth between the periods together (not separable here)
        out["series_break_ratio"] = np.exp(post["effect_series_offset"])
    return out
