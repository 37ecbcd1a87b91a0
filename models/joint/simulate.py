"""A compact simulator of assessed episodes with the simulator's class structure, for the joint model.

Why: the full simulator (:mod:`models.simulation.generator`) draws 39 factors, 7 classes,
ages, ethnicities and years; fitting a mixture to all of that takes far longer than a test
or a notebook can spend.  This draws the same generative structure on a chosen subset of
classes and factors, from the same design values and the same true LA effects
(``truth`` from :func:`models.simulation.truth.draw_truth`, real LSOAs and their
deprivation), without the age, ethnicity and year terms:

    class ~ Categorical(softmax(log prevalence + LA class logit))
    factor j | class k ~ Bernoulli(profile[k, j])                     (local independence)
    logit P(s | parent, k) = intercept_by_class[s, k] + u[la, s] + v[lsoa, s]
                             + (within[s] + la_slope[la, s] + slope_by_class[k]) * dep_within
                             + between[s] * dep_between

for s in s47, icpc, cpp (each given the one before) and lac (given assessment).  Every
episode returned was assessed.  ``prevalence`` may override the class shares (Complex Needs
II is 3% of episodes in the study: a small test needs more of them to say anything).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.simulation.truth import CLASS_SIGNATURES, CLASS_STAGES, rng_for
from models.vocabulary import STAGE_PARENT

STREAM_JOINT = 7  # a stream of its own, apart from the full simulator's


@dataclass
class JointSimulation:
    """Episodes (geography and stage flags), factors, the true class of each, and the truth."""

    episodes: pd.DataFrame   # la_code, lsoa_code, dep_within, dep_between, assessment, s47, icpc, cpp, lac
    factors: pd.DataFrame    # episode x factor booleans
    classes: np.ndarray      # true class name per episode
    truth: dict              # class-stage parameters on the scale the joint model estimates


def signature_factors(truth: dict, classes: tuple[str, ...]) -> list[str]:
    """The factors that define the chosen classes (their signature items), in profile order."""
    wanted = {f for c in classes for f in CLASS_SIGNATURES[c]}
    return [f for f in truth["classes"]["profiles"][classes[0]] if f in wanted]


def pick_lsoas(geography: pd.DataFrame, la_codes, per_la: int) -> pd.DataFrame:
    """``per_la`` LSOAs of each LA spread evenly along its within-LA deprivation."""
    parts = []
    for la in la_codes:
        g = geography[geography["la_code"] == la].sort_values("dep_within")
        take = np.unique(np.linspace(0, len(g) - 1, min(per_la, len(g))).round().astype(int))
        parts.append(g.iloc[take])
    return pd.concat(parts, ignore_index=True)[["la_code", "lsoa_code", "dep_within", "dep_between"]]


def simulate_joint(truth: dict, geography: pd.DataFrame, classes: tuple[str, ...],
                   n_episodes: int, *, factors: list[str] | None = None, lsoa_per_la: int = 20,
                   prevalence: dict[str, float] | None = None, seed: int = 0) -> JointSimulation:
    """Draw ``n_episodes`` assessed episodes spread over the LAs of ``truth``.

    ``geography``: LSOA table with ``dep_within``/``dep_between`` (:func:`models.areas.add_deprivation`).
    """
    rng = rng_for(seed, STREAM_JOINT)
    factors = list(factors) if factors is not None else signature_factors(truth, classes)
    lsoas = pick_lsoas(geography, truth["la_codes"], lsoa_per_la)
    tr = truth["transitions"]
    lsoa_eff = {s: rng.normal(0.0, tr[s]["sd_lsoa"], len(lsoas)) for s in CLASS_STAGES}
    # Episodes fall on LSOAs more often where deprivation is higher (the referral gradient).
    p_lsoa = np.exp(truth["referral"]["within"] * lsoas["dep_within"].to_numpy())
    at = rng.choice(len(lsoas), size=n_episodes, p=p_lsoa / p_lsoa.sum())
    ep = lsoas.iloc[at].reset_index(drop=True)

    share = prevalence or {c: np.exp(truth["classes"]["base_logit"][c]) for c in classes}
    base = np.log(np.array([share[c] for c in classes], dtype=float))
    la_logit = np.array([[truth["la_effects"][la]["class_logit"][c] for c in classes]
                         for la in ep["la_code"]])
    logits = base[None, :] + la_logit
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    klass = (p.cumsum(axis=1) < rng.random(n_episodes)[:, None]).sum(axis=1)
    klass = np.minimum(klass, len(classes) - 1)

    prof = np.array([[truth["classes"]["profiles"][c][f] for f in factors] for c in classes])
    recorded = rng.random((n_episodes, len(factors))) < prof[klass]

    within = ep["dep_within"].to_numpy()
    between = ep["dep_between"].to_numpy()
    reached = {"assessment": np.ones(n_episodes, dtype=bool)}
    for s in CLASS_STAGES:
        t = tr[s]
        la = np.array([[truth["la_effects"][code][s]["intercept"], truth["la_effects"][code][s]["slope"]]
                       for code in ep["la_code"]])
        intercept = np.array([t["intercept_by_class"][c] for c in classes])[klass]
        shift = np.array([t["slope_by_class"][c] for c in classes])[klass]
        eta = (intercept + la[:, 0] + lsoa_eff[s][at] + (t["within"] + la[:, 1] + shift) * within
               + t["between"] * between)
        draw = rng.random(n_episodes) < 1.0 / (1.0 + np.exp(-eta))
        reached[s] = reached[STAGE_PARENT[s]] & draw

    episodes = ep.assign(**reached)
    names = np.array(classes, dtype=object)
    joint_truth = {
        "classes": list(classes),
        "factors": factors,
        "class_share": {c: float(np.mean(klass == i)) for i, c in enumerate(classes)},
        "profiles": {c: {f: truth["classes"]["profiles"][c][f] for f in factors} for c in classes},
        "intercept": {s: {c: tr[s]["intercept_by_class"][c] for c in classes} for s in CLASS_STAGES},
        "slope_shift": {c: tr["s47"]["slope_by_class"][c] for c in classes},
        "gradient": {s: {c: tr[s]["within"] + tr[s]["slope_by_class"][c] for c in classes}
                     for s in CLASS_STAGES},
        "within": {s: tr[s]["within"] for s in CLASS_STAGES},
        "between": {s: tr[s]["between"] for s in CLASS_STAGES},
        "contextual": {s: tr[s]["contextual"] for s in CLASS_STAGES},
        "sd_la": {s: tr[s]["sd_la"] for s in CLASS_STAGES},
        "sd_la_slope": {s: tr[s]["sd_la_slope"] for s in CLASS_STAGES},
        "sd_lsoa": {s: tr[s]["sd_lsoa"] for s in CLASS_STAGES},
    }
    return JointSimulation(episodes=episodes, factors=pd.DataFrame(recorded, columns=factors),
                           classes=names[klass], truth=joint_truth)
