"""Gradient model benchmark: cells vs Bernoulli rows, nutpie vs PyMC NUTS, and the time the
six-la full stage model takes to pass the reporting gate.

    .venv/bin/python benchmarks/bench_gradient.py [--quick] [--skip-full]

Everything runs in one process, side by side, so ratios are comparable on a noisy machine.
ESS/s is the smallest bulk ESS over the core parameters divided by wall time (compile
included: that is what a user waits for) and by sampling time alone.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from models.areas import add_deprivation  # noqa: E402
from models.cells import population_cells, transition_cells  # noqa: E402
from models.gradient.model import GradientSpec, build_gradient_model  # noqa: E402
from models.priors import get_prior_set  # noqa: E402
from models.sampling import ConvergenceGate, SamplerSettings, convergence_table, divergences, fit  # noqa: E402
from public_data.tables import load_lsoa_table  # noqa: E402
from workflows.extract_io import load_extract  # noqa: E402
from workflows.simulate import write_simulation  # noqa: E402

CORE = ["intercept", "within_effect", "contextual_effect", "la_sd", "la_slope_sd", "lsoa_sd"]


def _row(label, idata, n_rows):
    table = convergence_table(idata, CORE)
    wall = idata.posterior.attrs["wall_seconds"]
    sampling = idata.posterior.attrs["sampling_seconds"]
    ess = float(table["ess_bulk"].min())
    return {"run": label, "rows": n_rows, "wall_s": wall, "sampling_s": sampling,
            "min_ess_bulk": ess, "ess_per_s_wall": ess / wall, "ess_per_s_sampling": ess / sampling,
            "max_r_hat": float(table["r_hat"].max()), "divergences": divergences(idata)}


def _print(rows):
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
                                for v in r.values()) + " |")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short chains (a smoke run)")
    parser.add_argument("--skip-full", action="store_true", help="skip the six-la full stage models")
    args = parser.parse_args()
    draws = 200 if args.quick else 500
    print(f"# bench_gradient ({platform.processor() or platform.machine()}, python {platform.python_version()})\n")

    with tempfile.TemporaryDirectory() as tmp:
        write_simulation(Path(tmp), "six-la", seed=11)
        lsoa_table = load_lsoa_table()
        episodes = load_extract(Path(tmp) / "extract.csv", lsoa_table, salt=b"bench")[0].episodes
    geography = add_deprivation(lsoa_table)
    prior = get_prior_set("default")

    # 1. Sufficient statistics: the same posterior from binomial cells and Bernoulli rows.
    stages = ("s47", "lac")
    cells = transition_cells(episodes, geography, stages=stages)
    rows = transition_cells(episodes, geography, stages=stages, aggregate=False)
    settings = SamplerSettings(draws=draws, tune=draws, chains=2, seed=1)
    results = []
    for label, data, spec in [("binomial cells, nutpie", cells, GradientSpec()),
                              ("Bernoulli rows, nutpie", rows, GradientSpec(likelihood="bernoulli"))]:
        idata = fit(build_gradient_model(data, spec, prior), settings)
        results.append(_row(label, idata, len(data)))
        post = idata.posterior["within_effect"]
        print(f"{label}: within effect {post.mean(('chain', 'draw')).round(3).to_dict()['data']}", flush=True)
    print(f"\n## 1. Cells vs rows (six-la, s47 and LAC transitions, 2 chains x {draws})\n")
    _print(results)
    speedup = results[0]["ess_per_s_wall"] / results[1]["ess_per_s_wall"]
    print(f"cells / rows ESS per second (wall): {speedup:.1f}x\n")

    # 2. Samplers on the same cells model.
    results = [results[0]]
    idata = fit(build_gradient_model(cells, GradientSpec(), prior),
                SamplerSettings(sampler="pymc", draws=draws, tune=draws, chains=2, cores=2, seed=1))
    results.append(_row("binomial cells, PyMC NUTS", idata, len(cells)))
    print(f"## 2. nutpie vs PyMC NUTS (same cells, 2 chains x {draws})\n")
    _print(results)
    print(f"nutpie / PyMC ESS per second (wall): {results[0]['ess_per_s_wall'] / results[1]['ess_per_s_wall']:.1f}x; "
          f"(sampling only): {results[0]['ess_per_s_sampling'] / results[1]['ess_per_s_sampling']:.1f}x\n")

    if args.skip_full:
        return
    # 3. The full stage models under the reporting gate.
    gate = ConvergenceGate()
    full = SamplerSettings(draws=2000, tune=1000, chains=4, seed=1, target_accept=0.95)
    print("## 3. six-la full stage models, 4 chains x 2000 draws (target accept 0.95), reporting gate "
          f"(R-hat <= {gate.max_r_hat}, bulk/tail ESS >= {gate.min_ess_bulk:g}, no divergences)\n")
    out = []
    for label, data, spec in [
        ("population scale, 6 stages", population_cells(episodes, geography), GradientSpec(scale="population")),
        ("transition scale, 5 stages", transition_cells(episodes, geography), GradientSpec()),
    ]:
        started = time.perf_counter()
        idata = fit(build_gradient_model(data, spec, prior), full)
        every = [v for v in idata.posterior.data_vars]  # every parameter, not only the core
        result = gate.check(idata, every)
        out.append({"model": label, "cells": len(data), "wall_s": round(time.perf_counter() - started, 1),
                    "max_r_hat": result["max_r_hat"], "min_ess_bulk": result["min_ess_bulk"],
                    "min_ess_tail": result["min_ess_tail"], "divergences": result["divergences"],
                    "passed": result["passed"]})
        print(out[-1], flush=True)
    print()
    _print(out)
    np.set_printoptions(precision=3)


if __name__ == "__main__":
    main()
