"""The social gradient and inverse intervention model: one PyMC model over all stages.

For stage s, cell i (LA l, LSOA k, year t, covariates x):

    eta = alpha[s] + beta_within[s] * within + beta_between[s] * between
          + u[l, s] + w[l, s] * within + v[k, s] + year[t, s]
          + sum_c (effect_c[x_c, s] + gradient_shift_c[x_c, s] * within)

written hierarchically: LA level = alpha + beta_between * between + u; LSOA level = LA level
+ (beta_within + w) * within + v; cell = LSOA level + year + covariate terms.  Each level is
centred or non-centred by the strength of its data (:func:`centring_plan`).

with ``beta_between = beta_within + contextual``: the contextual effect (the inverse
intervention effect when negative) is a parameter, so its posterior is read directly.
``within`` is the LSOA's deprivation minus its LA's child-weighted mean and ``between`` the
LA mean minus the national mean, both in decile units (:mod:`models.areas`).

Likelihood on cells (:mod:`models.cells`): binomial with logit link for pathway
transitions (stage s given its parent), Poisson or negative binomial with log link and
child-years exposure for population rates.  Group effects are non-centred; covariate
effects use reference coding (the reference level is stated in ``GradientSpec``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from models.priors import PriorSet

#: Under centred="auto", a level is centred where a group's own standard error is below these
#: (link scale; slopes per decile step).  See :func:`centring_plan`.  With a handful of LAs
#: the posterior of an LA-level SD reaches towards zero, where a centred level whose SE is
#: comparable to the SD forms a funnel: LA gradients are centred only at a small SE, and the
#: LA intercept threshold stays at the LSOA value (a stricter one cost the short-chain
#: recovery fit its ESS).  The runs behind both: benchmarks/RESULTS.md, "Time to the gate".
CENTRE_INTERCEPT_SE = 1.0 / np.sqrt(50.0)
CENTRE_LA_INTERCEPT_SE = 1.0 / np.sqrt(50.0)
CENTRE_SLOPE_SE = 0.004
TYPICAL_LSOA_SD = 0.1

DEFAULT_REFERENCE = {"age_group": "10_15", "ethnicity": "white_british", "gender": "male",
                     "demand_class": "neglect"}


@dataclass(frozen=True)
class GradientSpec:
    """What the model contains.  ``scale``: ``transition`` (binomial) or ``population``."""

    scale: str = "transition"
    covariates: tuple[str, ...] = ()
    gradient_interactions: bool = True
    la_effects: bool = True
    la_slopes: bool = True
    lsoa_effects: bool = True
    year_effects: bool = True
    correlated_stages: bool = False
    #: Non-centred group effects mix well when each group's data are weak; with strong data
    #: per group (population counts in large LAs) the centred form mixes far better.
    #: ``"auto"`` centres a level at a stage where each group's own data pin it down
    #: (:func:`centring_plan`); or a tuple of levels ("la", "la_slope", "lsoa")
    #: to centre at every stage; ``()`` for non-centred everywhere.
    centred: str | tuple[str, ...] = "auto"
    #: binomial (transition; bernoulli for one row per episode); poisson or negbin (population)
    likelihood: str = "auto"
    reference: dict = field(default_factory=lambda: dict(DEFAULT_REFERENCE))

    def __post_init__(self):
        if self.scale not in ("transition", "population"):
            raise ValueError(f"scale must be 'transition' or 'population', got {self.scale!r}")
        allowed = {"transition": {"auto", "binomial", "bernoulli"},
                   "population": {"auto", "poisson", "negbin"}}
        if self.likelihood not in allowed[self.scale]:
            raise ValueError(f"likelihood {self.likelihood!r} does not fit scale {self.scale!r}")
        if not self.la_effects and (self.la_slopes or self.lsoa_effects or self.correlated_stages):
            raise ValueError("la_effects=False needs la_slopes, lsoa_effects and correlated_stages off")

    @property
    def family(self) -> str:
        if self.likelihood != "auto":
            return self.likelihood
        return "binomial" if self.scale == "transition" else "poisson"

    def as_dict(self) -> dict:
        return asdict(self)


def _levels(series: pd.Series) -> list[str]:
    if isinstance(series.dtype, pd.CategoricalDtype):
        present = set(series.astype(str).unique())
        return [str(c) for c in series.cat.categories if str(c) in present]
    return sorted(series.astype(str).unique())


def model_coords(cells: pd.DataFrame, spec: GradientSpec) -> dict[str, list]:
    """The labelled axes of every parameter."""
    coords = {
        "stage": _levels(cells["stage"]),
        "la": sorted(cells["la_code"].astype(str).unique()),
        "lsoa": sorted(cells["lsoa_code"].astype(str).unique()),
        "year": [int(y) for y in sorted(cells["year"].unique())],
        "cell": np.arange(len(cells)),
    }
    coords["year_nonref"] = coords["year"][1:]
    coords.update(covariate_coords(cells, spec.covariates, spec.reference))
    return coords


def covariate_coords(cells: pd.DataFrame, covariates, reference: dict) -> dict[str, list]:
    """Each covariate's levels present in the data and its non-reference levels (the
    reference, by default the first level, must be present)."""
    coords = {}
    for cov in covariates:
        levels = _levels(cells[cov])
        ref = reference.get(cov, levels[0])
        if ref not in levels:
            raise ValueError(f"reference level {ref!r} of {cov} is absent from the data; levels: {levels}")
        coords[cov] = levels
        coords[f"{cov}_nonref"] = [lv for lv in levels if lv != ref]
    return coords


def _index(values: pd.Series, labels: list) -> np.ndarray:
    lookup = {lab: i for i, lab in enumerate(labels)}
    return values.astype(str if isinstance(labels[0], str) else int).map(lookup).to_numpy(dtype="int64")


def _empirical_centre(cells: pd.DataFrame, spec: GradientSpec, stages: list[str]) -> np.ndarray:
    """Data-driven prior centre of each stage's intercept: its overall logit or log rate."""
    centre = []
    for s in stages:
        c = cells[cells["stage"].astype(str) == s]
        if spec.scale == "transition":
            p = (c["successes"].sum() + 0.5) / (c["trials"].sum() + 1.0)
            centre.append(np.log(p) - np.log1p(-p))
        else:
            centre.append(np.log((c["count"].sum() + 0.5) / c["exposure"].sum()))
    return np.asarray(centre)


