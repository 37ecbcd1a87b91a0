"""``python -m workflows joint``: demand classes and social gradients in one posterior.

The joint model (:mod:`models.joint`) on an extract's assessed episodes: each episode's
latent demand class (summed out, never sampled) explains the factors recorded at its
assessment and shifts both the level and the deprivation gradient of the stages that
follow (s47, ICPC, CPP, each given the one before, and LAC given assessment), with LA and
LSOA effects and the within/between (Mundlak) split of deprivation.

``joint --config NAME`` reads the ``[joint]`` section of a run config (default
``workflows/configs/joint.toml``) and fits the extract its ``[data]`` section simulates
(into ``results/<config>/data``); ``--extract PATH`` fits an LA's own extract instead (the
config then needs no ``[data]``).  Writes, into ``--out`` (default
``results/<config>/joint``, or ``results/joint-<extract>`` with ``--extract``) and
replaced as a whole only when complete:

- ``report.md`` / ``report.html``: headline sentences with credible intervals, the class
  gradients by stage, each class's contextual (inverse intervention) effect, P(each class
  has the steepest gradient) and the headline question (are the gradients steepest for
  Neglect and Complex Needs II?), figures, convergence;
- ``tables/*.csv``: every quantity with its interval, R-hat and ESS; marked NOT FOR
  CITATION in the table itself when the fit fails the convergence gate or its chains
  settle in different labellings; episode counts under the threshold suppressed;
- ``posterior.nc``: class-, stage- and LA-level parameters only (no LSOA, pattern or
  episode arrays) and ``manifest.json``.

With ``three_step = true`` the three-step approach (latent class fit -> modal class ->
gradient model, :mod:`models.joint.threestep`) is fitted to the same episodes and set
beside the joint model.  Per-episode class probabilities are case-level data: they are
never computed for, nor written to, any output.  An unchanged run is not refitted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from models.areas import add_deprivation
from models.gradient.effects import DeprivationScale
from models.joint import effects
from models.joint.data import CLASS_STAGES, joint_data
from models.joint.fit import fit_joint
from models.joint.model import JointSpec
from models.joint.threestep import three_step
from models.latent_class import plots
from models.latent_class.profiles import class_names, profile_table
from models.priors import get_prior_set
from models.sampling import SAMPLERS, ConvergenceGate, SamplerSettings
from models.simulation.truth import class_profiles
from models.suppression import SuppressionRule, suppress_counts
from models.vocabulary import DEMAND_CLASSES, FACTOR_NAMES, STAGE_LABELS
from public_data.tables import load_factor_prevalence, load_lsoa_table
from workflows import atomic, config as config_mod, paths, posterior_export, provenance
from workflows.errors import UserError
from workflows.extract_io import check_input_file, contextual_note, load_extract, require_assessed
from workflows.latent_class import MAX_K
from workflows.report_format import Section, render_html, render_markdown
from workflows.run_cache import flag_uncitable, is_current, run_key
from workflows.run_data import prepare_data

MODEL_CODE = ("models.joint", "models.latent_class", "models.gradient", "models.priors", "models.sampling",
              "models.areas", "models.suppression")
NOT_FOR_CITATION = ("NOT FOR CITATION: the joint model did not pass the convergence gate or its chains "
                    "settled in different class labellings")
THREE_STEP_NOT_FOR_CITATION = "NOT FOR CITATION: a three-step fit did not pass the convergence gate"
#: Fewer assessed episodes than this: no mixture model is worth fitting.
MIN_EPISODES = 50
COVARIATES = ("age_group", "gender", "ethnicity")
#: How a sentence names reaching each stage from the one before.
STAGE_PHRASES = {
    "s47": "a section 47 enquiry after assessment",
    "icpc": "an initial child protection conference after a section 47 enquiry",
    "cpp": "a child protection plan after a conference",
    "lac": "becoming looked after once assessed",
}
CLASS_LABELS = {"neglect": "Neglect", "domestic_violence": "Domestic Violence", "physical_abuse": "Physical Abuse",
                "complex_needs_1": "Complex Needs I", "complex_needs_2": "Complex Needs II",
                "out_of_control": "Out of control / highly vulnerable",
                "disability_mental_health": "Disability / Mental Health"}
#: Posterior variables written to posterior.nc (none has an LSOA, pattern or episode dim).
POSTERIOR_VARS = ("class_weight", "item_prob", "intercept", "class_offset", "class_intercept", "class_slope_shift",
                  "class_gradient", "within_effect", "contextual_effect", "between_effect", "la_effect", "la_slope",
                  "la_class_effect", "la_sd", "la_slope_sd", "lsoa_sd", "la_class_sd")


@dataclass(frozen=True)
class JointRun:
    """What to fit: the ``[joint]`` section of a run config.

    ``k``: the number of demand classes.  ``factors``: the assessment factors the classes
    are fitted to (empty: every factor recorded in the fitted episodes), of which
    ``max_factors`` (0: all) most often recorded are kept.  ``episodes``: fit a seeded
    random sample of this many assessed episodes (0: all).  ``class_slopes``: ``shared``
    (one gradient shift per class, the same at every stage) or ``by_stage``.  ``names``:
    ``study`` names each class after the study class (Hood et al. 2020, as the simulator
    encodes them) whose profile is nearest, one study class per fitted class; ``factors``
    names them by their dominant factors.  ``steepest``: the classes of the headline
    question (are their gradients the steepest?).  ``three_step``: also fit the three-step
    approach and compare.
    """

    k: int = 4
    factors: tuple[str, ...] = ()
    max_factors: int = 0
    episodes: int = 0
    class_slopes: str = "shared"
    covariates: tuple[str, ...] = ()
    la_slopes: bool = True
    lsoa_effects: bool = True
    la_class_weights: bool = True
    names: str = "study"
    steepest: tuple[str, ...] = ("neglect", "complex_needs_2")
    three_step: bool = False
    prior: str = "default"
    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 1
    target_accept: float = 0.95
    n_starts: int = 10
    em_seed: int = 0
    prob: float = 0.9

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "bool": bool, "str": str, "float": float}.get(str(f.type))
            if f.type == "tuple[str, ...]":
                if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
                        not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{f.name} = {value!r}: expected a list of names")
                object.__setattr__(self, f.name, tuple(value))
            elif kind is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
            elif kind is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
                raise ValueError(f"{f.name} = {value!r}: expected {kind.__name__}")
        if not 1 <= self.k <= MAX_K:
            raise ValueError(f"k = {self.k}: expected the number of demand classes, 1 to {MAX_K}")
        unknown = [f for f in self.factors if f not in FACTOR_NAMES]
        if unknown or len(set(self.factors)) < len(self.factors):
            raise ValueError(f"factors = {list(self.factors)}: expected distinct factor names from the data "
                             f"dictionary (unknown: {unknown or 'none'}; e.g. {', '.join(FACTOR_NAMES[:3])}, ...)")
        if self.max_factors < 0 or self.max_factors == 1:
            raise ValueError(f"max_factors = {self.max_factors}: expected 0 (all) or at least 2")
        if self.episodes < 0:
            raise ValueError(f"episodes = {self.episodes}: expected 0 (all) or a sample size")
        if self.class_slopes not in ("shared", "by_stage"):
            raise ValueError(f"class_slopes = {self.class_slopes!r}: choose 'shared' or 'by_stage'")
        bad = [c for c in self.covariates if c not in COVARIATES]
        if bad or len(set(self.covariates)) < len(self.covariates):
            raise ValueError(f"covariates = {list(self.covariates)}: expected distinct names among "
                             f"{', '.join(COVARIATES)}")
        if self.names not in ("study", "factors"):
            raise ValueError(f"names = {self.names!r}: choose 'study' or 'factors'")
        if self.names == "study" and self.k > len(DEMAND_CLASSES):
            raise ValueError(f"names = 'study' names at most {len(DEMAND_CLASSES)} classes (k = {self.k}): "
                             "lower k or set names = 'factors'")
        if self.names == "study":
            unknown = [c for c in self.steepest if c not in DEMAND_CLASSES]
            if unknown:
                raise ValueError(f"steepest = {list(self.steepest)}: {unknown} are not study classes; choose from "
                                 f"{', '.join(DEMAND_CLASSES)}")
        if self.steepest and (len(self.steepest) >= self.k or len(set(self.steepest)) < len(self.steepest)):
            raise ValueError(f"steepest = {list(self.steepest)}: name fewer distinct classes than k = {self.k} "
                             "(or none)")
        try:
            get_prior_set(self.prior)
        except KeyError as err:
            raise ValueError(f"prior = {self.prior!r}: {err.args[0]}") from None
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler = {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        for name in ("draws", "chains", "n_starts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: expected at least 1")
        if self.tune < 0:
            raise ValueError(f"tune = {self.tune}: expected 0 or more")
        if not 0.6 <= self.target_accept < 1:
            raise ValueError(f"target_accept = {self.target_accept}: expected a value in [0.6, 1)")
        if not 0.5 <= self.prob < 1:
            raise ValueError(f"prob = {self.prob}: expected a credible level in [0.5, 1)")

    @classmethod
    def from_config(cls, section: dict, path: str) -> "JointRun":
        """The ``[joint]`` section of the config at ``path``; a bad value is a UserError
        naming the file and the key."""
        known = {f.name for f in fields(cls)}
        for key in section:
            if key not in known:
                raise UserError(f"{path}: unknown key joint.{key}; expected one of {', '.join(sorted(known))}")
        try:
            return cls(**dict(section))
        except (ValueError, TypeError) as err:
            raise UserError(f"{path}: joint.{err.args[0]}") from None

    def settings(self) -> SamplerSettings:
        return SamplerSettings(sampler=self.sampler, draws=self.draws, tune=self.tune, chains=self.chains,
                               seed=self.seed, target_accept=self.target_accept)

    def spec(self):
        return JointSpec(self.k, class_slopes=self.class_slopes, la_effects=True, la_slopes=self.la_slopes,
                         lsoa_effects=self.lsoa_effects, la_class_weights=self.la_class_weights)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="joint", help="config name or TOML path with a [joint] section "
                        "(default: joint)")
    parser.add_argument("--extract", type=Path, default=None,
                        help="case-level extract (CSV or Parquet); default: simulate the config's [data]")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: results/<config>/joint, or results/joint-<extract>)")
    parser.add_argument("--k", type=int, default=None, help="number of demand classes (overrides joint.k)")
    parser.add_argument("--draws", type=int, default=None)
    parser.add_argument("--tune", type=int, default=None)
    parser.add_argument("--chains", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--episodes", type=int, default=None, help="fit a random sample of this many (0: all)")
    parser.add_argument("--three-step", action="store_true", help="also fit the three-step approach and compare")


def load_joint_config(name_or_path: str | Path, need_data: bool) -> dict:
    """``[joint]``, ``[report]`` (and ``[data]`` when ``need_data``) with the shared SCHEMA's
    key and type checks.  With ``--extract`` the config needs no ``[data]`` section."""
    if need_data:
        return config_mod.load_config(name_or_path)
    return config_mod.load_sections(name_or_path, ("joint", "report"))


def run(args: argparse.Namespace) -> int:
    config = load_joint_config(args.config, need_data=args.extract is None)
    where = config["_path"]
    if "joint" not in config.get("_sections", ()):
        raise UserError(f"{where}: no [joint] section: give at least joint.k, the number of demand classes")
    run_config = JointRun.from_config(config["joint"], where)
    overrides = {k: getattr(args, k) for k in ("k", "draws", "tune", "chains", "seed", "episodes")
                 if getattr(args, k) is not None}
    if args.three_step:
        overrides["three_step"] = True
    try:
        run_config = replace(run_config, **overrides)
    except ValueError as err:
        raise UserError(f"--{str(err.args[0]).split(' ')[0].replace('_', '-')}: {err.args[0]}") from None
    try:
        rule = SuppressionRule(config["report"]["suppression_threshold"], config["report"]["suppression_marker"])
    except ValueError as err:
        raise UserError(f"{where}: [report] {err}") from None
    stem = Path(where).stem
    if args.extract is not None:
        extract = check_input_file(args.extract, what="extract")
        out = atomic.output_dir(args.out, paths.RESULTS_DIR / f"joint-{extract.name.split('.')[0]}")
    elif config.get("data", {}).get("extract"):  # an LA's own extract named in the config
        extract = Path(config["data"]["extract"]).expanduser()
        extract = (extract if extract.is_absolute() else Path(where).parent / extract).resolve()
        if not extract.exists():
            raise UserError(f"{where}: data.extract = {config['data']['extract']!r}: {extract} not found")
        out = atomic.output_dir(args.out, paths.RESULTS_DIR / stem / "joint")
    else:
        out = atomic.output_dir(args.out, paths.RESULTS_DIR / stem / "joint")
        extract = prepare_data(config, Path(out).parent / "data")
    report = write_joint_report(extract, out, run_config, rule, log=lambda m: print(m, flush=True))
    print(f"report: {report / 'report.html'}")
    return 0


# ---------------------------------------------------------------------------------------
# The analysis, in memory
# ---------------------------------------------------------------------------------------

@dataclass
class JointAnalysis:
    """Everything the report shows (aggregates only; nothing per episode is kept)."""

    config: JointRun
    fit: object                      # models.joint.fit.JointFit, classes named
    names: list[str]
    study_distance: dict[str, float] # name -> mean absolute profile difference (names = "study")
    dropped_factors: list[str]
    n_episodes: int
    n_las: int
    n_assessed: int                  # assessed episodes in the extract (n_episodes: those fitted)
    stage_counts: pd.DataFrame       # stage x (at_risk, reached): whole-data aggregates
    three: object | None = None      # models.joint.threestep.ThreeStepFit
    three_gate: dict = field(default_factory=dict)

    @property
    def posterior(self) -> xr.Dataset:
        return self.fit.idata.posterior

    @property
    def citable(self) -> bool:
        return self.fit.citable

    @property
    def three_citable(self) -> bool:
        return bool(self.three_gate.get("passed", False))


def select_factors(factors: pd.DataFrame, config: JointRun) -> tuple[pd.DataFrame, list[str]]:
    """The factor columns the classes are fitted to, and those dropped as never recorded."""
    columns = list(config.factors) or [c for c in FACTOR_NAMES if c in factors.columns]
    absent = [c for c in columns if c not in factors.columns]
    if absent:
        raise UserError(f"joint.factors: {absent} are not columns of the extract's assessment factors")
    frame = factors[columns].fillna(False).astype(bool)
    recorded = frame.sum(axis=0)
    dropped = [c for c in columns if recorded[c] == 0]
    keep = [c for c in columns if recorded[c] > 0]
    if config.max_factors and len(keep) > config.max_factors:
        top = set(recorded[keep].sort_values(ascending=False, kind="stable").index[:config.max_factors])
        keep = [c for c in keep if c in top]
    if len(keep) < 2:
        raise UserError(f"only {len(keep)} assessment factor(s) recorded in the fitted episodes: demand classes "
                        "need several (check joint.factors and the 'assessment_factors' column)")
    return frame[keep], dropped


def study_names(mean_profiles: xr.DataArray) -> tuple[list[str], dict[str, float]]:
    """Each fitted class named after the nearest study class profile (mean absolute difference
    over the fitted factors), one study class per fitted class (Hungarian assignment)."""
    from scipy.optimize import linear_sum_assignment

    share = load_factor_prevalence().set_index("factor")["share"]
    study = class_profiles(share)
    prof = mean_profiles.transpose("class", "factor")
    factors = [str(f) for f in prof["factor"].to_numpy()]
    ref = np.array([[study[c][f] for f in factors] for c in DEMAND_CLASSES])
    cost = np.abs(prof.to_numpy()[:, None, :] - ref[None, :, :]).mean(axis=2)
    rows, cols = linear_sum_assignment(cost)
    names = [""] * len(prof["class"])
    distance = {}
    for r, c in zip(rows, cols):
        names[r] = DEMAND_CLASSES[c]
        distance[DEMAND_CLASSES[c]] = float(cost[r, c])
    return names, distance


def analyse_extract(episodes: pd.DataFrame, factors: pd.DataFrame, geography: pd.DataFrame, config: JointRun,
                    *, log=print) -> JointAnalysis:
    """Fit the joint model (and the three-step approach, if asked) to the extract's assessed
    episodes; name the classes.  No files, nothing per episode kept."""
    assessed = episodes["assessment"].fillna(False).to_numpy(bool)
    if assessed.sum() < MIN_EPISODES:
        raise UserError(f"{int(assessed.sum())} assessed episodes: the joint model needs at least {MIN_EPISODES} "
                        "(check the 'assessment' column)")
    rows = np.flatnonzero(assessed)
    if config.episodes and config.episodes < len(rows):
        rows = np.sort(np.random.default_rng(config.seed).choice(rows, config.episodes, replace=False))
    ep = episodes.iloc[rows].reset_index(drop=True)
    fac, dropped = select_factors(factors.iloc[rows].reset_index(drop=True), config)
    frame = pd.DataFrame({"la_code": ep["la_code"].astype(str), "lsoa_code": ep["lsoa_code"],
                          "assessment": True})
    for s in CLASS_STAGES:
        frame[s] = ep[s].fillna(False).astype(bool)
    for c in config.covariates:
        frame[c] = ep[c].astype(object).where(ep[c].notna(), "unknown").astype(str)
    if frame["lsoa_code"].isna().any():
        raise UserError(f"lsoa_code: missing on {int(frame['lsoa_code'].isna().sum())} assessed episodes; the "
                        "joint model needs every episode's neighbourhood")
    try:
        data = joint_data(frame, fac, geography, covariates=config.covariates)
    except ValueError as err:
        raise UserError(f"joint model data: {err.args[0]}") from None
    del frame, ep  # nothing per episode beyond this point
    log(f"  fitting the joint model, K = {config.k}: {data.n_episodes:,} assessed episodes, "
        f"{data.patterns.n_patterns:,} factor patterns, {len(data.cells):,} cells, {len(data.rows):,} weighted rows; "
        f"{config.chains} chains x {config.draws} draws ...")
    fitted = fit_joint(data, config.spec(), config.settings(), get_prior_set(config.prior),
                       n_starts=config.n_starts, em_seed=config.em_seed)
    mean_prof = fitted.idata.posterior["item_prob"].mean(("chain", "draw"))
    if config.names == "study":
        names, distance = study_names(mean_prof)
    else:
        names, distance = class_names(mean_prof), {}
    fitted.idata.posterior = fitted.idata.posterior.assign_coords({"class": names})
    gate = fitted.gate
    log(f"    {fitted.idata.posterior.attrs.get('wall_seconds', float('nan')):.0f} s; max R-hat "
        f"{gate['max_r_hat']:.3f}, min bulk ESS {gate['min_ess_bulk']:.0f}, divergences {gate['divergences']}, "
        f"multimodal {fitted.alignment.multimodal}" + ("" if fitted.citable else f"  <- {NOT_FOR_CITATION}"))
    path = data.row_path()
    count = data.rows["count"].to_numpy(float)
    stage_counts = pd.DataFrame({
        "at_risk": (data.at_risk[path] * count[:, None]).sum(axis=0).round().astype(np.int64),
        "reached": ((data.at_risk * data.reached)[path] * count[:, None]).sum(axis=0).round().astype(np.int64),
    }, index=pd.Index(list(data.stages), name="stage"))
    result = JointAnalysis(config=config, fit=fitted, names=names, study_distance=distance,
                           dropped_factors=dropped, n_episodes=data.n_episodes,
                           n_las=int(data.cells["la_code"].nunique()), n_assessed=int(assessed.sum()),
                           stage_counts=stage_counts)
    if config.three_step:
        result.three, result.three_gate = fit_three_step(data, result, log=log)
    return result


def fit_three_step(data, result: JointAnalysis, *, log=print):
    """The three-step approach on the same data, its classes labelled by the joint model's
    profiles (so they carry the same names); its gate covers both of its fits."""
    config = result.config
    reference = result.posterior["item_prob"].mean(("chain", "draw"))
    log(f"  three-step comparison: latent class fit, modal class, gradient model ({config.chains} chains x "
        f"{config.draws} draws each) ...")
    three = three_step(data, config.k, config.settings(), get_prior_set(config.prior), n_starts=config.n_starts,
                       em_seed=config.em_seed, reference=reference)
    post = three.idata.posterior
    names = [v for v in post.data_vars if any(v.startswith(p) for p in (
        "intercept", "within_effect", "contextual_effect", "demand_class_effect", "demand_class_gradient_shift"))]
    step3 = ConvergenceGate().check(three.idata, names)
    lc = three.latent_class.gate
    gate = {"max_r_hat": max(step3["max_r_hat"], lc["max_r_hat"]),
            "min_ess_bulk": min(step3["min_ess_bulk"], lc["min_ess_bulk"]),
            "min_ess_tail": min(step3["min_ess_tail"], lc["min_ess_tail"]),
            "divergences": int(step3["divergences"]) + int(lc["divergences"]),
            "passed": bool(step3["passed"] and three.latent_class.citable)}
    log(f"    three-step: max R-hat {gate['max_r_hat']:.3f}, min bulk ESS {gate['min_ess_bulk']:.0f}"
        + ("" if gate["passed"] else f"  <- {THREE_STEP_NOT_FOR_CITATION}"))
    return three, gate


# ---------------------------------------------------------------------------------------
# Derived quantities and tables
# ---------------------------------------------------------------------------------------

def _label(name: str) -> str:
    return CLASS_LABELS.get(name, name)


def steepest_table(post: xr.Dataset) -> pd.DataFrame:
    """P(each class has the r-th steepest gradient), stage x class, rank columns."""
    ranks = effects.gradient_rank(post)
    table = ranks.to_series().unstack("rank")
    table.columns = [f"P(rank {r})" for r in table.columns]
    return table.rename(columns={"P(rank 1)": "P(steepest)"}).round(4)


def headline_probability(post: xr.Dataset, classes: tuple[str, ...]) -> pd.Series | None:
    """P(the named classes have the steepest gradients) by stage, or None if a class is absent."""
    labels = [str(c) for c in post["class"].values]
    if not classes or any(c not in labels for c in classes) or len(classes) >= len(labels):
        return None
    return effects.steepest(post, tuple(classes)).to_series()


def derive_tables(result: JointAnalysis, scale, rule: SuppressionRule) -> dict[str, pd.DataFrame]:
    """Published tables: class-level aggregates with intervals; counts suppressed."""
    post, prob = result.posterior, result.config.prob
    tables = {
        "class_gradients": effects.summarise(effects.class_gradients(post), prob=prob),
        "class_contextual": effects.summarise(effects.class_contextual(post), prob=prob),
        "class_inverse_intervention": effects.summarise(effects.class_inverse_intervention(post, scale), prob=prob),
        "class_probability": effects.summarise(effects.class_probability(post), prob=prob),
        "steepest": steepest_table(post),
    }
    for name in list(tables):
        if name != "steepest":
            tables[name] = tables[name].round(4)
    p = headline_probability(post, result.config.steepest)
    if p is not None:
        tables["headline"] = p.rename(f"P({' and '.join(result.config.steepest)} have the "
                                      f"{len(result.config.steepest)} steepest gradients)").to_frame().round(4)
    # Class profiles and sizes (the share is the model's; expected episodes suppressed when small).
    prof = profile_table(result.fit.idata, prob=prob)
    profiles = xr.Dataset({"mean": prof["item_prob_mean"], "lower": prof["item_prob_lower"],
                           "upper": prof["item_prob_upper"]}).to_dataframe()
    tables["class_profiles"] = profiles.round(4)
    share = prof["class_weight_mean"].to_series()
    expected = (share * result.n_episodes).round().astype(np.int64).to_frame("expected_episodes")
    sizes = pd.DataFrame({"share": share, "share_lower": prof["class_weight_lower"].to_series(),
                          "share_upper": prof["class_weight_upper"].to_series()}).round(4)
    sizes = pd.concat([sizes, suppress_counts(expected, rule, totals_axis=0)], axis=1)
    if result.study_distance:
        sizes["study_profile_distance"] = [round(result.study_distance[n], 4) for n in sizes.index]
    tables["class_sizes"] = sizes
    tables["stage_counts"] = suppress_counts(result.stage_counts, rule, totals_axis=None)
    if result.three is not None:
        tables["three_step"] = three_step_table(post, result.three.class_parameters(), prob,
                                                result.config.steepest)
    return tables


def three_step_table(joint: xr.Dataset, three: xr.Dataset, prob: float,
                     classes: tuple[str, ...] = ()) -> pd.DataFrame:
    """Class gradients (odds ratio per decile step) of the joint model and the three-step
    approach side by side, by stage and class, with the ratio of interval widths and
    P(steepest) under each; classes missing from the three-step fit (no modal episodes)
    are left out.  Plus the headline probability under each, where both have the classes."""
    shared = [c for c in joint["class"].values if c in set(three["class"].values)]
    rows = {}
    for label, post in (("joint", joint), ("three_step", three)):
        sub = post.sel({"class": shared})
        t = effects.summarise(effects.class_gradients(sub), prob=prob)[["mean", "lower", "upper"]]
        t["p_steepest"] = steepest_table(sub)["P(steepest)"]
        rows[label] = t
    out = pd.concat(rows, axis=1)
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["width_ratio"] = ((out["three_step_upper"] - out["three_step_lower"])
                          / (out["joint_upper"] - out["joint_lower"]))
    head = {label: headline_probability(post.sel({"class": shared}), classes)
            for label, post in (("joint", joint), ("three_step", three))}
    if all(h is not None for h in head.values()):
        out["joint_p_headline"] = head["joint"].reindex(out.index.get_level_values("stage")).to_numpy()
        out["three_step_p_headline"] = head["three_step"].reindex(out.index.get_level_values("stage")).to_numpy()
    return out.round(4)


def _interval(row, digits: int = 3) -> str:
    return f"{row['mean']:.{digits}f} ({row['lower']:.{digits}f}-{row['upper']:.{digits}f})"


def headlines(result: JointAnalysis, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Plain-language sentences with credible intervals, for policy readers."""
    pct = f"{result.config.prob:.0%} CrI"
    flag = "" if result.citable else f" [{NOT_FOR_CITATION}]"
    grad, steep, inverse = tables["class_gradients"], tables["steepest"], tables["class_inverse_intervention"]
    lines = []
    stages = list(dict.fromkeys(grad.index.get_level_values("stage")))
    for stage in stages:
        p = steep.xs(stage, level="stage")["P(steepest)"]
        top = str(p.idxmax())
        row = grad.loc[(stage, top)]
        lines.append(
            f"{STAGE_LABELS.get(stage, stage)}: the odds of {STAGE_PHRASES.get(stage, stage)} rise most steeply with "
            f"neighbourhood deprivation for the {_label(top)} class, x{row['mean']:.3f} ({pct} {row['lower']:.3f}-"
            f"{row['upper']:.3f}) per decile step within the LA (probability that it is the steepest of the "
            f"{len(p)} classes: {p[top]:.0%}){flag}.")
    classes = result.config.steepest
    if "headline" in tables:
        h = tables["headline"].iloc[:, 0]
        who = " and ".join(_label(c) for c in classes)
        if result.config.class_slopes == "shared" or h.nunique() == 1:
            lines.append(f"Is the gradient steepest for {who}? Posterior probability that these have the "
                         f"{len(classes)} steepest gradients of the {len(result.names)} classes: {h.iloc[0]:.0%} "
                         f"(the class shifts of the gradient are shared across stages){flag}.")
        else:
            lines.append(f"Is the gradient steepest for {who}? Posterior probability that these have the "
                         f"{len(classes)} steepest gradients: " + "; ".join(f"{STAGE_LABELS.get(s, s)} {v:.0%}"
                                                                           for s, v in h.items()) + f"{flag}.")
        for c in classes:
            row = inverse.loc[(stages[0], c)]
            lines.append(
                f"Inverse intervention, {_label(c)} class: for neighbourhoods of the same deprivation, an LA at the "
                f"25th percentile of LA deprivation had {row['mean']:.2f} ({pct} {row['lower']:.2f}-"
                f"{row['upper']:.2f}) times the odds of {STAGE_PHRASES.get(stages[0], stages[0])} of one at the 75th "
                f"percentile{flag}.")
    elif classes:
        lines.append(f"The headline question (are the gradients steepest for {' and '.join(_label(c) for c in classes)}?) "
                     f"cannot be asked of this fit: its classes are {', '.join(result.names)}.")
    if "three_step" in tables:
        t = tables["three_step"]
        same = (f"gives {t['three_step_p_headline'].iloc[0]:.0%} for the headline question against the joint "
                f"model's {t['joint_p_headline'].iloc[0]:.0%}; it " if "joint_p_headline" in t else "")
        lines.append("The three-step approach (modal class, then the gradient model) " + same
                     + f"gives class gradient intervals {t['width_ratio'].median():.2f} times as wide as the joint "
                     "model's (median over stages and classes): it treats each episode's class as known"
                     + ("" if result.three_citable else f" [{THREE_STEP_NOT_FOR_CITATION}]") + ".")
    return lines


