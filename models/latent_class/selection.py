"""Choosing the number of classes K: PSIS-LOO on weighted patterns, BIC and entropy at the mode.

Why each criterion:

- **PSIS-LOO** (Vehtari, Gelman & Gabry 2017) is the Bayesian answer: the expected log
  predictive density of a new episode, estimated from the posterior at each K.  The model's
  likelihood is on weighted unique patterns, but leaving out *one episode* of a pattern
  with count ``c`` is the same for each of its ``c`` episodes, so LOO is computed once per
  pattern (importance ratios ``1 / p(y_pattern | theta)``) and weighted by the counts for
  the total and its standard error: exactly row-level LOO, far cheaper.  Pareto-k is
  reported per episode (k > 0.7: that episode's LOO estimate is unreliable).
- **BIC** and **entropy** are read at the EM posterior mode (the maximum-likelihood
  estimate under flat priors) for readers who expect them from poLCA, Mplus or StepMix.
  Entropy is the relative entropy of classification, 1 - sum(-p log p) / (N log K): near
  1, episodes are assigned to classes with little doubt.
- **Empty or tiny classes**: above the true K a Bayesian mixture tends to empty the spare
  class rather than split a real one (Rousseau & Mengersen 2011); such a K adds a label,
  not a class, and is flagged and never chosen.

The K loop takes ``map_fn`` (default: the builtin ``map``) so many fits can be fanned out
(``workflows.fanout.fan_out``); each task is a picklable :class:`KTask`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from models.latent_class.em import EMResult, posterior_membership
from models.latent_class.fit import LatentClassFit, fit_latent_class
from models.latent_class.model import LatentClassPriors
from models.latent_class.patterns import Patterns
from models.sampling import SamplerSettings

#: Pareto-k above this: the importance-sampling LOO estimate for that episode is unreliable.
PARETO_K_BAD = 0.7


# ---------------------------------------------------------------------------------------
# PSIS-LOO on weighted patterns
# ---------------------------------------------------------------------------------------

def pattern_log_lik(posterior: xr.Dataset, patterns: Patterns, max_block: int = 2_000_000) -> np.ndarray:
    """log p(pattern | class_weight, item_prob) per posterior draw: pattern x sample.

    Computed post hoc with numpy from the posterior (the model stays unchanged); samples in
    ``(chain, draw)`` stacking order, as ArviZ stacks them.  Patterns are processed in
    blocks so memory stays near ``max_block`` doubles per block.
    """
    item = posterior["item_prob"].transpose("chain", "draw", "class", "factor").to_numpy()
    weight = posterior["class_weight"].transpose("chain", "draw", "class").to_numpy()
    n_samples = item.shape[0] * item.shape[1]
    item = item.reshape(n_samples, *item.shape[2:])
    weight = weight.reshape(n_samples, -1)
    factors = list(posterior["factor"].to_numpy())
    if factors != list(patterns.factors):
        raise ValueError("posterior factors do not match the patterns' factors")
    tiny = np.finfo(float).tiny
    logp = np.log(np.clip(item, tiny, 1.0))                  # sample x class x factor
    log1mp = np.log(np.clip(1.0 - item, tiny, 1.0))
    with np.errstate(divide="ignore"):
        logw = np.log(weight)[:, :, None]                    # sample x class x 1
    y = patterns.matrix.astype(float)
    n_class = item.shape[1]
    block = max(1, int(max_block // max(1, n_samples * n_class)))
    out = np.empty((y.shape[0], n_samples))
    for start in range(0, y.shape[0], block):
        yb = y[start:start + block]
        joint = logw + logp @ yb.T + log1mp @ (1.0 - yb).T  # sample x class x pattern
        out[start:start + block] = logsumexp(joint, axis=1).T
    return out


def relative_efficiency(posterior: xr.Dataset) -> float:
    """ArviZ's default r_eff for LOO: mean ESS (method "mean") over every varying scalar / samples."""
    n_samples = posterior.sizes["chain"] * posterior.sizes["draw"]
    if posterior.sizes["chain"] == 1:
        return 1.0
    names = [v for v in ("class_weight", "item_prob") if v in posterior and float(posterior[v].std()) > 0]
    ess = az.ess(posterior[names], method="mean")
    values = np.hstack([ess[v].to_numpy().ravel() for v in names])
    return float(np.nanmean(values) / n_samples)


