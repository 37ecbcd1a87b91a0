"""``python -m workflows compare``: which variant of the gradient model predicts best?

PSIS-LOO (Vehtari, Gelman & Gabry 2017) on the pointwise log-likelihood of each cell,
ranked with ``az.compare``.  Two ways in:

- ``compare --config NAME``: fit the variants the config's ``[compare]`` section lists
  (fanned out on Dask) on its extract, then compare them;
- ``compare DIR_A DIR_B ...``: compare fits already made, each folder holding a
  ``posterior.nc`` with a ``log_likelihood`` group (as the variant folders written here do).

Pareto k above 0.7 means the importance sampling behind LOO is unreliable for that cell
(typically a cell with a lot of say over its own LSOA effect): the report says so loudly
and the ranking should then be checked by K-fold cross-validation.  Writes
``tables/loo_compare.csv|md``, ``tables/pareto_k.csv``, ``figures/loo_compare.png``,
``report.md``/``report.html`` and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.areas import add_deprivation
from models.cells import population_cells, transition_cells
from models.gradient.model import GradientSpec, build_gradient_model
from models.priors import PRIOR_SETS, get_prior_set
from models.sampling import ConvergenceGate, SamplerSettings, fit
from models.vocabulary import STAGES
from public_data.tables import load_lsoa_table
from workflows import atomic, paths, posterior_export, provenance
from workflows.config import load_config
from workflows.errors import UserError
from workflows.extract_io import (check_input_file, check_input_folder, contextual_note, load_extract,
                                  require_episodes)
from workflows.fanout import fan_out
from workflows.report_format import Section, markdown_table, render_html, render_markdown
from workflows.run_data import prepare_data

#: Named variants: how each differs from the full model (``GradientSpec`` fields).
VARIANTS: dict[str, dict] = {
    "full": {},
    "no_la_slopes": {"la_slopes": False},
    "no_lsoa_effects": {"lsoa_effects": False},
    "no_year_effects": {"year_effects": False},
    "single_level": {"la_effects": False, "la_slopes": False, "lsoa_effects": False},
    "negbin": {"likelihood": "negbin"},
}
PARETO_K_WARN = 0.7
MODEL_CODE = ("models.gradient", "models.cells", "models.priors", "models.sampling", "models.areas")


@dataclass(frozen=True)
class CompareRun:
    """The ``[compare]`` section of a run config."""

    variants: tuple[str, ...] = ("full", "no_la_slopes")
    scale: str = "population"
    stages: tuple[str, ...] = ()
    prior: str = "default"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 1

    def __post_init__(self):
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or len(self.variants) < 2:
            raise ValueError(f"variants {list(self.variants)}: expected two or more of {', '.join(VARIANTS)}")
        if self.scale not in ("population", "transition"):
            raise ValueError(f"scale {self.scale!r}: expected 'population' or 'transition'")
        valid = STAGES if self.scale == "population" else STAGES[1:]
        bad = [s for s in self.stages if s not in valid]
        if bad:
            raise ValueError(f"stages {bad}: not stages of the {self.scale} scale; choose from {', '.join(valid)}")
        if self.prior not in PRIOR_SETS:
            raise ValueError(f"prior {self.prior!r}: unknown prior set; choose one of {', '.join(PRIOR_SETS)}")
        if self.scale == "transition" and "negbin" in self.variants:
            raise ValueError("variants: 'negbin' is a population-scale (count) likelihood")

    @classmethod
    def from_config(cls, section: dict, where: str) -> "CompareRun":
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
        try:
            return cls(**values)
        except ValueError as err:
            raise UserError(f"{where}: [compare] {err.args[0]}") from None

    def settings(self) -> SamplerSettings:
        return SamplerSettings(draws=self.draws, tune=self.tune, chains=self.chains, seed=self.seed)

    def spec(self, variant: str) -> GradientSpec:
        return GradientSpec(scale=self.scale, **VARIANTS[variant])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", type=Path, help="folders holding posterior.nc with a log_likelihood group")
    parser.add_argument("--config", default=None, help="config with a [compare] section: fit its variants, then compare")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/<config>/compare "
                        "or results/compare)")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (1 = no cluster)")


def run(args: argparse.Namespace) -> int:
    if bool(args.runs) == bool(args.config):
        raise UserError("compare: give either two or more fitted folders or --config NAME, not both or neither")
    if args.config:
        config = load_config(args.config)
        if "compare" not in config["_sections"]:
            raise UserError(f"{config['_path']}: no [compare] section: list the variants to compare there "
                            f"(choose from {', '.join(VARIANTS)})")
        run_config = CompareRun.from_config(config["compare"], config["_path"])
        out = atomic.output_dir(args.out, paths.RESULTS_DIR / Path(config["_path"]).stem / "compare")
        extract = prepare_data(config, out.parent / "data")
        write_compare_report(extract, out, run_config, scheduler=args.scheduler, n_workers=args.workers)
    else:
        if len(args.runs) < 2:
            raise UserError("compare: give two or more fitted folders")
        same = sorted({str(p) for p in args.runs if sum(q.resolve() == p.resolve() for q in args.runs) > 1})
        if same:
            raise UserError(f"compare: {', '.join(same)} given more than once: compare different fits")
        out = atomic.output_dir(args.out, paths.RESULTS_DIR / "compare")
        fits = {}
        for folder in args.runs:
            fits[_unique(folder.name, fits)] = load_fit(folder)
        _write_comparison(out, fits, {"runs": [str(p) for p in args.runs]}, title="Model comparison (PSIS-LOO)")
    print(f"report: {out / 'report.html'}")
    return 0


def _unique(name: str, taken: dict) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name}-{i}", i + 1
    return out


def load_fit(folder: Path):
    """A fitted variant folder's InferenceData; a clear error if it cannot be compared."""
    import arviz as az

    folder = check_input_folder(folder, "a folder written by `compare --config`, holding a posterior.nc")
    path = folder / "posterior.nc"
    if not path.exists():
        raise UserError(f"{folder}: no posterior.nc here (compare needs folders written by "
                        "`compare --config`, each with its pointwise log-likelihood)")
    try:
        idata = az.from_netcdf(str(path))
    except Exception as err:  # netCDF4/h5py/xarray raise their own types for a damaged file
        raise UserError(f"{path}: cannot be read as a posterior (NetCDF): {err}") from None
    if "log_likelihood" not in idata.groups():
        raise UserError(f"{path}: no log_likelihood group, so PSIS-LOO cannot be computed; refit with "
                        "`compare --config`")
    return idata


