"""Neglect misalignment: the share of neglect plans whose assessment did not record neglect.

Hood et al. (2020) found that in about a quarter of child protection plans under the
category of neglect, neglect had not been recorded at the assessment: the demand a
service records at the front door and the harm it later plans for do not line up.

    not_recorded[la] ~ Binomial(plans[la], share[la])
    logit share[la] = mu + sd * z[la],   z ~ Normal(0, 1)   (non-centred)

Per-LA counts are the sufficient statistic of one Bernoulli per plan.  A plan counts as a
neglect plan when its (initial) category is in ``categories`` (default ``neglect``); its
assessment recorded neglect when any factor in ``neglect_factors`` (default the CIN factor
``16A`` Neglect) was recorded.  Plans without an assessment have no factors to compare and
are left out (and counted).  ``pooled_share`` is the share among all these LAs' plans
(plan-weighted); ``typical_share`` the share in a typical LA (``expit(mu)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm

from models.sampling import ConvergenceGate, SamplerSettings, convergence_table, fit
from models.suppression import SuppressionRule, apply_mask, primary_mask

NEGLECT_CATEGORIES: tuple[str, ...] = ("neglect",)
NEGLECT_FACTORS: tuple[str, ...] = ("neglect",)
VAR_NAMES = ["share", "pooled_share", "typical_share", "mu", "sd"]


@dataclass(frozen=True)
class MisalignmentCounts:
    """Per LA: ``plans`` (neglect plans with an assessment) and ``not_recorded`` (of those,
    assessment recorded none of the neglect factors); ``unassessed`` plans were left out."""

    table: pd.DataFrame
    unassessed: int
    categories: tuple[str, ...]
    neglect_factors: tuple[str, ...]


def misalignment_counts(episodes: pd.DataFrame, factors: pd.DataFrame, *, la_column: str = "la_code",
                        categories: tuple[str, ...] = NEGLECT_CATEGORIES,
                        neglect_factors: tuple[str, ...] = NEGLECT_FACTORS) -> MisalignmentCounts:
    """Count neglect plans and misaligned assessments per LA from typed episodes and their
    episode x factor booleans (row-aligned, as :func:`workflows.extract_io.load_extract` gives)."""
    needed = [la_column, "cpp", "cpp_category", "assessment"]
    missing = [c for c in needed if c not in episodes.columns]
    if missing:
        raise ValueError(f"episodes lack column(s) {missing}; needed: {needed}")
    absent = [f for f in neglect_factors if f not in factors.columns]
    if absent:
        raise ValueError(f"factors lack neglect factor column(s) {absent}")
    if len(factors) != len(episodes):
        raise ValueError(f"factors have {len(factors)} rows for {len(episodes)} episodes")
    cpp = episodes["cpp"].fillna(False).to_numpy(dtype=bool)
    category = episodes["cpp_category"].astype(object).to_numpy()
    plan = cpp & np.isin(category, list(categories))
    assessed = episodes["assessment"].fillna(False).to_numpy(dtype=bool)
    recorded = factors[list(neglect_factors)].fillna(False).to_numpy(dtype=bool).any(axis=1)
    la = episodes[la_column].astype(object).to_numpy()
    keep = plan & assessed
    if not keep.any():
        raise ValueError(f"no assessed child protection plans with category in {list(categories)}")
    frame = pd.DataFrame({"la": la[keep], "not_recorded": ~recorded[keep]})
    if frame["la"].isna().any():
        raise ValueError(f"{la_column}: missing LA code on {int(frame['la'].isna().sum())} neglect plans")
    table = frame.groupby("la", sort=True).agg(plans=("not_recorded", "size"),
                                                not_recorded=("not_recorded", "sum"))
    table.index = table.index.astype(str)
    return MisalignmentCounts(table=table.astype("int64"), unassessed=int((plan & ~assessed).sum()),
                              categories=tuple(categories), neglect_factors=tuple(neglect_factors))


@dataclass(frozen=True)
class MisalignmentPriors:
    """Normal(``mu_mean``, ``mu_sd``) on the logit of the typical LA's share; HalfNormal(``sd_scale``)
    on the between-LA SD (weakly identified with few LAs: the prior matters there)."""

    mu_mean: float = 0.0
    mu_sd: float = 1.5
    sd_scale: float = 0.5

    def describe(self) -> dict[str, str]:
        return {"mu": f"Normal({self.mu_mean:g}, {self.mu_sd:g})", "sd": f"HalfNormal({self.sd_scale:g})",
                "z": "Normal(0, 1)"}


def build_misalignment_model(table: pd.DataFrame, priors: MisalignmentPriors = MisalignmentPriors()) -> pm.Model:
    """Hierarchical binomial on per-LA counts (``plans``, ``not_recorded``), dim ``la``."""
    if (table["not_recorded"] > table["plans"]).any() or (table["plans"] < 1).any():
        bad = table.index[(table["not_recorded"] > table["plans"]) | (table["plans"] < 1)][0]
        raise ValueError(f"LA {bad}: need 0 <= not_recorded <= plans and plans >= 1")
    plans = table["plans"].to_numpy(dtype="int64")
    with pm.Model(coords={"la": list(table.index)}) as model:
        n = pm.Data("plans", plans, dims="la")
        mu = pm.Normal("mu", priors.mu_mean, priors.mu_sd)
        sd = pm.HalfNormal("sd", priors.sd_scale)
        z = pm.Normal("z", 0.0, 1.0, dims="la")
        share = pm.Deterministic("share", pm.math.invlogit(mu + sd * z), dims="la")
        pm.Binomial("not_recorded", n=n, p=share, observed=table["not_recorded"].to_numpy(dtype="int64"),
                    dims="la")
        pm.Deterministic("pooled_share", (share * plans).sum() / plans.sum())
        pm.Deterministic("typical_share", pm.math.invlogit(mu))
    return model


@dataclass
class MisalignmentFit:
    counts: MisalignmentCounts
    idata: az.InferenceData
    convergence: pd.DataFrame
    gate: dict

    @property
    def citable(self) -> bool:
        return bool(self.gate["passed"])

    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        return misalignment_table(self.idata, self.counts.table, prob)


def fit_misalignment(counts: MisalignmentCounts, settings: SamplerSettings = SamplerSettings(),
                     priors: MisalignmentPriors = MisalignmentPriors(),
                     gate: ConvergenceGate = ConvergenceGate()) -> MisalignmentFit:
    idata = fit(build_misalignment_model(counts.table, priors), settings)
    idata.posterior.attrs.update(priors=repr(priors.describe()), categories=repr(counts.categories),
                                 neglect_factors=repr(counts.neglect_factors))
    return MisalignmentFit(counts=counts, idata=idata, convergence=convergence_table(idata, VAR_NAMES),
                           gate=gate.check(idata, VAR_NAMES))


def misalignment_table(idata: az.InferenceData, table: pd.DataFrame, prob: float = 0.9) -> pd.DataFrame:
    """One row per LA plus ``all`` (the pooled share): counts, observed share, posterior mean
    and equal-tailed interval.  Unsuppressed: pass it through :func:`publishable` before
    anything leaves the machine."""
    post = idata.posterior
    q = [(1 - prob) / 2, 1 - (1 - prob) / 2]

    def stats(var):
        lo, hi = np.quantile(var.to_numpy().reshape(-1, *var.shape[2:]), q, axis=0)
        return var.mean(("chain", "draw")).to_numpy(), lo, hi

    mean, lo, hi = stats(post["share"].transpose("chain", "draw", "la"))
    out = table.copy()
    out["observed_share"] = out["not_recorded"] / out["plans"]
    out["mean"], out["lower"], out["upper"] = mean, lo, hi
    pm_, pl, ph = stats(post["pooled_share"])
    total = pd.DataFrame({"plans": [table["plans"].sum()], "not_recorded": [table["not_recorded"].sum()],
                          "mean": [float(pm_)], "lower": [float(pl)], "upper": [float(ph)]}, index=["all"])
    total["observed_share"] = total["not_recorded"] / total["plans"]
    out = pd.concat([out, total[out.columns]])
    out.index.name = "la"
    out.attrs.update(interval_prob=prob, interval="equal-tailed")
    return out


def publishable(summary: pd.DataFrame, rule: SuppressionRule = SuppressionRule(), decimals: int = 3) -> pd.DataFrame:
    """Suppress small counts: where plans, not-recorded or recorded counts fall below the
    threshold, those counts and the observed share are shown as the marker (the recorded
    count is plans minus not-recorded, so both sides are checked).  The ``all`` row is a
    total, so where exactly one LA is suppressed the next smallest LA is too (secondary
    suppression).  Model estimates stay."""
    counts = pd.DataFrame({"plans": summary["plans"], "not_recorded": summary["not_recorded"],
                           "recorded": summary["plans"] - summary["not_recorded"]})
    small = primary_mask(counts, rule).any(axis=1)
    las = [i for i in summary.index if i != "all"]
    if int(small[las].sum()) == 1 and len(las) > 1:
        small[summary.loc[las, "plans"][~small[las]].idxmin()] = True
    mask = pd.DataFrame(False, index=summary.index, columns=summary.columns)
    for col in ("plans", "not_recorded", "observed_share"):
        mask[col] = small
    return apply_mask(summary, mask, rule, decimals=decimals)
