"""Likelihood forms side by side: time per log-density-and-gradient evaluation (numba, the
backend nutpie samples with), PyMC's form against a cheaper one.

    .venv/bin/python benchmarks/bench_likelihood.py [--repeats 300] [--blas]

- binomial cells of the six-la transition fit (about 57,000 cells): ``pm.Binomial(logit_p)``
  vs ``k eta - n softplus(eta) + log C(n, k)`` (one softplus per cell), the likelihood alone
  and inside the whole gradient model;
- the joint model's path term (pair x stage x class logits): two softplus terms vs one;
- the latent class pattern term (patterns x factors x classes): ``y log p + (1 - y)
  log(1 - p)`` as two matrix products vs one (``pattern_class_loglik``, in use).

The one-softplus binomial forms are NOT in use: equal to rounding wherever PyMC's is finite,
they still made the short recovery fits sample worse (benchmarks/RESULTS.md, 2026-12-08).

``--blas`` adds whole fits: the K = 7 latent class model on 15,000 six-la assessed episodes
(2 chains, nutpie), sampled with OpenBLAS's default threads and with one
(``models.sampling.one_blas_thread``), alternating, from one compiled model.

The forms alternate within each repeat block, so a noisy machine slows both alike; the
ratio is the figure to read.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflows import runtime  # noqa: E402

runtime.link_blas()  # before PyTensor loads (as the CLI does)

import numpy as np  # noqa: E402
import nutpie  # noqa: E402
import pandas as pd  # noqa: E402
import pymc as pm  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402
from pymc.distributions.dist_math import binomln  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from models.areas import add_deprivation  # noqa: E402
from models.cells import transition_cells  # noqa: E402
from models.gradient.model import GradientSpec, build_gradient_model  # noqa: E402
from models.latent_class.em import fit_em  # noqa: E402
from models.latent_class.model import build_model, pattern_class_loglik  # noqa: E402
from models.latent_class.patterns import collapse  # noqa: E402
from models.priors import get_prior_set  # noqa: E402
from models.vocabulary import FACTOR_NAMES  # noqa: E402
from public_data.tables import load_lsoa_table  # noqa: E402
from workflows.extract_io import load_extract  # noqa: E402
from workflows.simulate import write_simulation  # noqa: E402


def _logp_grad(model: pm.Model):
    """The model's joint log density and its gradient as one numba-compiled function."""
    logp = model.logp()
    fn = pytensor.function(model.value_vars, [logp, *pt.grad(logp, model.value_vars)], mode="NUMBA")
    point = model.initial_point()
    args = [point[v.name] for v in model.value_vars]
    return lambda: fn(*args)


def _expression(inputs, values, expr):
    fn = pytensor.function(inputs, [expr, *pt.grad(expr, inputs)], mode="NUMBA")
    return lambda: fn(*values)


