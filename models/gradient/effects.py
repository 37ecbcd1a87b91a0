"""Derived quantities of the gradient model, as labelled xarray draws.

Every function takes the posterior (``idata.posterior``, dims ``chain``, ``draw``, ...)
and returns draws of a quantity a reader would cite; :func:`summarise` turns any of them
into a table with a credible interval and the R-hat and ESS of that very quantity.

Scales: on the population scale ``exp`` of a coefficient is a *rate ratio* and
predictions are rates per 10,000 children per year; on the transition scale it is an
*odds ratio* and predictions are probabilities of reaching the stage given its parent.

Deciles are IDACI 2019 deciles, 1 = most deprived (as published); a decile's deprivation
is its midpoint in decile units, ``10.5 - decile`` (:mod:`models.areas`).  Predictions are
for a *typical LA*: LA and LSOA effects at zero (the median LA, not the mean of LAs),
year effects averaged over the years modelled, covariates at their reference levels
unless ``levels`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from models.gradient.model import GradientSpec

DECILES = np.arange(1, 11)
PER_10K = 10_000.0


def decile_midpoint(decile) -> np.ndarray:
    """Deprivation (decile units, 10 = most deprived) at the middle of IDACI decile(s)."""
    return 10.5 - np.asarray(decile, dtype=float)


@dataclass(frozen=True)
class DeprivationScale:
    """Facts about deprivation in England that turn coefficients into contrasts.

    ``within_sd``: child-weighted SD of neighbourhood deprivation around its LA mean (for
    effects "per SD"); ``la_p25``/``la_p75``: quartiles of LA mean deprivation relative to
    the national centre, over all LAs (for the inverse intervention contrast).
    """

    national_centre: float
    within_sd: float
    la_p25: float
    la_p75: float

    @classmethod
    def from_geography(cls, geography: pd.DataFrame) -> "DeprivationScale":
        """From an LSOA table with :func:`models.areas.add_deprivation` columns (pass all of
        England for nationally meaningful contrasts)."""
        w = geography["children_0_15"].astype(float).to_numpy()
        within = geography["dep_within"].to_numpy(float)
        centre = float(np.average(geography["dep"], weights=w))
        la_between = geography.groupby("la_code")["dep_between"].first().to_numpy(float)
        p25, p75 = np.quantile(la_between, [0.25, 0.75])
        return cls(centre, float(np.sqrt(np.average(within**2, weights=w))), float(p25), float(p75))


def _scale_words(spec: GradientSpec) -> tuple[str, str]:
    return ("rate ratio", "rate per 10,000 children per year") if spec.scale == "population" \
        else ("odds ratio", "probability given the parent stage")


def gradient(post: xr.Dataset, spec: GradientSpec, per: str = "decile",
             scale: DeprivationScale | None = None) -> xr.DataArray:
    """The social gradient: ratio per decile step (or per SD) of within-LA deprivation, by stage."""
    unit = 1.0
    if per == "sd":
        if scale is None:
            raise ValueError("per='sd' needs the DeprivationScale (the SD of within-LA deprivation)")
        unit = scale.within_sd
    elif per != "decile":
        raise ValueError(f"per must be 'decile' or 'sd', got {per!r}")
    out = np.exp(post["within_effect"] * unit)
    return out.rename(f"gradient_per_{per}").assign_attrs(
        measure=f"{_scale_words(spec)[0]} per {'decile step' if per == 'decile' else 'SD'} "
                "of neighbourhood deprivation within the LA")


def _year_mean(post: xr.Dataset) -> xr.DataArray | float:
    return post["year_effect"].mean("year") if "year_effect" in post else 0.0


def _level_terms(post: xr.Dataset, spec: GradientSpec, levels: dict | None):
    """Covariate main effects and gradient shifts at the chosen levels (reference if unset)."""
    levels = dict(levels or {})
    unknown = set(levels) - set(spec.covariates)
    if unknown:
        raise ValueError(f"levels given for covariates not in the model: {sorted(unknown)}")
    main, shift = 0.0, 0.0
    for cov in spec.covariates:
        level = levels.get(cov, spec.reference.get(cov))
        if level is None or level not in post[f"{cov}_effect"][cov].values:
            level = str(post[f"{cov}_effect"][cov].values[0]) if level is None else level
            if level not in post[f"{cov}_effect"][cov].values:
                raise ValueError(f"{cov} has no level {level!r}")
        main = main + post[f"{cov}_effect"].sel({cov: level}, drop=True)
        if f"{cov}_gradient_shift" in post:
            shift = shift + post[f"{cov}_gradient_shift"].sel({cov: level}, drop=True)
    return main, shift


def _response(eta: xr.DataArray, spec: GradientSpec) -> xr.DataArray:
    if spec.scale == "population":
        return np.exp(eta) * PER_10K
    return 1.0 / (1.0 + np.exp(-eta))


def predict(post: xr.Dataset, spec: GradientSpec, dep, la_between, levels: dict | None = None,
            la: str | None = None, scale: DeprivationScale | None = None) -> xr.DataArray:
    """Predicted rate (population) or probability (transition) for a neighbourhood of
    deprivation ``dep`` (decile units; an xarray DataArray to keep its labels) in an LA whose
    mean deprivation is ``la_between`` above the national centre.

    ``la`` uses that LA's own intercept and gradient and its real mean deprivation.
    """
    centre = scale.national_centre if scale is not None else None
    if centre is None:
        raise ValueError("predict needs the DeprivationScale (national centre of deprivation)")
    main, shift = _level_terms(post, spec, levels)
    slope = post["within_effect"] + shift
    intercept = post["intercept"] + _year_mean(post) + main
    if la is not None:
        intercept = intercept + post["la_effect"].sel(la=la, drop=True)
        if "la_slope" in post:
            slope = slope + post["la_slope"].sel(la=la, drop=True)
    within = dep - (centre + la_between)
    eta = intercept + slope * within + post["between_effect"] * la_between
    return _response(eta, spec)


def rate_by_decile(post: xr.Dataset, spec: GradientSpec, scale: DeprivationScale,
                   levels: dict | None = None, la_between: float = 0.0) -> xr.DataArray:
    """Predicted rate per 10,000 (population) or probability (transition) by IDACI decile
    and stage, for a typical LA of the given mean deprivation (default: England's)."""
    dep = xr.DataArray(decile_midpoint(DECILES), coords={"decile": DECILES}, dims="decile")
    out = predict(post, spec, dep, la_between, levels, scale=scale)
    return out.rename("predicted_by_decile").assign_attrs(measure=_scale_words(spec)[1],
                                                         decile="IDACI 2019 decile, 1 = most deprived")


def extreme_decile_ratio(post: xr.Dataset, spec: GradientSpec, scale: DeprivationScale,
                         levels: dict | None = None) -> xr.DataArray:
    """Most (decile 1) over least (decile 10) deprived: rate ratio (population) or risk
    ratio of the transition probability (transition), by stage."""
    by_decile = rate_by_decile(post, spec, scale, levels)
    out = by_decile.sel(decile=1, drop=True) / by_decile.sel(decile=10, drop=True)
    return out.rename("ratio_decile1_to_decile10").assign_attrs(
        measure="most deprived decile over least deprived decile, typical LA")


def inverse_intervention(post: xr.Dataset, spec: GradientSpec, scale: DeprivationScale) -> xr.DataArray:
    """The inverse intervention contrast, by stage: for the *same* neighbourhood deprivation,
    an LA at the 25th percentile of LA deprivation over one at the 75th.  Above 1: the less
    deprived LA intervenes more.  ``exp(contextual x (p25 - p75))``; a rate ratio or an odds
    ratio by scale."""
    out = np.exp(post["contextual_effect"] * (scale.la_p25 - scale.la_p75))
    return out.rename("inverse_intervention").assign_attrs(
        measure=f"{_scale_words(spec)[0]}, same neighbourhood deprivation, LA at the 25th vs "
                f"the 75th percentile of LA deprivation ({scale.la_p75 - scale.la_p25:.2f} decile units apart)")


def la_gradients(post: xr.Dataset, spec: GradientSpec) -> xr.DataArray:
    """Each LA's own gradient per decile step, by stage (reference covariate levels)."""
    slope = post["within_effect"] + (post["la_slope"] if "la_slope" in post else 0.0)
    return np.exp(slope).rename("la_gradient").assign_attrs(
        measure=f"{_scale_words(spec)[0]} per decile step within the LA")


def covariate_gradients(post: xr.Dataset, spec: GradientSpec, covariate: str) -> xr.DataArray:
    """The gradient per decile step for each level of ``covariate`` (its interaction), by stage."""
    name = f"{covariate}_gradient_shift"
    if name not in post:
        raise ValueError(f"the model has no gradient interaction with {covariate!r}")
    out = np.exp(post["within_effect"] + post[name])
    return out.rename(f"gradient_by_{covariate}").assign_attrs(
        measure=f"{_scale_words(spec)[0]} per decile step, by {covariate}")


def gradient_change(post: xr.Dataset, spec: GradientSpec) -> xr.DataArray:
    """How the gradient changes from each stage to the next: ratio of consecutive stages'
    per-decile gradients (above 1: steeper at the later stage), labelled by the later stage."""
    within = post["within_effect"]
    stages = list(within["stage"].values)
    if len(stages) < 2:
        raise ValueError("gradient_change needs at least two stages")
    later = within.sel(stage=stages[1:])
    earlier = within.sel(stage=stages[:-1]).assign_coords(stage=stages[1:])
    out = np.exp(later - earlier)
    return out.rename("gradient_change").assign_attrs(
        measure="gradient at this stage over the gradient at the stage before",
        previous_stage=dict(zip(stages[1:], stages[:-1])))


def summarise(draws: xr.DataArray, prob: float = 0.95) -> pd.DataFrame:
    """Mean, median, equal-tailed credible interval, P(>1) for ratios, and the R-hat, bulk
    and tail ESS of the quantity itself, one row per label combination."""
    lo_q, hi_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    sample_dims = ("chain", "draw")
    ds = draws.to_dataset(name="x")
    table = pd.DataFrame({
        "mean": draws.mean(sample_dims).to_series(),
        "median": draws.median(sample_dims).to_series(),
        "lower": draws.quantile(lo_q, sample_dims).drop_vars("quantile").to_series(),
        "upper": draws.quantile(hi_q, sample_dims).drop_vars("quantile").to_series(),
        "r_hat": az.rhat(ds)["x"].to_series(),
        "ess_bulk": az.ess(ds, method="bulk")["x"].to_series(),
        "ess_tail": az.ess(ds, method="tail")["x"].to_series(),
    }) if draws.ndim > 2 else pd.DataFrame({
        "mean": [float(draws.mean())], "median": [float(draws.median())],
        "lower": [float(draws.quantile(lo_q))], "upper": [float(draws.quantile(hi_q))],
        "r_hat": [float(az.rhat(ds)["x"])], "ess_bulk": [float(az.ess(ds, method="bulk")["x"])],
        "ess_tail": [float(az.ess(ds, method="tail")["x"])]})
    table.attrs["interval"] = f"{prob:.0%} equal-tailed credible interval"
    table.attrs["quantity"] = draws.name
    table.attrs["measure"] = draws.attrs.get("measure", "")
    return table
