"""Generate referral episodes, one LA at a time, from the truth of :mod:`models.simulation.truth`.

Referral counts are Poisson per (LSOA x year x age group x gender x ethnicity x disability)
cell with a child-population exposure; each episode then draws a latent demand class,
its stage progression (logit transitions), its assessment factors (local independence
given the class) and, for plans, a category.  The expected count of every stage in every
cell is computed alongside, so tests can compare empirical rates with their own truth.

Each LA draws from its own random stream keyed by its code: output is identical whether
LAs are generated together or one at a time, which keeps the national preset's memory
bounded (one LA in memory at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

from models.simulation.presets import Preset
from models.simulation.truth import (
    CLASS_STAGES, STREAM_LSOA, STREAM_SUBSAMPLE, TRANSITION_STAGES, la_key, rng_for,
)
from models.vocabulary import (
    AGE_BOUNDS, AGE_GROUPS, CPP_CATEGORIES, DEMAND_CLASSES, ETHNICITIES, FACTORS, STAGES,
)

EXTRACT_COLUMNS = (
    "child_id", "episode_id", "la_code", "lsoa_code", "referral_date", "date_of_birth",
    "age_at_referral", "gender", "ethnicity", "disability", "referral_nfa", "assessment",
    "assessment_date", "assessment_factors", "s47", "s47_date", "icpc", "icpc_date", "cpp",
    "cpp_date", "cpp_category", "lac", "lac_date",
)
#: CIN ethnicity codes written for each group (a real extract carries the detailed code).
ETHNICITY_OUTPUT_CODES = {
    "white_british": ("WBRI",), "white_other": ("WOTH", "WIRI", "WROM"),
    "mixed": ("MWBC", "MWBA", "MWAS", "MOTH"), "asian": ("AIND", "APKN", "ABAN", "AOTH", "CHNE"),
    "black": ("BAFR", "BCRB", "BOTH"), "other": ("OOTH",), "unknown": ("REFU", "NOBT"),
}
NFA_SHARE_OF_UNASSESSED = 0.8  # the rest are referrals whose assessment was still open


@dataclass
class LAChunk:
    """One LA's simulated episodes, their hidden truth and the expected stage counts."""

    la_code: str
    extract: pd.DataFrame        # columns EXTRACT_COLUMNS, strings as in a file
    episode_truth: pd.DataFrame  # episode_id, demand_class, neglect_recorded, cpp_category
    expected: pd.DataFrame       # lsoa_code, idaci_decile, year, stage columns (expected counts)
    lsoa_effects: pd.DataFrame   # lsoa_code, one column per stage


def select_lsoas(lsoas: pd.DataFrame, preset: Preset, seed: int, la_code: str) -> pd.DataFrame:
    """The LA's LSOAs, or a seeded sample stratified along IDACI rank when the preset caps them."""
    lsoas = lsoas.sort_values("idaci_rank")
    cap = preset.max_lsoa_per_la
    if cap is None or len(lsoas) <= cap:
        return lsoas.sort_values("lsoa_code")
    rng = rng_for(seed, STREAM_SUBSAMPLE, la_key(la_code))
    strata = np.array_split(np.arange(len(lsoas)), cap)
    picks = [s[rng.integers(len(s))] for s in strata]
    return lsoas.iloc[picks].sort_values("lsoa_code")


