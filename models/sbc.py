"""Simulation-based calibration (SBC) of the social gradient model.

Talts et al. (2018): draw parameters from the prior, simulate data from the model's own
generative process, refit, and record the rank of each true value among (thinned)
posterior draws.  If the sampler and the model code are right, every rank is uniform on
0..L; a skew says the posterior is biased, a U shape that it is overconfident, a hump
that it is too wide.  A check that can fail: generate under one prior and fit under
another (or another likelihood) and the ranks leave their band (``tests/test_sbc.py``).

The designs are small synthetic cells tables (a few LAs and LSOAs on an even
deprivation grid), not the real geography: SBC needs hundreds of fits.  The fitted model
is compiled once per process with its observed counts in a shared variable, and each
replicate only swaps the data in (nutpie ``with_data``), so a replicate costs its
sampling time, not a numba compile.  Replicates go through ``map_fn`` (the workflow
passes a Dask fan-out); the model code never reads files or prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
from scipy import stats

from models.gradient.model import GradientSpec, build_gradient_model
from models.priors import PriorSet, get_prior_set
from models.sampling import SamplerSettings, one_blas_thread
from models.sensitivity import top_level_priors

OBSERVED = "sbc_observed"  # the shared variable the replicate's counts are swapped into


@dataclass(frozen=True)
class SBCDesign:
    """A synthetic population-scale design: ``n_la`` LAs x ``n_lsoa`` LSOAs x ``years``.

    LA mean deprivation spans ``between_range`` and LSOA deprivation within an LA spans
    ``within_range`` (decile units), evenly; every LSOA-year has ``children`` child-years.
    ``base_rates`` (per child-year, one per stage) set the placeholder counts, and so the
    data-driven centre of each intercept prior: fixed for every replicate, as SBC needs.
    """

    name: str
    n_la: int
    n_lsoa: int
    years: int = 1
    stages: tuple[str, ...] = ("referral",)
    base_rates: tuple[float, ...] = (0.03,)
    children: float = 500.0
    between_range: tuple[float, float] = (-1.5, 1.5)
    within_range: tuple[float, float] = (-2.5, 2.5)
    #: Non-centred everywhere: prior draws give weak and strong groups alike, and the
    #: non-centred form is the safe default across both.
    spec: GradientSpec = field(default_factory=lambda: GradientSpec(scale="population", centred=()))

    def __post_init__(self):
        if len(self.base_rates) != len(self.stages):
            raise ValueError(f"design {self.name!r}: one base rate per stage ({len(self.stages)}), "
                             f"got {len(self.base_rates)}")
        if self.n_la < 2 or self.n_lsoa < 2:
            raise ValueError(f"design {self.name!r}: needs at least 2 LAs and 2 LSOAs per LA")


DESIGNS: dict[str, SBCDesign] = {
    # seconds per replicate: for tests and a first look
    "tiny": SBCDesign("tiny", n_la=4, n_lsoa=6),
    # two stages and two years: year effects and stage-specific SDs enter
    "small": SBCDesign("small", n_la=6, n_lsoa=8, years=2, stages=("referral", "cpp"),
                       base_rates=(0.03, 0.004), children=800.0),
}


def get_design(name: str) -> SBCDesign:
    try:
        return DESIGNS[name]
    except KeyError:
        raise KeyError(f"unknown SBC preset {name!r}; choose one of {', '.join(DESIGNS)}") from None


def design_cells(design: SBCDesign) -> pd.DataFrame:
    """The design's cells (population scale) with placeholder counts at the base rates."""
    rows = []
    lo_b, hi_b = design.between_range
    lo_w, hi_w = design.within_range
    for i in range(design.n_la):
        la = f"LA{i + 1:02d}"
        between = lo_b + (hi_b - lo_b) * i / (design.n_la - 1)
        for k in range(design.n_lsoa):
            within = lo_w + (hi_w - lo_w) * k / (design.n_lsoa - 1)
            for year in range(2020, 2020 + design.years):
                for stage, rate in zip(design.stages, design.base_rates):
                    rows.append({"stage": stage, "la_code": la, "lsoa_code": f"{la}-{k + 1:02d}", "year": year,
                                 "dep_within": within, "dep_between": between, "idaci_decile": 5,
                                 "exposure": design.children,
                                 "count": int(round(design.children * rate * np.exp(0.26 * within)))})
    cells = pd.DataFrame(rows)
    cells["stage"] = pd.Categorical(cells["stage"], categories=list(design.stages))
    return cells


def build_model(design: SBCDesign, prior: str | PriorSet, spec: GradientSpec | None = None) -> pm.Model:
    """The gradient model on the design (placeholder counts observed); ``prior`` is a set's
    name or a :class:`PriorSet` (e.g. a deliberately different one, to see SBC fail)."""
    priors = get_prior_set(prior) if isinstance(prior, str) else prior
    return build_gradient_model(design_cells(design), spec or design.spec, priors)


