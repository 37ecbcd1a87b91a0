"""``python -m workflows report RUN_DIR``: (re)write a fitted run's report without refitting.

Reads what ``fit`` left in the run folder (the posterior NetCDF of each gradient scale,
the sections' tables and manifests, ``summary.csv``) and writes ``report.md`` and
``report.html`` beside them, plus the headline effects as ``tables/*.csv|md`` and
``figures/*.png``.  Useful after changing report wording or when reading a run made
elsewhere: the numbers are recomputed from the stored draws, so they are the fit's own.

For policy readers: plain sentences with credible intervals first; a run that failed the
convergence gate says NOT FOR CITATION at the top and on every table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from models.areas import add_deprivation
from models.gradient import effects, plots
from models.gradient.model import GradientSpec
from public_data.tables import load_lsoa_table
from workflows import atomic, gradient as gw
from workflows.errors import UserError
from workflows.extract_io import check_input_folder
from workflows.report_format import Section, markdown_table, render_html, render_markdown
from workflows.run_cache import NOT_FOR_CITATION, flag_uncitable



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a run folder written by `fit` (e.g. results/six-la)")


def run(args: argparse.Namespace) -> int:
    out = write_run_report(args.run_dir)
    print(f"report: {out / 'report.html'}")
    return 0


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_run_manifest(run_dir: Path) -> dict:
    """The ``manifest.json`` that ``fit`` wrote in ``run_dir``; a UserError saying what is
    there instead (no folder, a file, no manifest, a damaged one, another verb's)."""
    run_dir = check_input_folder(run_dir, "a run folder written by `fit` (e.g. results/six-la)")
    path = run_dir / "manifest.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: no run manifest.json written by `fit` here; run "
                        "`python -m workflows fit --config NAME` first")
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot be read: {err}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: damaged (not valid JSON: {err.msg} at line {err.lineno}); rerun "
                        "`python -m workflows fit --config NAME` to rewrite the run") from None
    if not isinstance(man, dict) or man.get("command") != "fit" or not isinstance(man.get("sections"), dict) \
            or not isinstance(man.get("config", {}), dict):
        what = man.get("command") if isinstance(man, dict) else None
        raise UserError(f"{run_dir}: no run manifest.json written by `fit` here"
                        + (f" (the manifest.json here was written by `{what}`)" if what and what != "fit" else "")
                        + "; run `python -m workflows fit --config NAME` first")
    return man


def _load_posterior(path: Path):
    import arviz as az

    try:
        return az.from_netcdf(str(path))
    except Exception as err:  # netCDF4/h5py/xarray raise their own types for a damaged file
        raise UserError(f"{path}: cannot be read as a posterior (NetCDF): {err}; the fit of this run is "
                        "damaged (rerun `fit`)") from None


