"""``python -m workflows gradient EXTRACT``: fit the social gradient models and report them.

Two fits (:mod:`models.gradient`): population rates (reaching each stage, per 10,000
children) and pathway transitions (each stage given the one before).  Writes, into
``--out`` and replaced as a whole only when complete:

- ``report.md`` / ``report.html``: headline sentences with credible intervals, effects
  tables, figures, convergence, priors;
- ``tables/*.csv``: every effect with its interval, R-hat and ESS;
- ``posterior_<scale>.nc``: the posterior (InferenceData), without the LSOA-level arrays
  (hundreds of MB, and small-area values are not for publication), and ``manifest.json``.

An unchanged run (same extract, settings and model code) is not refitted.  A run that
fails the convergence gate says so at the top of the report and in every table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.areas import add_deprivation
from models.cells import population_cells, transition_cells
from models.gradient import checks, effects, plots
from models.gradient.model import GradientSpec, build_gradient_model
from models.priors import get_prior_set
from models.sampling import SAMPLERS, ConvergenceGate, SamplerSettings, fit
from models.suppression import SuppressionRule
from models.vocabulary import STAGE_LABELS, STAGES
from public_data.tables import load_la_table, load_lsoa_table
from workflows import atomic, paths, posterior_export, provenance
from workflows.errors import UserError
from workflows.extract_io import check_input_file, contextual_note, load_extract, require_episodes
from workflows.report_format import Section, lead, render_html, render_markdown
from workflows.run_cache import NOT_FOR_CITATION, flag_uncitable, is_current, run_key

#: How a headline names reaching each stage.
STAGE_PHRASES = {
    "referral": "referred to children's social care",
    "assessment": "assessed",
    "s47": "the subject of a section 47 enquiry",
    "icpc": "the subject of an initial child protection conference",
    "cpp": "placed on a child protection plan",
    "lac": "looked after",
}
MODEL_CODE = ("models.gradient", "models.cells", "models.priors", "models.sampling", "models.areas")


@dataclass(frozen=True)
class GradientRun:
    """What to fit: the ``[gradient]`` section of a run config."""

    prior: str = "default"
    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 1
    scales: tuple[str, ...] = ("population", "transition")
    prob: float = 0.95
    #: Episode covariates for the transition scale (age_group, ethnicity, gender), each with
    #: its own gradient shift; more cells, longer fits.
    covariates: tuple[str, ...] = ()
    #: NUTS target acceptance: higher means smaller steps, fewer divergences, slower draws.
    target_accept: float = 0.95

    def __post_init__(self):
        get_prior_set(self.prior)  # KeyError naming the choices
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        bad = set(self.scales) - {"population", "transition"}
        if bad or not self.scales:
            raise ValueError(f"scales {list(self.scales)}: choose from 'population', 'transition'")
        bad = set(self.covariates) - {"age_group", "ethnicity", "gender"}
        if bad:
            raise ValueError(f"covariates {sorted(bad)}: choose from age_group, ethnicity, gender")
        if not 0.5 <= self.prob < 1:
            raise ValueError(f"prob {self.prob}: expected a credible level in [0.5, 1)")
        if not 0.6 <= self.target_accept < 1:
            raise ValueError(f"target_accept {self.target_accept}: expected a value in [0.6, 1)")
        self.settings()  # draws, tune and chains in range

    @classmethod
    def from_config(cls, section: dict, where: str) -> "GradientRun":
        values = dict(section)
        for key in ("scales", "covariates"):
            if key in values:
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except (ValueError, KeyError) as err:
            raise UserError(f"{where}: [gradient] {err.args[0]}") from None

    def settings(self) -> SamplerSettings:
        return SamplerSettings(sampler=self.sampler, draws=self.draws, tune=self.tune, chains=self.chains,
                               seed=self.seed, target_accept=self.target_accept)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("extract", type=Path, help="case-level extract (CSV or Parquet)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/gradient-<name>)")
    parser.add_argument("--prior", default="default", help="prior set: default, wide, pc")
    parser.add_argument("--sampler", default="nutpie", choices=SAMPLERS)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target-accept", type=float, default=0.95,
                        help="NUTS target acceptance (default 0.95: fewer divergences in the LA-level funnels)")
    parser.add_argument("--threshold", type=int, default=10, help="suppress counts below this (default 10)")


def run(args: argparse.Namespace) -> int:
    try:
        config = GradientRun(prior=args.prior, sampler=args.sampler, draws=args.draws, tune=args.tune,
                             chains=args.chains, seed=args.seed, target_accept=args.target_accept)
        rule = SuppressionRule(args.threshold)
    except (ValueError, KeyError) as err:
        raise UserError(str(err.args[0])) from None
    out = atomic.output_dir(args.out, paths.RESULTS_DIR / f"gradient-{Path(args.extract).name.split('.')[0]}")
    report = write_gradient_report(args.extract, out, config, rule)
    print(f"report: {report / 'report.html'}")
    return 0


@dataclass
class ScaleResult:
    """One fitted scale and what the report shows of it (all aggregate, nothing per child)."""

    scale: str
    spec: GradientSpec
    idata: object
    gate: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    draws: dict[str, object] = field(default_factory=dict)
    check: pd.DataFrame | None = None


def cache_key(extract_path: Path, config: GradientRun, rule: SuppressionRule) -> str:
    """Same extract bytes, settings and model code: same key, so no refit."""
    return run_key(files=(extract_path,), settings=(config, rule), code=(*MODEL_CODE, "workflows.gradient"))


def write_gradient_report(extract_path: Path, out_dir: Path, config: GradientRun,
                          rule: SuppressionRule, title: str | None = None, log=print) -> Path:
    """Fit, derive, check and report; the folder appears only when complete."""
    out_dir = Path(out_dir)
    check_input_file(extract_path, what="extract")  # before its bytes are hashed for the cache key
    key = cache_key(extract_path, config, rule)
    if is_current(out_dir, key):
        log(f"  unchanged since the last run (same extract, settings and code): reusing {out_dir}")
        return out_dir
    started = time.perf_counter()
    lsoa_table = load_lsoa_table()
    extract, _ = load_extract(extract_path, lsoa_table, salt=os.urandom(32))  # ids never needed
    episodes = extract.episodes
    require_episodes(extract_path, episodes)
    note = contextual_note(extract_path, episodes)
    if note:
        log(note)
    geography = add_deprivation(lsoa_table)
    served = geography[geography["la_code"].isin(episodes["la_code"].unique())]
    scale_facts = effects.DeprivationScale.from_geography(geography)
    la_names = load_la_table().drop_duplicates("la_code", keep="last").set_index("la_code")["la_name"].to_dict()
    prior = get_prior_set(config.prior)

    results = []
    for scale in config.scales:
        if scale == "population":
            cells, spec = population_cells(episodes, served), GradientSpec(scale="population")
        else:
            cells = transition_cells(episodes, geography, covariates=config.covariates)
            spec = GradientSpec(scale="transition", covariates=config.covariates)
        log(f"  fitting the {scale} model: {len(cells):,} cells, {config.chains} chains x {config.draws} draws ...")
        model = build_gradient_model(cells, spec, prior)
        idata = fit(model, config.settings())
        gate = ConvergenceGate().check(idata, list(idata.posterior.data_vars))
        log(f"    {idata.posterior.attrs['wall_seconds']:.0f} s; max R-hat {gate['max_r_hat']:.3f}, "
            f"min bulk ESS {gate['min_ess_bulk']:.0f}, divergences {gate['divergences']}"
            + ("" if gate["passed"] else f"  <- {NOT_FOR_CITATION}"))
        result = ScaleResult(scale, spec, idata, gate)
        derive_effects(result, scale_facts, config.prob)
        idata_pp = checks.sample_posterior_predictive(model, idata, seed=config.seed,
                                                     thin=max(1, config.draws * config.chains // 400))
        result.check = _suppress_check(checks.decile_check(cells, idata_pp, spec), cells, spec, rule)
        results.append(result)

    with atomic.atomic_dir(out_dir) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        for r in results:
            for name, table in r.tables.items():
                flag_uncitable(table, r.gate["passed"]).to_csv(tmp / "tables" / f"{r.scale}_{name}.csv")
            r.check.to_csv(tmp / "tables" / f"{r.scale}_predictive_check.csv", index=False)
            posterior_export.write(r.idata, tmp / f"posterior_{r.scale}.nc")
        figures = _figures(results, la_names, tmp / "figures", config.prob)
        heading = title or f"Social gradient and inverse intervention: {extract_path.name}"
        sections = _sections(results, config, prior, len(episodes), episodes, la_names, figures, rule)
        (tmp / "report.md").write_text(render_markdown(heading, sections, tmp, lead(sections, "population_gradient.png")), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(heading, sections, lead(sections, "population_gradient.png")), encoding="utf-8")
        man = provenance.manifest(
            "gradient", inputs={"extract": extract_path, "lsoa_table": paths.REFERENCE_DIR / "lsoa.csv"},
            config=asdict(config), seed=config.seed, cache_key=key,
            suppression={"threshold": rule.threshold, "marker": rule.marker},
            convergence={r.scale: r.gate for r in results},
            timings={r.scale: {k: r.idata.posterior.attrs.get(k) for k in ("wall_seconds", "sampling_seconds")}
                     for r in results},
            seconds=round(time.perf_counter() - started, 1))
        provenance.redact_extract(man, extract_path)
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=str) + "\n")
    return out_dir


def derive_effects(result: ScaleResult, scale: effects.DeprivationScale, prob: float) -> None:
    """Every derived quantity the report shows (draws and summary tables), filled into ``result``."""
    post, spec = result.idata.posterior, result.spec
    draws = {
        "gradient_per_decile": effects.gradient(post, spec),
        "gradient_per_sd": effects.gradient(post, spec, per="sd", scale=scale),
        "decile1_vs_decile10": effects.extreme_decile_ratio(post, spec, scale),
        "inverse_intervention": effects.inverse_intervention(post, spec, scale),
        "by_decile": effects.rate_by_decile(post, spec, scale),
        "la_gradients": effects.la_gradients(post, spec),
    }
    if post.sizes["stage"] > 1:
        draws["gradient_change"] = effects.gradient_change(post, spec)
    for cov in spec.covariates:
        if spec.gradient_interactions:
            draws[f"gradient_by_{cov}"] = effects.covariate_gradients(post, spec, cov)
    result.draws = draws
    result.tables = {name: effects.summarise(d, prob=prob) for name, d in draws.items()}
    result.tables["contextual_negative"] = ((post["contextual_effect"] < 0).mean(("chain", "draw"))
                                            .to_series().rename("P(contextual effect < 0)").to_frame())


def _suppress_check(check: pd.DataFrame, cells: pd.DataFrame, spec: GradientSpec, rule: SuppressionRule):
    """Observed values from fewer than ``threshold`` events are hidden (marker in tables,
    no point in figures)."""
    name = checks.observed_name(spec)
    counts = cells.groupby([cells["stage"].astype(str), cells["idaci_decile"].astype(int)])[name].sum()
    n = [int(counts.get((str(s), int(d)), 0)) for s, d in zip(check["stage"], check["decile"])]
    out = check.astype({"inside": object})
    small = [(0 < k < rule.threshold) for k in n]
    out.loc[small, ["observed", "inside"]] = np.nan
    out["observed_suppressed"] = small
    return out


def _fmt_ci(row, digits=2) -> str:
    return f"{row['median']:.{digits}f} ({row['lower']:.{digits}f}-{row['upper']:.{digits}f})"


def headlines(results: list[ScaleResult], prob: float) -> list[str]:
    """Plain-language sentences with credible intervals, for policy readers."""
    lines = []
    pct = f"{prob:.0%} CrI"
    for r in results:
        if r.scale == "population":
            ratio, step = r.tables["decile1_vs_decile10"], r.tables["gradient_per_decile"]
            for stage in ratio.index:
                row = ratio.loc[stage]
                lines.append(
                    f"Children in the most deprived tenth of neighbourhoods were {row['median']:.1f} "
                    f"({pct} {row['lower']:.1f}-{row['upper']:.1f}) times as likely to be "
                    f"{STAGE_PHRASES[stage]} as children in the least deprived tenth, within a typical "
                    f"local authority (x{_fmt_ci(step.loc[stage])} per decile step).")
            inv = r.tables["inverse_intervention"]
            p_neg = r.tables["contextual_negative"].iloc[:, 0]
            for stage in inv.index:
                row = inv.loc[stage]
                lines.append(
                    f"For neighbourhoods of the same deprivation, a local authority at the 25th percentile "
                    f"of LA deprivation in England had {row['median']:.2f} ({pct} {row['lower']:.2f}-"
                    f"{row['upper']:.2f}) times the rate of children {STAGE_PHRASES[stage]} of one at the "
                    f"75th percentile (probability that less deprived LAs intervene more: {p_neg[stage]:.0%}).")
        else:
            change = r.tables.get("gradient_change")
            step = r.tables["gradient_per_decile"]
            for stage in step.index:
                row = step.loc[stage]
                lines.append(
                    f"Among children at the stage before, the odds of being {STAGE_PHRASES[stage]} rose "
                    f"x{row['median']:.3f} ({pct} {row['lower']:.3f}-{row['upper']:.3f}) per decile step of "
                    "neighbourhood deprivation.")
            if change is not None:
                steeper = [s for s in change.index if change.loc[s, "lower"] > 1]
                if steeper:
                    lines.append("The transition gradient is credibly steeper than at the stage before for: "
                                 + ", ".join(STAGE_LABELS[s] for s in steeper) + ".")
    return lines


def _sections(results, config: GradientRun, prior, n_episodes: int, episodes, la_names, figs, rule) -> list[Section]:
    failed = [r.scale for r in results if not r.gate["passed"]]
    status = ([f"{NOT_FOR_CITATION} ({', '.join(failed)} scale). Rerun with more draws before "
               "citing any number below."] if failed else
              ["Every parameter passed the convergence gate (R-hat <= 1.01, bulk and tail ESS >= 400, "
               "no divergences)."])
    sections = [Section("Status", status), Section("Headlines", headlines(results, config.prob))]
    years = int(episodes["year_ending_march"].nunique())
    n_la = int(episodes["la_code"].nunique())
    if n_la < 3:
        status.append(f"With {n_la} local authorit{'y' if n_la == 1 else 'ies'}, the contextual (inverse "
                      "intervention) effect and the LA SDs are set by the priors, not the data: do not cite "
                      "them. The within-LA gradient is estimated from the data.")
    n_shown = rule.marker if 0 < n_episodes < rule.threshold else f"{n_episodes:,}"
    sections.append(Section("Data and model", [
        f"{n_shown} referral episodes in {episodes['la_code'].nunique()} local authorities over {years} "
        "reporting year(s).",
        "Neighbourhood deprivation: IDACI 2019 rank in decile units (10 = most deprived), split into "
        "the neighbourhood's deprivation relative to its LA (the within effect: the social gradient) "
        "and the LA's mean deprivation (the contextual effect, holding the neighbourhood fixed: "
        "negative values are the inverse intervention effect).",
        "Population scale: episodes reaching each stage per LSOA and year over the LSOA's children "
        "aged 0-15 (Poisson). Transition scale: each stage among children who reached the stage "
        "before (binomial). Both with LA and LSOA random intercepts, LA-varying gradients and year "
        "effects. 'Typical LA': LA and LSOA effects at zero, England's mean LA deprivation.",
        f"Prior set '{prior.name}': " + "; ".join(f"{k} {v}" for k, v in prior.describe().items()) + ".",
        f"Sampler {config.sampler}, {config.chains} chains x {config.draws} draws after {config.tune} "
        f"tuning, seed {config.seed}. Intervals are {config.prob:.0%} equal-tailed credible intervals.",
    ]))
    for r in results:
        gate_table = pd.DataFrame([r.gate]).rename(index={0: r.scale})
        tables = [("Convergence (worst over every parameter)", gate_table)]
        names = {"gradient_per_decile": "Gradient per decile step", "gradient_per_sd": "Gradient per SD",
                 "decile1_vs_decile10": "Most vs least deprived decile",
                 "inverse_intervention": "Inverse intervention contrast (LA at p25 vs p75 of LA deprivation)",
                 "gradient_change": "Gradient relative to the stage before",
                 **{f"gradient_by_{c}": f"Gradient per decile step by {c.replace('_', ' ')}" for c in r.spec.covariates}}
        for key, caption in names.items():
            if key in r.tables:
                tables.append((caption + ("" if r.gate["passed"] else f" [{NOT_FOR_CITATION}]"),
                               r.tables[key].round(3)))
        la = r.tables["la_gradients"].round(3).reset_index()
        la.insert(1, "la_name", la["la"].map(la_names))
        tables.append(("LA-specific gradients per decile step", la.set_index(["la", "la_name", "stage"])))
        check = r.check.copy()
        check["observed"] = [rule.marker if s else f"{v:.3g}" for v, s in zip(check["observed"], check["observed_suppressed"])]
        tables.append(("Posterior predictive check by decile (observed vs 90% interval)",
                       check.drop(columns="observed_suppressed").round(3).set_index(["stage", "decile"])))
        what = "rates per 10,000 children per year" if r.scale == "population" else "transition probabilities"
        sections.append(Section(f"{r.scale.capitalize()} scale", [
            f"Estimates on the {r.scale} scale ({what})."], tables=tables,
            figures=[(c, p) for (scale, _), (c, p) in figs.items() if scale == r.scale]))
    return sections


def _figures(results, la_names, folder: Path, prob: float) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for r in results:
        fig = plots.plot_rate_by_decile(r.draws["by_decile"], observed=r.check, prob=0.9)
        path = folder / f"{r.scale}_by_decile.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out[(r.scale, "deciles")] = ("Predicted by IDACI decile for a typical LA, with observed values "
                                     "(suppressed where counts are small)", path)
        fig = plots.plot_forest(r.draws["gradient_per_decile"], prob=prob)
        path = folder / f"{r.scale}_gradient.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out[(r.scale, "gradient")] = (f"Gradient per decile step by stage ({prob:.0%} CrI)", path)
        fig = plots.plot_la_caterpillar(r.draws["la_gradients"], la_names=la_names, prob=prob)
        path = folder / f"{r.scale}_la_gradients.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out[(r.scale, "la")] = ("LA-specific gradients per decile step", path)
    return out


__all__ = ["GradientRun", "write_gradient_report", "headlines", "STAGES"]