@dataclass(frozen=True)
class _VariantFit:
    """One variant's fit (picklable: it travels to a Dask worker)."""

    name: str
    cells: pd.DataFrame = field(repr=False)
    spec: GradientSpec
    prior: str
    settings: SamplerSettings


def _fit_variant(job: _VariantFit):
    model = build_gradient_model(job.cells, job.spec, get_prior_set(job.prior))
    idata = fit(model, job.settings, log_likelihood=True)
    gate = ConvergenceGate().check(idata, list(idata.posterior.data_vars))
    # Keep what LOO and a reader need: no LSOA-level arrays (large, and not for publication).
    return posterior_export.publishable(idata, log_likelihood=True), gate


def variant_key(extract_hash: str, config: CompareRun, variant: str) -> str:
    digest = hashlib.sha256(json.dumps({"data": extract_hash, "variant": variant, "spec": VARIANTS[variant],
                                        **asdict(config), "variants": None}, sort_keys=True).encode())
    digest.update(provenance.source_fingerprint(*MODEL_CODE).encode())
    return digest.hexdigest()


def write_compare_report(extract_path: Path, out_dir: Path, config: CompareRun, *, scheduler: str | None = None,
                         n_workers: int | None = None, progress: bool = True, log=print) -> Path:
    """Fit each variant (reusing unchanged ones), then compare them; see the module docstring."""
    import arviz as az

    out_dir = Path(out_dir)
    check_input_file(extract_path, what="extract")  # before its bytes are hashed for the cache keys
    extract_hash = provenance.sha256_file(extract_path)
    keys = {v: variant_key(extract_hash, config, v) for v in config.variants}
    fits, gates, todo = {}, {}, []
    for v in config.variants:
        folder = out_dir.parent / f"{out_dir.name}-fits" / v
        man = _read_json(folder / "manifest.json")
        if man.get("cache_key") == keys[v] and (folder / "posterior.nc").exists():
            fits[v], gates[v] = az.from_netcdf(str(folder / "posterior.nc")), man["convergence"]
        else:
            todo.append(v)
    if todo:
        lsoa_table = load_lsoa_table()
        episodes = load_extract(extract_path, lsoa_table, salt=os.urandom(32))[0].episodes
        require_episodes(extract_path, episodes)
        note = contextual_note(extract_path, episodes)
        if note:
            log(note)
        geography = add_deprivation(lsoa_table)
        if config.scale == "population":
            served = geography[geography["la_code"].isin(episodes["la_code"].unique())]
            cells = population_cells(episodes, served, stages=config.stages or STAGES)
        else:
            cells = transition_cells(episodes, geography, stages=config.stages or STAGES[1:])
        log(f"  fitting {len(todo)} variant(s) with pointwise log-likelihood: {', '.join(todo)} "
            f"({len(cells):,} cells)")
        jobs = [_VariantFit(v, cells, config.spec(v), config.prior, config.settings()) for v in todo]
        for v, (idata, gate) in zip(todo, fan_out(_fit_variant, jobs, scheduler=scheduler, n_workers=n_workers,
                                                  progress=progress, label="variants")):
            folder = out_dir.parent / f"{out_dir.name}-fits" / v
            with atomic.atomic_dir(folder) as tmp:
                idata.to_netcdf(str(tmp / "posterior.nc"))
                (tmp / "manifest.json").write_text(json.dumps(
                    {"cache_key": keys[v], "variant": v, "spec": VARIANTS[v], "convergence": gate}, indent=1) + "\n")
            fits[v], gates[v] = idata, gate
    else:
        log("  every variant unchanged since the last run: reusing their fits")
    fits = {v: fits[v] for v in config.variants}
    return _write_comparison(out_dir, fits, {"config": asdict(config), "seed": config.seed,
                                             "extract": {"path": Path(extract_path).name,
                                                         "sha256": extract_hash},
                                             "variant_keys": keys}, gates=gates,
                             title=f"Model comparison (PSIS-LOO), {config.scale} scale", config=config)