def observed_name(spec: GradientSpec) -> str:
    return "successes" if spec.scale == "transition" else "count"


def parameter_names(model: pm.Model) -> list[str]:
    """What SBC ranks: the top-level parameters (intercepts, effects, SDs)."""
    return top_level_priors(model)


def _flatten(draws, names: list[str]) -> dict[str, np.ndarray]:
    """``{"var[label, ...]": values over the leading sample axis}`` from a Dataset."""
    out = {}
    for v in names:
        da = draws[v]
        extra = [d for d in da.dims if d not in ("chain", "draw", "sample")]
        arr = da.transpose(*[d for d in da.dims if d not in extra], *extra).to_numpy()
        arr = arr.reshape(-1, *arr.shape[da.ndim - len(extra):]) if extra else arr.reshape(-1)
        if not extra:
            out[v] = arr
            continue
        for idx in np.ndindex(*arr.shape[1:]):
            label = ", ".join(str(da[d].values[i]) for d, i in zip(extra, idx))
            out[f"{v}[{label}]"] = arr[(slice(None), *idx)]
    return out


def prior_replicates(design: SBCDesign, prior: str | PriorSet, n: int, seed: int,
                     spec: GradientSpec | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``n`` draws of the parameters from ``prior`` and data simulated from each.

    Returns (truth: parameter label -> n values, observed: n x cells counts).
    """
    model = build_model(design, prior, spec)
    with model:
        draws = pm.sample_prior_predictive(draws=n, random_seed=seed)
    truth = _flatten(draws.prior, parameter_names(model))
    name = observed_name(spec or design.spec)
    observed = draws.prior_predictive[name].to_numpy().reshape(n, -1)
    return truth, observed


@dataclass(frozen=True)
class Replicate:
    """One SBC fit: its data, its true values and how to fit it (all picklable)."""

    index: int
    observed: np.ndarray
    truth: dict
    design: SBCDesign
    prior: str | PriorSet
    settings: SamplerSettings
    n_ranks: int = 99
    spec: GradientSpec | None = None

    @property
    def name(self) -> str:
        return f"replicate {self.index}"


_COMPILED: dict = {}  # per process: (design, prior, spec) -> (nutpie compiled model, labels)


def _compiled(design: SBCDesign, prior: str | PriorSet, spec: GradientSpec | None):
    key = (repr(design), prior, repr(spec))
    if key not in _COMPILED:
        import nutpie

        model = build_model(design, prior, spec)
        name = observed_name(spec or design.spec)
        shared = pytensor.shared(design_cells(design)[name].to_numpy("int64"), name=OBSERVED)
        observed_model = pm.observe(model, {name: shared})
        _COMPILED[key] = (nutpie.compile_pymc_model(observed_model), parameter_names(model))
    return _COMPILED[key]


def rank_of(truth: float, draws: np.ndarray, rng: np.random.Generator) -> int:
    """How many draws lie below the true value (ties broken at random): 0..len(draws)."""
    below = int(np.sum(draws < truth))
    ties = int(np.sum(draws == truth))
    return below + (int(rng.integers(0, ties + 1)) if ties else 0)


def fit_replicate(rep: Replicate) -> dict:
    """Fit one replicate and rank its true values among ``n_ranks`` thinned draws."""
    import arviz as az
    import nutpie

    compiled, names = _compiled(rep.design, rep.prior, rep.spec)
    started = time.perf_counter()
    s = rep.settings
    seed = s.seed * 100_003 + rep.index
    with one_blas_thread():
        idata = nutpie.sample(compiled.with_data(**{OBSERVED: np.asarray(rep.observed, dtype="int64")}),
                              draws=s.draws, tune=s.tune, chains=s.chains, seed=seed, progress_bar=False,
                              target_accept=s.target_accept, save_warmup=False)
    post = idata.posterior.stack(sample=("chain", "draw"))
    total = post.sizes["sample"]
    if total < rep.n_ranks:
        raise ValueError(f"{total} posterior draws cannot give {rep.n_ranks} ranks; draw more")
    keep = np.linspace(0, total - 1, rep.n_ranks).round().astype(int)
    flat = _flatten(post.isel(sample=keep), names)
    rng = np.random.default_rng(seed)
    ranks = {label: rank_of(float(rep.truth[label]), flat[label], rng) for label in rep.truth}
    diag = az.summary(idata, var_names=names, kind="diagnostics")
    return {"replicate": rep.index, "ranks": ranks,
            "divergences": int(idata.sample_stats["diverging"].sum()),
            "max_r_hat": float(diag["r_hat"].max()), "min_ess_bulk": float(diag["ess_bulk"].min()),
            "seconds": round(time.perf_counter() - started, 3)}


def uniformity(ranks: pd.DataFrame, n_ranks: int, prob: float = 0.95, alpha: float = 0.01) -> pd.DataFrame:
    """Per parameter: are its ranks (0..n_ranks) uniform?

    ``chi2``/``p_value``: Pearson's test on equal-width bins (about 5 expected per bin, at
    most 20 bins); ``mean_rank`` and ``sd_rank`` of the fractional ranks (uniform: 0.5 and
    0.289: above 0.5 the posterior sits below the truth; an SD above 0.289 is a U shape,
    an overconfident posterior); ``outside_band``: the rank ECDF leaves its simultaneous
    ``prob`` band (Säilynoja et al. 2022).  ``calibrated`` is false when either test fails
    (p below ``alpha`` or outside the band).
    """
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    n = len(ranks)
    bins = int(np.clip(n // 5, 2, min(20, n_ranks + 1)))
    edges = np.linspace(0, n_ranks + 1, bins + 1)
    z = np.arange(1, n_ranks + 1) / (n_ranks + 1)
    lower, upper = ecdf_confidence_band(n, z, z, prob=prob, method="optimized")
    rows = []
    for label in ranks.columns:
        r = ranks[label].to_numpy(float)
        counts, _ = np.histogram(r, bins=edges)
        chi2, p = stats.chisquare(counts)
        u = (r + 1) / (n_ranks + 1)  # P(u <= k/(L+1)) = k/(L+1) under uniform ranks
        ecdf = (u[None, :] <= z[:, None] + 1e-12).mean(axis=1)
        outside = bool(np.any((ecdf < lower - 1e-12) | (ecdf > upper + 1e-12)))
        frac = (r + 0.5) / (n_ranks + 1)
        rows.append({"parameter": label, "replicates": n, "bins": bins, "chi2": float(chi2),
                     "p_value": float(p), "mean_rank": float(frac.mean()), "sd_rank": float(frac.std()),
                     "outside_band": outside, "calibrated": bool(p >= alpha and not outside)})
    table = pd.DataFrame(rows).set_index("parameter")
    table.attrs.update(n_ranks=n_ranks, band=prob, alpha=alpha)
    return table


@dataclass
class SBCResult:
    ranks: pd.DataFrame          # replicate x parameter: rank 0..n_ranks
    diagnostics: pd.DataFrame    # replicate: divergences, R-hat, ESS, seconds
    uniformity: pd.DataFrame     # parameter: chi-square, ECDF band, verdict
    n_ranks: int


def run_sbc(design: SBCDesign, prior: str | PriorSet, replicates: int, settings: SamplerSettings, *,
            generator_prior: str | PriorSet | None = None, n_ranks: int = 99, seed: int = 1,
            spec: GradientSpec | None = None, map_fn: Callable = None) -> SBCResult:
    """Simulate ``replicates`` data sets from ``generator_prior`` (default: ``prior``), fit
    each under ``prior``, and test the ranks.  ``map_fn(fn, items) -> list`` runs the fits
    (default: serially here)."""
    if replicates < 2:
        raise ValueError("SBC needs at least 2 replicates (100 or more for a real check)")
    truth, observed = prior_replicates(design, generator_prior or prior, replicates, seed, spec)
    jobs = [Replicate(i, observed[i], {k: float(v[i]) for k, v in truth.items()}, design, prior, settings,
                      n_ranks, spec) for i in range(replicates)]
    results = list((map_fn or (lambda f, xs: list(map(f, xs))))(fit_replicate, jobs))
    ranks = pd.DataFrame([r["ranks"] for r in results], index=pd.Index([r["replicate"] for r in results],
                                                                         name="replicate"))
    diagnostics = pd.DataFrame([{k: v for k, v in r.items() if k != "ranks"} for r in results]).set_index("replicate")
    return SBCResult(ranks, diagnostics, uniformity(ranks, n_ranks), n_ranks)


def plot_rank_ecdf(ranks: pd.DataFrame, n_ranks: int, prob: float = 0.95, ncols: int = 3):
    """ECDF-difference plot of each parameter's fractional ranks with its simultaneous band."""
    import arviz as az
    import matplotlib.pyplot as plt

    labels = list(ranks.columns)
    nrows = int(np.ceil(len(labels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.6 * nrows), squeeze=False)
    z = np.arange(1, n_ranks + 1) / (n_ranks + 1)
    for ax, label in zip(axes.ravel(), labels):
        u = (ranks[label].to_numpy(float) + 1) / (n_ranks + 1)
        az.plot_ecdf(u, eval_points=z, cdf=stats.uniform(0, 1).cdf, difference=True, confidence_bands="optimized",
                     ci_prob=prob, ax=ax)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("fractional rank")
        ax.axhline(0, color="0.6", lw=0.6)
    for ax in axes.ravel()[len(labels):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("ECDF - uniform")
    fig.suptitle(f"SBC rank ECDFs, {len(ranks)} replicates ({prob:.0%} simultaneous bands)", fontsize=10)
    fig.tight_layout()
    return fig
