"""System models on the real LA panel: how the year effects are parameterised and which mass
matrix nutpie adapts, side by side in one run.

    .venv/bin/python benchmarks/bench_system.py [--model gradient] [--draws 400] [--chains 2]

Data: the committed LA x year panel (data/panel/la_panel.csv), 2010-2025, every LA.  For
each variant (year effects centred or non-centred x diagonal or low-rank mass matrix) the
same model is fitted with the same seed; printed: wall time (including numba compilation),
mean leapfrog steps per draw, the smallest bulk and tail ESS over the convergence gate's
parameters, ESS per second, and the ratio of each variant's ESS/s to the first variant's
(the old default: non-centred, diagonal).  Ratios, because this machine is noisy.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from models.sampling import SamplerSettings, convergence_table, divergences, fit  # noqa: E402
from models.system import conditions, data as sysdata, gradient, trends  # noqa: E402
from models.system.components import get_priors  # noqa: E402
from public_data.panel import load_panel  # noqa: E402

MODELS = {
    "gradient": (gradient.LAGradientSpec, gradient.build_la_gradient_model, gradient.GATE_VARS),
    "trends": (trends.TrendSpec, trends.build_trend_model, trends.GATE_VARS),
    "conditions": (lambda **kw: conditions.ConditionsSpec(
        outcomes=("nfa", "spend", "caseload", "agency", "turnover", "vacancy"), **kw),
        conditions.build_conditions_model, conditions.GATE_VARS),
}
VARIANTS = [(False, "diag"), (True, "diag"), (False, "low_rank"), (True, "low_rank")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="gradient")
    parser.add_argument("--draws", type=int, default=400, help="draws (and tuning steps) per chain")
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stages", nargs="+", default=None,
                        help="gradient/trend model stages (default: the model's own), e.g. add icpc")
    args = parser.parse_args(argv)

    panel = sysdata.select(load_panel().query("2010 <= year <= 2025"))
    make_spec, build, gate_vars = MODELS[args.model]
    priors = get_priors("default")
    stages = f", stages {' '.join(args.stages)}" if args.stages else ""
    print(f"# {args.model} model{stages}, real panel: {panel['la_code'].nunique()} LAs x {panel['year'].nunique()} years; "
          f"{args.chains} chains x {args.draws} draws (+{args.draws} tuning), seed {args.seed}; "
          f"python {platform.python_version()}, {platform.machine()}")
    extra = {"stages": tuple(args.stages)} if args.stages else {}
    rows = []
    for year_centred, mass_matrix in VARIANTS:
        model = build(panel, make_spec(year_centred=year_centred, **extra), priors)
        settings = SamplerSettings(draws=args.draws, tune=args.draws, chains=args.chains, seed=args.seed,
                                   mass_matrix=mass_matrix)
        started = time.perf_counter()
        idata = fit(model, settings)
        wall = time.perf_counter() - started
        table = convergence_table(idata, list(gate_vars))
        worst = table["ess_bulk"].idxmin()
        rows.append({"year effects": "centred" if year_centred else "non-centred", "mass matrix": mass_matrix,
                     "wall_s": round(wall, 1),
                     "steps/draw": round(float(idata.sample_stats["n_steps"].mean()), 1),
                     "min_bulk_ess": round(float(table["ess_bulk"].min())),
                     "min_tail_ess": round(float(table["ess_tail"].min())),
                     "max_r_hat": round(float(table["r_hat"].max()), 3),
                     "divergences": divergences(idata), "worst": worst})
        print(f"  done: {rows[-1]}", flush=True)
    frame = pd.DataFrame(rows)
    frame["bulk_ess/s"] = (frame["min_bulk_ess"] / frame["wall_s"]).round(2)
    frame["vs first"] = (frame["bulk_ess/s"] / frame["bulk_ess/s"].iloc[0]).round(2)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
