"""``python -m workflows latent-class EXTRACT``: demand classes from the factors recorded at assessment.

Episodes with a completed assessment are collapsed to weighted unique factor patterns;
K = k_min..k_max are each fitted (EM starts, MCMC, label alignment) and compared by
PSIS-LOO, with BIC and entropy at the posterior mode beside it; the chosen K (or ``--k``)
gives named class profiles with credible intervals and class sizes.  Writes, into
``--out`` and replaced as a whole only when complete:

- ``report.md`` / ``report.html``: the K choice and why, profiles heatmap, class sizes,
  convergence; marked NOT FOR CITATION when the chosen fit fails the gate or is multimodal;
- ``tables/*.csv``: the K-selection table, profiles with intervals, class sizes (counts
  under the threshold suppressed);
- ``posterior.nc`` (class weights and profiles only: no pattern or episode data) and
  ``manifest.json``.

Two further analyses, each switched by a ``[latent_class]`` key (and a CLI flag):

- ``regression`` (default false: it is a second, larger MCMC fit, minutes on the demo's
  8,000 episodes): latent class regression at the chosen K on the same episodes
  (:mod:`models.latent_class.regression`): class membership depends on ``covariates``
  (default ``["age_group", "gender", "ethnicity"]``; ``[]`` for LA effects only) and
  varies by LA; with ``distal`` (default true) the class-specific probabilities of a
  section 47 enquiry, a child protection plan given an enquiry and becoming looked after
  are estimated in the same model.  Tables ``class_prevalence.csv`` (standardised class
  shares by covariate level and by LA, with intervals; episode counts per level
  suppressed, with secondary suppression) and ``distal_outcomes.csv``.  Classes keep the
  names of the latent class fit (its profiles are the alignment reference).
- ``misalignment`` (default true: one small hierarchical binomial fit, seconds): the share
  of neglect child protection plans whose assessment did not record neglect, by LA and
  pooled, with intervals (:mod:`models.latent_class.misalignment`), on every episode of
  the extract.  Table ``neglect_misalignment.csv`` (counts under the threshold and the
  observed shares derived from them suppressed, with secondary suppression).  An extract
  without neglect plans (``cpp_category`` is optional) gets a note instead.

Each part is gated on its own convergence: a part that fails has its tables marked NOT
FOR CITATION, whatever the others did.

Per-episode class probabilities exist only in memory (:meth:`LatentClassAnalysis.episode_membership`):
they are case-level data and are never written.  An unchanged run is not refitted.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from models.latent_class import plots
from models.latent_class.fit import LatentClassFit
from models.latent_class.misalignment import MisalignmentFit, fit_misalignment, misalignment_counts, publishable
from models.latent_class.model import LatentClassPriors
from models.latent_class.patterns import Patterns, collapse
from models.latent_class.profiles import class_names, membership, profile_frame, profile_table
from models.latent_class.regression import (DISTAL_OUTCOMES, LA, RegressionData, RegressionFit,
                                            collapse_regression, derived_draws, fit_latent_class_regression,
                                            summarise)
from models.latent_class.selection import ClassSizeCheck, KTask, Selection, fit_k, select_k
from models.sampling import SAMPLERS, SamplerSettings
from models.suppression import SuppressionRule, suppress_counts
from models.vocabulary import FACTOR_NAMES
from public_data.tables import load_lsoa_table
from workflows import atomic, paths, posterior_export, provenance
from workflows.errors import UserError
from workflows.extract_io import check_input_file, load_extract, require_assessed
from workflows.fanout import fan_out
from workflows.report_format import Section, lead, render_html, render_markdown
from workflows.run_cache import flag_uncitable, is_current, run_key

MODEL_CODE = ("models.latent_class", "models.sampling")
NOT_FOR_CITATION = "NOT FOR CITATION: the chosen fit did not pass the convergence gate or is multimodal"
#: Fewer assessed episodes than this: no latent class model is worth fitting.
MIN_EPISODES = 50
#: More classes than this is a typo, not a model (the study found 7; each K is a full MCMC fit).
MAX_K = 20
#: Episode columns the latent class regression may take as covariates of class membership.
REGRESSION_COVARIATES: tuple[str, ...] = ("age_group", "gender", "ethnicity")
OUTCOME_LABELS = {"s47": "section 47 enquiry", "cpp": "child protection plan", "lac": "looked after"}


@dataclass(frozen=True)
class LatentClassRun:
    """What to fit: the ``[latent_class]`` section of a run config.

    ``k``: report this K (0: the K chosen by PSIS-LOO).  ``k_max`` 0 with ``k`` set skips
    the K loop.  ``episodes``: fit a seeded random sample of this many assessed episodes
    (0: all), for quick looks at a large extract.  ``workers`` > 1 fans the K loop out
    over that many processes (``workflows.fanout``).  ``regression``, ``covariates``,
    ``distal`` and ``misalignment``: the further analyses (module docstring).
    """

    k_min: int = 1
    k_max: int = 8
    k: int = 0
    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 1
    n_starts: int = 20
    em_seed: int = 0
    prob: float = 0.9
    min_share: float = 0.01
    se_multiplier: float = 2.0
    episodes: int = 0
    workers: int = 1
    regression: bool = False
    covariates: tuple[str, ...] = REGRESSION_COVARIATES
    distal: bool = True
    misalignment: bool = True
    final_draws: int = 0      # > 0: refit the chosen K with this many draws (and final_chains)
    final_chains: int = 0     # 0: the selection's chains

    def __post_init__(self):
        if isinstance(self.covariates, str) or not all(isinstance(c, str) for c in self.covariates):
            raise ValueError(f"covariates {self.covariates!r}: expected a list of names")
        object.__setattr__(self, "covariates", tuple(self.covariates))
        unknown = [c for c in self.covariates if c not in REGRESSION_COVARIATES]
        if unknown or len(set(self.covariates)) < len(self.covariates):
            raise ValueError(f"covariates {list(self.covariates)}: expected distinct names among "
                             f"{', '.join(REGRESSION_COVARIATES)}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if self.k < 0 or self.k_min < 1 or self.k_max < 0:
            raise ValueError(f"k {self.k}, k_min {self.k_min}, k_max {self.k_max}: expected k >= 0, "
                             "k_min >= 1, k_max >= 0")
        if max(self.k, self.k_min, self.k_max) > MAX_K:
            raise ValueError(f"k {self.k}, k_min {self.k_min}, k_max {self.k_max}: at most {MAX_K} classes")
        if self.k_max == 0 and self.k == 0:
            raise ValueError("k_max 0 skips the K loop: give k, the number of classes to fit")
        if self.k_max and self.k_max < self.k_min:
            raise ValueError(f"k_max {self.k_max} is below k_min {self.k_min}")
        if self.draws < 1 or self.tune < 0 or self.chains < 1 or self.n_starts < 1:
            raise ValueError("draws, chains and n_starts must be >= 1 and tune >= 0")
        if not 0.5 <= self.prob < 1:
            raise ValueError(f"prob {self.prob}: expected a credible level in [0.5, 1)")
        if not 0 <= self.min_share < 0.5:
            raise ValueError(f"min_share {self.min_share}: expected a share in [0, 0.5)")
        if self.final_draws < 0 or self.final_chains < 0:
            raise ValueError(f"final_draws {self.final_draws} and final_chains {self.final_chains} must be >= 0")
        if self.episodes < 0 or self.workers < 1:
            raise ValueError(f"episodes {self.episodes} must be >= 0 and workers {self.workers} >= 1")

    @classmethod
    def from_config(cls, section: dict, where: str) -> "LatentClassRun":
        try:
            return cls(**dict(section))
        except (ValueError, TypeError) as err:
            raise UserError(f"{where}: [latent_class] {err.args[0]}") from None

    @property
    def k_values(self) -> list[int]:
        return list(range(self.k_min, self.k_max + 1)) if self.k_max else []

    def settings(self) -> SamplerSettings:
        return SamplerSettings(sampler=self.sampler, draws=self.draws, tune=self.tune, chains=self.chains,
                               seed=self.seed)

    def final_settings(self) -> SamplerSettings | None:
        """The longer fit of the chosen K (a cheap K scan, then enough draws for the gate)."""
        if not self.final_draws:
            return None
        return replace(self.settings(), draws=self.final_draws, tune=max(self.tune, self.final_draws // 2),
                       chains=self.final_chains or self.chains)

    def map_fn(self):
        if self.workers == 1:
            return map
        return functools.partial(fan_out, n_workers=self.workers, progress=False, label="K")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("extract", type=Path, help="case-level extract (CSV or Parquet)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/latent-class-<name>)")
    parser.add_argument("--k-max", type=int, default=8, help="fit K = k-min..k-max and compare (default 8)")
    parser.add_argument("--k-min", type=int, default=1)
    parser.add_argument("--k", type=int, default=0, help="report this K instead of the one PSIS-LOO chooses")
    parser.add_argument("--sampler", default="nutpie", choices=SAMPLERS)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--n-starts", type=int, default=20, help="EM random starts per K (default 20)")
    parser.add_argument("--episodes", type=int, default=0, help="fit a random sample of this many (0: all)")
    parser.add_argument("--workers", type=int, default=1, help="fit this many K at once, in processes")
    parser.add_argument("--threshold", type=int, default=10, help="suppress counts below this (default 10)")
    parser.add_argument("--regression", action="store_true",
                        help="also fit the latent class regression (covariates, LA, distal outcomes) at the chosen K")
    parser.add_argument("--covariates", nargs="*", default=list(REGRESSION_COVARIATES),
                        help="covariates of class membership in the regression (default: all three)")
    parser.add_argument("--no-distal", action="store_true", help="regression without the distal outcomes")
    parser.add_argument("--no-misalignment", action="store_true", help="skip the neglect misalignment analysis")


def run(args: argparse.Namespace) -> int:
    try:
        config = LatentClassRun(k_min=args.k_min, k_max=args.k_max, k=args.k, sampler=args.sampler,
                                draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed,
                                n_starts=args.n_starts, episodes=args.episodes, workers=args.workers,
                                regression=args.regression, covariates=tuple(args.covariates),
                                distal=not args.no_distal, misalignment=not args.no_misalignment)
        rule = SuppressionRule(args.threshold)
    except (ValueError, TypeError) as err:
        raise UserError(str(err.args[0])) from None
    out = atomic.output_dir(args.out, paths.RESULTS_DIR / f"latent-class-{Path(args.extract).name.split('.')[0]}")
    report = write_latent_class_report(args.extract, out, config, rule)
    print(f"report: {report / 'report.html'}")
    return 0


# ---------------------------------------------------------------------------------------
# The analysis, in memory
# ---------------------------------------------------------------------------------------

@dataclass
class LatentClassAnalysis:
    """Everything the report shows, and the per-episode memberships it never shows.

    ``episode_ids``: the episodes fitted, in the order ``patterns.index`` maps them.
    """

    patterns: Patterns
    episode_ids: pd.Index
    selection: Selection | None
    fit: LatentClassFit
    names: list[str]
    profiles: xr.Dataset          # profile_table, ``class`` coords = names
    dropped_factors: list[str]
    config: LatentClassRun
    regression: RegressionFit | None = None          # config.regression: fitted by add_analyses
    misalignment: MisalignmentFit | None = None      # config.misalignment: fitted by add_analyses
    skipped: dict[str, str] = field(default_factory=dict)   # part -> why it could not run

    @property
    def k(self) -> int:
        return len(self.names)

    @property
    def citable(self) -> bool:
        return self.fit.citable

    @property
    def complete(self) -> bool:
        """Every analysis the config asks for has been run (or recorded as skipped)."""
        return all(not wanted or done is not None or part in self.skipped
                   for part, wanted, done in (("regression", self.config.regression, self.regression),
                                              ("misalignment", self.config.misalignment, self.misalignment)))

    def regression_summary(self) -> xr.Dataset | None:
        """Standardised class prevalence by covariate level and LA, class shares and distal
        probabilities (``distal_prob``: P(outcome | class); ``distal_cond``: P(outcome |
        parent reached, class)), each ``_mean``/``_lower``/``_upper``; class coords = names."""
        if self.regression is None:
            return None
        post = self.regression.idata.posterior
        draws = derived_draws(self.regression.idata, self.regression.data)
        if "distal_cond" in post:
            draws["distal_cond"] = post["distal_cond"]
        return summarise(draws, self.config.prob)

    def episode_membership(self) -> xr.DataArray:
        """P(class | episode's factors), episode x class, averaged over the posterior.

        Case-level: for analysis in memory (linking to outcomes, say), never for a report.
        """
        member = membership(self.fit.idata, self.patterns).to_numpy()[self.patterns.index]
        return xr.DataArray(member, dims=("episode", "class"),
                            coords={"episode": self.episode_ids.to_numpy(), "class": self.names},
                            name="membership")

    def modal_class(self) -> pd.Series:
        """Each episode's most probable class name (case-level: in memory only)."""
        member = self.episode_membership()
        return pd.Series(np.asarray(self.names)[member.to_numpy().argmax(axis=1)],
                         index=self.episode_ids, name="class")

    def class_sizes(self) -> pd.DataFrame:
        """Per class: posterior share (mean and interval), expected and modally assigned episodes."""
        t = self.profiles
        n = self.patterns.n_episodes
        member = membership(self.fit.idata, self.patterns).to_numpy()
        modal = np.bincount(member.argmax(axis=1), weights=self.patterns.counts, minlength=self.k)
        return pd.DataFrame({
            "share": t["class_weight_mean"].to_numpy(), "share_lower": t["class_weight_lower"].to_numpy(),
            "share_upper": t["class_weight_upper"].to_numpy(),
            "expected_episodes": np.round(t["class_weight_mean"].to_numpy() * n).astype(np.int64),
            "modal_episodes": modal.astype(np.int64),
        }, index=pd.Index(self.names, name="class"))


def assessed_factors(episodes: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """The factor matrix of episodes with a completed assessment (index: episode ids)."""
    if len(episodes) != len(factors):
        raise ValueError("episodes and factors differ in length")
    assessed = episodes["assessment"].fillna(False).to_numpy().astype(bool)
    out = factors.iloc[np.flatnonzero(assessed)][[c for c in FACTOR_NAMES if c in factors.columns]]
    return out.set_axis(pd.Index(episodes["episode_id"].to_numpy()[assessed], name="episode"), axis=0)


def analyse(factors: pd.DataFrame, config: LatentClassRun, *, log=print) -> LatentClassAnalysis:
    """K loop, choice, the fit at the chosen K, names and profiles, from an episode x factor
    boolean frame (index: episode ids).  No files, no printing beyond ``log``."""
    if len(factors) < MIN_EPISODES:
        raise UserError(f"{len(factors)} assessed episodes: a latent class model needs at least "
                        f"{MIN_EPISODES} (check the 'assessment' and 'assessment_factors' columns)")
    if config.episodes and config.episodes < len(factors):
        rows = np.sort(np.random.default_rng(config.seed).choice(len(factors), config.episodes, replace=False))
        factors = factors.iloc[rows]
    recorded = factors.any(axis=0)
    dropped = [str(c) for c in factors.columns[~recorded.to_numpy()]]
    factors = factors.loc[:, recorded.to_numpy()]
    if factors.shape[1] < 2:
        raise UserError(f"only {factors.shape[1]} assessment factor(s) recorded in the assessed episodes: "
                        "latent classes need several")
    patterns = collapse(factors.astype(bool))
    settings, priors = config.settings(), LatentClassPriors()
    size_check = ClassSizeCheck(min_share=config.min_share)
    selection = None
    if config.k_values:
        log(f"  fitting K = {config.k_min}..{config.k_max} to {patterns.n_episodes:,} episodes "
            f"({patterns.n_patterns:,} patterns), {config.chains} chains x {config.draws} draws each ...")
        selection = select_k(patterns, config.k_values, settings, priors, n_starts=config.n_starts,
                             em_seed=config.em_seed, size_check=size_check,
                             se_multiplier=config.se_multiplier, map_fn=config.map_fn())
        log(f"    {selection.rule}")
    k = config.k or selection.chosen
    final = config.final_settings()
    if selection is not None and k in selection.fits and final is None:
        fitted = selection.fits[k].fit
    else:
        final = final or settings
        log(f"  fitting K = {k} for the report: {final.chains} chains x {final.draws} draws ...")
        fitted = fit_k(KTask(patterns, k, final, priors, config.n_starts, config.em_seed,
                             size_check=size_check)).fit
    names = class_names(fitted.idata.posterior["item_prob"].mean(("chain", "draw")))
    table = profile_table(fitted.idata, prob=config.prob).assign_coords({"class": names})
    table = table.assign_coords(label=("class", [str(c) for c in fitted.idata.posterior["class"].to_numpy()]))
    return LatentClassAnalysis(patterns=patterns, episode_ids=pd.Index(factors.index), selection=selection,
                               fit=fitted, names=names, profiles=table, dropped_factors=dropped, config=config)


def analyse_extract(episodes: pd.DataFrame, factors: pd.DataFrame, config: LatentClassRun, *,
                    log=print) -> LatentClassAnalysis:
    """:func:`analyse` on the assessed episodes, then :func:`add_analyses`: everything the
    report shows, from a typed extract (``load_extract``'s ``episodes`` and ``factors``)."""
    result = analyse(assessed_factors(episodes, factors), config, log=log)
    return add_analyses(result, episodes, factors, log=log)


def add_analyses(result: LatentClassAnalysis, episodes: pd.DataFrame, factors: pd.DataFrame, *,
                 log=print) -> LatentClassAnalysis:
    """The regression and misalignment analyses ``result.config`` asks for and ``result``
    lacks, from the extract it was fitted to (episodes matched by ``episode_id``)."""
    config = result.config
    out = replace(result, skipped=dict(result.skipped))
    if config.regression and out.regression is None and "regression" not in out.skipped:
        log(f"  latent class regression at K = {out.k} on {len(out.episode_ids):,} episodes "
            f"(covariates: {', '.join(config.covariates) or 'none'}; LA"
            + ("; distal outcomes s47, cpp, lac" if config.distal else "") + ") ...")
        try:
            out.regression = fit_regression(out, episodes)
        except UserError as err:  # the rest of the report stands; the Status section says why
            out.skipped["regression"] = str(err)
            log(f"  latent class regression skipped: {err}")
    if config.misalignment and out.misalignment is None and "misalignment" not in out.skipped:
        try:
            counts = misalignment_counts(episodes, factors)
        except ValueError as err:
            out.skipped["misalignment"] = str(err.args[0])
            log(f"  neglect misalignment skipped: {err.args[0]}")
        else:
            log(f"  neglect misalignment: {int(counts.table['plans'].sum()):,} assessed neglect plans "
                f"in {len(counts.table)} LA(s) ...")
            out.misalignment = fit_misalignment(counts, _misalignment_settings(config))
    return out


def _misalignment_settings(config: LatentClassRun) -> SamplerSettings:
    """The run's sampler and seed; at least 4 chains x 2,000 draws and 1,000 tuning steps
    (seconds here), at target acceptance 0.99: with a between-LA SD near zero, shorter
    chains missed the ESS floor and 0.95 left divergences (the demo's runs:
    benchmarks/RESULTS.md, "The demo's fits")."""
    return replace(config.settings(), draws=max(config.draws, 2000), tune=max(config.tune, 1000),
                   chains=max(config.chains, 4), target_accept=0.99)


def regression_data(result: LatentClassAnalysis, episodes: pd.DataFrame) -> RegressionData:
    """The fitted episodes' factors, covariates (missing: level ``unknown``), LA and, with
    ``config.distal``, outcomes, collapsed to the regression's sufficient statistic."""
    config = result.config
    rows = pd.Index(episodes["episode_id"]).get_indexer(result.episode_ids)
    if (rows < 0).any():
        raise ValueError("the analysis was fitted to episodes that are not in this extract")
    ep = episodes.iloc[rows].reset_index(drop=True)
    factors = pd.DataFrame(result.patterns.expand().astype(bool), columns=list(result.patterns.factors))
    covariates = pd.DataFrame({c: ep[c].astype(object).where(ep[c].notna(), "unknown").astype(str)
                               for c in config.covariates}, index=ep.index)
    outcomes = (pd.DataFrame({o: ep[o].fillna(False).astype(bool) for o in DISTAL_OUTCOMES})
                if config.distal else pd.DataFrame(index=ep.index))
    la = ep["la_code"]
    if la.isna().any():
        raise UserError(f"la_code: missing on {int(la.isna().sum())} assessed episodes; the latent class "
                        "regression needs every episode's LA")
    try:
        return collapse_regression(factors, covariates, la.astype(str), outcomes)
    except ValueError as err:
        raise UserError(f"latent class regression: {err.args[0]}") from None


def fit_regression(result: LatentClassAnalysis, episodes: pd.DataFrame) -> RegressionFit:
    """Latent class regression at ``result.k`` on ``result``'s episodes, its labels aligned to
    ``result``'s profiles (so its classes carry the same names)."""
    config = result.config
    if result.k < 2:
        raise UserError("the latent class regression needs K >= 2 classes; this analysis has one "
                        "(set k, or k_min >= 2)")
    data = regression_data(result, episodes)
    reference = result.fit.idata.posterior["item_prob"].mean(("chain", "draw")).assign_coords(
        {"class": result.names})
    return fit_latent_class_regression(data, result.k, config.settings(), n_starts=config.n_starts,
                                       em_seed=config.em_seed, reference=reference)


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------

def cache_key(extract_path: Path, config: LatentClassRun, rule: SuppressionRule) -> str:
    """Same extract bytes, settings and model code: same key, so no refit."""
    return run_key(files=(extract_path,), settings=(config, rule), code=(*MODEL_CODE, "workflows.latent_class"))



def write_latent_class_report(extract_path: Path, out_dir: Path, config: LatentClassRun, rule: SuppressionRule,
                              title: str | None = None, log=print,
                              analysis: LatentClassAnalysis | None = None) -> Path:
    """Load, fit, choose, name and report; the folder appears only when complete.

    ``analysis``: an :func:`analyse` (or :func:`analyse_extract`) of this extract under this
    ``config`` already in memory (a notebook's), reported without refitting; the regression
    or misalignment the config asks for and it lacks are fitted here.
    """
    out_dir = Path(out_dir)
    check_input_file(extract_path, what="extract")  # before its bytes are hashed for the cache key
    key = cache_key(extract_path, config, rule)
    if is_current(out_dir, key):
        log(f"  unchanged since the last run (same extract, settings and code): reusing {out_dir}")
        return out_dir
    started = time.perf_counter()
    if analysis is not None:
        if analysis.config != config:
            raise ValueError("the analysis given was run under another configuration")
        result = analysis
        if not result.complete:
            extract, _ = load_extract(extract_path, load_lsoa_table(), salt=os.urandom(32))
            result = add_analyses(result, extract.episodes, extract.factors, log=log)
    else:
        extract, _ = load_extract(extract_path, load_lsoa_table(), salt=os.urandom(32))  # ids never needed
        require_assessed(extract_path, extract.episodes, extract.factors, "a latent class model", MIN_EPISODES)
        result = analyse_extract(extract.episodes, extract.factors, config, log=log)
    gate = result.fit.gate
    log(f"    K = {result.k}: max R-hat {gate['max_r_hat']:.3f}, min bulk ESS {gate['min_ess_bulk']:.0f}, "
        f"divergences {gate['divergences']}, multimodal {result.fit.alignment.multimodal}"
        + ("" if result.citable else f"  <- {NOT_FOR_CITATION}"))

    with atomic.atomic_dir(out_dir) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        tables = _tables(result, rule)
        for name, frame in tables.items():
            ok, reason = _table_citable(result, name)
            flag_uncitable(frame, ok, reason).to_csv(tmp / "tables" / f"{name}.csv")
        _write_posterior(result, tmp / "posterior.nc")
        figures = _figures(result, tmp / "figures")
        heading = title or f"Demand classes (latent class analysis): {extract_path.name}"
        sections = _sections(result, tables, figures, rule)
        (tmp / "report.md").write_text(render_markdown(heading, sections, tmp, lead(sections, "profiles.png")), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(heading, sections, lead(sections, "profiles.png")), encoding="utf-8")
        fits = result.selection.fits if result.selection else {result.k: None}
        man = provenance.manifest(
            "latent-class", inputs={"extract": extract_path}, config=asdict(config), seed=config.seed,
            cache_key=key, suppression={"threshold": rule.threshold, "marker": rule.marker},
            chosen_k=result.k, chosen_by=result.selection.rule if result.selection else "given (--k)",
            convergence={str(result.k): {**gate, "multimodal": result.fit.alignment.multimodal,
                                         "citable": result.citable},
                         **({"regression": {**result.regression.gate, "citable": result.regression.citable,
                                            "multimodal": result.regression.alignment.multimodal}}
                            if result.regression else {}),
                         **({"misalignment": {**result.misalignment.gate, "citable": result.misalignment.citable}}
                            if result.misalignment else {})},
            skipped=result.skipped,
            timings={str(k): (f.fit.idata.posterior.attrs.get("wall_seconds") if f else
                              result.fit.idata.posterior.attrs.get("wall_seconds")) for k, f in fits.items()},
            seconds=round(time.perf_counter() - started, 1))
        provenance.redact_extract(man, extract_path)
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=str) + "\n")
    return out_dir


