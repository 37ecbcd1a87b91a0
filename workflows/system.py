"""``python -m workflows system``: the system-conditions models on the national LA panel.

Fits three models (:mod:`models.system`) to the committed LA x year panel
(``data/panel/la_panel.csv``) and writes, into ``--out`` (default ``results/system``),
replaced as a whole only when complete:

- ``report.md`` / ``report.html``: trends with credible bands (the shift to late
  intervention), LA caterpillar plots, partial relationships of screen/ration/churn, the
  LA-level deprivation gradient, convergence of every model, priors;
- ``tables/*.csv``: every reported quantity with its interval (and the gate status);
- ``posterior_<model>.nc`` and ``manifest.json``.

The panel is public, published data; the report shows model estimates and England-wide
observed rates only (rates from fewer than the suppression threshold of events are not
shown).  An unchanged run (same panel bytes, settings and model code) is not refitted; a
model that fails the convergence gate is marked NOT FOR CITATION in the report and tables.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.sampling import SAMPLERS, ConvergenceGate, SamplerSettings, fit
from models.suppression import SuppressionRule
from models.system import conditions as cond_model
from models.system import data as sysdata
from models.system import gradient as grad_model
from models.system import plots
from models.system import trends as trend_model
from models.system.components import get_priors
from workflows import atomic, config as config_mod, paths, posterior_export, provenance
from workflows.run_cache import NOT_FOR_CITATION, flag_uncitable, is_current, run_key
from workflows.errors import UserError
from workflows.report_format import Section, render_html, render_markdown

MODELS = ("trends", "conditions", "gradient")
MODEL_CODE = ("models.system", "models.sampling", "workflows.system")
STAGE_LABELS = {k: v[1] for k, v in sysdata.MEASURES.items()}
OUTCOME_LABELS = {k: v[2] for k, v in cond_model.OUTCOMES.items()}


@dataclass(frozen=True)
class SystemRun:
    """What to fit: the ``[system]`` section of a run config."""

    prior: str = "default"
    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 1
    #: "low_rank" (nutpie) or "diag": see models.sampling.SamplerSettings.
    mass_matrix: str = "diag"
    prob: float = 0.9
    models: tuple[str, ...] = MODELS
    first_year: int = 2010
    last_year: int = 2025
    trend_stages: tuple[str, ...] = ("referrals", "cpp_start", "cla_31mar")
    gradient_stages: tuple[str, ...] = grad_model.LAGradientSpec.stages
    outcomes: tuple[str, ...] = ("nfa", "caseload", "agency", "turnover", "vacancy")
    #: LA codes left out; every choice is listed in the report.
    exclude: tuple[str, ...] = ()
    #: Keep City of London and the Isles of Scilly (``sysdata.MICRO_AUTHORITIES``)?  Left out
    #: by default: a few hundred children, workforce rates of 0% or 100%.
    include_micro_authorities: bool = False
    #: Use only the first N LAs in code order (0 = all): for quick looks and notebooks.
    max_las: int = 0

    def __post_init__(self):
        get_priors(self.prior)
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        bad = set(self.models) - set(MODELS)
        if bad or not self.models:
            raise ValueError(f"models {list(self.models)}: choose from {', '.join(MODELS)}")
        if not 0.5 <= self.prob < 1:
            raise ValueError(f"prob {self.prob}: expected a credible level in [0.5, 1)")
        if not isinstance(self.include_micro_authorities, bool):
            raise ValueError(f"include_micro_authorities {self.include_micro_authorities!r}: "
                             "expected true or false")
        if self.first_year >= self.last_year:
            raise ValueError(f"first_year {self.first_year} must be before last_year {self.last_year}")
        self.trend_spec(), self.gradient_spec(), self.conditions_spec()  # name bad stages/outcomes
        self.settings()  # a bad sampler / mass matrix pairing

    def trend_spec(self):
        return trend_model.TrendSpec(stages=self.trend_stages, reference=self.trend_stages[0])

    def gradient_spec(self):
        return grad_model.LAGradientSpec(stages=self.gradient_stages)

    def conditions_spec(self):
        return cond_model.ConditionsSpec(outcomes=self.outcomes)

    def settings(self) -> SamplerSettings:
        return SamplerSettings(sampler=self.sampler, draws=self.draws, tune=self.tune, chains=self.chains,
                               seed=self.seed, mass_matrix=self.mass_matrix)

    @classmethod
    def from_config(cls, section: dict, where: str) -> "SystemRun":
        values = dict(section)
        for key in ("models", "trend_stages", "gradient_stages", "outcomes", "exclude"):
            if key in values:
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"{where}: [system] {err.args[0]}") from None


def load_system_config(name_or_path: str | Path) -> dict:
    """Only ``[system]`` and ``[report]``: a run on the national panel has no extract."""
    return config_mod.load_sections(name_or_path, ("system", "report"), only=True, what="a system config has")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="system", help="config name or TOML path (default: system)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: results/system)")
    parser.add_argument("--panel", type=Path, default=None,
                        help="LA x year panel CSV (default: the committed data/panel/la_panel.csv)")


def run(args: argparse.Namespace) -> int:
    config = load_system_config(args.config)
    run_config = SystemRun.from_config(config["system"], config["_path"])
    try:
        rule = SuppressionRule(config["report"]["suppression_threshold"], config["report"]["suppression_marker"])
    except ValueError as err:
        raise UserError(f"{config['_path']}: {err}") from None
    out = atomic.output_dir(args.out, paths.RESULTS_DIR / "system")
    from public_data.panel import PANEL_DIR, PANEL_FILE
    from workflows.extract_io import check_input_file

    panel_path = check_input_file(args.panel, what="panel CSV") if args.panel else PANEL_DIR / PANEL_FILE
    report = write_system_report(panel_path, out, run_config, rule, log=lambda m: print(m, flush=True))
    print(f"report: {report / 'report.html'}")
    return 0


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


@dataclass
class ModelResult:
    name: str
    idata: object
    gate: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    headlines: list[str] = field(default_factory=list)
    seconds: float = 0.0


def read_panel(path: Path) -> pd.DataFrame:
    """The LA x year panel at ``path``; a UserError when it is not one ``build-panel`` wrote."""
    from public_data.panel import PANEL_COLUMNS, load_panel
    from workflows.extract_io import check_input_file

    path = check_input_file(path, what="panel CSV")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
        if b"\x00" in head:
            raise UserError(f"{path}: not an LA panel: the file holds binary data, not CSV text")
        panel = load_panel(path)
    except UserError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{path}: not an LA panel written by `build-panel`: {err}") from None
    missing = [c for c in PANEL_COLUMNS if c not in panel.columns]
    if missing:
        raise UserError(f"{path}: not an LA panel written by `build-panel`: missing column(s) "
                        + ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
                        + "; rebuild it with `python -m workflows build-panel`")
    return panel


def prepare_panel(panel: pd.DataFrame, run_config: SystemRun) -> pd.DataFrame:
    """The panel rows the models use: the configured years, minus excluded LAs (and the
    micro-authorities unless ``include_micro_authorities``)."""
    unknown = sorted(set(run_config.exclude) - set(panel["la_code"]))
    if unknown:
        raise UserError(f"[system] exclude: LA codes {unknown} are not in the panel")
    rows = panel[panel["year"].between(run_config.first_year, run_config.last_year)
                 & ~panel["la_code"].isin(left_out(run_config))]
    if run_config.max_las:
        keep = sorted(rows["la_code"].unique())[: run_config.max_las]
        rows = rows[rows["la_code"].isin(keep)]
    if rows.empty:
        raise UserError("[system]: no panel rows left after choosing years and LAs")
    return sysdata.select(rows)


def left_out(run_config: SystemRun) -> list[str]:
    """LA codes the models leave out: the configured ones and, by default, the micro-authorities."""
    micro = [] if run_config.include_micro_authorities else list(sysdata.MICRO_AUTHORITIES)
    return sorted(set(run_config.exclude) | set(micro))


def summarise(draws, prob: float) -> pd.DataFrame:
    """Median and equal-tailed interval of every labelled element of a draws array."""
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    q = draws.quantile([lo, 0.5, hi], dim=("chain", "draw"))
    frame = q.to_series().unstack("quantile")
    frame.columns = ["lower", "median", "upper"]
    return frame[["median", "lower", "upper"]]


def _sentence_case(text: str) -> str:
    """First letter up, the rest as written ("31 March" keeps its capital)."""
    return text[:1].upper() + text[1:]


def _fmt(row, digits=1) -> str:
    return f"{row['median']:.{digits}f} ({row['lower']:.{digits}f} to {row['upper']:.{digits}f})"


def fit_trends(panel, run_config, priors, prob, rule, figdir, la_names, log) -> ModelResult:
    spec = run_config.trend_spec()
    model = trend_model.build_trend_model(panel, spec, priors)
    idata = fit(model, run_config.settings())
    gate = ConvergenceGate().check(idata, list(trend_model.GATE_VARS))
    eff = trend_model.trend_effects(idata, spec)
    res = ModelResult("trends", idata, gate, seconds=idata.posterior.attrs["wall_seconds"])
    res.tables["trend_pct_per_year"] = summarise(eff["trend_pct"], prob)
    res.tables["national_rate_per_10k"] = summarise(eff["national_rate"], prob)
    if "relative_trend_pct" in eff:
        res.tables["relative_trend_pct_per_year"] = summarise(eff["relative_trend_pct"], prob)
        res.tables["per_100_referrals"] = summarise(eff["per_100_referrals"], prob)
        p_up = (eff["relative_trend_pct"] > 0).mean(("chain", "draw")).to_series()
        res.tables["relative_trend_pct_per_year"]["P(rising relative to referrals)"] = p_up
    if "la_relative_trend_pct" in eff:
        res.tables["la_relative_trend_pct"] = summarise(eff["la_relative_trend_pct"], prob)
    pct = f"{prob:.0%} CrI"
    ref = spec.reference
    for stage, row in res.tables["trend_pct_per_year"].iterrows():
        res.headlines.append(f"{_sentence_case(STAGE_LABELS[stage])} per child changed by {_fmt(row, 2)}% a year "
                             f"({pct}) in a typical LA, {panel['year'].min()}-{panel['year'].max()}.")
    if "relative_trend_pct_per_year" in res.tables:
        for stage, row in res.tables["relative_trend_pct_per_year"].iterrows():
            res.headlines.append(
                f"Relative to {STAGE_LABELS[ref]}, {STAGE_LABELS[stage]} changed by {_fmt(row, 2)}% a year "
                f"({pct}; probability of a rise: {row['P(rising relative to referrals)']:.0%}).")
    observed = trend_model.observed_rates(panel, spec)
    counts = sysdata.count_cells(panel, sysdata.measure_columns(spec.stages)).groupby(["stage", "year"])["count"].sum()
    observed = observed[[counts.get((s, y), 0) >= rule.threshold for s, y in zip(observed["stage"], observed["year"])]]
    fig = plots.plot_trends(eff["national_rate"], observed, prob, STAGE_LABELS, "per 10,000 children")
    res.figures.append((f"Rates per 10,000 children by year: typical LA with {prob:.0%} band; points: the LAs "
                        "that report (England where all do; see Data for the years where some do not)",
                        _save(fig, figdir / "trends_rates.png")))
    if "per_100_referrals" in eff:
        fig = plots.plot_trends(eff["per_100_referrals"], None, prob, STAGE_LABELS, f"per 100 {STAGE_LABELS[ref]}",
                                log=False)
        res.figures.append((f"Later stages per 100 {STAGE_LABELS[ref]}, typical LA ({prob:.0%} band): the shift "
                            "to late intervention", _save(fig, figdir / "trends_relative.png")))
        for stage in eff["la_relative_trend_pct"]["stage"].values:
            fig = plots.plot_caterpillar(eff["la_relative_trend_pct"].sel(stage=stage), la_names, prob,
                                         xlabel=f"% change a year relative to {STAGE_LABELS[ref]}",
                                         title=f"LA trends of {STAGE_LABELS[str(stage)]} relative to "
                                               f"{STAGE_LABELS[ref]} ({prob:.0%} CrI)")
            res.figures.append((f"LA caterpillar: {STAGE_LABELS[str(stage)]} relative to {STAGE_LABELS[ref]}",
                                _save(fig, figdir / f"trends_la_{stage}.png")))
    return res


def fit_conditions(panel, run_config, priors, prob, figdir, la_names, log) -> ModelResult:
    spec = run_config.conditions_spec()
    model = cond_model.build_conditions_model(panel, spec, priors)
    idata = fit(model, run_config.settings())
    gate = ConvergenceGate().check(idata, list(cond_model.GATE_VARS))
    res = ModelResult("conditions", idata, gate, seconds=idata.posterior.attrs["wall_seconds"])
    ratios = cond_model.coefficient_ratios(idata)
    for name, draws in ratios.items():
        table = summarise(draws, prob)
        table["P(> 1)"] = (draws > 1).mean(("chain", "draw")).to_series()
        res.tables[f"{name}"] = table
    post = idata.posterior
    corr = post["la_effect_corr"]
    pairs = [(a, b) for i, a in enumerate(spec.outcomes) for b in spec.outcomes[i + 1:]]
    rows = []
    for a, b in pairs:
        d = corr.sel(outcome=a, outcome_b=b)
        lo, mid, hi = np.quantile(d.values.ravel(), [(1 - prob) / 2, 0.5, 1 - (1 - prob) / 2])
        rows.append({"outcome": a, "with": b, "median": mid, "lower": lo, "upper": hi,
                     "P(> 0)": float((d > 0).mean())})
    res.tables["la_effect_correlations"] = pd.DataFrame(rows).set_index(["outcome", "with"])
    curves = cond_model.partial_relationships(idata, model.scales)
    pct = f"{prob:.0%} CrI"
    dep = res.tables["deprivation_per_sd"]
    for o, row in dep.iterrows():
        kind = "rate ratio" if model.scales[o]["kind"] == "log" else "odds ratio"
        res.headlines.append(f"One SD more LA deprivation (IDACI), at the same demand: {OUTCOME_LABELS[o]} "
                             f"{kind} {_fmt(row, 2)} ({pct}; P(higher) {row['P(> 1)']:.0%}).")
    for brk, row in res.tables.get("series_break_ratio", pd.DataFrame()).iterrows():
        res.headlines.append(f"Series break ({brk}): in the RO3 years the same LA's spend per child was {_fmt(row, 2)} "
                             f"times its S251 level ({pct}); this mixes the change of definition with growth between "
                             "the periods, so the two series are not compared directly.")
    fig = plots.plot_partial(curves["deprivation"], OUTCOME_LABELS, prob)
    res.figures.append(("Partial relationship with LA deprivation (typical LA, average year, demand at the mean)",
                        _save(fig, figdir / "conditions_partial_deprivation.png")))
    fig = plots.plot_partial(curves["demand_between"], OUTCOME_LABELS, prob,
                             xlabel="LA demand: CIN rate (SD from the mean LA)")
    res.figures.append(("Partial relationship with LA demand (CIN rate; IDACI at the mean)",
                        _save(fig, figdir / "conditions_partial_demand.png")))
    fig = plots.plot_correlations(corr, "outcome", OUTCOME_LABELS)
    res.figures.append(("Correlations of LA effects across outcomes (screen, ration, churn)",
                        _save(fig, figdir / "conditions_correlations.png")))
    for o in spec.outcomes[:2]:
        fig = plots.plot_caterpillar(post["la_effect"].sel(outcome=o), la_names, prob,
                                     xlabel="LA effect (link scale, standardised for continuous outcomes)",
                                     title=f"LA effects: {OUTCOME_LABELS[o]} ({prob:.0%} CrI)")
        res.figures.append((f"LA caterpillar: {OUTCOME_LABELS[o]}", _save(fig, figdir / f"conditions_la_{o}.png")))
    res.tables["la_effects"] = summarise(post["la_effect"], prob)
    return res


def fit_gradient(panel, run_config, priors, prob, rule, figdir, la_names, log) -> ModelResult:
    spec = run_config.gradient_spec()
    model = grad_model.build_la_gradient_model(panel, spec, priors)
    idata = fit(model, run_config.settings())
    gate = ConvergenceGate().check(idata, list(grad_model.GATE_VARS))
    las, idaci = sysdata.la_table(panel)
    eff = grad_model.gradient_effects(idata, idaci, las)
    res = ModelResult("gradient", idata, gate, seconds=idata.posterior.attrs["wall_seconds"])
    later = eff["steepening_vs_first"].sizes["stage"] > 0
    for name in ("ratio_per_sd", "ratio_per_0.1", "ratio_p90_vs_p10") + (("steepening_vs_first",) if later else ()):
        res.tables[name] = summarise(eff[name], prob)
    if later:
        res.tables["steepening_vs_first"]["P(steeper)"] = (
            (eff["steepening_vs_first"] > 1).mean(("chain", "draw")).to_series())
    pct = f"{prob:.0%} CrI"
    for stage, row in res.tables["ratio_p90_vs_p10"].iterrows():
        res.headlines.append(f"LAs at the 90th percentile of IDACI had {_fmt(row, 2)} ({pct}) times the rate of "
                             f"{STAGE_LABELS[stage]} of LAs at the 10th percentile.")
    cells = model.cells.merge(las[["idaci"]], left_on="la_code", right_index=True)
    g = cells.groupby(["la_code", "stage"]).agg(count=("count", "sum"), exposure=("exposure", "sum"),
                                                 idaci=("idaci", "first")).reset_index()
    g = g[g["count"] >= rule.threshold]
    g["rate"] = g["count"] / g["exposure"] * 10_000
    fig = plots.plot_rate_by_idaci(eff["rate_by_idaci"], g, prob, STAGE_LABELS)
    res.figures.append(("Rate per 10,000 children by LA IDACI score, typical LA and average year, with each LA's "
                        "mean observed rate", _save(fig, figdir / "gradient_by_idaci.png")))
    if later:
        fig = plots.plot_forest(eff["steepening_vs_first"], "stage", prob, xlabel=f"gradient relative to "
                                f"{STAGE_LABELS[spec.stages[0]]} (ratio of rate ratios per SD)")
        res.figures.append(("Does the gradient steepen at later stages?",
                            _save(fig, figdir / "gradient_steepening.png")))
    last = spec.stages[-1]
    fig = plots.plot_caterpillar(idata.posterior["la_effect"].sel(stage=last), la_names, prob,
                                 xlabel="LA effect (log rate, after deprivation)",
                                 title=f"LA effects on {STAGE_LABELS[last]} after deprivation ({prob:.0%} CrI)")
    res.figures.append((f"LA caterpillar: {STAGE_LABELS[last]} after deprivation",
                        _save(fig, figdir / f"gradient_la_{last}.png")))
    return res


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def cache_key(panel_path: Path, run_config: SystemRun, rule: SuppressionRule) -> str:
    return run_key(files=(panel_path,), settings=(run_config, rule), code=MODEL_CODE)


def write_system_report(panel_path: Path, out_dir: Path, run_config: SystemRun, rule: SuppressionRule,
                        log=print) -> Path:
    """Fit the chosen models on the panel and write the report; the folder appears only
    when complete, and an unchanged run is reused."""
    import matplotlib

    matplotlib.use("Agg")

    out_dir, panel_path = Path(out_dir), Path(panel_path)
    if not panel_path.exists():
        raise UserError(f"panel {panel_path} not found; rebuild it with `python -m workflows build-panel`")
    key = cache_key(panel_path, run_config, rule)
    if is_current(out_dir, key):
        log(f"  unchanged since the last run (same panel, settings and code): reusing {out_dir}")
        return out_dir
    started = time.perf_counter()
    panel = prepare_panel(read_panel(panel_path), run_config)
    priors = get_priors(run_config.prior)
    las, _ = sysdata.la_table(panel)
    la_names = las["la_name"].to_dict()
    fitters = {"trends": lambda d: fit_trends(panel, run_config, priors, run_config.prob, rule, d, la_names, log),
               "conditions": lambda d: fit_conditions(panel, run_config, priors, run_config.prob, d, la_names, log),
               "gradient": lambda d: fit_gradient(panel, run_config, priors, run_config.prob, rule, d, la_names, log)}
    with atomic.atomic_dir(out_dir) as tmp:
        (tmp / "tables").mkdir()
        figdir = tmp / "figures"
        figdir.mkdir()
        results = []
        for name in run_config.models:
            log(f"  fitting the {name} model: {len(las)} LAs x {panel['year'].nunique()} years, "
                f"{run_config.chains} chains x {run_config.draws} draws ...")
            try:
                res = fitters[name](figdir)
            except ValueError as err:
                raise UserError(f"{name} model: {err}") from None
            log(f"    {res.seconds:.0f} s; max R-hat {res.gate['max_r_hat']:.3f}, min bulk ESS "
                f"{res.gate['min_ess_bulk']:.0f}, divergences {res.gate['divergences']}"
                + ("" if res.gate["passed"] else f"  <- {NOT_FOR_CITATION}"))
            results.append(res)
            for tname, table in res.tables.items():
                flag_uncitable(table, res.gate["passed"]).to_csv(tmp / "tables" / f"{name}_{tname}.csv")
            _to_netcdf(res.idata, tmp / f"posterior_{name}.nc")
        sections = _sections(results, panel, run_config, priors, rule)
        title = "System conditions in children's social care: LA panel models"
        (tmp / "report.md").write_text(render_markdown(title, sections, tmp), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(title, sections), encoding="utf-8")
        man = provenance.manifest(
            "system", inputs={"panel": panel_path}, config=asdict(run_config), seed=run_config.seed,
            cache_key=key, suppression={"threshold": rule.threshold, "marker": rule.marker},
            convergence={r.name: r.gate for r in results},
            timings={r.name: {k: r.idata.posterior.attrs.get(k) for k in ("wall_seconds", "sampling_seconds")}
                     for r in results},
            seconds=round(time.perf_counter() - started, 1))
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=str) + "\n")
    return out_dir


def _to_netcdf(idata, target: Path) -> None:
    """The panel is public, but the one filter applies to every posterior written."""
    posterior_export.write(idata, target)


def national_note(panel: pd.DataFrame, measures: dict[str, str], shown: int = 12) -> str:
    """The sentence a national figure needs: in which years suppressed or unpublished LAs make a
    sum over LAs fall short of DfE's England row (and which LAs)."""
    gaps = sysdata.missing_units(panel, measures)
    if gaps.empty:
        return "Every LA reports every measure in every year shown: sums over LAs are England totals."
    items = [f"{r.measure} {r.year}: {r.missing} of {r.of} LAs [{r.las}]" for r in gaps.head(shown).itertuples()]
    more = f"; and {len(gaps) - shown} more measure-years" if len(gaps) > shown else ""
    return ("National figures here are over the LAs that report, not DfE's England rows, which also count "
            "suppressed and unpublished LAs. They fall short of England where LAs are missing: "
            + "; ".join(items) + more + ". data/panel/england_totals.csv compares every sum with DfE's "
            "England figure and gives the shortfall.")


