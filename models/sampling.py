"""Fitting and convergence checks shared by every model.

nutpie is the default sampler (compiled with numba: far faster per effective sample on
these models), PyMC's own NUTS the fallback, NumPyro selectable for a GPU (needs JAX).
Every fit returns ArviZ InferenceData; :func:`convergence_table` gives the R-hat, bulk
and tail ESS and divergences that every reported quantity must carry.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
from threadpoolctl import threadpool_limits

SAMPLERS = ("nutpie", "pymc", "numpyro")
MASS_MATRICES = ("diag", "low_rank")


@dataclass(frozen=True)
class SamplerSettings:
    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    cores: int | None = None
    target_accept: float = 0.9
    seed: int = 1
    progressbar: bool = False
    #: "diag" (every sampler) or "low_rank" (nutpie's low-rank modified mass matrix, which
    #: learns the strongest posterior correlations during tuning; measured against "diag"
    #: in benchmarks/bench_system.py).
    mass_matrix: str = "diag"

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.mass_matrix not in MASS_MATRICES:
            raise ValueError(f"unknown mass_matrix {self.mass_matrix!r}; choose one of {', '.join(MASS_MATRICES)}")
        if self.mass_matrix == "low_rank" and self.sampler != "nutpie":
            raise ValueError(f"mass_matrix 'low_rank' needs the nutpie sampler, not {self.sampler!r}")
        if self.draws < 1 or self.tune < 0 or self.chains < 1:
            raise ValueError(f"draws {self.draws}, tune {self.tune}, chains {self.chains}: draws and chains "
                             "must be >= 1 and tune >= 0")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed {self.seed}: expected a whole number from 0 to 2**32 - 1")


def sampler_available(name: str) -> bool:
    module = {"nutpie": "nutpie", "pymc": "pymc", "numpyro": "numpyro"}[name]
    return importlib.util.find_spec(module) is not None


def one_blas_thread():
    """BLAS limited to one thread while a fit runs.

    nutpie runs its chains on threads of its own, and the compiled log density calls BLAS
    for every matrix product (latent class and joint models); with OpenBLAS's own threads on
    top, the two fight over the cores: the K = 7 latent class recovery fit sampled in 109 s
    with the default BLAS threads and 20 s with one (2 chains on 2 cores; benchmarks/RESULTS.md).
    """
    return threadpool_limits(1, user_api="blas")


def fit(model: pm.Model, settings: SamplerSettings, log_likelihood: bool = False) -> az.InferenceData:
    """Sample the posterior of ``model``; ``log_likelihood=True`` stores it for LOO."""
    if not sampler_available(settings.sampler):
        raise RuntimeError(f"sampler {settings.sampler!r} is not installed"
                           + (" (pip install numpyro jax)" if settings.sampler == "numpyro" else ""))
    kwargs = dict(draws=settings.draws, tune=settings.tune, chains=settings.chains,
                  random_seed=settings.seed, progressbar=settings.progressbar,
                  target_accept=settings.target_accept)
    if settings.cores is not None:
        kwargs["cores"] = settings.cores
    if settings.mass_matrix == "low_rank":
        kwargs["nuts_sampler_kwargs"] = {"low_rank_modified_mass_matrix": True}
    started = time.perf_counter()
    with model, one_blas_thread():
        if settings.sampler == "pymc":
            idata = pm.sample(**kwargs)
        else:
            idata = pm.sample(nuts_sampler=settings.sampler, **kwargs)
        # nutpie ignores idata_kwargs, so the pointwise log-likelihood is computed after.
        if log_likelihood:
            pm.compute_log_likelihood(idata, model=model, progressbar=False)
    wall = time.perf_counter() - started
    sampling = float(idata.posterior.attrs.get("sampling_time", np.nan))
    # Compile time (numba for nutpie) dominates small fits: keep the two apart.
    idata.posterior.attrs.update(sampler=settings.sampler, wall_seconds=round(wall, 3),
                                 sampling_seconds=round(sampling, 3))
    return idata


def divergences(idata: az.InferenceData) -> int:
    stats = idata.sample_stats
    name = "diverging" if "diverging" in stats else None
    return int(stats[name].sum()) if name else 0


def convergence_table(idata: az.InferenceData, var_names: list[str]) -> pd.DataFrame:
    """R-hat, bulk and tail ESS per scalar quantity, labelled by its coordinates.

    Structural constants (the zero of a reference level: the same value in every draw of
    every chain) have no diagnostics and are left out; anything else that varies is in.
    """
    present = [v for v in var_names if v in idata.posterior]
    post = idata.posterior[present]
    varying = {v: post[v].std(("chain", "draw")) > 0 for v in present}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # r-hat of the constants: 0/0
        # Unrounded: ArviZ rounds to 2 decimals by default, which let R-hat 1.0149 pass 1.01.
        table = az.summary(idata, var_names=present, kind="diagnostics", round_to="none")
    keep = np.concatenate([np.atleast_1d(varying[v].to_numpy()).ravel() for v in present])
    return table.loc[keep, ["r_hat", "ess_bulk", "ess_tail"]]


#: Dimensions indexed by case-level units: their labels (LSOA codes, ...) never leave a fit.
CASE_LEVEL_DIMS = ("lsoa", "cell", "pattern", "episode", "child", "row", "obs")


def _public_label(idata: az.InferenceData, label: str) -> str:
    """``label`` (``name[coords]``) with the coordinates dropped where the variable is indexed
    by a case-level unit (an LSOA code is not for a manifest)."""
    name = str(label).split("[", 1)[0]
    dims = idata.posterior[name].dims if name in idata.posterior else ()
    return name if any(part in str(d) for d in dims for part in CASE_LEVEL_DIMS) else str(label)


@dataclass(frozen=True)
class ConvergenceGate:
    """Thresholds a result must meet before it is reported as citable."""

    max_r_hat: float = 1.01
    min_ess_bulk: float = 400
    min_ess_tail: float = 400
    max_divergences: int = 0

    def check(self, idata: az.InferenceData, var_names: list[str]) -> dict:
        table = convergence_table(idata, var_names)
        div = divergences(idata)
        worst = {
            "max_r_hat": float(table["r_hat"].max()),
            "min_ess_bulk": float(table["ess_bulk"].min()),
            "min_ess_tail": float(table["ess_tail"].min()),
            "divergences": div,
            # Which quantity held each figure down: what a user needs to act on a failed gate.
            "worst_r_hat": _public_label(idata, table["r_hat"].idxmax()) if len(table) else "",
            "worst_ess_bulk": _public_label(idata, table["ess_bulk"].idxmin()) if len(table) else "",
            "worst_ess_tail": _public_label(idata, table["ess_tail"].idxmin()) if len(table) else "",
        }
        worst["passed"] = bool(
            worst["max_r_hat"] <= self.max_r_hat and worst["min_ess_bulk"] >= self.min_ess_bulk
            and worst["min_ess_tail"] >= self.min_ess_tail and div <= self.max_divergences)
        return worst


def interval(samples: np.ndarray, prob: float = 0.9) -> tuple[float, float]:
    """Equal-tailed credible interval."""
    lo, hi = np.quantile(samples, [(1 - prob) / 2, 1 - (1 - prob) / 2])
    return float(lo), float(hi)