@dataclass(frozen=True)
class PatternLoo:
    """PSIS-LOO of a latent class fit, with per-pattern values (each stands for ``counts`` episodes).

    ``elpd``/``se``/``p_loo`` are totals over episodes, as ArviZ's ``loo`` would give on one
    row per episode.  ``n_high_k`` counts episodes (not patterns) with Pareto-k above 0.7.
    """

    elpd: float
    se: float
    p_loo: float
    lppd: float
    elpd_i: np.ndarray        # per pattern
    pareto_k: np.ndarray      # per pattern
    counts: np.ndarray        # episodes per pattern
    reff: float
    n_samples: int

    @property
    def n_episodes(self) -> int:
        return int(self.counts.sum())

    @property
    def n_high_k(self) -> int:
        return int(self.counts[self.pareto_k > PARETO_K_BAD].sum())

    @property
    def n_high_k_patterns(self) -> int:
        return int((self.pareto_k > PARETO_K_BAD).sum())

    @property
    def max_k(self) -> float:
        return float(np.max(self.pareto_k))


def weighted_se(values: np.ndarray, counts: np.ndarray) -> float:
    """SE of a sum over episodes whose values repeat per pattern: sqrt(N var), with var over
    episodes (ddof 0, as ArviZ), which reduces to sqrt(sum_i c_i (v_i - mean)^2)."""
    mean = float(counts @ values) / counts.sum()
    return float(np.sqrt(counts @ (values - mean) ** 2))


def pattern_loo(idata: az.InferenceData, patterns: Patterns, reff: float | None = None) -> PatternLoo:
    """PSIS-LOO per unique pattern, weighted by counts: the same numbers as row-level LOO."""
    log_lik = pattern_log_lik(idata.posterior, patterns)
    n_samples = log_lik.shape[1]
    reff = relative_efficiency(idata.posterior) if reff is None else float(reff)
    log_weights, k = az.psislw(-log_lik, reff)
    elpd_i = logsumexp(log_weights + log_lik, axis=1)
    lppd_i = logsumexp(log_lik, axis=1) - np.log(n_samples)
    counts = patterns.counts.astype(float)
    elpd, lppd = float(counts @ elpd_i), float(counts @ lppd_i)
    return PatternLoo(elpd=elpd, se=weighted_se(elpd_i, counts), p_loo=lppd - elpd, lppd=lppd,
                      elpd_i=elpd_i, pareto_k=np.asarray(k, dtype=float), counts=patterns.counts.copy(),
                      reff=reff, n_samples=n_samples)


# ---------------------------------------------------------------------------------------
# Criteria at the EM mode
# ---------------------------------------------------------------------------------------

def n_parameters(n_classes: int, n_factors: int) -> int:
    """Free parameters: K - 1 class weights and K x J item probabilities."""
    return (n_classes - 1) + n_classes * n_factors


def relative_entropy(patterns: Patterns, weights: np.ndarray, profiles: np.ndarray) -> float:
    """1 - sum_i sum_k -p_ik log p_ik / (N log K), over episodes; NaN for K = 1 (undefined)."""
    k = len(weights)
    if k < 2:
        return float("nan")
    member = posterior_membership(patterns.matrix, weights, profiles)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(member > 0, member * np.log(member), 0.0).sum(axis=1)
    return float(1.0 - patterns.counts @ ent / (patterns.n_episodes * np.log(k)))


def mode_criteria(patterns: Patterns, em: EMResult) -> dict:
    """Log-likelihood, BIC, AIC and entropy at the EM posterior mode."""
    k, j = em.profiles.shape
    npar = n_parameters(k, j)
    n = patterns.n_episodes
    return {"loglik": em.loglik, "n_parameters": npar, "bic": -2 * em.loglik + npar * np.log(n),
            "aic": -2 * em.loglik + 2 * npar,
            "entropy": relative_entropy(patterns, em.weights, em.profiles)}


