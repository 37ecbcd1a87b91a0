"""``python -m workflows fit --config NAME``: fit every model section of a run config.

One run folder, ``results/<config>/`` (or ``--out``), holds everything about one analysis:

- ``data/``: the extract the config names (a simulator preset and seed; reused when the
  same preset, seed and generator made it);
- one folder per model section, each written by its own workflow and replaced as a whole
  only when complete: ``gradient/`` (posterior NetCDF, effects tables, report),
  ``sensitivity/`` (refits under prior sets, power-scaling), ``compare/`` (PSIS-LOO);
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
import hashlib
import json
import shutil
import time
from pathlib import Path

import pandas as pd

from models.suppression import SuppressionRule
from workflows import atomic, paths, provenance
from workflows.config import load_config
from workflows.errors import UserError
from workflows.report_format import markdown_table

#: Model sections ``fit`` runs, in this order, when the config has them.
SECTIONS = ("gradient", "sensitivity", "compare")
#: Code whose change invalidates a section's cached result.
SECTION_CODE = {
    "gradient": ("models.gradient", "models.cells", "models.priors", "models.sampling", "models.areas",
                 "workflows.gradient"),
    "sensitivity": ("models.gradient", "models.cells", "models.priors", "models.sampling", "models.areas",
                    "models.sensitivity", "workflows.sensitivity"),
    "compare": ("models.gradient", "models.cells", "models.priors", "models.sampling", "models.areas",
                "workflows.compare"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config name in workflows/configs (e.g. six-la) or a TOML path")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: results/<config>)")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core; 1 = no cluster)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    out = args.out or paths.RESULTS_DIR / Path(config["_path"]).stem
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
                        + ", ".join(f"[{s}]" for s in SECTIONS))
    try:
        rule = SuppressionRule(config["report"]["suppression_threshold"], config["report"]["suppression_marker"])
    except ValueError as err:
        raise UserError(f"{where}: [report] {err}") from None
    for name in sections:  # every section's settings checked before anything is simulated or fitted
        CHECKS[name](config)
    started = time.perf_counter()
    removed = sweep_stale(out)
    if removed:
        log(f"  removed {removed} unfinished temporary output(s) left by an interrupted run")
    extract = prepare_data(config, out / "data", log)
    data_hash = provenance.sha256_file(extract)
    previous = _read_json(out / "manifest.json").get("sections", {})
    records: dict[str, dict] = {}
    for i, name in enumerate(sections, 1):
        key = section_key(name, config[name], data_hash, rule)
        target = out / name
        done = previous.get(name, {})
        if done.get("key") == key and (target / "report.html").exists() and (target / "manifest.json").exists():
            log(f"[{i}/{len(sections)}] {name}: unchanged since the last run (same data, settings and code): reusing")
            records[name] = {**done, "reused": True}
        else:
            log(f"[{i}/{len(sections)}] {name} ...")
            t0 = time.perf_counter()
            RUNNERS[name](config, extract, target, rule, scheduler=scheduler, n_workers=n_workers,
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
    """Remove the temporary files and folders (``.name.*.tmp``, ``.name.old``) a killed run left
    in ``out`` and its section folders; finished outputs are never touched."""
    count = 0
    for folder in [out, *(out / s for s in (*SECTIONS, "data"))]:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") and (path.name.endswith(".tmp") or path.name.endswith(".old")):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                count += 1
    return count


def prepare_data(config: dict, data_dir: Path, log=print) -> Path:
    """The config's extract: simulated from ``[data]`` preset and seed, reused when unchanged."""
    from workflows.demo import _same_simulation
    from workflows.simulate import write_simulation

    preset, seed = config["data"]["preset"], config["data"]["seed"]
    if _same_simulation(data_dir, preset, seed):
        log(f"  reusing the {preset} extract (seed {seed}) in {data_dir}")
    else:
        log(f"  simulating {preset} (seed {seed}) ...")
        write_simulation(data_dir, preset, seed)
    return data_dir / "extract.csv"


def section_key(name: str, section: dict, data_hash: str, rule: SuppressionRule) -> str:
    digest = hashlib.sha256(json.dumps({"section": name, "settings": section, "data": data_hash,
                                        "suppression": [rule.threshold, rule.marker]}, sort_keys=True).encode())
    digest.update(provenance.source_fingerprint(*SECTION_CODE[name]).encode())
    return digest.hexdigest()


def convergence_summary(convergence: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """One row per fit (section, fit): worst R-hat, ESS, divergences and the gate's verdict."""
    rows = [{"section": section, "fit": fit, **{k: gate.get(k) for k in
                                                  ("max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences", "passed")}}
            for section, fits in convergence.items() for fit, gate in fits.items()]
    table = pd.DataFrame(rows, columns=["section", "fit", "max_r_hat", "min_ess_bulk", "min_ess_tail",
                                        "divergences", "passed"])
    table["passed"] = table["passed"].astype(bool)
    return table.set_index(["section", "fit"])


def _summary_markdown(summary: pd.DataFrame) -> str:
    failed = int((~summary["passed"]).sum())
    head = (f"**NOT FOR CITATION: {failed} of {len(summary)} fits failed the convergence gate** "
            "(R-hat <= 1.01, bulk and tail ESS >= 400, no divergences).\n\n" if failed else
            "Every fit passed the convergence gate (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences).\n\n")
    return "# Convergence of every fit\n\n" + head + markdown_table(summary.round(3)) + "\n"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_manifest(out: Path, config: dict, extract: Path, data_hash: str, sections: dict, started: float) -> None:
    man = provenance.manifest(
        "fit", inputs={"lsoa_table": paths.REFERENCE_DIR / "lsoa.csv"},
        config={k: v for k, v in config.items() if not k.startswith("_")},
        config_file=Path(config["_path"]).name, data={"extract": extract.name, "sha256": data_hash,
                                                    **config["data"]},
        seed=config["data"]["seed"], sections=sections, seconds=round(time.perf_counter() - started, 1))
    atomic.write_text(out / "manifest.json", json.dumps(man, indent=1, default=str) + "\n")


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


def _check_gradient(config):
    from workflows.gradient import GradientRun

    GradientRun.from_config(config["gradient"], config["_path"])


def _check_compare(config):
    from workflows.compare import CompareRun

    CompareRun.from_config(config["compare"], config["_path"])


RUNNERS = {"gradient": _run_gradient, "sensitivity": _run_sensitivity, "compare": _run_compare}
CHECKS = {"gradient": _check_gradient, "sensitivity": _sensitivity_args, "compare": _check_compare}