def _sections(result: JointAnalysis, tables, figures, rule: SuppressionRule) -> list[Section]:
    config, fit = result.config, result.fit
    pct = f"{config.prob:.0%}"
    if result.citable:
        status = ["The joint model passed the convergence gate (R-hat <= 1.01, bulk and tail ESS >= 400, no "
                  "divergences, after label alignment) and its chains agree on the class labelling."]
    else:
        why = []
        if not fit.gate["passed"]:
            why.append("it failed the convergence gate")
        if fit.alignment.multimodal:
            why.append("its chains settled in different class labellings (multimodal)")
        status = [f"{NOT_FOR_CITATION}: {' and '.join(why)}. Rerun with more draws (and more EM starts) before "
                  "citing any number below."]
    if result.n_las < 3:
        status.append(f"With {result.n_las} local authorit{'y' if result.n_las == 1 else 'ies'}, the contextual "
                      "(inverse intervention) effects and the LA SDs are set by the priors, not the data: do not "
                      "cite them.")
    n = result.n_episodes
    n_shown = rule.marker if 0 < n < rule.threshold else f"{n:,}"
    naming = ("Classes are named after the study class (Hood et al. 2020, as the workbench's simulator encodes "
              "their profiles) whose profile is nearest, one study class per fitted class; "
              "study_profile_distance in the class sizes table is the mean absolute difference of the item "
              "probabilities (near 0: a close match; above about 0.1: read the profiles, not the name)."
              if config.names == "study" else
              "Classes are named by their dominant factors (recorded in at least 40% of their episodes).")
    data = [
        f"{n_shown} assessed episodes" + (f" (a random sample of the {result.n_assessed:,} in the extract)"
                                          if result.n_assessed > n else "")
        + f" in {result.n_las} local authorit{'y' if result.n_las == 1 else 'ies'}; "
        f"{len(result.posterior['factor'])} assessment factors; K = {config.k} demand classes.",
        "One model: each episode's class (summed out, never sampled) explains its assessment factors (local "
        "independence) and shifts the level and the deprivation gradient of each stage given the one before "
        "(section 47 enquiry given assessment, conference given enquiry, plan given conference, looked after "
        "given assessment). Neighbourhood deprivation (IDACI 2019, decile units) is split into the "
        "neighbourhood's deprivation relative to its LA (the within effect: the social gradient, one per class) "
        "and the LA's mean (the between effect, common to classes); a class's contextual effect is the between "
        "effect minus its gradient, so a steeper class gradient is a stronger inverse intervention effect. "
        f"LA intercepts{', LA gradients' if config.la_slopes else ''}"
        f"{', LSOA intercepts' if config.lsoa_effects else ''}"
        f"{' and LA-varying class shares' if config.la_class_weights else ''}; class gradient shifts "
        + ("shared across stages." if config.class_slopes == "shared" else "free by stage."),
        "The likelihood is on counts of episodes sharing a factor pattern, a neighbourhood and an outcome path: "
        "the same posterior as one row per episode. Class labels are aligned across chains and draws before any "
        "summary. " + naming,
        f"Prior set '{config.prior}'; sampler {config.sampler}, {config.chains} chains x {config.draws} draws after "
        f"{config.tune} tuning, seed {config.seed}; chains start at the best of {config.n_starts} EM runs. "
        f"Intervals are {pct} equal-tailed credible intervals.",
        "Per-episode class probabilities are case-level data: they are never computed for or written to this "
        f"report. Episode counts under {rule.threshold} are shown as '{rule.marker}'.",
    ]
    if result.dropped_factors:
        data.append(f"{len(result.dropped_factors)} factor(s) never recorded in these episodes were left out: "
                    + ", ".join(result.dropped_factors) + ".")
    mark = "" if result.citable else f" [{NOT_FOR_CITATION}]"
    sections = [Section("Status", status), Section("Headlines", headlines(result, tables)),
                Section("Data and model", data, tables=[("Episodes at risk of and reaching each stage",
                                                         tables["stage_counts"])])]
    sections.append(Section("Class gradients", [
        "Odds ratio per decile step of neighbourhood deprivation within the LA, by stage (given the one before) "
        "and class, and the posterior probability that each class has the steepest gradient (and each other rank)."],
        tables=[(f"Class gradients per decile step ({pct} CrI){mark}", tables["class_gradients"]),
                (f"P(rank of each class's gradient; 1 = steepest){mark}", tables["steepest"])]
        + ([(f"The headline question{mark}", tables["headline"])] if "headline" in tables else []),
        figures=[figures["gradients"], figures["by_decile"]]))
    sections.append(Section("Contextual (inverse intervention) effects by class", [
        "Between-LA minus within-LA effect of deprivation (logit, per decile unit; negative: inverse intervention), "
        "and as the odds ratio of an LA at the 25th over one at the 75th percentile of LA deprivation in England, "
        "same neighbourhood deprivation (above 1: the less deprived LA intervenes more)."],
        tables=[(f"Contextual effect by class (logit, {pct} CrI){mark}", tables["class_contextual"]),
                (f"Inverse intervention contrast by class ({pct} CrI){mark}", tables["class_inverse_intervention"]),
                (f"P(stage | stage before, class) in a typical LA at the national centre of deprivation{mark}",
                 tables["class_probability"])]))
    sections.append(Section("Demand classes", [
        "P(factor recorded | class) with intervals (every factor in tables/class_profiles.csv) and class shares "
        "in a typical LA."],
        tables=[(f"Class sizes{mark}", tables["class_sizes"])], figures=[figures["profiles"]]))
    if "three_step" in tables:
        t_mark = "" if result.three_citable else f" [{THREE_STEP_NOT_FOR_CITATION}]"
        sections.append(Section("Against the three-step approach", [
            "The three-step approach fits the latent class model, gives each episode its most probable class and "
            "fits the gradient model with that class as a covariate. It treats the class as known: misclassified "
            "episodes pull every class's outcomes towards the others', and the uncertainty of the classification "
            "never reaches its intervals (width_ratio below 1: three-step intervals narrower than the joint "
            "model's). Classes of the three-step fit are labelled by the joint model's profiles."],
            tables=[(f"Class gradients, joint and three-step ({pct} CrI){t_mark}{mark}", tables["three_step"])]))
    conv = pd.DataFrame([{**fit.gate, **fit.alignment.summary()}]).rename(index={0: "joint"})
    if result.three is not None:
        conv.loc["three_step"] = pd.Series(result.three_gate)
    sections.append(Section("Convergence", [
        "Diagnostics on the aligned posterior of the class, stage and variance parameters (R-hat on raw labels "
        "measures label switching, not convergence)."], tables=[("Convergence", conv.round(3))]))
    return sections


