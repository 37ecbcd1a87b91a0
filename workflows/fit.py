"""``python -m workflows fit --config NAME``: fit every model section of a run config.

One run folder, ``results/<config>/`` (or ``--out``), holds everything about one analysis:

- ``data/``: the extract of a simulator run (``[data] preset`` and ``seed``; reused when
  the same preset, seed and generator made it).  An LA's own extract (``[data] extract =
  "path"``, relative to the config file's folder) is validated where it is and never
  copied here: manifests keep only its file name and sha256, and cache keys use the sha256;
- one folder per model section, each written by its own workflow and replaced as a whole
  only when complete: ``gradient/`` (posterior NetCDF, effects tables, report),
  ``sensitivity/`` (refits under prior sets, power-scaling), ``compare/`` (PSIS-LOO),
  ``latent_class/`` (demand classes), ``joint/`` (class x gradient model) and ``system/`` (LA panel models: they read the
  committed LA x year panel, not the extract, so a config with only ``[system]`` needs no
  ``[data]``);
- ``summary.csv``/``summary.md``: R-hat, ESS and divergences of every fit, and whether it
  passed the convergence gate;
- ``report.md``/``report.html`` (:mod:`workflows.report`) and ``manifest.json``: code and
  package versions, the config, the data hash, seeds, timings, and each section's cache key.

Caching: a section whose settings, data and model code are unchanged is not refitted.  The
run manifest is rewritten after each section, so a run that is killed keeps what it
finished and a rerun resumes from there; a half-written section never replaces a
finished one (:mod:`workflows.atomic`).  Fits inside a section fan out on Dask
(``--scheduler ADDRESS`` for a running cluster, a local one by default).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from pathlib import Path

import pandas as pd

from models.suppression import SuppressionRule
from workflows import atomic, paths, provenance
from workflows.config import load_config
from workflows.errors import UserError
from workflows.report_format import markdown_table

#: Model sections ``fit`` runs, in this order, when the config has them.
SECTIONS = ("gradient", "sensitivity", "compare", "latent_class", "joint", "system")
#: Sections fitted to the LA x year panel rather than the case-level extract.
PANEL_SECTIONS = ("system",)
#: Code whose change invalidates a section's cached result.
SECTION_CODE = {
    "gradient": ("models.gradient", "models.cells", "models.priors", "models.sampling", "models.areas",
                 "workflows.gradient"),
    "sensitivity": ("models.gradient", "models.cells", "models.priors", "models.sampling", "models.areas",
                    "models.sensitivity", "workflows.sensitivity"),
    "compare": ("models.gradient", "models.cells", "models.priors", "models.sampling", "models.areas",
                "workflows.compare"),
    "latent_class": ("models.latent_class", "models.sampling", "models.suppression", "workflows.latent_class"),
    "joint": ("models.joint", "models.latent_class", "models.gradient", "models.cells", "models.priors",
              "models.sampling", "models.areas", "models.suppression", "workflows.joint"),
    "system": ("models.system", "models.sampling", "workflows.system"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config name in workflows/configs (e.g. six-la) or a TOML path")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: results/<config>)")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core; 1 = no cluster)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    out = atomic.output_dir(args.out, paths.RESULTS_DIR / Path(config["_path"]).stem)
    started = time.perf_counter()
    fit_run(config, out, scheduler=args.scheduler, n_workers=args.workers, progress=not args.no_progress)
    print(f"\ndone in {time.perf_counter() - started:.0f} s. Outputs:")
    for path in sorted(p for p in Path(out).rglob("*") if p.is_file() and not p.name.startswith(".")):
        print(f"  {path.relative_to(paths.REPO_ROOT) if path.is_relative_to(paths.REPO_ROOT) else path}")
    print(f"\nreport: {Path(out) / 'report.html'}")
    return 0


def fit_run(config: dict, out: Path, *, scheduler: str | None = None, n_workers: int | None = None,
            progress: bool = True, log=print) -> Path:
    """Fit the config's model sections into ``out``; see the module docstring."""
    out = Path(out)
    where = config["_path"]
    sections = [s for s in SECTIONS if s in config.get("_sections", ())]
    if not sections:
        raise UserError(f"{where}: no model section to fit; add one of "
                        + ", ".join(f"[{s}]" for s in SECTIONS if s in RUNNERS))
    missing = [s for s in sections if s not in RUNNERS]
    if missing:
        raise UserError(f"{where}: `fit` cannot run " + ", ".join(f"[{s}]" for s in missing)
                        + " yet: run its own verb, or leave the section out")
    try:
        rule = SuppressionRule(config["report"]["suppression_threshold"], config["report"]["suppression_marker"])
    except ValueError as err:
        raise UserError(f"{where}: [report] {err}") from None
    for name in sections:  # every section's settings checked before anything is simulated or fitted
        CHECKS[name](config)
    needs_extract = any(s not in PANEL_SECTIONS for s in sections)
    if needs_extract and not config.get("data"):
        raise UserError(f"{where}: missing [data]: the sections "
                        + ", ".join(f"[{s}]" for s in sections if s not in PANEL_SECTIONS)
                        + " need data.preset and data.seed (a simulator run) or data.extract (an LA's own extract)")
    started = time.perf_counter()
    # An LA's own extract is checked (validated in place, and for what each section needs)
    # before anything is written; a simulated one once it is made.
    own = needs_extract and "extract" in config["data"]
    extract = prepare_data(config, out / "data", log) if own else None
    if own:
        check_extract_supports(sections, extract, log)
    atomic.stamp_run_folder(out, "fit")
    removed = sweep_stale(out)
    if removed:
        log(f"  removed {removed} unfinished temporary output(s) left by an interrupted run")
    if needs_extract and not own:
        extract = prepare_data(config, out / "data", log)
        check_extract_supports(sections, extract, log)
    data_hash = provenance.sha256_file(extract) if extract is not None else None
    panel = panel_path() if any(s in PANEL_SECTIONS for s in sections) else None
    panel_hash = provenance.sha256_file(panel) if panel is not None else None
    previous = _read_json(out / "manifest.json").get("sections", {})
    records: dict[str, dict] = {}
    with _redacted_argv(config, extract):  # every manifest written below records argv
        for i, name in enumerate(sections, 1):
            source, source_hash = (panel, panel_hash) if name in PANEL_SECTIONS else (extract, data_hash)
            key = section_key(name, config[name], source_hash, rule)
            target = out / name
            done = previous.get(name, {})
            if done.get("key") == key and (target / "report.html").exists() and (target / "manifest.json").exists():
                log(f"[{i}/{len(sections)}] {name}: unchanged since the last run (same data, settings and code): reusing")
                records[name] = {**done, "reused": True}
            else:
                log(f"[{i}/{len(sections)}] {name} ...")
                t0 = time.perf_counter()
                RUNNERS[name](config, source, target, rule, scheduler=scheduler, n_workers=n_workers,
                              progress=progress, log=log)
                records[name] = {"key": key, "seconds": round(time.perf_counter() - t0, 1), "reused": False}
            records[name]["convergence"] = _read_json(target / "manifest.json").get("convergence", {})
            # After every section: a run killed later keeps (and a rerun reuses) what is done.
            _write_manifest(out, config, extract, data_hash, {**previous, **records}, started)
        summary = convergence_summary({name: records[name]["convergence"] for name in sections})
        with atomic.atomic_path(out / "summary.csv") as tmp:
            summary.to_csv(tmp)
        atomic.write_text(out / "summary.md", _summary_markdown(summary))
        _write_manifest(out, config, extract, data_hash, records, started)
    from workflows.report import write_run_report

    write_run_report(out)
    failed = summary.index[~summary["passed"]].tolist()
    if failed:
        log(f"  NOT FOR CITATION: {len(failed)} fit(s) failed the convergence gate: "
            + ", ".join(f"{a}/{b}" for a, b in failed))
    return out


