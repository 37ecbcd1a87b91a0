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

Per-episode class probabilities exist only in memory (:meth:`LatentClassAnalysis.episode_membership`):
they are case-level data and are never written.  An unchanged run is not refitted.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from models.latent_class import plots
from models.latent_class.fit import LatentClassFit
from models.latent_class.model import LatentClassPriors
from models.latent_class.patterns import Patterns, collapse
from models.latent_class.profiles import class_names, membership, profile_frame, profile_table
from models.latent_class.selection import ClassSizeCheck, KTask, Selection, fit_k, select_k
from models.sampling import SAMPLERS, SamplerSettings
from models.suppression import SuppressionRule, suppress_counts
from models.vocabulary import FACTOR_NAMES
from workflows import atomic, paths, provenance
from workflows.errors import UserError
from workflows.report_format import Section, render_html, render_markdown

MODEL_CODE = ("models.latent_class", "models.sampling")
NOT_FOR_CITATION = "NOT FOR CITATION: the chosen fit did not pass the convergence gate or is multimodal"
#: Fewer assessed episodes than this: no latent class model is worth fitting.
MIN_EPISODES = 50


@dataclass(frozen=True)
class LatentClassRun:
    """What to fit: the ``[latent_class]`` section of a run config.

    ``k``: report this K (0: the K chosen by PSIS-LOO).  ``k_max`` 0 with ``k`` set skips
    the K loop.  ``episodes``: fit a seeded random sample of this many assessed episodes
    (0: all), for quick looks at a large extract.  ``workers`` > 1 fans the K loop out
    over that many processes (``workflows.fanout``).
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

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if self.k < 0 or self.k_min < 1 or self.k_max < 0:
            raise ValueError(f"k {self.k}, k_min {self.k_min}, k_max {self.k_max}: expected k >= 0, "
                             "k_min >= 1, k_max >= 0")
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

    def map_fn(self):
        if self.workers == 1:
            return map
        from workflows.fanout import fan_out

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


def run(args: argparse.Namespace) -> int:
    try:
        config = LatentClassRun(k_min=args.k_min, k_max=args.k_max, k=args.k, sampler=args.sampler,
                                draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed,
                                n_starts=args.n_starts, episodes=args.episodes, workers=args.workers)
        rule = SuppressionRule(args.threshold)
    except (ValueError, TypeError) as err:
        raise UserError(str(err.args[0])) from None
    out = args.out or paths.RESULTS_DIR / f"latent-class-{Path(args.extract).name.split('.')[0]}"
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

    @property
    def k(self) -> int:
        return len(self.names)

    @property
    def citable(self) -> bool:
        return self.fit.citable

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
    if selection is not None and k in selection.fits:
        fitted = selection.fits[k].fit
    else:
        log(f"  fitting K = {k} ...")
        fitted = fit_k(KTask(patterns, k, settings, priors, config.n_starts, config.em_seed,
                             size_check=size_check)).fit
    names = class_names(fitted.idata.posterior["item_prob"].mean(("chain", "draw")))
    table = profile_table(fitted.idata, prob=config.prob).assign_coords({"class": names})
    table = table.assign_coords(label=("class", [str(c) for c in fitted.idata.posterior["class"].to_numpy()]))
    return LatentClassAnalysis(patterns=patterns, episode_ids=pd.Index(factors.index), selection=selection,
                               fit=fitted, names=names, profiles=table, dropped_factors=dropped, config=config)


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------

def cache_key(extract_path: Path, config: LatentClassRun, rule: SuppressionRule) -> str:
    """Same extract bytes, settings and model code: same key, so no refit."""
    digest = hashlib.sha256()
    digest.update(provenance.sha256_file(extract_path).encode())
    digest.update(json.dumps(asdict(config), sort_keys=True).encode())
    digest.update(json.dumps(asdict(rule), sort_keys=True).encode())
    digest.update(provenance.source_fingerprint(*MODEL_CODE, "workflows.latent_class").encode())
    return digest.hexdigest()


def _cached(out_dir: Path, key: str) -> bool:
    try:
        recorded = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return recorded.get("cache_key") == key and (out_dir / "report.html").exists()


def write_latent_class_report(extract_path: Path, out_dir: Path, config: LatentClassRun, rule: SuppressionRule,
                              title: str | None = None, log=print,
                              analysis: LatentClassAnalysis | None = None) -> Path:
    """Load, fit, choose, name and report; the folder appears only when complete.

    ``analysis``: an :func:`analyse` of this extract under this ``config`` already in
    memory (a notebook's), reported without refitting.
    """
    from workflows.extract_io import load_extract
    from workflows.reference import load_lsoa_table

    out_dir = Path(out_dir)
    key = cache_key(extract_path, config, rule)
    if _cached(out_dir, key):
        log(f"  unchanged since the last run (same extract, settings and code): reusing {out_dir}")
        return out_dir
    started = time.perf_counter()
    if analysis is not None:
        if analysis.config != config:
            raise ValueError("the analysis given was run under another configuration")
        result = analysis
    else:
        extract, _ = load_extract(extract_path, load_lsoa_table(), salt=os.urandom(32))  # ids never needed
        result = analyse(assessed_factors(extract.episodes, extract.factors), config, log=log)
    gate = result.fit.gate
    log(f"    K = {result.k}: max R-hat {gate['max_r_hat']:.3f}, min bulk ESS {gate['min_ess_bulk']:.0f}, "
        f"divergences {gate['divergences']}, multimodal {result.fit.alignment.multimodal}"
        + ("" if result.citable else f"  <- {NOT_FOR_CITATION}"))

    with atomic.atomic_dir(out_dir) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        tables = _tables(result, rule)
        for name, frame in tables.items():
            _flag(frame, result.citable).to_csv(tmp / "tables" / f"{name}.csv")
        _write_posterior(result, tmp / "posterior.nc")
        figures = _figures(result, tmp / "figures")
        heading = title or f"Demand classes (latent class analysis): {extract_path.name}"
        sections = _sections(result, tables, figures, rule)
        (tmp / "report.md").write_text(render_markdown(heading, sections, tmp), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(heading, sections), encoding="utf-8")
        fits = result.selection.fits if result.selection else {result.k: None}
        man = provenance.manifest(
            "latent-class", inputs={"extract": extract_path}, config=asdict(config), seed=config.seed,
            cache_key=key, suppression={"threshold": rule.threshold, "marker": rule.marker},
            chosen_k=result.k, chosen_by=result.selection.rule if result.selection else "given (--k)",
            convergence={str(result.k): {**gate, "multimodal": result.fit.alignment.multimodal,
                                         "citable": result.citable}},
            timings={str(k): (f.fit.idata.posterior.attrs.get("wall_seconds") if f else
                              result.fit.idata.posterior.attrs.get("wall_seconds")) for k, f in fits.items()},
            seconds=round(time.perf_counter() - started, 1))
        provenance.redact_extract(man, extract_path)
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=str) + "\n")
    return out_dir


def _flag(table: pd.DataFrame, citable: bool) -> pd.DataFrame:
    if citable:
        return table
    out = table.copy()
    out["status"] = NOT_FOR_CITATION
    return out


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
    return out


def _write_posterior(result: LatentClassAnalysis, target: Path) -> None:
    """Class weights and profiles only: no pattern matrix or pattern counts (case-level data)."""
    import arviz as az

    posterior = result.fit.idata.posterior[["class_weight", "item_prob"]]
    posterior = posterior.assign_coords({"class": result.names})
    posterior.attrs = {k: str(v) for k, v in posterior.attrs.items()}
    az.InferenceData(posterior=posterior, sample_stats=result.fit.idata.sample_stats).to_netcdf(str(target))


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
                         "P(factor | class)": f"{m:.2f} ({lo:.2f}-{hi:.2f})"})
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
    sections.append(Section("Convergence", [
        "Diagnostics on the aligned posterior (R-hat on raw labels measures label switching, not "
        "convergence). max_chain_distance: the largest difference between a chain's mean profile and the "
        f"pooled mean (multimodal above {fit.alignment.tolerance:g}); max_switched_share: draws relabelled "
        "within a chain."], tables=[("Convergence and label alignment", conv.round(3))]))
    return sections


__all__ = ["LatentClassRun", "LatentClassAnalysis", "analyse", "assessed_factors", "write_latent_class_report"]