def write_run_report(run_dir: Path) -> Path:
    """Write ``report.md``/``report.html`` (and headline tables and figures) for a fitted run."""
    run_dir = Path(run_dir)
    man = read_run_manifest(run_dir)
    config, sections_run = man["config"], man["sections"]
    summary = convergence_summary({s: r.get("convergence", {}) for s, r in sections_run.items()})
    failed = summary.index[~summary["passed"]].tolist()
    title = f"{man.get('config_file', run_dir.name).removesuffix('.toml')}: results"
    status = ([f"{NOT_FOR_CITATION} for {len(failed)} of {len(summary)} fits ("
               + ", ".join(f"{a}: {b}" for a, b in failed) + "). Rerun with more draws before citing any number "
               "from those fits."] if failed else
              ["Every fit passed the convergence gate (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences)."])
    sections = [Section("Status", status)]
    tables_dir, figures_dir = run_dir / "tables", run_dir / "figures"
    if "gradient" in sections_run and (run_dir / "gradient").is_dir():
        sections += _gradient_sections(run_dir, config, sections_run["gradient"].get("convergence", {}),
                                       tables_dir, figures_dir)
    if "sensitivity" in sections_run and (run_dir / "sensitivity" / "tables").is_dir():
        sections.append(_sensitivity_section(run_dir / "sensitivity"))
    if "compare" in sections_run and (run_dir / "compare" / "tables").is_dir():
        sec = _compare_section(run_dir / "compare")
        sections.append(sec)
        status += [p for p in sec.paragraphs if p.startswith("WARNING")]
    for name, heading in (("latent_class", "Demand classes"), ("joint", "Demand classes and the social gradient"),
                          ("system", "System conditions (LA panel)")):
        if name in sections_run and (run_dir / name / "report.html").exists():
            sections.append(_section_pointer(run_dir / name, heading))
    sections.append(Section("Convergence of every fit", [
        "Worst value over every parameter of each fit. Every number above carries its own R-hat and ESS in "
        "the tables of the section reports."], tables=[("Convergence", summary.round(3))]))
    data = man.get("data", {})
    sections.append(Section("Provenance and section reports", [
        f"Code {man.get('code_version')}; data: "
        + (f"{data['preset']} extract (seed {data.get('seed', '')})" if "preset" in data else
           f"the LA's own extract {data['extract']} (not copied here)" if "extract" in data else "the LA panel only")
        + (f", sha256 {str(data['sha256'])[:12]}..." if data.get("sha256") else "")
        + f"; config {man.get('config_file')}.",
        "Full reports: " + ", ".join(f"{s}/report.html" for s in sections_run if (run_dir / s / "report.html").exists())
        + ".", "manifest.json records package versions, every setting and seed, and timings."]))
    atomic.write_text(run_dir / "report.md", render_markdown(title, sections, run_dir))
    atomic.write_text(run_dir / "report.html", render_html(title, sections))
    return run_dir