def _time(fns: dict, repeats: int) -> dict:
    for f in fns.values():
        f()  # compile and warm
    total = dict.fromkeys(fns, 0.0)
    for _ in range(10):
        for name, f in fns.items():
            start = time.perf_counter()
            for _ in range(max(repeats // 10, 1)):
                f()
            total[name] += time.perf_counter() - start
    return {k: 1000 * v / (10 * max(repeats // 10, 1)) for k, v in total.items()}


def _report(title, times):
    (old, t_old), (new, t_new) = times.items()
    print(f"| {title} | {old}: {t_old:.3f} | {new}: {t_new:.3f} | {t_old / t_new:.2f} |", flush=True)


_BINOMIAL = pm.Binomial  # before the whole-model comparison swaps it


def logit_binomial_loglik(successes, trials, eta):
    return successes * eta - trials * pt.softplus(eta)


def LogitBinomial(name, trials, eta, **kwargs):
    """Binomial(trials, sigmoid(eta)) with one softplus per cell."""
    return pm.CustomDist(name, trials, eta, dist=lambda n, e, size: _BINOMIAL.dist(n=n, logit_p=e, size=size),
                         logp=lambda k, n, e: binomln(n, k) + logit_binomial_loglik(k, n, e), dtype="int64",
                         **kwargs)


def _binomial_model(cells, ours: bool):
    n, k = cells["trials"].to_numpy("int64"), cells["successes"].to_numpy("int64")
    with pm.Model() as model:
        eta = pm.Normal("eta", -1.0, 1.5, shape=len(cells))
        if ours:
            LogitBinomial("y", n, eta, observed=k)
        else:
            pm.Binomial("y", n=n, logit_p=eta, observed=k)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--blas", action="store_true", help="also time latent class fits by BLAS threads")
    parser.add_argument("--draws", type=int, default=300, help="draws (and tuning steps) of the --blas fits")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        write_simulation(Path(tmp), "six-la", 11)
        extract, _ = load_extract(Path(tmp) / "extract.csv", load_lsoa_table(), salt=b"bench")
        te = pd.read_csv(Path(tmp) / "truth_episodes.csv").set_index("episode_id")
    if args.blas:
        _blas_threads(extract, args.draws)
    classes = te.loc[extract.episodes["episode_id"], "demand_class"].reset_index(drop=True)
    cells = transition_cells(extract.episodes, add_deprivation(load_lsoa_table()), classes=classes)
    print(f"six-la transition cells: {len(cells):,}; ms per log density + gradient (numba)\n")
    print("| term | PyMC's form, ms | alternative, ms | ratio |\n|---|---|---|---:|")
    _report("binomial likelihood alone", _time({"pm.Binomial": _logp_grad(_binomial_model(cells, False)),
                                                 "LogitBinomial": _logp_grad(_binomial_model(cells, True))},
                                                args.repeats))

    spec = GradientSpec(scale="transition", covariates=("demand_class",))
    old_model = build_gradient_model(cells, spec, get_prior_set("default"))
    pm.Binomial = lambda name, n, logit_p, **kw: LogitBinomial(name, n, logit_p, **kw)  # what the model builds
    try:
        new_model = build_gradient_model(cells, spec, get_prior_set("default"))
    finally:
        pm.Binomial = _BINOMIAL
    _report("whole transition model", _time({"pm.Binomial": _logp_grad(old_model),
                                              "LogitBinomial": _logp_grad(new_model)}, args.repeats))

    # Joint path term at the joint config's size: pairs x 4 stages x 7 classes.
    n_pair, n_stage, n_class = 20000, 4, 7
    reached = (rng.random((n_pair, n_stage)) < 0.4).astype(float)
    at_risk = np.cumprod(np.c_[np.ones(n_pair), reached[:, :-1]], axis=1)
    success, failure = at_risk * reached, at_risk * (1 - reached)
    e = pt.tensor3("eta")
    eta = rng.normal(-1, 1.5, (n_pair, n_stage, n_class))
    two = pt.sum(success[:, :, None] * -pt.softplus(-e) + failure[:, :, None] * -pt.softplus(e))
    one = pt.sum(logit_binomial_loglik(success[:, :, None], at_risk[:, :, None], e))
    _report(f"joint path term ({n_pair:,} pairs x {n_stage} stages x {n_class} classes)",
            _time({"two softplus": _expression([e], [eta], two), "one softplus": _expression([e], [eta], one)},
                  args.repeats))

    # Latent class pattern term: 5,000 patterns x 39 factors x 7 classes.
    y = (rng.random((5000, 39)) < 0.2).astype(float)
    p = pt.matrix("p")
    prof = rng.uniform(0.05, 0.95, (7, 39))
    two_dots = pt.sum(pm.math.logsumexp(pt.dot(y, pt.log(p).T) + pt.dot(1.0 - y, pt.log1p(-p).T), axis=1))
    one_dot = pt.sum(pm.math.logsumexp(pattern_class_loglik(y, p), axis=1))
    _report("latent class patterns (5,000 x 39 factors x 7 classes)",
            _time({"two products": _expression([p], [prof], two_dots),
                   "one product": _expression([p], [prof], one_dot)}, args.repeats))


def _blas_threads(extract, draws: int) -> None:
    assessed = np.flatnonzero(extract.episodes["assessment"].to_numpy().astype(bool))
    sel = np.sort(np.random.default_rng(7).choice(assessed, 15000, replace=False))
    patterns = collapse(extract.factors.iloc[sel][list(FACTOR_NAMES)])
    compiled = nutpie.compile_pymc_model(build_model(patterns, 7, initial=fit_em(patterns, 7, n_starts=5)))
    default = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    print(f"K = 7 latent class, {patterns.n_patterns:,} patterns, 2 chains x {draws} draws (+{draws} tuning); "
          f"sampling seconds by BLAS threads\n\n| BLAS threads | run 1 | run 2 |\n|---|---:|---:|")
    times = {default: [], 1: []}
    for _ in range(2):
        for threads in times:
            with threadpool_limits(threads, user_api="blas"):
                start = time.perf_counter()
                nutpie.sample(compiled, draws=draws, tune=draws, chains=2, seed=5, progress_bar=False)
                times[threads].append(time.perf_counter() - start)
    for threads, t in times.items():
        print(f"| {threads} | {t[0]:.1f} | {t[1]:.1f} |")
    print(flush=True)


if __name__ == "__main__":
    main()