def _sections(results: list[ModelResult], panel: pd.DataFrame, run_config: SystemRun, priors,
              rule: SuppressionRule) -> list[Section]:
    failed = [r.name for r in results if not r.gate["passed"]]
    status = ([f"{NOT_FOR_CITATION} ({', '.join(failed)}). Rerun with more draws before citing any number "
               "from those models."] if failed else
              ["Every model passed the convergence gate (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences)."])
    headlines = [h for r in results for h in r.headlines]
    sections = [Section("Status", status), Section("Headlines", headlines)]
    measures = {**{s: sysdata.MEASURES[s][0] for s in run_config.trend_stages + run_config.gradient_stages},
                **{o: cond_model.OUTCOMES[o][0] for o in run_config.outcomes}}
    cov = sysdata.coverage(panel, measures)
    years = f"{panel['year'].min()}-{panel['year'].max()}"
    sections.append(Section("Data", [
        f"The harmonised LA x year panel (data/panel/la_panel.csv; see data/panel/README.md): "
        f"{panel['la_code'].nunique()} children's services authorities (harmonised over the 2019, 2021 and "
        f"2023 reorganisations), reporting years {years}."
        + (f" Left out: {', '.join(run_config.exclude)}." if run_config.exclude else "")
        + ("" if run_config.include_micro_authorities else
           " Left out by default (include_micro_authorities = false): "
           + ", ".join(f"{n} ({c})" for c, n in sysdata.MICRO_AUTHORITIES.items())
           + ", a few hundred children each, with workforce rates of 0% or 100%.")
        + (f" Quick look: only the first {run_config.max_las} LAs in code order." if run_config.max_las else ""),
        "Missing (suppressed or unpublished) cells are not dropped and never read as zero: each model's "
        "likelihood runs over the observed cells only, and every LA keeps its effects, informed by its other "
        "cells and, through the LKJ correlations, by its other outcomes. The table counts LA-year cells, not "
        "children.",
        "Rates use children aged 0-17 (ONS mid-year estimates) as exposure. LA deprivation is the IoD2019 IDACI "
        "average score, fixed over time: effects 'per SD' are per one standard deviation of IDACI across LAs.",
        national_note(panel, measures),
    ], tables=[("Coverage of each outcome (LA-year cells, over the years it is published)", cov)]))
    for r in results:
        gate_table = pd.DataFrame([r.gate]).rename(index={0: r.name})
        tables = [("Convergence (worst over every parameter)", gate_table)]
        mark = "" if r.gate["passed"] else f" [{NOT_FOR_CITATION}]"
        for name, table in r.tables.items():
            if name in ("la_effects", "la_relative_trend_pct", "national_rate_per_10k"):
                continue  # in tables/*.csv; figures show them
            tables.append((name.replace("_", " ") + mark, table.round(3)))
        intro = {
            "trends": "The shift to late intervention: negative binomial counts with child-population exposure; "
                      "national straight-line trends plus year-to-year deviations, and LA-varying levels "
                      "(centred) and trends (non-centred), each correlated across stages (LKJ). 'Relative to "
                      "referrals' is the difference of yearly log-rate trends.",
            "conditions": "Screen, ration and churn as one multivariate model: NFA share beta-binomial on referrals; "
                          "caseload (log), agency, turnover and vacancy rates (logit of %) Normal on standardised "
                          "scales; LA effects correlated across outcomes (LKJ). Predictors: LA IDACI and demand "
                          "(log CIN rate) split into the LA mean (between) and yearly deviation (within). Ratios "
                          "are rate ratios (log outcomes) or odds ratios (shares, % rates).",
            "gradient": "The LA-level deprivation gradient: negative binomial counts with exposure, LA effects "
                        "correlated across stages (LKJ), year effects per stage. This between-LA gradient mixes the "
                        "neighbourhood social gradient with the contextual (inverse intervention) effect, which "
                        "need neighbourhood data to separate (models/gradient).",
        }[r.name]
        sections.append(Section(f"Model: {r.name}", [intro], tables=tables, figures=r.figures))
    sections.append(Section("Priors and sampling", [
        f"Prior set '{priors.name}': " + "; ".join(f"{k} {v}" for k, v in priors.describe().items()) + ".",
        f"Sampler {run_config.sampler} ({run_config.mass_matrix.replace('_', '-')} mass matrix), "
        f"{run_config.chains} chains x {run_config.draws} draws after {run_config.tune} tuning, "
        f"seed {run_config.seed}. Intervals are {run_config.prob:.0%} equal-tailed "
        "credible intervals.",
        f"Observed England-wide rates are plotted only where at least {rule.threshold} events underlie them.",
    ]))
    return sections