def _figures(result: JointAnalysis, scale, folder: Path) -> dict[str, tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    post, prob = result.posterior, result.config.prob
    out = {}
    g = effects.class_gradients(post)
    stages = [str(s) for s in g["stage"].values]
    classes = [str(c) for c in g["class"].values]
    q = [(1 - prob) / 2, 0.5, 1 - (1 - prob) / 2]
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 0.4 * len(classes) + 1.6), sharey=True,
                             squeeze=False)
    for ax, s in zip(axes[0], stages):
        band = g.sel(stage=s).quantile(q, ("chain", "draw")).transpose("quantile", "class").to_numpy()
        y = np.arange(len(classes))[::-1]
        ax.hlines(y, band[0], band[2], color="C0", lw=2)
        ax.plot(band[1], y, "o", color="C0")
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_title(STAGE_LABELS.get(s, s), fontsize=9)
        ax.set_yticks(y, [_label(c) for c in classes], fontsize=8)
        ax.set_xlabel("odds ratio per decile step", fontsize=8)
    fig.tight_layout()
    path = folder / "class_gradients.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    out["gradients"] = (f"Class gradients by stage (median, {prob:.0%} CrI)", path)

    by = effects.class_probability_by_decile(post, scale)
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 3.2), squeeze=False)
    for ax, s in zip(axes[0], stages):
        for i, c in enumerate(classes):
            d = by.sel(stage=s, **{"class": c})
            lo, mid, hi = d.quantile(q, ("chain", "draw")).to_numpy()
            ax.plot(d["decile"], mid, marker="o", ms=3, color=f"C{i}", label=_label(c))
            ax.fill_between(d["decile"], lo, hi, color=f"C{i}", alpha=0.15)
        ax.invert_xaxis()
        ax.set_title(STAGE_LABELS.get(s, s), fontsize=9)
        ax.set_xlabel("IDACI decile (1 = most deprived)", fontsize=8)
    axes[0][0].set_ylabel("P(stage | stage before), typical LA", fontsize=8)
    axes[0][-1].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    path = folder / "class_probability_by_decile.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    out["by_decile"] = (f"P(stage | stage before) by neighbourhood decile and class, typical LA ({prob:.0%} CrI)",
                        path)

    fig = plots.plot_profile_heatmap(profile_table(result.fit.idata, prob=prob), min_prob=0.05)
    path = folder / "class_profiles.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    out["profiles"] = ("Class profiles: P(factor recorded | class), posterior means in percent", path)
    return out


