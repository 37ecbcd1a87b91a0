"""Class-specific quantities of the joint model (or of a three-step fit in the same names).

Every function takes a posterior with ``class_intercept`` and ``class_gradient`` (stage x
class, logit scale per decile step of within-LA deprivation) and ``between_effect`` (stage),
aligned so that ``class`` labels mean the same thing in every draw
(:mod:`models.joint.fit`), and returns labelled draws; :func:`summarise` (the gradient
model's) turns any of them into a table with a credible interval and R-hat/ESS.

- the class gradient: odds ratio per decile step, by stage and class;
- the class contextual effect ``between - class gradient`` (the between-LA effect is common
  to classes, so a steeper class gradient means a stronger inverse intervention effect for
  that class) and its inverse intervention contrast, LA at the 25th vs 75th percentile of
  LA deprivation, same neighbourhood deprivation;
- the headline question as a posterior probability: do the named classes (Neglect and
  Complex Needs II in the study) have the steepest gradients?
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from models.gradient.effects import DECILES, DeprivationScale, decile_midpoint, summarise

SAMPLE = ("chain", "draw")

__all__ = ["class_gradients", "slope_contrasts", "class_contextual", "class_inverse_intervention",
           "class_probability", "class_probability_by_decile", "steepest", "gradient_rank",
           "pairwise_steeper", "orderings", "summarise"]


def _check(post: xr.Dataset, *names: str) -> None:
    missing = [n for n in names if n not in post]
    if missing:
        raise ValueError(f"posterior lacks {missing}: pass a joint or three-step posterior")


def class_gradients(post: xr.Dataset, odds: bool = True) -> xr.DataArray:
    """The social gradient of each class: odds ratio per decile step (``odds=False``: the
    logit slope), by stage and class."""
    _check(post, "class_gradient")
    g = post["class_gradient"]
    out = np.exp(g) if odds else g
    return out.rename("class_gradient").assign_attrs(
        measure=("odds ratio" if odds else "logit slope") + " per decile step of neighbourhood "
        "deprivation within the LA, given the parent stage")


def slope_contrasts(post: xr.Dataset, reference: str) -> xr.DataArray:
    """Each class's gradient minus the ``reference`` class's (logit scale), by stage."""
    _check(post, "class_gradient")
    g = post["class_gradient"]
    if reference not in g["class"].values:
        raise ValueError(f"no class {reference!r}; classes: {list(g['class'].values)}")
    return (g - g.sel({"class": reference}, drop=True)).rename("slope_contrast").assign_attrs(
        measure=f"logit gradient per decile step minus that of {reference}")


def class_contextual(post: xr.Dataset) -> xr.DataArray:
    """Contextual effect of LA deprivation by class (logit, per decile unit of LA mean
    deprivation): between effect minus the class's within gradient."""
    _check(post, "class_gradient", "between_effect")
    out = post["between_effect"] - post["class_gradient"]
    return out.rename("class_contextual").assign_attrs(
        measure="between-LA minus within-LA effect of deprivation (negative: inverse intervention)")


def class_inverse_intervention(post: xr.Dataset, scale: DeprivationScale) -> xr.DataArray:
    """Odds ratio, same neighbourhood deprivation, LA at the 25th over the 75th percentile of
    LA deprivation, by stage and class (above 1: the less deprived LA intervenes more)."""
    out = np.exp(class_contextual(post) * (scale.la_p25 - scale.la_p75))
    return out.rename("class_inverse_intervention").assign_attrs(
        measure=f"odds ratio, same neighbourhood deprivation, LA at the 25th vs the 75th percentile "
                f"of LA deprivation ({scale.la_p75 - scale.la_p25:.2f} decile units apart)")


def class_probability(post: xr.Dataset) -> xr.DataArray:
    """P(stage | parent stage, class) in a typical LA (LA and LSOA effects zero) at the
    national centre of deprivation."""
    _check(post, "class_intercept")
    return (1.0 / (1.0 + np.exp(-post["class_intercept"]))).rename("class_probability").assign_attrs(
        measure="probability of the stage given its parent, typical LA, national centre of deprivation")