def _population_cells(lsoas: pd.DataFrame, truth: dict, la_code: str) -> pd.DataFrame:
    """Cross LSOAs with years and the demographic cells, with each cell's child-years.

    Categorical columns are held as integer codes (``*_idx``) into the vocabularies, so the
    linear predictors below are numpy indexing rather than string lookups.
    """
    pop = truth["population"]
    wb = pop["white_british_share"][la_code]
    eth_share = {"white_british": wb}
    eth_share.update({e: (1 - wb) * s for e, s in pop["other_ethnicity_mix"].items()})
    genders = list(pop["gender_share"])
    demo = pd.MultiIndex.from_product(
        [range(len(truth["years"])), range(len(AGE_GROUPS)), range(len(genders)),
         range(len(ETHNICITIES)), [False, True]],
        names=["year_idx", "age_idx", "gender_idx", "eth_idx", "disability"],
    ).to_frame(index=False)
    age_share = np.array([pop["age_years"][a] / 16.0 for a in AGE_GROUPS])
    gender_share = np.array([pop["gender_share"][g] for g in genders])
    eth = np.array([eth_share[e] for e in ETHNICITIES])
    demo["share"] = (age_share[demo["age_idx"]] * gender_share[demo["gender_idx"]] * eth[demo["eth_idx"]]
                     * np.where(demo["disability"], pop["disability_share"], 1 - pop["disability_share"]))
    keep = ["lsoa_code", "la_code_pre2019", "idaci_decile", "dep_within", "dep_between", "children_0_15"]
    lsoas = lsoas[[c for c in keep if c in lsoas.columns]].reset_index(drop=True)
    lsoas["lsoa_idx"] = np.arange(len(lsoas))
    cells = lsoas.merge(demo, how="cross")
    cells["child_years"] = cells["children_0_15"] * cells["share"]
    cells["year"] = np.asarray(truth["years"])[cells["year_idx"]]
    return cells.drop(columns=["share"])


def _vec(mapping: dict, names) -> np.ndarray:
    """A mapping name -> value as an array in vocabulary order (for integer-code lookups)."""
    return np.array([mapping[n] for n in names], dtype=float)


def _years(truth: dict) -> list[str]:
    return [str(y) for y in truth["years"]]


def _referral_rate(cells: pd.DataFrame, truth: dict, la_code: str, v_lsoa: np.ndarray) -> np.ndarray:
    """Referrals per child-year in each cell (before the exposure)."""
    ref = truth["referral"]
    la = truth["la_effects"][la_code]["referral"]
    age, eth = cells["age_idx"].to_numpy(), cells["eth_idx"].to_numpy()
    genders = list(truth["population"]["gender_share"])
    slope = ref["within"] + la["slope"]
    eta = (ref["intercept"] + la["intercept"] + v_lsoa[cells["lsoa_idx"].to_numpy()]
           + slope * cells["dep_within"].to_numpy() + ref["between"] * cells["dep_between"].to_numpy()
           + _vec(ref["age_effect"], AGE_GROUPS)[age]
           + _vec(ref["gender_effect"], genders)[cells["gender_idx"].to_numpy()]
           + _vec(ref["ethnicity_effect"], ETHNICITIES)[eth]
           + np.where(cells["disability"].to_numpy(), ref["disability_effect"], 0.0)
           + _vec(ref["year_effect"], _years(truth))[cells["year_idx"].to_numpy()])
    return np.exp(eta) * truth["referral_rate_multiplier"]


def _class_probabilities(age_idx: np.ndarray, truth: dict, la_code: str) -> np.ndarray:
    """P(class | age group, LA): rows follow ``age_idx``, columns DEMAND_CLASSES."""
    cls = truth["classes"]
    la = truth["la_effects"][la_code]["class_logit"]
    table = np.array([[cls["base_logit"][c] + la[c] + cls["age_effect"][c][a] for c in DEMAND_CLASSES]
                      for a in AGE_GROUPS])
    table -= table.max(axis=1, keepdims=True)
    p = np.exp(table)
    p /= p.sum(axis=1, keepdims=True)
    return p[age_idx]