#: Tables of the further analyses, and the part whose fit they come from.
PART_TABLES = {"class_prevalence": "regression", "distal_outcomes": "regression",
               "neglect_misalignment": "misalignment"}
REGRESSION_NOT_FOR_CITATION = ("NOT FOR CITATION: the latent class regression did not pass the convergence "
                               "gate or is multimodal")
MISALIGNMENT_NOT_FOR_CITATION = "NOT FOR CITATION: the misalignment model did not pass the convergence gate"


def _table_citable(result: LatentClassAnalysis, name: str) -> tuple[bool, str]:
    """Whether a table may be cited, and the mark it carries if not: each part by its own fit."""
    part = PART_TABLES.get(name)
    if part == "regression":
        return result.regression.citable, REGRESSION_NOT_FOR_CITATION
    if part == "misalignment":
        return result.misalignment.citable, MISALIGNMENT_NOT_FOR_CITATION
    return result.citable, NOT_FOR_CITATION


def _interval(mean: float, lower: float, upper: float, pct: str) -> str:
    return f"{mean:.0%} ({pct} CrI {lower:.0%}-{upper:.0%})"


def _prevalence_table(result: LatentClassAnalysis, summary: xr.Dataset, rule: SuppressionRule) -> pd.DataFrame:
    """Standardised class shares by covariate level and by LA (rows: by, level, class), with the
    fitted episodes at each level; counts under the threshold suppressed, and a second level
    of the same covariate where one alone would be (each covariate's levels sum to the total)."""
    data = result.regression.data
    frames = []
    for by in (*data.covariates, LA):
        levels = list(data.las if by == LA else data.levels[by])
        counts = data.cells.groupby(by)["count"].sum().reindex(levels).astype("int64")
        shown = suppress_counts(counts.to_frame("episodes"), rule, totals_axis=0)["episodes"]
        var = f"prevalence_by_{by}"
        for level in levels:
            for name in result.names:
                sel = {by: level, "class": name}
                frames.append({"by": by, "level": str(level), "class": name, "episodes": shown[level],
                               "mean": float(summary[f"{var}_mean"].sel(sel)),
                               "lower": float(summary[f"{var}_lower"].sel(sel)),
                               "upper": float(summary[f"{var}_upper"].sel(sel))})
    for name in result.names:
        frames.append({"by": "all", "level": "all", "class": name, "episodes": f"{data.n_episodes}",
                       "mean": float(summary["class_weight_mean"].sel({"class": name})),
                       "lower": float(summary["class_weight_lower"].sel({"class": name})),
                       "upper": float(summary["class_weight_upper"].sel({"class": name}))})
    return pd.DataFrame(frames).set_index(["by", "level", "class"]).round(4)