def class_probability_by_decile(post: xr.Dataset, scale: DeprivationScale, la_between: float = 0.0) -> xr.DataArray:
    """P(stage | parent, class) by IDACI decile (1 = most deprived) in a typical LA whose
    mean deprivation is ``la_between`` above the national centre."""
    _check(post, "class_intercept", "class_gradient", "between_effect")
    dep = xr.DataArray(decile_midpoint(DECILES), coords={"decile": DECILES}, dims="decile")
    within = dep - (scale.national_centre + la_between)
    eta = post["class_intercept"] + post["class_gradient"] * within + post["between_effect"] * la_between
    return (1.0 / (1.0 + np.exp(-eta))).rename("class_probability_by_decile").assign_attrs(
        measure="probability of the stage given its parent", decile="IDACI 2019 decile, 1 = most deprived")


def gradient_rank(post: xr.Dataset) -> xr.DataArray:
    """Posterior probability that each class has the r-th steepest gradient (r = 1: steepest),
    by stage: dims (stage, class, rank)."""
    _check(post, "class_gradient")
    g = post["class_gradient"].transpose(*SAMPLE, "stage", "class").to_numpy()
    order = np.argsort(-g, axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(g.shape[-1])[None, None, None, :], axis=-1)
    k = g.shape[-1]
    probs = np.stack([(ranks == r).mean(axis=(0, 1)) for r in range(k)], axis=-1)
    return xr.DataArray(probs, dims=("stage", "class", "rank"),
                        coords={"stage": post["stage"].values, "class": post["class"].values,
                                "rank": np.arange(1, k + 1)}, name="gradient_rank",
                        attrs={"measure": "posterior probability of this rank (1 = steepest gradient)"})


def steepest(post: xr.Dataset, classes: tuple[str, ...] = ("neglect", "complex_needs_2")) -> xr.DataArray:
    """The headline question as a probability, by stage: P(the named classes have the
    ``len(classes)`` steepest gradients, in either order).  Where the class slope shifts are
    shared across stages (the default model) every stage gives the same answer."""
    _check(post, "class_gradient")
    labels = list(post["class"].values)
    absent = [c for c in classes if c not in labels]
    if absent:
        raise ValueError(f"classes {absent} are not in the posterior; classes: {labels}")
    if len(classes) >= len(labels):
        raise ValueError("name fewer classes than the model has")
    g = post["class_gradient"].transpose(*SAMPLE, "stage", "class")
    named = g.sel({"class": list(classes)}).min("class")
    rest = g.sel({"class": [c for c in labels if c not in classes]}).max("class")
    out = (named > rest).mean(SAMPLE)
    return out.rename("p_steepest").assign_attrs(
        measure=f"P({' and '.join(classes)} have the {len(classes)} steepest gradients)")


def pairwise_steeper(post: xr.Dataset) -> xr.DataArray:
    """P(class a's gradient > class b's), by stage: dims (stage, class, class_b)."""
    _check(post, "class_gradient")
    g = post["class_gradient"]
    gb = g.rename({"class": "class_b"})
    return (g > gb).mean(SAMPLE).rename("p_steeper").assign_attrs(
        measure="posterior probability that the row class has the steeper gradient")


def orderings(post: xr.Dataset, stage: str) -> dict[tuple[str, ...], float]:
    """Posterior probability of each full ordering of class gradients at ``stage`` (steepest
    first), the most probable first; useful when few classes are compared."""
    g = post["class_gradient"].sel(stage=stage).transpose(*SAMPLE, "class").to_numpy().reshape(-1, post.sizes["class"])
    labels = list(post["class"].values)
    keys = [tuple(labels[i] for i in row) for row in np.argsort(-g, axis=1)]
    counts: dict[tuple[str, ...], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(((k, v / len(keys)) for k, v in counts.items()), key=lambda kv: -kv[1]))