def _transition_logit(stage: str, frame: pd.DataFrame, klass: np.ndarray | None, truth: dict,
                      la_code: str, v_lsoa: np.ndarray) -> np.ndarray:
    """Logit of P(stage | parent) for rows of ``frame``; ``klass`` holds class indices."""
    spec = truth["transitions"][stage]
    la = truth["la_effects"][la_code][stage]
    if stage in CLASS_STAGES:
        intercept = _vec(spec["intercept_by_class"], DEMAND_CLASSES)[klass]
        slope_shift = (_vec(spec["slope_by_class"], DEMAND_CLASSES)[klass]
                       + _vec(spec["slope_by_age"], AGE_GROUPS)[frame["age_idx"].to_numpy()]
                       + _vec(spec["slope_by_ethnicity"], ETHNICITIES)[frame["eth_idx"].to_numpy()])
    else:
        intercept, slope_shift = spec["intercept"], 0.0
    return (intercept + la["intercept"] + v_lsoa[frame["lsoa_idx"].to_numpy()]
            + (spec["within"] + la["slope"] + slope_shift) * frame["dep_within"].to_numpy()
            + spec["between"] * frame["dep_between"].to_numpy()
            + _vec(spec["age_effect"], AGE_GROUPS)[frame["age_idx"].to_numpy()]
            + _vec(spec["year_effect"], _years(truth))[frame["year_idx"].to_numpy()])


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _expected_counts(cells: pd.DataFrame, rate: np.ndarray, truth: dict, la_code: str,
                     v: dict[str, np.ndarray]) -> pd.DataFrame:
    """Expected number of episodes reaching each stage, per LSOA and year (exact given the effects)."""
    n = len(cells)
    expected = {"referral": rate}
    p_assess = _expit(_transition_logit("assessment", cells, None, truth, la_code, v["assessment"]))
    expected["assessment"] = rate * p_assess
    pi = _class_probabilities(cells["age_idx"].to_numpy(), truth, la_code)
    reach = {s: np.zeros(n) for s in CLASS_STAGES}
    for k in range(len(DEMAND_CLASSES)):
        klass = np.full(n, k)
        p = {s: _expit(_transition_logit(s, cells, klass, truth, la_code, v[s])) for s in CLASS_STAGES}
        reach["s47"] += pi[:, k] * p["s47"]
        reach["icpc"] += pi[:, k] * p["s47"] * p["icpc"]
        reach["cpp"] += pi[:, k] * p["s47"] * p["icpc"] * p["cpp"]
        reach["lac"] += pi[:, k] * p["lac"]
    for s in CLASS_STAGES:
        expected[s] = expected["assessment"] * reach[s]
    out = cells[["lsoa_code", "idaci_decile", "year"]].copy()
    for s in STAGES:
        out[s] = expected[s]
    out["child_years"] = cells["child_years"].to_numpy()
    return out.groupby(["lsoa_code", "idaci_decile", "year"], as_index=False, sort=True).sum()


def simulate_la(la_code: str, la_lsoas: pd.DataFrame, preset: Preset, truth: dict,
                seed: int) -> LAChunk:
    """Simulate every episode of one LA (all its years)."""
    all_lsoas = la_lsoas.sort_values("lsoa_code")
    rng = rng_for(seed, STREAM_LSOA, la_key(la_code))
    # LSOA effects are drawn for every LSOA of the LA, before any subsampling, so a
    # neighbourhood keeps its effect whichever preset includes it.
    sd = {"referral": truth["referral"]["sd_lsoa"]}
    sd.update({s: truth["transitions"][s]["sd_lsoa"] for s in TRANSITION_STAGES})
    effects = {s: rng.normal(0.0, sd[s], len(all_lsoas)) for s in STAGES}
    lsoas = select_lsoas(all_lsoas, preset, seed, la_code)
    in_sample = all_lsoas["lsoa_code"].isin(lsoas["lsoa_code"]).to_numpy()
    v = {s: effects[s][in_sample] for s in STAGES}  # aligned with lsoa_idx (code order)

    cells = _population_cells(lsoas, truth, la_code)
    rate = _referral_rate(cells, truth, la_code, v["referral"]) * cells["child_years"].to_numpy()
    expected = _expected_counts(cells, rate, truth, la_code, v)
    counts = rng.poisson(rate)
    ep = cells.loc[np.repeat(np.arange(len(cells)), counts)].reset_index(drop=True)
    ep = _progress(ep, rng, truth, la_code, v)
    extract, episode_truth = _to_extract(ep, rng, truth, la_code)
    lsoa_effects = pd.DataFrame({"lsoa_code": all_lsoas["lsoa_code"].to_numpy(), "la_code": la_code,
                                 "in_sample": in_sample, **effects})
    expected.insert(0, "la_code", la_code)
    return LAChunk(la_code, extract, episode_truth, expected, lsoa_effects)