# ---------------------------------------------------------------------------------------
# Empty and tiny classes
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassSizeCheck:
    """A class is *empty or tiny* when its posterior mean share is below ``min_share`` or its
    expected or modally assigned episodes number fewer than ``min_episodes``."""

    min_share: float = 0.01
    min_episodes: int = 10

    def check(self, idata: az.InferenceData, patterns: Patterns) -> pd.DataFrame:
        """Per class: posterior mean share, expected episodes, modally assigned episodes, flag."""
        post = idata.posterior
        share = post["class_weight"].mean(("chain", "draw"))
        modal = _modal_counts(post, patterns)
        frame = pd.DataFrame({"share": share.to_numpy(), "expected_episodes": share.to_numpy() * patterns.n_episodes,
                              "modal_episodes": modal}, index=pd.Index(post["class"].to_numpy(), name="class"))
        frame["empty_or_tiny"] = ((frame["share"] < self.min_share)
                                  | (frame["expected_episodes"] < self.min_episodes)
                                  | (frame["modal_episodes"] < self.min_episodes))
        return frame


def _modal_counts(posterior: xr.Dataset, patterns: Patterns) -> np.ndarray:
    """Episodes whose most probable class (posterior mean weights and profiles) is each class."""
    w = posterior["class_weight"].mean(("chain", "draw")).to_numpy()
    p = posterior["item_prob"].mean(("chain", "draw")).transpose("class", "factor").to_numpy()
    modal = posterior_membership(patterns.matrix, w, p).argmax(axis=1)
    return np.bincount(modal, weights=patterns.counts, minlength=len(w)).astype(np.int64)


# ---------------------------------------------------------------------------------------
# The K loop
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KTask:
    """One fit of the K loop; picklable, so ``map_fn`` may send it to another process."""

    patterns: Patterns
    n_classes: int
    settings: SamplerSettings
    priors: LatentClassPriors = LatentClassPriors()
    n_starts: int = 20
    em_seed: int = 0
    tolerance: float = 0.1
    size_check: ClassSizeCheck = ClassSizeCheck()

    @property
    def name(self) -> str:  # how a progress bar or an error names this task
        return f"K={self.n_classes}"


@dataclass
class KFit:
    """A fitted K with everything the selection table shows."""

    n_classes: int
    fit: LatentClassFit
    loo: PatternLoo
    mode: dict
    sizes: pd.DataFrame

    @property
    def has_empty_class(self) -> bool:
        return bool(self.sizes["empty_or_tiny"].any())


def fit_k(task: KTask) -> KFit:
    """Fit one K (EM starts, MCMC, alignment) and compute its LOO, mode criteria and sizes."""
    fitted = fit_latent_class(task.patterns, task.n_classes, task.settings, task.priors,
                              n_starts=task.n_starts, em_seed=task.em_seed, tolerance=task.tolerance)
    return KFit(n_classes=task.n_classes, fit=fitted, loo=pattern_loo(fitted.idata, task.patterns),
                mode=mode_criteria(task.patterns, fitted.em),
                sizes=task.size_check.check(fitted.idata, task.patterns))


@dataclass
class Selection:
    """The K loop's fits, its comparison table and the K it chose (and why)."""

    fits: dict[int, KFit]
    table: pd.DataFrame
    chosen: int
    chosen_by_bic: int
    rule: str
    se_multiplier: float = 2.0
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, k: int) -> KFit:
        return self.fits[k]


def comparison_table(fits: dict[int, KFit]) -> pd.DataFrame:
    """One row per K: elpd (SE), difference from the best K without an empty or tiny class
    (SE of the difference, pointwise), p_loo, Pareto-k, BIC, AIC, entropy at the mode,
    smallest class share, the empty-class flag and convergence."""
    ks = sorted(fits)
    eligible = [k for k in ks if not fits[k].has_empty_class] or [ks[0]]
    ref = fits[max(eligible, key=lambda k: fits[k].loo.elpd)].loo
    rows = []
    for k in ks:
        f = fits[k]
        rows.append({
            "K": k,
            "elpd_loo": f.loo.elpd, "se": f.loo.se,
            "elpd_diff": f.loo.elpd - ref.elpd,
            "se_diff": weighted_se(f.loo.elpd_i - ref.elpd_i, f.loo.counts.astype(float)),
            "p_loo": f.loo.p_loo,
            "pareto_k_gt_0.7": f.loo.n_high_k, "pareto_k_gt_0.7_share": f.loo.n_high_k / f.loo.n_episodes,
            "max_pareto_k": f.loo.max_k,
            "loglik_mode": f.mode["loglik"], "n_parameters": f.mode["n_parameters"],
            "bic": f.mode["bic"], "aic": f.mode["aic"], "entropy": f.mode["entropy"],
            "smallest_share": float(f.sizes["share"].min()),
            "empty_or_tiny_class": f.has_empty_class,
            "max_r_hat": f.fit.gate["max_r_hat"], "min_ess_bulk": f.fit.gate["min_ess_bulk"],
            "divergences": f.fit.gate["divergences"], "multimodal": f.fit.alignment.multimodal,
            "citable": f.fit.citable,
        })
    return pd.DataFrame(rows).set_index("K")


