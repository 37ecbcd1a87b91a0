"""Joint model benchmark: its cost against the separate models (latent class, then the
gradient model on modal classes) on the same data, in one run.

    .venv/bin/python benchmarks/bench_joint.py [--quick] [--episodes 20000]

Data: :func:`models.joint.simulate.simulate_joint` on the six-la truth (four classes,
eleven signature factors, Complex Needs II at 20%).  Wall time includes compilation (what a
user waits for); ESS/s is the smallest bulk ESS over each model's core parameters divided
by wall time.  Alongside: how many true class intercepts and slope contrasts each approach's
90% intervals cover, and the intervals' mean width.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from models.areas import add_deprivation  # noqa: E402
from models.joint import effects  # noqa: E402
from models.joint.data import joint_data  # noqa: E402
from models.joint.fit import CORE, fit_joint  # noqa: E402
from models.joint.model import JointSpec  # noqa: E402
from models.joint.simulate import simulate_joint  # noqa: E402
from models.joint.threestep import three_step  # noqa: E402
from models.sampling import SamplerSettings, convergence_table, divergences  # noqa: E402
from models.simulation.presets import get_preset  # noqa: E402
from models.simulation.truth import draw_truth  # noqa: E402
from public_data.tables import load_factor_prevalence, load_lsoa_table  # noqa: E402

CLASSES = ("neglect", "domestic_violence", "complex_needs_2", "out_of_control")
FACTORS = ["alcohol_parent", "drugs_parent", "domestic_abuse_parent", "mental_health_parent",
           "going_missing", "socially_unacceptable_behaviour", "self_harm", "neglect",
           "emotional_abuse", "mental_health_child", "domestic_abuse_person"]
PREVALENCE = {"neglect": .3, "domestic_violence": .25, "complex_needs_2": .2, "out_of_control": .25}
GRADIENT_CORE = ["intercept", "within_effect", "contextual_effect", "demand_class_effect",
                 "demand_class_gradient_shift", "la_sd", "la_slope_sd", "lsoa_sd"]


def _row(label, idata, var_names, wall=None):
    table = convergence_table(idata, var_names)
    wall = float(wall if wall is not None else idata.posterior.attrs["wall_seconds"])
    ess = float(table["ess_bulk"].min())
    return {"run": label, "wall_s": round(wall, 1),
            "sampling_s": round(float(idata.posterior.attrs.get("sampling_seconds", np.nan)), 1),
            "min_ess_bulk": round(ess), "ess_per_s_wall": round(ess / wall, 3),
            "max_r_hat": round(float(table["r_hat"].max()), 3), "divergences": divergences(idata)}


def _coverage(post: xr.Dataset, truth: dict, prob: float = 0.9) -> dict:
    q = [(1 - prob) / 2, 1 - (1 - prob) / 2]
    hit, width, n = 0, 0.0, 0
    for s in post["stage"].values:
        for c in CLASSES:
            lo, hi = np.quantile(post["class_intercept"].sel(stage=s, **{"class": c}).to_numpy().ravel(), q)
            hit += lo <= truth["intercept"][s][c] <= hi
            width += hi - lo
            n += 1
    contrast = effects.slope_contrasts(post, "domestic_violence").sel(stage="s47")
    c_hit = 0
    for c in CLASSES:
        if c == "domestic_violence":
            continue
        lo, hi = np.quantile(contrast.sel({"class": c}).to_numpy().ravel(), q)
        c_hit += lo <= truth["slope_shift"][c] - truth["slope_shift"]["domestic_violence"] <= hi
    return {"intercepts_covered": f"{hit}/{n}", "intercept_width": round(width / n, 3),
            "slope_contrasts_covered": f"{c_hit}/3",
            "p_steepest": round(float(effects.steepest(post).sel(stage="s47")), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short chains (a smoke run)")
    parser.add_argument("--episodes", type=int, default=20000)
    args = parser.parse_args()
    draws = 200 if args.quick else 500
    print(f"# bench_joint ({platform.processor() or platform.machine()}, python {platform.python_version()})\n")
    geo = add_deprivation(load_lsoa_table())
    share = load_factor_prevalence().set_index("factor")["share"]
    truth = draw_truth(get_preset("six-la"), geo, share, 11)
    sim = simulate_joint(truth, geo, CLASSES, args.episodes, factors=FACTORS, lsoa_per_la=5,
                         prevalence=PREVALENCE, seed=1)
    data = joint_data(sim.episodes, sim.factors)
    print(f"data: {data.summary()}\n", flush=True)
    reference = xr.DataArray([[sim.truth["profiles"][c][f] for f in data.patterns.factors] for c in CLASSES],
                             dims=("class", "factor"), coords={"class": list(CLASSES)})
    settings = SamplerSettings(draws=draws, tune=draws, chains=2, seed=1)

    started = time.perf_counter()
    joint = fit_joint(data, JointSpec(len(CLASSES)), settings, n_starts=10, reference=reference)
    joint_wall = time.perf_counter() - started
    started = time.perf_counter()
    three = three_step(data, len(CLASSES), settings, n_starts=10, reference=reference)
    three_wall = time.perf_counter() - started

    rows = [_row("joint model (EM starts + MCMC + alignment)", joint.idata, CORE, joint_wall),
            _row("  step 1: latent class model", three.latent_class.idata, ["class_weight", "item_prob"]),
            _row("  step 3: gradient model on modal classes", three.idata, GRADIENT_CORE),
            {"run": "three-step total", "wall_s": round(three_wall, 1)}]
    print(f"## Cost, 2 chains x {draws} draws (+{draws} tuning)\n")
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    print(f"\njoint / three-step wall time: {joint_wall / three_wall:.2f}x\n")
    print("## Against the truth (90% intervals)\n")
    print("joint:", _coverage(joint.idata.posterior, sim.truth))
    print("three-step:", _coverage(three.class_parameters(), sim.truth), flush=True)


if __name__ == "__main__":
    main()