def sweep_stale(out: Path) -> int:
    """Remove the temporary files and folders a killed run left in ``out`` and its section
    folders (putting back a previous output a killed swap had moved aside); finished
    outputs are never touched."""
    return sum(atomic.sweep_temporaries(folder) for folder in [out, *(out / s for s in (*SECTIONS, "data"))])


def prepare_data(config: dict, data_dir: Path, log=print) -> Path:
    """The config's extract: an LA's own (``[data] extract``, validated where it is, never
    copied), or simulated from ``[data]`` preset and seed into ``data_dir`` (reused when
    unchanged)."""
    if "extract" in config["data"]:
        path = extract_path(config)
        validate_own_extract(path, config["_path"], log)
        return path
    from workflows.demo import _same_simulation
    from workflows.simulate import write_simulation

    preset, seed = config["data"]["preset"], config["data"]["seed"]
    if _same_simulation(data_dir, preset, seed):
        log(f"  reusing the {preset} extract (seed {seed}) in {data_dir}")
    else:
        log(f"  simulating {preset} (seed {seed}) ...")
        write_simulation(data_dir, preset, seed)
    return data_dir / "extract.csv"


def extract_path(config: dict) -> Path:
    """``[data] extract`` as a path: ``~`` expanded, relative to the config file's folder."""
    given = Path(config["data"]["extract"]).expanduser()
    return given if given.is_absolute() else Path(config["_path"]).resolve().parent / given