def choose_k(table: pd.DataFrame, se_multiplier: float = 2.0) -> tuple[int, str]:
    """The smallest K without an empty or tiny class whose elpd is within ``se_multiplier``
    SEs of the difference from the best such K (``elpd_diff``, ``se_diff`` of
    :func:`comparison_table`): a larger K must earn its extra parameters.
    Returns (K, a sentence saying why)."""
    eligible = table[~table["empty_or_tiny_class"].astype(bool)]
    if eligible.empty:
        k = int(table.index.min())
        return k, (f"K = {k}: every K fitted has an empty or tiny class, so the data support fewer classes "
                   f"than {k}; the smallest K is reported (rerun with a smaller k_min)")
    best = int(eligible["elpd_diff"].idxmax())
    within = eligible["elpd_diff"] >= -se_multiplier * eligible["se_diff"]
    k = int(min(eligible.index[within]))
    rule = (f"K = {k}: the smallest K without an empty or tiny class whose PSIS-LOO elpd is within "
            f"{se_multiplier:g} SE (of the difference) of the best such K (K = {best})")
    return k, rule


def select_k(patterns: Patterns, k_values: Iterable[int], settings: SamplerSettings,
             priors: LatentClassPriors = LatentClassPriors(), *, n_starts: int = 20, em_seed: int = 0,
             tolerance: float = 0.1, size_check: ClassSizeCheck = ClassSizeCheck(),
             se_multiplier: float = 2.0, map_fn: Callable = map) -> Selection:
    """Fit every K in ``k_values`` (through ``map_fn``), compare them and choose one.

    ``map_fn(fn, tasks)`` must return results in the order of ``tasks``: the builtin
    ``map`` (serial, here) or ``functools.partial(workflows.fanout.fan_out, label="K")``.
    """
    ks = sorted({int(k) for k in k_values})
    if not ks or ks[0] < 1:
        raise ValueError(f"k_values must be positive integers, got {ks}")
    tasks = [KTask(patterns, k, settings, priors, n_starts, em_seed, tolerance, size_check) for k in ks]
    fits = {f.n_classes: f for f in map_fn(fit_k, tasks)}
    if sorted(fits) != ks:
        raise RuntimeError(f"map_fn returned fits for K = {sorted(fits)}, expected {ks}")
    table = comparison_table(fits)
    chosen, rule = choose_k(table, se_multiplier)
    by_bic = int(table["bic"].idxmin())
    notes = []
    if by_bic != chosen:
        notes.append(f"BIC at the mode prefers K = {by_bic}; PSIS-LOO chose K = {chosen}.")
    flagged = [k for k in ks if fits[k].has_empty_class]
    if len(flagged) == len(ks):
        notes.append("Every K fitted has an empty or tiny class: the data support fewer classes than "
                     f"K = {ks[0]}; rerun with a smaller k_min.")
    elif flagged:
        notes.append("An empty or tiny class at K = " + ", ".join(map(str, flagged))
                     + ": these K add a label, not a class, and are not chosen.")
    if table.loc[chosen, "pareto_k_gt_0.7"] > 0:
        share = table.loc[chosen, "pareto_k_gt_0.7_share"]
        notes.append(f"At K = {chosen}, {share:.1%} of episodes have Pareto-k > 0.7 (their LOO estimates "
                     "are unreliable; rare patterns are influential).")
    return Selection(fits=fits, table=table, chosen=chosen, chosen_by_bic=by_bic, rule=rule,
                     se_multiplier=se_multiplier, notes=notes)