def convergence_summary(convergence: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """One row per fit (section, fit): worst R-hat, ESS, divergences and the gate's verdict."""
    rows = [{"section": section, "fit": _fit_name(section, fit),
             **{k: gate.get(k) for k in ("max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences")},
             # latent class and joint fits also fail when multimodal (label switching not resolved)
             "passed": bool(gate.get("passed")) and bool(gate.get("citable", True))}
            for section, fits in convergence.items() for fit, gate in fits.items()]
    table = pd.DataFrame(rows, columns=["section", "fit", "max_r_hat", "min_ess_bulk", "min_ess_tail",
                                        "divergences", "passed"])
    table["passed"] = table["passed"].astype(bool)
    return table.set_index(["section", "fit"])


def _fit_name(section: str, fit: str) -> str:
    """Latent class and joint manifests key the chosen fit by its K: name it so."""
    return f"K={fit}" if section in ("latent_class", "joint") and str(fit).isdigit() else fit


def _gradient_sections(run_dir: Path, config: dict, gates: dict, tables_dir: Path, figures_dir: Path) -> list[Section]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    section = config.get("gradient", {})
    prob = float(section.get("prob", 0.95))
    covariates = tuple(section.get("covariates", ()))
    scale_facts = effects.DeprivationScale.from_geography(add_deprivation(load_lsoa_table()))
    results = []
    for scale in section.get("scales", ["population", "transition"]):
        path = run_dir / "gradient" / f"posterior_{scale}.nc"
        if not path.exists():
            raise UserError(f"{path}: missing; the gradient fit of this run is incomplete (rerun `fit`)")
        spec = GradientSpec(scale=scale, covariates=covariates if scale == "transition" else ())
        result = gw.ScaleResult(scale, spec, _load_posterior(path), gates.get(scale, {"passed": False}))
        try:
            gw.derive_effects(result, scale_facts, prob)  # the same derived quantities the fit's report shows
        except (KeyError, ValueError) as err:
            raise UserError(f"{path}: does not hold the gradient model's posterior ({err}); the fit of this run "
                            "is damaged (rerun `fit`)") from None
        results.append(result)
    out = [Section("Headlines", gw.headlines(results, prob))]
    tables_dir.mkdir(exist_ok=True)
    figures_dir.mkdir(exist_ok=True)
    names = {"gradient_per_decile": "Social gradient: ratio per decile step of neighbourhood deprivation",
             "decile1_vs_decile10": "Most vs least deprived decile",
             "inverse_intervention": "Inverse intervention contrast (LA at p25 vs p75 of LA deprivation)"}
    for r in results:
        flag = "" if r.gate.get("passed") else f" [{NOT_FOR_CITATION}]"
        shown = []
        for key, caption in names.items():
            if key not in r.tables:
                continue
            table = flag_uncitable(r.tables[key], bool(r.gate.get("passed"))).round(3)
            with atomic.atomic_path(tables_dir / f"{r.scale}_{key}.csv") as tmp:
                table.to_csv(tmp)
            atomic.write_text(tables_dir / f"{r.scale}_{key}.md", markdown_table(table) + "\n")
            shown.append((caption + flag, table.drop(columns=[c for c in ("status",) if c in table.columns])))
        fig = plots.plot_forest(r.draws["gradient_per_decile"], prob=prob)
        with atomic.atomic_path(figures_dir / f"{r.scale}_gradient.png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        plt.close(fig)
        what = "rates per 10,000 children (rate ratios)" if r.scale == "population" else \
            "transitions among children at the stage before (odds ratios)"
        out.append(Section(f"{r.scale.capitalize()} scale", [f"Estimates on the {r.scale} scale: {what}, with "
                                                              f"{prob:.0%} credible intervals, R-hat and ESS."],
                           tables=shown, figures=[(f"Gradient per decile step by stage ({prob:.0%} CrI)",
                                                   figures_dir / f"{r.scale}_gradient.png")]))
    return out


def _sensitivity_section(folder: Path) -> Section:
    grad = pd.read_csv(folder / "tables" / "gradient_per_decile_by_prior_set.csv", index_col=0, header=[0, 1])
    psens = pd.read_csv(folder / "tables" / "power_scaling.csv", index_col=0)
    shifts = grad.xs("shift_in_sd", axis=1, level=1).abs()
    worst = shifts.stack().idxmax() if shifts.size else None
    lines = []
    if worst is not None:
        stage, prior = worst
        lines.append(f"How the social gradient moves under other prior sets: the largest shift is {shifts.loc[stage, prior]:.2f} "
                     f"posterior SDs ({stage}, '{prior}' prior set); under about 0.5 the conclusion does not lean on the prior.")
    flagged = psens[psens["diagnosis"] != "-"]
    lines.append("Power-scaling flags: " + (", ".join(f"{i} ({d})" for i, d in flagged["diagnosis"].items())
                                            if len(flagged) else "none."))
    return Section("Sensitivity to the priors", lines, tables=[("Gradient per decile step under each prior set",
                                                                 grad.round(3))])


def _section_pointer(folder: Path, heading: str) -> Section:
    """Where a section's own report is; the latent class section also shows its chosen K and
    class sizes (suppressed and marked when uncitable by that section's writer)."""
    man = _read_json(folder / "manifest.json")
    lines = []
    if "chosen_k" in man:
        lines.append(f"K = {man['chosen_k']} classes ({man.get('chosen_by', '')}).")
    lines.append(f"Full report: {folder.name}/report.html.")
    sizes = folder / "tables" / "class_sizes.csv"
    tables = [("Class sizes", pd.read_csv(sizes, index_col=0))] if sizes.exists() else []
    return Section(heading, lines, tables=tables)


def _compare_section(folder: Path) -> Section:
    table = pd.read_csv(folder / "tables" / "loo_compare.csv", index_col=0)
    pareto = pd.read_csv(folder / "tables" / "pareto_k.csv", index_col=0)
    lines = [f"Best predictive model by PSIS-LOO: '{table.index[0]}'."]
    high = pareto[pareto["k>0.7"] > 0]
    if len(high):
        lines.insert(0, "WARNING: Pareto k > 0.7 for " + ", ".join(f"{m} ({int(r['k>0.7'])} cells)"
                                                                    for m, r in high.iterrows())
                     + ": the LOO comparison is unreliable there (see compare/report.html).")
    return Section("Model comparison", lines, tables=[("PSIS-LOO comparison", table)])
