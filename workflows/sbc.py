"""``python -m workflows sbc``: simulation-based calibration of the social gradient model.

Draws parameters from the prior, simulates data on a small synthetic design, refits each
replicate (fanned out on Dask: :mod:`workflows.fanout`), and tests whether the ranks of
the true values are uniform (:mod:`models.sbc`).  Writes, replaced as a whole only when
complete: ``report.md``/``report.html`` (verdict per parameter, rank ECDF plots with
simultaneous bands), ``tables/uniformity.csv|md``, ``tables/ranks.csv``,
``tables/replicates.csv`` (divergences, R-hat, ESS, seconds per fit) and ``manifest.json``.
Settings come from ``workflows/configs/sbc.toml`` (``[sbc]``); flags override them.  An
unchanged run is not refitted.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from models import sbc as core
from models.priors import PRIOR_SETS
from models.sampling import SamplerSettings
from workflows import atomic, paths, provenance
from workflows.run_cache import is_current, run_key
from workflows.config import load_config
from workflows.errors import UserError
from workflows.fanout import fan_out
from workflows.report_format import Section, markdown_table, render_html, render_markdown

MODEL_CODE = ("models.sbc", "models.gradient", "models.priors", "models.sampling", "models.sensitivity")


@dataclass(frozen=True)
class SBCRun:
    """The ``[sbc]`` section of a run config."""

    preset: str = "tiny"
    replicates: int = 100
    prior: str = "default"
    generator_prior: str = ""   # empty: the fitted prior (a correct SBC); another set: a mismatch
    draws: int = 300
    tune: int = 300
    chains: int = 2
    n_ranks: int = 99
    seed: int = 1

    def __post_init__(self):
        core.get_design(self.preset)
        for key in ("prior", "generator_prior"):
            name = getattr(self, key)
            if name and name not in PRIOR_SETS:
                raise ValueError(f"{key} {name!r}: unknown prior set; choose one of {', '.join(PRIOR_SETS)}")
        if self.replicates < 2:
            raise ValueError(f"replicates {self.replicates}: expected at least 2 (100 or more for a real check)")
        if self.n_ranks < 1 or self.chains * self.draws < self.n_ranks:
            raise ValueError(f"n_ranks {self.n_ranks}: expected 1..chains x draws ({self.chains * self.draws})")

    @classmethod
    def from_config(cls, section: dict, where: str) -> "SBCRun":
        try:
            return cls(**section)
        except (ValueError, KeyError) as err:
            raise UserError(f"{where}: [sbc] {err.args[0]}") from None

    def settings(self) -> SamplerSettings:
        return SamplerSettings(draws=self.draws, tune=self.tune, chains=self.chains, seed=self.seed)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="sbc", help="config name or TOML path with an [sbc] section (default: sbc)")
    parser.add_argument("--preset", default=None, help=f"SBC design: {', '.join(core.DESIGNS)} (overrides the config)")
    parser.add_argument("--replicates", type=int, default=None, help="number of simulated data sets (overrides the config)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/sbc-<preset>)")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core; 1 = no cluster)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    section = dict(config.get("sbc", {}))
    for key in ("preset", "replicates"):
        if getattr(args, key) is not None:
            section[key] = getattr(args, key)
    run_config = SBCRun.from_config(section, config["_path"])
    out = atomic.output_dir(args.out, paths.RESULTS_DIR / f"sbc-{run_config.preset}")
    write_sbc_report(out, run_config, scheduler=args.scheduler, n_workers=args.workers,
                     progress=not args.no_progress)
    print(f"report: {out / 'report.html'}")
    return 0


def cache_key(config: SBCRun) -> str:
    return run_key(settings=config, code=(*MODEL_CODE, "workflows.sbc"))


def write_sbc_report(out_dir: Path, config: SBCRun, *, scheduler: str | None = None, n_workers: int | None = None,
                     progress: bool = True, log=print) -> Path:
    """Run the SBC and write its report; the folder appears only when complete."""
    out_dir = Path(out_dir)
    key = cache_key(config)
    if is_current(out_dir, key):
        log(f"  unchanged since the last run (same settings and code): reusing {out_dir}")
        return out_dir
    started = time.perf_counter()
    design = core.get_design(config.preset)
    log(f"  SBC of the gradient model on the '{design.name}' design: {config.replicates} replicates, "
        f"{config.chains} chains x {config.draws} draws each ...")

    def map_fn(fn, items):
        return fan_out(fn, items, scheduler=scheduler, n_workers=n_workers, progress=progress,
                       label="SBC replicates")

    result = core.run_sbc(design, config.prior, config.replicates, config.settings(),
                          generator_prior=config.generator_prior or None, n_ranks=config.n_ranks,
                          seed=config.seed, map_fn=map_fn)
    seconds = round(time.perf_counter() - started, 1)
    bad = result.uniformity.index[~result.uniformity["calibrated"]].tolist()
    log(f"    {seconds:.0f} s; " + (f"MISCALIBRATED: {', '.join(bad)}" if bad else "every parameter calibrated"))

    with atomic.atomic_dir(out_dir) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        result.uniformity.to_csv(tmp / "tables" / "uniformity.csv")
        (tmp / "tables" / "uniformity.md").write_text(markdown_table(result.uniformity.round(3)) + "\n")
        result.ranks.to_csv(tmp / "tables" / "ranks.csv")
        result.diagnostics.to_csv(tmp / "tables" / "replicates.csv")
        figure = tmp / "figures" / "rank_ecdf.png"
        _plot(result, figure)
        title = f"Simulation-based calibration of the social gradient model ('{design.name}' design)"
        sections = _sections(result, config, design, figure)
        (tmp / "report.md").write_text(render_markdown(title, sections, tmp), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(title, sections), encoding="utf-8")
        man = provenance.manifest("sbc", config=asdict(config), design=repr(design), seed=config.seed,
                                  cache_key=key, calibrated=not bad, miscalibrated=bad,
                                  scheduler=scheduler or "local", seconds=seconds,
                                  fit_seconds=float(result.diagnostics["seconds"].sum()))
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=str) + "\n")
    return out_dir



def _plot(result: core.SBCResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = core.plot_rank_ecdf(result.ranks, result.n_ranks)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _sections(result: core.SBCResult, config: SBCRun, design: core.SBCDesign, figure: Path) -> list[Section]:
    table = result.uniformity
    bad = table.index[~table["calibrated"]].tolist()
    diag = result.diagnostics
    generator = config.generator_prior or config.prior
    status = ([f"MISCALIBRATED: the ranks of {', '.join(bad)} are not uniform. If the data were drawn from "
               "the fitted prior, the model code or the sampler is wrong for these; do not trust their "
               "intervals until this is explained."] if bad else
              [f"Every parameter's ranks are consistent with uniform over {len(diag)} replicates "
               "(chi-square p >= 0.01 and the ECDF inside its simultaneous 95% band)."])
    if generator != config.prior:
        status.append(f"Deliberate mismatch: data drawn under the '{generator}' prior set, fitted under "
                      f"'{config.prior}'. Failing parameters are the ones the data cannot correct.")
    status.append(f"Fits with divergences: {int((diag['divergences'] > 0).sum())} of {len(diag)}; "
                  f"R-hat above 1.01: {int((diag['max_r_hat'] > 1.01).sum())}; median seconds per fit "
                  f"{diag['seconds'].median():.1f}.")
    return [
        Section("Status", status),
        Section("What was done", [
            f"Design '{design.name}': {design.n_la} LAs x {design.n_lsoa} LSOAs x {design.years} year(s), stages "
            f"{', '.join(design.stages)}, population scale (Poisson with exposure), non-centred group effects.",
            f"{len(diag)} replicates: parameters drawn from the '{generator}' prior set, counts simulated from "
            f"the model, refitted under '{config.prior}' with nutpie ({config.chains} chains x {config.draws} "
            f"draws after {config.tune} tuning); each true value ranked among {config.n_ranks} evenly thinned "
            f"posterior draws (rank 0..{config.n_ranks}).",
            "Reading the table: mean_rank near 0.5 and sd_rank near 0.289 are what a calibrated model gives; "
            "mean_rank above 0.5 means posteriors sit below the truth; sd_rank above 0.289 (a U shape) means "
            "they are too narrow, below it (a hump) too wide.",
        ], tables=[("Uniformity of ranks per parameter", table.round(3))]),
        Section("Rank ECDFs", ["Each panel: the ECDF of the fractional ranks minus the uniform CDF, inside its "
                               "simultaneous 95% band when calibrated."],
                figures=[("Rank ECDF differences with simultaneous 95% bands", figure)]),
    ]