def build_gradient_model(cells: pd.DataFrame, spec: GradientSpec, priors: PriorSet) -> pm.Model:
    """Build (not fit) the multilevel gradient model on ``cells``."""
    coords = model_coords(cells, spec)
    stages = coords["stage"]
    n_stage = len(stages)
    s_idx = _index(cells["stage"], stages)
    la_idx = _index(cells["la_code"], coords["la"])
    within = cells["dep_within"].to_numpy(float)

    plan = centring_plan(cells, spec, stages)
    with pm.Model(coords=coords) as model:
        model.spec = spec  # kept for effects and reports
        model.centring = {k: [st for st, c in zip(stages, v) if c] for k, v in plan.items()}
        w_data = pm.Data("within", within, dims="cell")
        alpha = pm.Normal("intercept", mu=_empirical_centre(cells, spec, stages),
                          sigma=priors.intercept_sd, dims="stage")
        beta_w = pm.Normal("within_effect", 0.0, priors.slope_sd, dims="stage")
        contextual = pm.Normal("contextual_effect", 0.0, priors.slope_sd, dims="stage")
        beta_b = pm.Deterministic("between_effect", beta_w + contextual, dims="stage")

        # LA-level mean: intercept + between effect x LA deprivation + LA effect.
        la_between = (cells.groupby(cells["la_code"].astype(str))["dep_between"].first()
                      .reindex(coords["la"]).to_numpy(float))
        la_mean = alpha[None, :] + beta_b[None, :] * la_between[:, None]
        if not spec.la_effects:
            # A single-level model (for checks against frequentist fits): no LA variation.
            la_level = la_mean + pt.zeros((len(coords["la"]), n_stage))
        elif spec.correlated_stages and n_stage > 1:
            # LA effects correlated across stages (an LA that assesses more may plan more).
            model.add_coord("stage_b", stages)
            sd_dist = (pm.HalfNormal.dist(priors.la_sd.scale, shape=n_stage)
                       if priors.la_sd.kind == "halfnormal"
                       else pm.Exponential.dist(1.0 / priors.la_sd.scale, shape=n_stage))
            chol, corr, sds = pm.LKJCholeskyCov("la_chol", n=n_stage, eta=priors.lkj_eta,
                                                sd_dist=sd_dist, compute_corr=True)
            pm.Deterministic("la_sd", sds, dims="stage")
            pm.Deterministic("la_corr", corr, dims=("stage", "stage_b"))
            z = pm.Normal("la_z", 0.0, 1.0, dims=("la", "stage"))
            la_level = la_mean + pt.dot(z, chol.T)
        else:
            # Hierarchical centring where the data are strong: the LA level is centred on
            # its regression mean (intercept + between effect), LSOAs on their LA's level.
            sd_la = priors.la_sd("la_sd", dims="stage")
            la_level = group_level(model, "la_level", "la", la_mean, sd_la, plan["la"], stages)
        if spec.la_effects:
            pm.Deterministic("la_effect", la_level - la_mean, dims=("la", "stage"))

        # The reference-level gradient of each LA (within effect + the LA's own deviation).
        if spec.la_slopes:
            sd_slope = priors.la_slope_sd("la_slope_sd", dims="stage")
            slope_la = group_level(model, "la_gradient", "la", beta_w[None, :], sd_slope,
                                    plan["la_slope"], stages)
            pm.Deterministic("la_slope", slope_la - beta_w[None, :], dims=("la", "stage"))
        else:
            slope_la = pt.broadcast_to(beta_w[None, :], (len(coords["la"]), n_stage))

        if spec.lsoa_effects:
            # Within-LA deprivation is an LSOA-level covariate, so its gradient belongs in the
            # LSOA mean: LSOA level ~ Normal(LA level + LA gradient x within, sd).  In the
            # centred form this is what identifies the gradient (the LSOA levels regress on
            # deprivation); leaving it at cell level makes it trade off against every LSOA.
            lsoa_idx = _index(cells["lsoa_code"], coords["lsoa"])
            lsoa_geo = cells.groupby(cells["lsoa_code"].astype(str)).agg(
                la_code=("la_code", "first"), dep_within=("dep_within", "first")).reindex(coords["lsoa"])
            la_of_lsoa = _index(lsoa_geo["la_code"], coords["la"])
            within_lsoa = lsoa_geo["dep_within"].to_numpy(float)[:, None]
            sd_lsoa = priors.lsoa_sd("lsoa_sd", dims="stage")
            level = group_level(model, "lsoa_level", "lsoa",
                                 la_level[la_of_lsoa] + slope_la[la_of_lsoa] * within_lsoa,
                                 sd_lsoa, plan["lsoa"], stages)
            eta = _take(level, lsoa_idx, s_idx, n_stage)
            slope = None  # only covariate-specific shifts remain at cell level
        else:
            eta = _take(la_level, la_idx, s_idx, n_stage)
            slope = _take(slope_la, la_idx, s_idx, n_stage)

        if spec.year_effects and len(coords["year"]) > 1:
            yr = pm.Normal("year_raw", 0.0, priors.covariate_sd, dims=("year_nonref", "stage"))
            year = pm.Deterministic("year_effect", pt.concatenate([pt.zeros((1, n_stage)), yr], axis=0),
                                    dims=("year", "stage"))
            eta = eta + _take(year, _index(cells["year"], coords["year"]), s_idx, n_stage)

        for cov in spec.covariates:
            levels, nonref = coords[cov], coords[f"{cov}_nonref"]
            ref_pos = [i for i, lv in enumerate(levels) if lv not in nonref][0]
            c_idx = _index(cells[cov], levels)
            raw = pm.Normal(f"{cov}_raw", 0.0, priors.covariate_sd, dims=(f"{cov}_nonref", "stage"))
            full = _insert_zero_row(raw, ref_pos)
            effect = pm.Deterministic(f"{cov}_effect", full, dims=(cov, "stage"))
            eta = eta + _take(effect, c_idx, s_idx, n_stage)
            if spec.gradient_interactions:
                raw_g = pm.Normal(f"{cov}_gradient_raw", 0.0, priors.interaction_sd,
                                  dims=(f"{cov}_nonref", "stage"))
                shift = pm.Deterministic(f"{cov}_gradient_shift", _insert_zero_row(raw_g, ref_pos),
                                         dims=(cov, "stage"))
                term = _take(shift, c_idx, s_idx, n_stage)
                slope = term if slope is None else slope + term

        if slope is not None:
            eta = eta + slope * w_data
        if spec.family == "bernoulli":
            if (cells["trials"] != 1).any():
                raise ValueError("the bernoulli likelihood needs one row per episode (trials == 1)")
            pm.Bernoulli("successes", logit_p=eta, observed=cells["successes"].to_numpy("int64"), dims="cell")
        elif spec.family == "binomial":
            pm.Binomial("successes", n=cells["trials"].to_numpy("int64"), logit_p=eta,
                        observed=cells["successes"].to_numpy("int64"), dims="cell")
        else:
            mu = pt.exp(eta + np.log(cells["exposure"].to_numpy(float)))
            if spec.family == "poisson":
                pm.Poisson("count", mu=mu, observed=cells["count"].to_numpy("int64"), dims="cell")
            else:
                inv_disp = pm.Exponential("nb_inverse_dispersion", 0.1, dims="stage")
                pm.NegativeBinomial("count", mu=mu, alpha=inv_disp[s_idx],
                                    observed=cells["count"].to_numpy("int64"), dims="cell")
    return model