def _distal_table(result: LatentClassAnalysis, summary: xr.Dataset) -> pd.DataFrame:
    """Per class: P(s47), P(CPP | s47), P(CPP) and P(LAC) with intervals."""
    data = result.regression.data
    rows = []
    for name in result.names:
        for o in data.outcomes:
            parent = data.parents.get(o)
            quantities = [("distal_prob", f"P({o})")]
            if parent is not None:
                quantities.insert(0, ("distal_cond", f"P({o} given {parent})"))  # no "|": Markdown tables
            for var, label in quantities:
                sel = {"class": name, "outcome": o}
                rows.append({"class": name, "quantity": label,
                             "mean": float(summary[f"{var}_mean"].sel(sel)),
                             "lower": float(summary[f"{var}_lower"].sel(sel)),
                             "upper": float(summary[f"{var}_upper"].sel(sel))})
    return pd.DataFrame(rows).set_index(["class", "quantity"]).round(4)


def _tables(result: LatentClassAnalysis, rule: SuppressionRule) -> dict[str, pd.DataFrame]:
    """Published tables: aggregates only; counts under the threshold suppressed."""
    out = {}
    if result.selection is not None:
        out["k_selection"] = result.selection.table.round(4)
    prof = profile_frame(result.profiles)
    out["profiles"] = prof.set_index(["class", "factor"]).drop(columns="label", errors="ignore").round(4)
    sizes = result.class_sizes()
    counts = sizes[["expected_episodes", "modal_episodes"]]
    shown = suppress_counts(counts, rule, totals_axis=0)
    out["class_sizes"] = pd.concat([sizes[["share", "share_lower", "share_upper"]].round(4), shown], axis=1)
    summary = result.regression_summary()
    if summary is not None:
        out["class_prevalence"] = _prevalence_table(result, summary, rule)
        if result.regression.data.outcomes:
            out["distal_outcomes"] = _distal_table(result, summary)
    if result.misalignment is not None:
        out["neglect_misalignment"] = publishable(result.misalignment.summary(result.config.prob), rule)
    return out


