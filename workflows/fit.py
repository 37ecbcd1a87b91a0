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

from models.priors import PRIOR_SETS
from models.sampling import SamplerSettings
from models.suppression import SuppressionRule
from models.vocabulary import STAGES
from workflows import atomic, paths, provenance
from workflows.compare import CompareRun, write_compare_report
from workflows.config import load_config
from workflows.errors import UserError
from workflows.gradient import GradientRun, write_gradient_report
from workflows.joint import JointRun, write_joint_report
from workflows.latent_class import LatentClassRun, write_latent_class_report
from workflows.report import convergence_summary, write_run_report
from workflows.report_format import markdown_table
from workflows.run_data import check_extract_supports, panel_path, prepare_data
from workflows.sensitivity import write_sensitivity_report
from workflows.system import SystemRun, write_system_report

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


def section_key(name: str, section: dict, data_hash: str, rule: SuppressionRule) -> str:
    digest = hashlib.sha256(json.dumps({"section": name, "settings": section, "data": data_hash,
                                        "suppression": [rule.threshold, rule.marker]}, sort_keys=True).encode())
    digest.update(provenance.source_fingerprint(*SECTION_CODE[name]).encode())
    return digest.hexdigest()


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
    run_config = GradientRun.from_config(config["gradient"], config["_path"])
    write_gradient_report(extract, target, run_config, rule, log=log,
                          title=f"Social gradient and inverse intervention: {Path(config['_path']).stem}")


def _sensitivity_args(config):
    """(prior sets, scale, stages, sampler settings) of ``[sensitivity]``, each checked."""
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
    names, scale, stages, settings = _sensitivity_args(config)
    write_sensitivity_report(extract, target, names, scale, settings, stages=tuple(stages) if stages else None,
                             log=log, scheduler=scheduler, n_workers=n_workers, progress=progress)


def _run_compare(config, extract, target, rule, *, scheduler, n_workers, progress, log):
    run_config = CompareRun.from_config(config["compare"], config["_path"])
    write_compare_report(extract, target, run_config, scheduler=scheduler, n_workers=n_workers,
                         progress=progress, log=log)


def _run_latent_class(config, extract, target, rule, *, scheduler, n_workers, progress, log):
    run_config = LatentClassRun.from_config(config["latent_class"], config["_path"])
    write_latent_class_report(extract, target, run_config, rule, log=log,
                              title=f"Demand classes at assessment: {Path(config['_path']).stem}")


def _run_joint(config, extract, target, rule, *, scheduler, n_workers, progress, log):
    run_config = JointRun.from_config(config["joint"], config["_path"])
    write_joint_report(extract, target, run_config, rule, log=log,
                       title=f"Demand classes and the social gradient (joint model): {Path(config['_path']).stem}")


def _run_system(config, panel, target, rule, *, scheduler, n_workers, progress, log):
    run_config = SystemRun.from_config(config["system"], config["_path"])
    write_system_report(panel, target, run_config, rule, log=log)


def _check_gradient(config):
    GradientRun.from_config(config["gradient"], config["_path"])


def _check_compare(config):
    CompareRun.from_config(config["compare"], config["_path"])


def _check_latent_class(config):
    LatentClassRun.from_config(config["latent_class"], config["_path"])


def _check_joint(config):
    JointRun.from_config(config["joint"], config["_path"])


def _check_system(config):
    SystemRun.from_config(config["system"], config["_path"])


RUNNERS = {"gradient": _run_gradient, "sensitivity": _run_sensitivity, "compare": _run_compare,
           "latent_class": _run_latent_class, "joint": _run_joint, "system": _run_system}
CHECKS = {"gradient": _check_gradient, "sensitivity": _sensitivity_args, "compare": _check_compare,
          "latent_class": _check_latent_class, "joint": _check_joint, "system": _check_system}