def _take(matrix, row_idx: np.ndarray, stage_idx: np.ndarray, n_stage: int):
    """``matrix[row_idx, stage_idx]`` through one flat integer index: a 1-d gather whose
    gradient is a 1-d scatter-add, several times faster than 2-d advanced indexing on
    100,000+ cells."""
    return matrix.flatten()[row_idx * n_stage + stage_idx]


def _insert_zero_row(raw, position: int):
    """Reference coding: the reference level's row is a fixed zero."""
    zeros = pt.zeros((1, raw.shape[1]))
    return pt.concatenate([raw[:position], zeros, raw[position:]], axis=0)


def centring_plan(cells: pd.DataFrame, spec: GradientSpec, stages: list[str]) -> dict[str, np.ndarray]:
    """Per level ("la", "la_slope", "lsoa"), a boolean per stage: centre it there?

    Under ``"auto"`` a level is centred where the data pin each group down, judged by the
    standard error a group's own data would give it: below ``CENTRE_LA_INTERCEPT_SE`` for LA
    and ``CENTRE_INTERCEPT_SE`` for LSOA intercepts (Fisher information: events for Poisson
    counts, trials x p(1-p) for binomial ones), below ``CENTRE_SLOPE_SE`` for an LA's
    gradient (information x within-LA deprivation squared, plus LSOA variation around the
    LA line).  The thresholds sit well under the group SDs seen in practice (0.1-0.3 for
    intercepts, 0.02-0.03 per decile for gradients), where the centred form mixes far
    better; near the SD, the centred form's funnel makes divergences.
    """
    if spec.centred != "auto":
        return {lv: np.full(len(stages), lv in spec.centred) for lv in ("la", "la_slope", "lsoa")}
    stage_of = cells["stage"].astype(str).to_numpy()
    if spec.scale == "transition":
        info = np.zeros(len(cells))
        for st in stages:
            mask = stage_of == st
            p = cells.loc[mask, "successes"].sum() / max(cells.loc[mask, "trials"].sum(), 1)
            info[mask] = cells.loc[mask, "trials"].to_numpy(float) * p * (1 - p)
    else:
        info = cells["count"].to_numpy(float)
    within = cells["dep_within"].to_numpy(float)
    la = cells["la_code"].astype(str).to_numpy()
    lsoa = cells["lsoa_code"].astype(str).to_numpy()
    plan = {level: np.zeros(len(stages), dtype=bool) for level in ("la", "la_slope", "lsoa")}
    for i, st in enumerate(stages):
        m = stage_of == st
        for level, key, limit in (("la", la, CENTRE_LA_INTERCEPT_SE), ("lsoa", lsoa, CENTRE_INTERCEPT_SE)):
            per_group = pd.Series(info[m]).groupby(key[m]).sum()
            plan[level][i] = 1.0 / np.sqrt(max(per_group.mean(), 1e-12)) <= limit
        slope_info = pd.Series(info[m] * within[m] ** 2).groupby(la[m]).sum()
        lsoa_w2 = (pd.DataFrame({"la": la[m], "lsoa": lsoa[m], "w2": within[m] ** 2})
                   .drop_duplicates("lsoa").groupby("la")["w2"].sum())
        lsoa_part = (TYPICAL_LSOA_SD**2 / lsoa_w2.clip(lower=1e-12)) if spec.lsoa_effects else 0.0
        se = np.sqrt(1.0 / slope_info.clip(lower=1e-12) + lsoa_part)
        plan["la_slope"][i] = float(se.median()) <= CENTRE_SLOPE_SE
    return plan


def group_level(model: pm.Model, name: str, group_dim: str, mean, sd, centred: np.ndarray,
                 stages: list[str]):
    """Group x stage values ~ Normal(mean, sd[stage]), centred at the stages flagged in
    ``centred`` and non-centred at the others, stitched back in stage order."""
    n_group = len(model.coords[group_dim])
    mean = pt.broadcast_to(pt.as_tensor_variable(mean), (n_group, len(stages)))
    out = pt.zeros((n_group, len(stages)))
    c_idx = np.flatnonzero(centred)
    n_idx = np.flatnonzero(~centred)
    if len(c_idx):
        dim = f"{name}_centred_stage"
        model.add_coord(dim, [stages[i] for i in c_idx])
        x = pm.Normal(f"{name}_centred", mean[:, c_idx], sd[c_idx], dims=(group_dim, dim))
        out = pt.set_subtensor(out[:, c_idx], x)
    if len(n_idx):
        dim = f"{name}_noncentred_stage"
        model.add_coord(dim, [stages[i] for i in n_idx])
        z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=(group_dim, dim))
        out = pt.set_subtensor(out[:, n_idx], mean[:, n_idx] + z * sd[n_idx])
    return out


_group_level = group_level  # the former private name, kept for code written against it