def validate_own_extract(path: Path, where: str, log=print) -> None:
    """Check an LA's extract against the schema before any fit (UserError with every
    problem, exit code 2, when it has errors).  Nothing is written."""
    from models.validation import check_extract
    from workflows.extract_io import read_extract_raw
    from public_data.tables import load_lsoa_table

    if path.is_dir():
        raise UserError(f"{where}: data.extract = {str(path)!r}: is a folder, not a file; give the path of the "
                        "extract itself (a relative path is read from the config file's folder)")
    if not path.is_file():
        raise UserError(f"{where}: data.extract = {str(path)!r}: file not found (a relative path is read "
                        "from the config file's folder)")
    report = check_extract(read_extract_raw(path), load_lsoa_table(), source=path.name)[0]
    if not report.ok:
        raise UserError(f"{where}: data.extract {path.name} does not pass validation; nothing was fitted.\n"
                        + report.format(max_per_rule=50), exit_code=2)
    log(f"  using your extract {path.name} (validated: {report.summary()}; not copied into the run folder)")


#: Sections that model the assessment factors (they need assessed episodes).
FACTOR_SECTIONS = ("latent_class", "joint")


def check_extract_supports(sections, extract: Path, log=print) -> None:
    """A UserError, before any fit, when the extract lacks what a section needs (enough
    episodes; assessed episodes with factors for the latent class and joint models); a note
    when it has too few LAs for the between-LA (contextual) effect."""
    import os

    from workflows.extract_io import (MIN_ASSESSED, contextual_note, load_extract, require_assessed,
                                      require_episodes)
    from public_data.tables import load_lsoa_table

    data, _ = load_extract(extract, load_lsoa_table(), salt=os.urandom(32))  # ids never needed
    name = Path(extract).name
    if any(s in ("gradient", "sensitivity", "compare") for s in sections):
        require_episodes(name, data.episodes)
    for section in FACTOR_SECTIONS:
        if section in sections:
            require_assessed(name, data.episodes, data.factors, f"[{section}]", MIN_ASSESSED)
    if any(s in ("gradient", "sensitivity", "compare", "joint") for s in sections):
        note = contextual_note(name, data.episodes)
        if note:
            log(f"  {note}")


def panel_path() -> Path:
    """The LA x year panel the ``[system]`` section fits (the committed one)."""
    from public_data.panel import PANEL_DIR, PANEL_FILE

    path = PANEL_DIR / PANEL_FILE
    if not path.is_file():
        raise UserError(f"panel {path} not found; rebuild it with `python -m workflows build-panel`")
    return path


def section_key(name: str, section: dict, data_hash: str, rule: SuppressionRule) -> str:
    digest = hashlib.sha256(json.dumps({"section": name, "settings": section, "data": data_hash,
                                        "suppression": [rule.threshold, rule.marker]}, sort_keys=True).encode())
    digest.update(provenance.source_fingerprint(*SECTION_CODE[name]).encode())
    return digest.hexdigest()


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


def _summary_markdown(summary: pd.DataFrame) -> str:
    failed = int((~summary["passed"]).sum())
    head = (f"**NOT FOR CITATION: {failed} of {len(summary)} fits failed the convergence gate** "
            "(R-hat <= 1.01, bulk and tail ESS >= 400, no divergences; latent class fits also not "
            "multimodal).\n\n" if failed else
            "Every fit passed the convergence gate (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences).\n\n")
    return "# Convergence of every fit\n\n" + head + markdown_table(summary.round(3)) + "\n"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_manifest(out: Path, config: dict, extract: Path | None, data_hash: str | None, sections: dict,
                    started: float) -> None:
    plain = {k: v for k, v in config.items() if not k.startswith("_")}
    if "extract" in plain.get("data", {}):  # an own extract: its file name only, never its folder
        plain["data"] = {**plain["data"], "extract": Path(plain["data"]["extract"]).name}
    data = {"extract": extract.name, "sha256": data_hash, **plain.get("data", {})} if extract is not None else {}
    man = provenance.manifest(
        "fit", inputs={"lsoa_table": paths.REFERENCE_DIR / "lsoa.csv"}, config=plain,
        config_file=Path(config["_path"]).name, data=data,
        seed=data.get("seed"), sections=sections, seconds=round(time.perf_counter() - started, 1))
    atomic.write_text(out / "manifest.json", json.dumps(man, indent=1, default=str) + "\n")


@contextlib.contextmanager
def _redacted_argv(config: dict, extract: Path | None):
    """While the sections run, ``sys.argv`` (which every manifest records) names the config
    file and an own extract by file name only: the folder an LA analyst keeps them in can
    identify them."""
    hidden = [Path(config["_path"])] + ([extract] if extract is not None else [])

    def redact(arg: str) -> str:
        for path in hidden:
            try:
                if Path(arg).expanduser().resolve() == path.resolve():
                    return path.name
            except (OSError, ValueError):
                pass
        return arg

    saved = sys.argv
    sys.argv = [redact(a) for a in saved]
    try:
        yield
    finally:
        sys.argv = saved