def _write_posterior(result: JointAnalysis, target: Path) -> None:
    """Class-, stage- and LA-level parameters only: no LSOA, pattern or episode arrays."""
    import arviz as az

    idata = az.InferenceData(posterior=result.posterior, sample_stats=result.fit.idata.sample_stats)
    posterior_export.write(idata, target, POSTERIOR_VARS)


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------

def cache_key(extract_path: Path, config: JointRun, rule: SuppressionRule) -> str:
    """Same extract bytes, settings, suppression rule and model code: same key, so no refit."""
    return run_key(files=(extract_path,), settings=(config, rule), code=(*MODEL_CODE, "workflows.joint"))


def write_joint_report(extract_path, out_dir, config: JointRun, rule: SuppressionRule, title=None,
                       log=print) -> Path:
    """Load, fit, derive and report; the folder appears only when complete."""
    extract_path, out_dir = Path(extract_path), Path(out_dir)
    check_input_file(extract_path, what="extract")  # before its bytes are hashed for the cache key
    key = cache_key(extract_path, config, rule)
    if is_current(out_dir, key):
        log(f"  unchanged since the last run (same extract, settings and code): reusing {out_dir}")
        return out_dir
    started = time.perf_counter()
    lsoa_table = load_lsoa_table()
    extract, _ = load_extract(extract_path, lsoa_table, salt=os.urandom(32))  # ids never needed
    require_assessed(extract_path, extract.episodes, extract.factors, "the joint model", MIN_EPISODES)
    assessed = extract.episodes[extract.episodes["assessment"].fillna(False).to_numpy(dtype=bool)]
    note = contextual_note(extract_path, assessed)
    if note:
        log(note.replace("The within-LA gradient is", "The class gradients within LAs are"))
    geography = add_deprivation(lsoa_table)
    scale = DeprivationScale.from_geography(geography)
    result = analyse_extract(extract.episodes, extract.factors, geography, config, log=log)
    del extract
    tables = derive_tables(result, scale, rule)

    with atomic.atomic_dir(out_dir) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        for name, frame in tables.items():
            ok = result.citable and (name != "three_step" or result.three_citable)
            reason = NOT_FOR_CITATION if not result.citable else THREE_STEP_NOT_FOR_CITATION
            if name == "stage_counts":
                ok = True  # observed counts, not model estimates
            flag_uncitable(frame, ok, reason).to_csv(tmp / "tables" / f"{name}.csv")
        _write_posterior(result, tmp / "posterior.nc")
        figures = _figures(result, scale, tmp / "figures")
        heading = title or f"Demand classes and social gradients (joint model): {extract_path.name}"
        sections = _sections(result, tables, figures, rule)
        (tmp / "report.md").write_text(render_markdown(heading, sections, tmp), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(heading, sections), encoding="utf-8")
        convergence = {"joint": {**result.fit.gate, "multimodal": result.fit.alignment.multimodal,
                                 "citable": result.citable}}
        if result.three is not None:
            convergence["three_step"] = {**result.three_gate, "citable": result.three_citable}
        man = provenance.manifest(
            "joint", inputs={"extract": extract_path, "lsoa_table": paths.REFERENCE_DIR / "lsoa.csv"},
            config=asdict(config), seed=config.seed, cache_key=key,
            suppression={"threshold": rule.threshold, "marker": rule.marker}, classes=result.names,
            convergence=convergence,
            timings={"joint": {k: result.posterior.attrs.get(k) for k in ("wall_seconds", "sampling_seconds")}},
            seconds=round(time.perf_counter() - started, 1))
        provenance.redact_extract(man, extract_path)
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=str) + "\n")
    return out_dir


__all__ = ["JointRun", "JointAnalysis", "analyse_extract", "write_joint_report", "derive_tables",
           "three_step_table", "steepest_table", "headlines", "study_names", "load_joint_config"]