def _write_posterior(result: LatentClassAnalysis, target: Path) -> None:
    """Class weights and profiles only: no pattern matrix or pattern counts (case-level data)."""
    posterior_export.write(result.fit.idata, target, ["class_weight", "item_prob"], coords={"class": result.names})


def _figures(result: LatentClassAnalysis, folder: Path) -> dict[str, tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    if result.selection is not None:
        fig = plots.plot_k_selection(result.selection.table, chosen=result.selection.chosen,
                                     se_multiplier=result.selection.se_multiplier)
        path = folder / "k_selection.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out["k"] = ("Choosing K: PSIS-LOO elpd, BIC and entropy against K (hollow: an empty or tiny class)", path)
    fig = plots.plot_profile_heatmap(result.profiles, min_prob=0.05)
    path = folder / "profiles.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    out["profiles"] = ("Class profiles: P(factor recorded | class), posterior means in percent (factors "
                       "under 5% in every class left out)", path)
    fig = plots.plot_class_sizes(result.profiles)
    path = folder / "class_sizes.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    out["sizes"] = ("Class sizes: share of assessed episodes with credible intervals", path)
    return out


def _dominant(result: LatentClassAnalysis, n: int = 4) -> pd.DataFrame:
    """Each class's most likely factors with intervals, for the report's profile table."""
    t = result.profiles
    rows = []
    for name in result.names:
        mean = t["item_prob_mean"].sel({"class": name})
        for factor in mean["factor"].to_numpy()[np.argsort(-mean.to_numpy(), kind="stable")[:n]]:
            m = float(mean.sel(factor=factor))
            lo = float(t["item_prob_lower"].sel({"class": name, "factor": factor}))
            hi = float(t["item_prob_upper"].sel({"class": name, "factor": factor}))
            rows.append({"class": name, "factor": plots.factor_label(factor),
                         "P(factor given class)": f"{m:.2f} ({lo:.2f}-{hi:.2f})"})
    return pd.DataFrame(rows).set_index(["class", "factor"])


def _sections(result: LatentClassAnalysis, tables, figures, rule: SuppressionRule) -> list[Section]:
    config, fit, sel = result.config, result.fit, result.selection
    pct = f"{config.prob:.0%}"
    if result.citable:
        status = [f"The K = {result.k} fit passed the convergence gate (R-hat <= 1.01, bulk and tail ESS >= 400, "
                  "no divergences, after label alignment) and its chains agree (no multimodality)."]
    else:
        why = []
        if not fit.gate["passed"]:
            why.append("it failed the convergence gate")
        if fit.alignment.multimodal:
            why.append("its chains settled in different solutions (multimodal)")
        status = [f"{NOT_FOR_CITATION}: at K = {result.k} {' and '.join(why)}. Rerun with more draws "
                  "(and more EM starts) before citing any number below."]
    sizes = tables["class_sizes"]
    headline = [
        (f"{result.k} demand classes: " if sel is None else
         f"{result.k} demand classes ({sel.rule}). ")
        + "; ".join(f"{name} {row['share']:.0%} ({pct} CrI {row['share_lower']:.0%}-{row['share_upper']:.0%})"
                    for name, row in sizes.iterrows()) + ".",
        "Class names come from each class's dominant factors (recorded in at least 40% of its "
        "episodes; 'mostly_' marks a class named by its most over-represented factor instead).",
    ]
    if sel is not None:
        headline += sel.notes
    n = result.patterns.n_episodes
    n_shown = rule.marker if 0 < n < rule.threshold else f"{n:,}"
    data = [
        f"{n_shown} assessed episodes"
        + (f" (a random sample of {config.episodes:,})" if config.episodes else "")
        + f", {len(result.patterns.factors)} factors, {result.patterns.n_patterns:,} distinct factor patterns "
        "(the model's likelihood is on weighted unique patterns: the same posterior as one row per episode).",
        "Model: class weights ~ Dirichlet(1), P(factor | class) ~ Beta(1, 1); the class is summed out, "
        "never sampled. Chains start at the best of "
        f"{config.n_starts} EM runs; labels are aligned across chains and draws before any summary.",
        f"Sampler {config.sampler}, {config.chains} chains x {config.draws} draws after {config.tune} tuning, "
        f"seed {config.seed}. Intervals are {pct} equal-tailed credible intervals.",
        "Per-episode class probabilities are case-level data: they are never written to this report or its "
        "tables. Class shares are model estimates (with intervals); episode counts under "
        f"{rule.threshold} are shown as '{rule.marker}'.",
    ]
    if result.dropped_factors:
        data.append(f"{len(result.dropped_factors)} factor(s) never recorded in these episodes were left out: "
                    + ", ".join(result.dropped_factors) + ".")
    sections = [Section("Status", status), Section("Headlines", headline), Section("Data and model", data)]
    if sel is not None:
        shown = tables["k_selection"][["elpd_loo", "se", "elpd_diff", "se_diff", "p_loo", "pareto_k_gt_0.7_share",
                                       "bic", "entropy", "smallest_share", "empty_or_tiny_class", "max_r_hat",
                                       "multimodal"]].round(3)
        sections.append(Section("Choosing K", [
            "Each K was fitted in full. PSIS-LOO estimates how well each K predicts a new episode (higher "
            "elpd is better; differences carry their own SE, computed pointwise). BIC (lower is better) and "
            "the relative entropy of classification (near 1: clear-cut assignments) are read at the "
            "posterior mode, as poLCA or StepMix would report them. A K with a class holding under "
            f"{config.min_share:.0%} of episodes, or fewer than 10, adds a label rather than a class and "
            "is not chosen. Pareto-k > 0.7 marks episodes whose LOO estimate is unreliable (rare patterns).",
            sel.rule + "."], tables=[("K selection", shown)], figures=[figures["k"]]))
    conv = pd.DataFrame([{**fit.gate, **fit.alignment.summary()}]).rename(index={0: f"K = {result.k}"})
    sections.append(Section("Class profiles", [
        f"The probability that each factor is recorded at assessment, given the class, with {pct} credible "
        "intervals (every factor and class in tables/profiles.csv)."],
        tables=[(f"Most likely factors per class ({pct} CrI)"
                 + ("" if result.citable else f" [{NOT_FOR_CITATION}]"), _dominant(result)),
                ("Class sizes" + ("" if result.citable else f" [{NOT_FOR_CITATION}]"), sizes)],
        figures=[figures["profiles"], figures["sizes"]]))
    sections += _part_sections(result, tables, rule)
    for part, why in result.skipped.items():
        status.append(f"The {part} analysis was asked for but not run: {why}.")
    for part, fitted in (("latent class regression", result.regression), ("neglect misalignment model",
                                                                          result.misalignment)):
        if fitted is None:
            continue
        if fitted.citable:
            status.append(f"The {part} passed its own convergence gate.")
        else:
            status.append(f"NOT FOR CITATION: the {part} did not pass its convergence gate"
                          + (" or its chains disagree" if getattr(fitted, "alignment", None) is not None else "")
                          + " (its tables are marked); rerun with more draws before citing it.")
        row = {**fitted.gate, **(fitted.alignment.summary() if getattr(fitted, "alignment", None) else {})}
        conv = pd.concat([conv, pd.DataFrame([row], index=[part])])
    headline += _part_headlines(result, tables)
    sections.append(Section("Convergence", [
        "Diagnostics on the aligned posterior (R-hat on raw labels measures label switching, not "
        "convergence). max_chain_distance: the largest difference between a chain's mean profile and the "
        f"pooled mean (multimodal above {fit.alignment.tolerance:g}); max_switched_share: draws relabelled "
        "within a chain. One row per fitted model: each is gated on its own."],
        tables=[("Convergence and label alignment", conv.round(3))]))
    return sections


def _mark(title: str, ok: bool, reason: str) -> str:
    return title if ok else f"{title} [{reason}]"


def _part_headlines(result: LatentClassAnalysis, tables) -> list[str]:
    """Plain-language sentences, each with its interval, on the regression and misalignment."""
    pct = f"{result.config.prob:.0%}"
    out = []
    summary = result.regression_summary()
    if summary is not None:
        data = result.regression.data
        flag = "" if result.regression.citable else f" [{REGRESSION_NOT_FOR_CITATION}]"
        if data.outcomes:
            for name in result.names:
                parts = []
                for o in data.outcomes:
                    sel = {"class": name, "outcome": o}
                    stats = (float(summary[f"distal_prob_{s}"].sel(sel)) for s in ("mean", "lower", "upper"))
                    parts.append(f"{OUTCOME_LABELS.get(o, o)} {_interval(*stats, pct)}")
                out.append(f"Episodes in the {name} class: " + "; ".join(parts)
                           + f" (probabilities given the class){flag}.")
        for by in (*data.covariates, LA):  # per covariate, the class it changes most
            var = f"prevalence_by_{by}"
            mean = summary[f"{var}_mean"].transpose(by, "class")
            if mean.sizes[by] < 2:
                continue
            values = mean.to_numpy()
            k = int(np.argmax(values.max(axis=0) - values.min(axis=0)))
            levels = mean[by].to_numpy()
            lo, hi = levels[int(values[:, k].argmin())], levels[int(values[:, k].argmax())]
            name = str(mean["class"].to_numpy()[k])

            def stat(level, var=var, name=name, by=by):
                return _interval(*(float(summary[f"{var}_{s}"].sel({"class": name, by: level}))
                                   for s in ("mean", "lower", "upper")), pct)

            what = "LA" if by == LA else by.replace("_", " ")
            out.append(f"{what[0].upper() + what[1:]} changes the share of the {name} class most: "
                       f"{stat(lo)} for {lo} against {stat(hi)} for {hi} (standardised shares){flag}.")
    if result.misalignment is not None:
        t = result.misalignment.summary(result.config.prob)
        las = t.drop(index="all")
        flag = "" if result.misalignment.citable else f" [{MISALIGNMENT_NOT_FOR_CITATION}]"
        out.append(f"In {_interval(t.loc['all', 'mean'], t.loc['all', 'lower'], t.loc['all', 'upper'], pct)} "
                   "of neglect child protection plans, neglect had not been recorded at the assessment"
                   + (f"; by LA from {las['mean'].min():.0%} to {las['mean'].max():.0%} (model estimates, "
                      "intervals in the table)" if len(las) > 1 else "") + f"{flag}.")
    return out


def _part_sections(result: LatentClassAnalysis, tables, rule: SuppressionRule) -> list[Section]:
    pct = f"{result.config.prob:.0%}"
    sections = []
    if result.regression is not None:
        data, ok = result.regression.data, result.regression.citable
        covs = ", ".join(data.covariates) or "no covariates"
        refs = "; ".join(f"{c}: {r}" for c, r in data.references.items())
        paragraphs = [
            f"One model fitted to the same {data.n_episodes:,} episodes at K = {result.k}: class membership is a "
            f"multinomial logit on {covs} and an LA effect (partially pooled), the class profiles are "
            "re-estimated alongside"
            + (", and the outcomes that followed (section 47 enquiry; child protection plan, modelled given an "
               "enquiry; looked after) depend on the class. Estimating them in the same model carries the "
               "uncertainty of class membership into every outcome probability (assigning episodes to their "
               "most likely class first would understate it and shrink class differences)" if data.outcomes
               else "") + ".",
            "Standardised shares: the class shares if every episode had that level (or LA), all else as "
            "observed, so differences between levels reflect the model's effects, not case mix. Classes keep "
            "the names of the latent class fit (its profiles are the alignment reference). Reference levels "
            f"(coding only; the shares do not depend on them): {refs or 'none'}.",
            f"Intervals are {pct} equal-tailed credible intervals. Episode counts per level under "
            f"{rule.threshold} are shown as '{rule.marker}' (with a second level where one alone would be "
            "recoverable from the total); the model estimates beside them are kept. Per-episode class "
            "probabilities are never written.",
        ]
        shown = tables["class_prevalence"]
        shown = shown[shown.index.get_level_values("by") != LA]
        la_shown = tables["class_prevalence"].xs(LA, level="by", drop_level=False)
        tabs = [(_mark(f"Standardised class shares by covariate ({pct} CrI)", ok, REGRESSION_NOT_FOR_CITATION),
                 shown), (_mark(f"Standardised class shares by LA ({pct} CrI)", ok, REGRESSION_NOT_FOR_CITATION),
                          la_shown)]
        if "distal_outcomes" in tables:
            tabs.append((_mark(f"Outcomes by class ({pct} CrI)", ok, REGRESSION_NOT_FOR_CITATION),
                         tables["distal_outcomes"]))
        sections.append(Section("Who is in which class, and what follows (latent class regression)",
                                paragraphs, tables=tabs))
    if result.misalignment is not None:
        m = result.misalignment
        sections.append(Section("Neglect misalignment", [
            "The share of child protection plans under the category of neglect (category "
            f"{', '.join(m.counts.categories)}) whose assessment recorded none of the neglect factors "
            f"({', '.join(m.counts.neglect_factors)}), by LA and pooled, from a hierarchical binomial model "
            "(LA shares partially pooled towards a typical LA: small LAs are shrunk, with wide intervals). "
            "Hood et al. (2020) found about a quarter.",
            f"Every episode of the extract is counted, not only those the latent class model was fitted to; "
            f"{m.counts.unassessed:,} neglect plan(s) without an assessment were left out. Counts under "
            f"{rule.threshold} (plans, not recorded or recorded) and the observed shares derived from them are "
            f"shown as '{rule.marker}', and a second LA where one alone would be recoverable from the total; "
            f"model estimates are kept. Intervals are {pct} equal-tailed credible intervals."],
            tables=[(_mark(f"Neglect plans whose assessment did not record neglect ({pct} CrI)", m.citable,
                           MISALIGNMENT_NOT_FOR_CITATION), tables["neglect_misalignment"])]))
    return sections


__all__ = ["LatentClassRun", "LatentClassAnalysis", "analyse", "analyse_extract", "add_analyses", "assessed_factors",
           "fit_regression", "regression_data", "write_latent_class_report"]