def loo_tables(fits: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(``az.compare`` table, Pareto k counts per model: k <= 0.5, 0.5-0.7, > 0.7 and the max)."""
    import warnings

    import arviz as az

    loos, k_rows = {}, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the high-k warning: we report it ourselves
        for name, idata in fits.items():
            loos[name] = az.loo(idata, pointwise=True)
            k = np.asarray(loos[name].pareto_k).ravel()
            k_rows.append({"model": name, "cells": k.size, "k<=0.5": int((k <= 0.5).sum()),
                           "0.5<k<=0.7": int(((k > 0.5) & (k <= PARETO_K_WARN)).sum()),
                           "k>0.7": int((k > PARETO_K_WARN).sum()), "max_k": float(k.max())})
        table = az.compare(loos, ic="loo")
    return table, pd.DataFrame(k_rows).set_index("model")


def _write_comparison(out_dir: Path, fits: dict, extra: dict, title: str, gates: dict | None = None,
                      config: CompareRun | None = None) -> Path:
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    started = time.perf_counter()
    table, pareto = loo_tables(fits)
    high = pareto[pareto["k>0.7"] > 0]
    with atomic.atomic_dir(out_dir) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        shown = table.drop(columns=[c for c in ("warning", "scale") if c in table.columns]).astype(float).round(2)
        shown["pareto_k>0.7"] = pareto["k>0.7"].reindex(shown.index)
        shown.index.name = "model"
        shown.to_csv(tmp / "tables" / "loo_compare.csv")
        (tmp / "tables" / "loo_compare.md").write_text(markdown_table(shown) + "\n")
        pareto.to_csv(tmp / "tables" / "pareto_k.csv")
        ax = az.plot_compare(table, insample_dev=False)
        fig = ax.figure if hasattr(ax, "figure") else plt.gcf()
        fig.savefig(tmp / "figures" / "loo_compare.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        best = table.index[0]
        status = []
        if len(high):
            status.append("WARNING: Pareto k > 0.7 for " + ", ".join(
                f"{m} ({int(r['k>0.7'])} of {int(r['cells'])} cells, max k {r['max_k']:.2f})" for m, r in high.iterrows())
                + ". PSIS-LOO is unreliable for those cells, so the ranking may be too: check it with K-fold "
                "cross-validation (refit leaving out groups of LSOAs) before relying on it.")
        failed = [v for v, g in (gates or {}).items() if not g["passed"]]
        if failed:
            status.append(f"NOT FOR CITATION: {', '.join(failed)} failed the convergence gate.")
        second = table.index[1]
        status.append(f"Best expected log predictive density: '{best}'. Next, '{second}', is "
                      f"{table.loc[second, 'elpd_diff']:.1f} lower (SE of the difference {table.loc[second, 'dse']:.1f}); "
                      "a difference under about 2 SE is not a clear preference.")
        sections = [Section("Status", status),
                    Section("Comparison", ["elpd_loo: expected log predictive density for a new cell (higher is "
                                           "better); p_loo: effective number of parameters; weight: stacking weight."]
                            + (["Variants: " + "; ".join(
                                f"{v}: " + (", ".join(f"{k}={val}" for k, val in VARIANTS[v].items()) or "the full model")
                                for v in config.variants)] if config else []),
                            tables=[("PSIS-LOO comparison", shown), ("Pareto k diagnostics", pareto.round(2))],
                            figures=[("ELPD with standard errors", tmp / "figures" / "loo_compare.png")])]
        if gates:
            sections.append(Section("Convergence", [], tables=[("Worst over every parameter",
                                                                 pd.DataFrame(gates).T)]))
        (tmp / "report.md").write_text(render_markdown(title, sections, tmp), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(title, sections), encoding="utf-8")
        man = provenance.manifest("compare", **extra, convergence=gates or {}, best=best,
                                  pareto_k_high={m: int(r["k>0.7"]) for m, r in pareto.iterrows()},
                                  seconds=round(time.perf_counter() - started, 1))
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=str) + "\n")
    return out_dir


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