def _progress(ep: pd.DataFrame, rng: np.random.Generator, truth: dict, la_code: str,
              v: dict[str, pd.Series]) -> pd.DataFrame:
    """Draw each episode's class and the stages it reaches."""
    n = len(ep)
    pi = _class_probabilities(ep["age_idx"].to_numpy(), truth, la_code)
    u = rng.random(n)
    ep["klass"] = np.minimum((pi.cumsum(axis=1) < u[:, None]).sum(axis=1), len(DEMAND_CLASSES) - 1)
    klass = ep["klass"].to_numpy()
    ep["assessment"] = rng.random(n) < _expit(
        _transition_logit("assessment", ep, None, truth, la_code, v["assessment"]))
    draws = {s: rng.random(n) < _expit(_transition_logit(s, ep, klass, truth, la_code, v[s]))
             for s in CLASS_STAGES}
    ep["s47"] = ep["assessment"] & draws["s47"]
    ep["icpc"] = ep["s47"] & draws["icpc"]
    ep["cpp"] = ep["icpc"] & draws["cpp"]
    ep["lac"] = ep["assessment"] & draws["lac"]
    ep["referral_nfa"] = ~ep["assessment"] & (rng.random(n) < NFA_SHARE_OF_UNASSESSED)
    return ep


def _to_extract(ep: pd.DataFrame, rng: np.random.Generator, truth: dict,
                la_code: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dress the episodes as a file extract (dates, codes, factor strings)."""
    n = len(ep)
    # Dates: uniform within the reporting year (April to March).
    year = ep["year"].to_numpy()
    start = pd.to_datetime(pd.Series(year - 1).astype(str) + "-04-01").to_numpy()
    days_in_year = np.where(_is_leap(year), 366, 365)
    referral = start + (rng.random(n) * days_in_year).astype("int64").astype("timedelta64[D]")
    order = np.lexsort((referral, ep["lsoa_code"].to_numpy()))
    ep = ep.iloc[order].reset_index(drop=True)
    referral = referral[order]

    lo = np.array([AGE_BOUNDS[a][0] for a in AGE_GROUPS])[ep["age_idx"].to_numpy()]
    hi = np.array([AGE_BOUNDS[a][1] for a in AGE_GROUPS])[ep["age_idx"].to_numpy()]
    age = lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(int)
    # Date of birth: the age-th birthday falls 1-363 days before the referral, so the
    # completed age at referral is exactly ``age`` (29 February births move to the 28th).
    ref_idx = pd.DatetimeIndex(referral)
    day = np.where((ref_idx.month == 2) & (ref_idx.day == 29), 28, ref_idx.day)
    anniversary = pd.to_datetime(pd.DataFrame({"year": ref_idx.year - age, "month": ref_idx.month, "day": day}))
    offset = 1 + np.floor(rng.random(n) * 363).astype(int)
    dob = pd.DatetimeIndex(anniversary - pd.to_timedelta(offset, "D"))

    def later(base, lo_days, hi_days, mask):
        d = base + (lo_days + np.floor(rng.random(n) * (hi_days - lo_days + 1))).astype("int64").astype("timedelta64[D]")
        return np.where(mask, d, np.datetime64("NaT"))

    assessment_date = later(referral, 5, 45, ep["assessment"].to_numpy())
    s47_date = later(np.where(ep["assessment"], assessment_date, referral), 0, 10, ep["s47"].to_numpy())
    icpc_date = later(np.where(ep["s47"], s47_date, referral), 5, 15, ep["icpc"].to_numpy())
    cpp_date = np.where(ep["cpp"], icpc_date, np.datetime64("NaT"))
    lac_date = later(referral, 1, 120, ep["lac"].to_numpy())

    # Factors for assessed episodes: local independence given the class.
    klass = ep["klass"].to_numpy()
    prof = np.array([[truth["classes"]["profiles"][c][f.name] for f in FACTORS] for c in DEMAND_CLASSES])
    recorded = (rng.random((n, len(FACTORS))) < prof[klass]) & ep["assessment"].to_numpy()[:, None]
    factor_str = np.full(n, "", dtype=object)
    for j, f in enumerate(FACTORS):
        factor_str = np.where(recorded[:, j], factor_str + (f.code + ";"), factor_str)
    factor_str = np.array([s[:-1] for s in factor_str], dtype=object)
    factor_str = np.where(ep["assessment"] & (factor_str == ""), "21", factor_str)

    cat_p = np.array([[truth["classes"]["cpp_category"][c][k] for k in CPP_CATEGORIES] for c in DEMAND_CLASSES])
    cat_idx = (cat_p[klass].cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1)
    cat_idx = np.minimum(cat_idx, len(CPP_CATEGORIES) - 1)
    category = np.where(ep["cpp"], np.array(CPP_CATEGORIES, dtype=object)[cat_idx], "")

    eth_codes = np.empty(n, dtype=object)
    pick = rng.random(n)
    for group, codes in ETHNICITY_OUTPUT_CODES.items():
        mask = ep["eth_idx"].to_numpy() == ETHNICITIES.index(group)
        eth_codes[mask] = np.array(codes, dtype=object)[np.minimum((pick[mask] * len(codes)).astype(int), len(codes) - 1)]

    seq = np.arange(1, n + 1)
    pre2019 = ref_idx < pd.Timestamp("2019-04-01")
    # Before April 2019 Bournemouth, Poole and Dorset were other authorities (see data/README.md).
    pre_codes = ep["la_code_pre2019"].to_numpy() if "la_code_pre2019" in ep else np.full(n, la_code)
    la_written = np.where(pre2019, pre_codes, la_code)
    key = la_code[1:]
    extract = pd.DataFrame({
        "child_id": [f"SYN{key}C{i:07d}" for i in seq],
        "episode_id": [f"SYN{key}E{i:07d}" for i in seq],
        "la_code": la_written,
        "lsoa_code": ep["lsoa_code"].to_numpy(),
        "referral_date": _fmt(referral),
        "date_of_birth": _fmt(dob.to_numpy()),
        "age_at_referral": age.astype(str),
        "gender": np.array(list(truth["population"]["gender_share"]), dtype=object)[ep["gender_idx"].to_numpy()],
        "ethnicity": eth_codes,
        "disability": _flag(ep["disability"]),
        "referral_nfa": _flag(ep["referral_nfa"]),
        "assessment": _flag(ep["assessment"]),
        "assessment_date": _fmt(assessment_date),
        "assessment_factors": factor_str,
        "s47": _flag(ep["s47"]), "s47_date": _fmt(s47_date),
        "icpc": _flag(ep["icpc"]), "icpc_date": _fmt(icpc_date),
        "cpp": _flag(ep["cpp"]), "cpp_date": _fmt(cpp_date),
        "cpp_category": category,
        "lac": _flag(ep["lac"]), "lac_date": _fmt(lac_date),
    }, columns=list(EXTRACT_COLUMNS))
    neglect_j = [f.name for f in FACTORS].index("neglect")
    episode_truth = pd.DataFrame({
        "episode_id": extract["episode_id"],
        "demand_class": np.array(DEMAND_CLASSES, dtype=object)[klass],
        "neglect_recorded": recorded[:, neglect_j],
        "idaci_decile": ep["idaci_decile"].to_numpy(),
        "year": ep["year"].to_numpy(),
        "age_group": np.array(AGE_GROUPS, dtype=object)[ep["age_idx"].to_numpy()],
        "ethnicity_group": np.array(ETHNICITIES, dtype=object)[ep["eth_idx"].to_numpy()],
    })
    return extract, episode_truth


def _is_leap(year_ending_march: np.ndarray) -> np.ndarray:
    y = year_ending_march  # the February inside Apr(y-1)..Mar(y) is in year y
    return (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))


def _fmt(dates) -> np.ndarray:
    s = pd.Series(pd.DatetimeIndex(dates)).dt.strftime("%Y-%m-%d")
    return s.fillna("").to_numpy(dtype=object)


def _flag(values) -> np.ndarray:
    return np.where(np.asarray(values, dtype=bool), "true", "false").astype(object)


def simulate(national: pd.DataFrame, preset: Preset, truth: dict, seed: int) -> Iterator[LAChunk]:
    """Yield one :class:`LAChunk` per LA of the preset, in LA-code order."""
    for la_code in truth["la_codes"]:
        la_lsoas = national[national["la_code"] == la_code]
        yield simulate_la(la_code, la_lsoas, preset, truth, seed)