# --- section runners: config section -> that workflow's writer ---------------------------------

def _run_gradient(config, extract, target, rule, *, scheduler, n_workers, progress, log):
    from workflows.gradient import GradientRun, write_gradient_report

    run_config = GradientRun.from_config(config["gradient"], config["_path"])
    write_gradient_report(extract, target, run_config, rule, log=log,
                          title=f"Social gradient and inverse intervention: {Path(config['_path']).stem}")


def _sensitivity_args(config):
    """(prior sets, scale, stages, sampler settings) of ``[sensitivity]``, each checked."""
    from models.priors import PRIOR_SETS
    from models.sampling import SamplerSettings
    from models.vocabulary import STAGES

    where, section = config["_path"], config["sensitivity"]
    names = section.get("prior_sets", list(PRIOR_SETS))
    bad = [n for n in names if n not in PRIOR_SETS]
    if bad or not names:
        raise UserError(f"{where}: sensitivity.prior_sets = {names!r}: expected prior set names from "
                        f"{', '.join(PRIOR_SETS)}")
    scale = section.get("scale", "population")
    if scale not in ("population", "transition"):
        raise UserError(f"{where}: sensitivity.scale = {scale!r}: expected 'population' or 'transition'")
    stages = section.get("stages")
    valid = STAGES if scale == "population" else STAGES[1:]
    if stages is not None and (not stages or any(s not in valid for s in stages)):
        raise UserError(f"{where}: sensitivity.stages = {stages!r}: expected stages of the {scale} scale from "
                        f"{', '.join(valid)}")
    try:
        settings = SamplerSettings(**{k: section[k] for k in ("draws", "tune", "chains", "seed") if k in section})
    except ValueError as err:
        raise UserError(f"{where}: [sensitivity] {err}") from None
    return names, scale, stages, settings


def _run_sensitivity(config, extract, target, rule, *, scheduler, n_workers, progress, log):
    from workflows.sensitivity import write_sensitivity_report

    names, scale, stages, settings = _sensitivity_args(config)
    write_sensitivity_report(extract, target, names, scale, settings, stages=tuple(stages) if stages else None,
                             log=log, scheduler=scheduler, n_workers=n_workers, progress=progress)


def _run_compare(config, extract, target, rule, *, scheduler, n_workers, progress, log):
    from workflows.compare import CompareRun, write_compare_report

    run_config = CompareRun.from_config(config["compare"], config["_path"])
    write_compare_report(extract, target, run_config, scheduler=scheduler, n_workers=n_workers,
                         progress=progress, log=log)


def _run_latent_class(config, extract, target, rule, *, scheduler, n_workers, progress, log):
    from workflows.latent_class import LatentClassRun, write_latent_class_report

    run_config = LatentClassRun.from_config(config["latent_class"], config["_path"])
    write_latent_class_report(extract, target, run_config, rule, log=log,
                              title=f"Demand classes at assessment: {Path(config['_path']).stem}")


def _run_joint(config, extract, target, rule, *, scheduler, n_workers, progress, log):
    from workflows.joint import JointRun, write_joint_report

    run_config = JointRun.from_config(config["joint"], config["_path"])
    write_joint_report(extract, target, run_config, rule, log=log,
                       title=f"Demand classes and the social gradient (joint model): {Path(config['_path']).stem}")


def _run_system(config, panel, target, rule, *, scheduler, n_workers, progress, log):
    from workflows.system import SystemRun, write_system_report

    run_config = SystemRun.from_config(config["system"], config["_path"])
    write_system_report(panel, target, run_config, rule, log=log)


def _check_gradient(config):
    from workflows.gradient import GradientRun

    GradientRun.from_config(config["gradient"], config["_path"])


def _check_compare(config):
    from workflows.compare import CompareRun

    CompareRun.from_config(config["compare"], config["_path"])


def _check_latent_class(config):
    from workflows.latent_class import LatentClassRun

    LatentClassRun.from_config(config["latent_class"], config["_path"])


def _check_joint(config):
    from workflows.joint import JointRun

    JointRun.from_config(config["joint"], config["_path"])


def _check_system(config):
    from workflows.system import SystemRun

    SystemRun.from_config(config["system"], config["_path"])


RUNNERS = {"gradient": _run_gradient, "sensitivity": _run_sensitivity, "compare": _run_compare,
           "latent_class": _run_latent_class, "joint": _run_joint, "system": _run_system}
CHECKS = {"gradient": _check_gradient, "sensitivity": _sensitivity_args, "compare": _check_compare,
          "latent_class": _check_latent_class, "joint": _check_joint, "system": _check_system}
