"""The true parameters of the synthetic system: fixed design values plus seeded random effects.

Everything a recovery test could compare with lives in the returned ``dict`` (written as
``truth.json``), on the scale the models estimate:

- referrals: log rate per child-year (Poisson), per decile unit of deprivation;
- later stages: logit of reaching stage s given its parent stage (``STAGE_PARENT``),
  with class-specific intercepts and gradient shifts after assessment.

Gradients are on the within-LA deprivation (``dep_within``, decile units); the between
coefficient multiplies the LA's mean deprivation (``dep_between``); their difference is
the contextual effect (negative: the inverse intervention effect).  The design values
were chosen so that CPP and LAC rates by IDACI decile follow the published national
pattern (about x1.3 per decile step) and class outcome rates follow Hood et al. (2020).

Random streams are keyed by LA code, so an LA has the same effects in every preset that
includes it and the national preset can be generated one LA at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.vocabulary import (
    AGE_GROUPS, CPP_CATEGORIES, DEMAND_CLASSES, ETHNICITIES, FACTOR_NAMES, GENDERS, STAGES,
    STAGE_PARENT,
)
from models.simulation.presets import Preset

TRANSITION_STAGES = STAGES[1:]
CLASS_STAGES = ("s47", "icpc", "cpp", "lac")

# ---------------------------------------------------------------------------------------
# Design values (not random).  Scales: log rate (referral) and logit (transitions),
# per decile step of deprivation.
# ---------------------------------------------------------------------------------------
REFERRALS_PER_10K_CHILDREN = 520.0  # per year, per child aged 0-15 (calibrated to CPP/LAC levels)

REFERRAL = {
    "within": 0.17,
    "contextual": -0.08,
    "sd_la": 0.20,
    "sd_la_slope": 0.03,
    "sd_lsoa": 0.15,
    # Referral share / population share by age group (DfE CIN ages; log ratios).
    "age_effect": {"under_1": 0.68, "1_4": -0.06, "5_9": -0.10, "10_15": 0.0, "16_plus": -0.10},
    "gender_effect": {"male": 0.0, "female": -0.06},
    "ethnicity_effect": {
        "white_british": 0.0, "white_other": -0.25, "mixed": 0.30, "asian": -0.45,
        "black": 0.20, "other": 0.0, "unknown": 0.0,
    },
    "disability_effect": 0.35,
    "year_trend": 0.03,
    "sd_year": 0.03,
}

#: P(stage | parent) at the national centre of deprivation, per demand class.
TRANSITION_PROBABILITY = {
    "assessment": 0.90,
    "s47": {"neglect": .38, "domestic_violence": .25, "physical_abuse": .45, "complex_needs_1": .28,
            "complex_needs_2": .70, "out_of_control": .20, "disability_mental_health": .12},
    "icpc": {"neglect": .45, "domestic_violence": .38, "physical_abuse": .30, "complex_needs_1": .45,
             "complex_needs_2": .60, "out_of_control": .25, "disability_mental_health": .30},
    "cpp": {"neglect": .88, "domestic_violence": .85, "physical_abuse": .75, "complex_needs_1": .85,
            "complex_needs_2": .90, "out_of_control": .70, "disability_mental_health": .80},
    "lac": {"neglect": .060, "domestic_violence": .024, "physical_abuse": .048,
            "complex_needs_1": .036, "complex_needs_2": .170, "out_of_control": .140,
            "disability_mental_health": .060},
}
TRANSITION = {
    "assessment": {"within": 0.02, "contextual": -0.01, "sd_la": 0.30, "sd_la_slope": 0.02, "sd_lsoa": 0.10},
    "s47": {"within": 0.05, "contextual": -0.03, "sd_la": 0.30, "sd_la_slope": 0.02, "sd_lsoa": 0.10},
    "icpc": {"within": 0.03, "contextual": -0.02, "sd_la": 0.25, "sd_la_slope": 0.02, "sd_lsoa": 0.10},
    "cpp": {"within": 0.02, "contextual": -0.02, "sd_la": 0.20, "sd_la_slope": 0.02, "sd_lsoa": 0.10},
    "lac": {"within": 0.09, "contextual": -0.05, "sd_la": 0.25, "sd_la_slope": 0.02, "sd_lsoa": 0.10},
}
#: Gradient modifiers on the class stages (s47, icpc, cpp, lac), added to the within slope:
#: steeper for younger children and White British children, as the research found.  They
#: sit on the transitions, where the population at risk (referred children) is known by
#: age and ethnicity, and not on referral rates, for which no public LSOA denominators by
#: age or ethnicity exist; so the LSOA-level referral model stays exactly log-linear.
SLOPE_BY_AGE = {"under_1": 0.03, "1_4": 0.02, "5_9": 0.01, "10_15": 0.0, "16_plus": -0.015}
SLOPE_BY_ETHNICITY = {
    "white_british": 0.02, "white_other": 0.0, "mixed": 0.01, "asian": -0.015,
    "black": -0.01, "other": 0.0, "unknown": 0.0,
}
#: Class-specific shifts of the within gradient (steepest for Neglect and Complex Needs II).
SLOPE_BY_CLASS = {
    "neglect": 0.04, "domestic_violence": 0.0, "physical_abuse": 0.0, "complex_needs_1": 0.0,
    "complex_needs_2": 0.05, "out_of_control": -0.02, "disability_mental_health": -0.03,
}
TRANSITION_AGE_EFFECT = {
    "s47": {"under_1": 0.30, "1_4": 0.10, "5_9": 0.0, "10_15": 0.0, "16_plus": -0.20},
    "lac": {"under_1": 0.80, "1_4": 0.20, "5_9": 0.0, "10_15": 0.0, "16_plus": 0.30},
}
SD_YEAR_TRANSITION = 0.05

#: Class prevalence among referrals (Hood et al.: Complex Needs II about 3%).
CLASS_PREVALENCE = {
    "neglect": .16, "domestic_violence": .26, "physical_abuse": .10, "complex_needs_1": .20,
    "complex_needs_2": .03, "out_of_control": .12, "disability_mental_health": .13,
}
#: Age shifts of class membership logits (Neglect younger; out-of-control older).
CLASS_AGE_EFFECT = {
    "neglect": {"under_1": 0.9, "1_4": 0.6, "5_9": 0.0, "10_15": -0.4, "16_plus": -0.8},
    "out_of_control": {"under_1": -3.0, "1_4": -3.0, "5_9": -1.0, "10_15": 0.8, "16_plus": 1.5},
    "disability_mental_health": {"under_1": -0.8, "1_4": -0.2, "5_9": 0.0, "10_15": 0.3, "16_plus": 0.4},
}
SD_LA_CLASS = 0.25

#: Signature item probabilities; every other item gets a background rate solved so that
#: marginal prevalences match the national c3 table.
CLASS_SIGNATURES = {
    "neglect": {"neglect": .92, "emotional_abuse": .25, "mental_health_parent": .15},
    "domestic_violence": {"domestic_abuse_parent": .92, "domestic_abuse_person": .25,
                          "domestic_abuse_child": .15, "emotional_abuse": .20},
    "physical_abuse": {"physical_abuse_adult_on_child": .80, "physical_abuse_unknown": .12,
                       "emotional_abuse": .10},
    "complex_needs_1": {"domestic_abuse_parent": .43, "mental_health_parent": .42, "alcohol_parent": .25,
                        "drugs_parent": .21, "emotional_abuse": .24, "neglect": .12},
    "complex_needs_2": {"neglect": .75, "domestic_abuse_parent": .65, "mental_health_parent": .65,
                        "alcohol_parent": .50, "drugs_parent": .55, "emotional_abuse": .55,
                        "learning_disability_parent": .20, "physical_abuse_adult_on_child": .25},
    "out_of_control": {"going_missing": .45, "cse": .30, "cce": .30, "gangs": .18,
                       "socially_unacceptable_behaviour": .55, "self_harm": .30,
                       "drugs_child": .35, "alcohol_child": .20, "mental_health_child": .40},
    "disability_mental_health": {"mental_health_child": .60, "learning_disability_child": .40,
                                 "physical_disability_child": .35, "self_harm": .20},
}
BACKGROUND_BOUNDS = (0.003, 0.30)

#: Category of a child protection plan, by demand class.
CPP_CATEGORY_BY_CLASS = {
    "neglect": {"neglect": .90, "physical": .02, "sexual": .01, "emotional": .05, "multiple": .02},
    "domestic_violence": {"neglect": .08, "physical": .04, "sexual": .01, "emotional": .83, "multiple": .04},
    "physical_abuse": {"neglect": .05, "physical": .85, "sexual": .02, "emotional": .05, "multiple": .03},
    "complex_needs_1": {"neglect": .22, "physical": .04, "sexual": .02, "emotional": .68, "multiple": .04},
    "complex_needs_2": {"neglect": .50, "physical": .05, "sexual": .02, "emotional": .23, "multiple": .20},
    "out_of_control": {"neglect": .30, "physical": .15, "sexual": .25, "emotional": .25, "multiple": .05},
    "disability_mental_health": {"neglect": .45, "physical": .05, "sexual": .03, "emotional": .45, "multiple": .02},
}

#: Population composition (synthetic where no public LSOA table exists).
AGE_YEARS = {"under_1": 1, "1_4": 4, "5_9": 5, "10_15": 6, "16_plus": 2}  # years per group
GENDER_SHARE = {"male": 0.512, "female": 0.488}
DISABILITY_SHARE = 0.05
DEFAULT_WHITE_BRITISH_SHARE = 0.75
OTHER_ETHNICITY_MIX = {  # shares of the non-White-British children
    "white_other": 0.24, "mixed": 0.22, "asian": 0.28, "black": 0.14, "other": 0.06, "unknown": 0.06,
}

STREAM_GLOBAL, STREAM_LA, STREAM_LSOA, STREAM_SUBSAMPLE = 0, 1, 2, 3


def la_key(la_code: str) -> int:
    """A stable integer per LA code (E06000044 -> 6000044) to key its random stream."""
    return int(la_code[1:])


def rng_for(seed: int, stream: int, key: int = 0) -> np.random.Generator:
    """Independent, reproducible generator for one (seed, stream, key)."""
    return np.random.default_rng([int(seed), stream, key])


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def class_background(factor_share: pd.Series) -> dict[str, float]:
    """Solve the background item probability so marginal factor prevalences hit the c3 shares.

    For factor f: target = sum_c pi_c p_cf, with p_cf the signature value where class c
    has one and the background b_f otherwise; b_f is clipped to ``BACKGROUND_BOUNDS``.
    """
    background = {}
    for factor in FACTOR_NAMES:
        target = float(factor_share.get(factor, np.nan))
        if not np.isfinite(target):
            target = 0.01
        signed = sum(CLASS_PREVALENCE[c] * CLASS_SIGNATURES[c][factor]
                     for c in DEMAND_CLASSES if factor in CLASS_SIGNATURES[c])
        rest = sum(CLASS_PREVALENCE[c] for c in DEMAND_CLASSES if factor not in CLASS_SIGNATURES[c])
        value = (target - signed) / rest if rest > 0 else BACKGROUND_BOUNDS[0]
        background[factor] = float(np.clip(value, *BACKGROUND_BOUNDS))
    return background


def class_profiles(factor_share: pd.Series) -> dict[str, dict[str, float]]:
    """Item probabilities P(factor recorded | class), class x factor."""
    background = class_background(factor_share)
    return {
        c: {f: float(CLASS_SIGNATURES[c].get(f, background[f])) for f in FACTOR_NAMES}
        for c in DEMAND_CLASSES
    }


def draw_truth(preset: Preset, national: pd.DataFrame, factor_share: pd.Series, seed: int) -> dict:
    """Draw every true parameter for ``preset``.

    ``national`` is the full England LSOA table with ``dep_within``/``dep_between`` (see
    :func:`models.areas.add_deprivation`); the referral intercept is calibrated on it, so
    it does not depend on which LAs a preset holds.  ``factor_share`` is the national share
    of assessed episodes with each factor (indexed by factor name).
    """
    national_dep_centre = float(np.average(national["dep"], weights=national["children_0_15"]))
    geography = national if preset.la_codes is None else national[national["la_code"].isin(preset.la_codes)]
    rng = rng_for(seed, STREAM_GLOBAL)
    years = list(preset.years)
    las = sorted(geography["la_code"].unique())

    referral = {k: (dict(v) if isinstance(v, dict) else v) for k, v in REFERRAL.items()}
    referral["between"] = referral["within"] + referral["contextual"]
    year_eff = [0.0] + list(rng.normal(0.0, REFERRAL["sd_year"], len(years) - 1))
    referral["year_effect"] = {
        str(y): float(REFERRAL["year_trend"] * i + year_eff[i]) for i, y in enumerate(years)
    }
    referral["intercept"] = _calibrate_referral_intercept(national, referral)

    transitions = {}
    for stage in TRANSITION_STAGES:
        spec = dict(TRANSITION[stage])
        spec["parent"] = STAGE_PARENT[stage]
        spec["between"] = spec["within"] + spec["contextual"]
        probs = TRANSITION_PROBABILITY[stage]
        if isinstance(probs, dict):
            spec["intercept_by_class"] = {c: _logit(probs[c]) for c in DEMAND_CLASSES}
            spec["slope_by_class"] = dict(SLOPE_BY_CLASS)
            spec["slope_by_age"] = dict(SLOPE_BY_AGE)
            spec["slope_by_ethnicity"] = dict(SLOPE_BY_ETHNICITY)
        else:
            spec["intercept"] = _logit(probs)
        spec["age_effect"] = dict(TRANSITION_AGE_EFFECT.get(stage, {a: 0.0 for a in AGE_GROUPS}))
        yrs = [0.0] + list(rng.normal(0.0, SD_YEAR_TRANSITION, len(years) - 1))
        spec["year_effect"] = {str(y): float(yrs[i]) for i, y in enumerate(years)}
        transitions[stage] = spec

    base = np.log(np.array([CLASS_PREVALENCE[c] for c in DEMAND_CLASSES]))
    classes = {
        "names": list(DEMAND_CLASSES),
        "base_logit": {c: float(b - base[0]) for c, b in zip(DEMAND_CLASSES, base)},
        "age_effect": {c: dict(CLASS_AGE_EFFECT.get(c, {a: 0.0 for a in AGE_GROUPS}))
                       for c in DEMAND_CLASSES},
        "sd_la": SD_LA_CLASS,
        "profiles": class_profiles(factor_share),
        "cpp_category": {c: dict(CPP_CATEGORY_BY_CLASS[c]) for c in DEMAND_CLASSES},
    }

    la_effects = {}
    for la in las:
        la_rng = rng_for(seed, STREAM_LA, la_key(la))
        effects = {"referral": {"intercept": float(la_rng.normal(0, REFERRAL["sd_la"])),
                                "slope": float(la_rng.normal(0, REFERRAL["sd_la_slope"]))}}
        for stage in TRANSITION_STAGES:
            effects[stage] = {"intercept": float(la_rng.normal(0, TRANSITION[stage]["sd_la"])),
                              "slope": float(la_rng.normal(0, TRANSITION[stage]["sd_la_slope"]))}
        class_eff = la_rng.normal(0, SD_LA_CLASS, len(DEMAND_CLASSES))
        class_eff[0] = 0.0  # Neglect is the reference class of the membership logits
        effects["class_logit"] = {c: float(v) for c, v in zip(DEMAND_CLASSES, class_eff)}
        la_effects[la] = effects

    return {
        "preset": preset.name,
        "seed": int(seed),
        "deprivation_measure": "idaci_rank_decile_units",
        "deprivation_note": ("dep = 10*(1-(IDACI rank-0.5)/32844); within = dep - LA child-weighted "
                             "mean; between = LA mean - national child-weighted mean"),
        "national_dep_centre": float(national_dep_centre),
        "rate_denominator": "children aged 0-15 (IoD2019, mid-2015), per year",
        "years": years,
        "stages": list(STAGES),
        "la_codes": las,
        "referral": referral,
        "transitions": transitions,
        "classes": classes,
        "la_effects": la_effects,
        "population": {
            "age_years": dict(AGE_YEARS), "gender_share": dict(GENDER_SHARE),
            "disability_share": DISABILITY_SHARE,
            "white_british_share": {la: preset.white_british_share.get(la, DEFAULT_WHITE_BRITISH_SHARE)
                                    for la in las},
            "other_ethnicity_mix": dict(OTHER_ETHNICITY_MIX),
        },
        "referral_rate_multiplier": preset.referral_rate_multiplier,
    }


def _calibrate_referral_intercept(geography: pd.DataFrame, referral: dict) -> float:
    """Intercept giving ``REFERRALS_PER_10K_CHILDREN`` nationally at zero LA/LSOA effects
    (before a preset's multiplier), averaged over the population mix (closed form)."""
    eth_share = {"white_british": DEFAULT_WHITE_BRITISH_SHARE}
    eth_share.update({e: (1 - DEFAULT_WHITE_BRITISH_SHARE) * s for e, s in OTHER_ETHNICITY_MIX.items()})
    eth_mix = sum(s * np.exp(referral["ethnicity_effect"][e]) for e, s in eth_share.items())
    age_mix = sum(AGE_YEARS[a] / 16.0 * np.exp(referral["age_effect"][a]) for a in AGE_GROUPS)
    gender_mix = sum(GENDER_SHARE[g] * np.exp(referral["gender_effect"][g]) for g in GENDER_SHARE)
    dis_mix = (1 - DISABILITY_SHARE) + DISABILITY_SHARE * np.exp(referral["disability_effect"])
    dep = geography["dep_within"] * referral["within"] + geography["dep_between"] * referral["between"]
    w = geography["children_0_15"].astype(float)
    dep_mix = float(np.average(np.exp(dep), weights=w))
    target = REFERRALS_PER_10K_CHILDREN / 10_000.0
    return float(np.log(target / (age_mix * gender_mix * dis_mix * eth_mix * dep_mix)))


__all__ = [
    "draw_truth", "class_profiles", "rng_for", "la_key", "TRANSITION_STAGES", "CLASS_STAGES",
    "AGE_GROUPS", "GENDERS", "ETHNICITIES", "CPP_CATEGORIES",
]
