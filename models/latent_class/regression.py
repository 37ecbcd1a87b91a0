"""Latent class regression with distal outcomes: who is in which demand class, and what follows.

One model, one likelihood (Vermunt's one-step approach; not modal assignment, which
understates uncertainty and biases class differences towards zero):

    eta[cell, k]  = intercept[k] + sum_c effect_c[level_c(cell), k] + la_effect[la(cell), k]
    P(class k | cell) = softmax_k(eta[cell, :])
    P(pattern | k)    = prod_j item_prob[k, j]^y_j (1 - item_prob[k, j])^(1 - y_j)
    P(outcomes | k)   = prod_o Bernoulli(y_o; distal_cond[k, o]), o at risk only where its
                        parent outcome was reached (a plan needs an enquiry: cpp | s47)
    log L = sum_rows count * logsumexp_k [log P(k | cell) + log P(pattern | k) + log P(outcomes | k)]

A row is a unique (response pattern x covariate cell x LA x outcome combination): the
sufficient statistic once covariates and outcomes enter.  The three class-specific
log-likelihood tables are built on unique patterns, cells and outcome combinations and
only indexed per row, so a row costs K additions.

Coding, chosen so that label switching can be undone by permuting classes:
- across classes, sum-to-zero (``ZeroSumNormal``): the intercept, every covariate effect
  and every LA effect sum to zero over classes.  A reference *class* would not survive a
  permutation of labels (the reference could become any class); sum-to-zero does;
- within a covariate, reference coding: the reference level (stated in ``references``,
  default the most common level) has effect zero, so ``effect_<cov>[level, k]`` is the log
  odds ratio, level vs reference, for class k against the average class.  Differences
  between two classes' effects are the usual multinomial log odds ratios;
- LA effects are non-centred (``la_z`` x per-class ``la_sd``, HalfNormal), then centred
  across classes.

Distal outcomes are modelled as conditionally independent of covariates given the class
(the usual distal-outcome assumption); ``distal_prob`` is P(outcome | class), products
along the parent chain (P(cpp | k) = P(s47 | k) P(cpp | s47, k)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pytensor.tensor.special import log_softmax
from scipy.special import softmax

from models.latent_class.em import EMResult, fit_em, posterior_membership
from models.latent_class.fit import drop_unconstrained
from models.latent_class.labels import Alignment, align_labels
from models.latent_class.model import INIT_CLIP, class_labels, pattern_class_loglik
from models.latent_class.patterns import Patterns, collapse
from models.sampling import ConvergenceGate, SamplerSettings, convergence_table, fit

#: Distal outcomes and the outcome each is conditional on (a plan follows an enquiry).
DISTAL_OUTCOMES: tuple[str, ...] = ("s47", "cpp", "lac")
DISTAL_PARENT: dict[str, str | None] = {"s47": None, "cpp": "s47", "lac": None}
LA = "la"
DRAW_CHUNK = 200


@dataclass(frozen=True)
class RegressionPriors:
    """Named priors of the regression model (logit scale for the membership part)."""

    item_a: float = 1.0
    item_b: float = 1.0
    distal_a: float = 1.0
    distal_b: float = 1.0
    intercept_sd: float = 2.0   # ZeroSumNormal sigma over classes
    effect_sd: float = 1.5      # covariate effects, ZeroSumNormal sigma over classes
    la_sd: float = 0.5          # HalfNormal scale of the per-class LA SD

    def describe(self) -> dict[str, str]:
        return {"item_prob": f"Beta({self.item_a:g}, {self.item_b:g})",
                "distal_cond": f"Beta({self.distal_a:g}, {self.distal_b:g})",
                "intercept": f"ZeroSumNormal({self.intercept_sd:g}) over class",
                "effect_*": f"ZeroSumNormal({self.effect_sd:g}) over class, reference level 0",
                "la_sd": f"HalfNormal({self.la_sd:g})", "la_z": "ZeroSumNormal(1) over class"}


@dataclass(frozen=True)
class RegressionData:
    """Episodes collapsed to unique (pattern x cell x outcome combination) rows with counts.

    ``cells`` holds one row per unique covariate cell x LA (labels); ``cell_codes`` the
    same as level indices (cell x covariate) and ``cell_la`` as LA indices.  ``index``
    maps each episode to its row, so per-row results map back to episodes.
    """

    patterns: Patterns
    cells: pd.DataFrame
    cell_codes: np.ndarray
    cell_la: np.ndarray
    cell_count: np.ndarray
    outcome_matrix: np.ndarray       # outcome combination x outcome, 0/1
    row_pattern: np.ndarray
    row_cell: np.ndarray
    row_outcome: np.ndarray
    row_count: np.ndarray
    index: np.ndarray
    levels: dict[str, tuple[str, ...]]
    references: dict[str, str]
    las: tuple[str, ...]
    outcomes: tuple[str, ...]
    parents: dict[str, str | None] = field(default_factory=dict)

    @property
    def covariates(self) -> tuple[str, ...]:
        return tuple(self.levels)

    @property
    def n_rows(self) -> int:
        return int(self.row_count.size)

    @property
    def n_episodes(self) -> int:
        return int(self.row_count.sum())


def _labels(values, name: str, n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Level index per episode and the levels (category order, else sorted), observed only."""
    series = (values if isinstance(values, pd.Series) else pd.Series(values)).reset_index(drop=True)
    if len(series) != n:
        raise ValueError(f"{name}: {len(series)} values for {n} episodes")
    missing = series.isna().to_numpy()
    if missing.any():
        raise ValueError(f"{name}: missing value in episode row {int(np.flatnonzero(missing)[0])} "
                         f"({int(missing.sum())} rows); every episode needs a {name}")
    if isinstance(series.dtype, pd.CategoricalDtype):
        order = [str(c) for c in series.cat.categories]
    else:
        order = sorted(series.astype(str).unique())
    text = series.astype(str).to_numpy()
    seen = set(text)
    levels = tuple(level for level in order if level in seen)
    lookup = {level: i for i, level in enumerate(levels)}
    return np.array([lookup[v] for v in text], dtype=np.int64), levels


def collapse_regression(factors: pd.DataFrame, covariates: pd.DataFrame, la, outcomes: pd.DataFrame,
                        *, references: dict[str, str] | None = None,
                        parents: dict[str, str | None] | None = None) -> RegressionData:
    """Collapse episodes to the model's sufficient statistic.

    ``factors``: episode x factor booleans; ``covariates``: episode x covariate labels
    (e.g. ``age_group``, ``gender``, ``ethnicity``); ``la``: LA code per episode;
    ``outcomes``: episode x outcome booleans (columns in model order, default parents
    :data:`DISTAL_PARENT`; no columns: a regression without distal outcomes).  ``references``: the reference level per covariate (default
    the most common level, ties by level order).
    """
    patterns = collapse(factors)
    n = patterns.n_episodes
    parents = dict(DISTAL_PARENT if parents is None else parents)
    references = dict(references or {})

    codes, levels, refs = [], {}, {}
    for name in covariates.columns:
        idx, lv = _labels(covariates[name], str(name), n)
        ref = references.pop(name, None)
        if ref is None:
            ref = lv[int(np.argmax(np.bincount(idx, minlength=len(lv))))]
        elif ref not in lv:
            raise ValueError(f"reference level {ref!r} of {name} is not among its observed levels {list(lv)}")
        codes.append(idx)
        levels[str(name)] = lv
        refs[str(name)] = ref
    if references:
        raise ValueError(f"references given for unknown covariates: {sorted(references)}")
    la_idx, las = _labels(la, LA, n)

    out_names = tuple(str(c) for c in outcomes.columns)
    for o in out_names:
        p = parents.setdefault(o, None)
        if p is not None and p not in out_names:
            raise ValueError(f"outcome {o!r} is conditional on {p!r}, which is not among the outcomes")
    if len(outcomes) != n:
        raise ValueError(f"outcomes: {len(outcomes)} rows for {n} episodes")
    if outcomes.isna().to_numpy().any():
        row, col = np.argwhere(outcomes.isna().to_numpy())[0]
        raise ValueError(f"outcomes: missing value in episode row {row}, column {out_names[col]!r}")
    y = outcomes.to_numpy().astype(np.int8)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("outcomes must be boolean or 0/1")
    for j, o in enumerate(out_names):
        p = parents[o]
        if p is not None:
            bad = (y[:, j] == 1) & (y[:, out_names.index(p)] == 0)
            if bad.any():
                raise ValueError(f"outcomes: {o} without {p} in episode row {int(np.flatnonzero(bad)[0])} "
                                 f"({int(bad.sum())} rows); {o} is modelled as conditional on {p}")

    cell_key = np.column_stack(codes + [la_idx]) if codes else la_idx[:, None]
    cell_rows, cell_idx = np.unique(cell_key, axis=0, return_inverse=True)
    cell_idx = cell_idx.ravel()
    out_rows, out_idx = np.unique(y, axis=0, return_inverse=True)
    out_idx = out_idx.ravel()
    row_key = np.column_stack([patterns.index, cell_idx, out_idx])
    rows, row_idx, row_count = np.unique(row_key, axis=0, return_inverse=True, return_counts=True)

    cell_codes = cell_rows[:, :-1]
    cell_la = cell_rows[:, -1]
    cells = pd.DataFrame({name: np.asarray(lv, dtype=object)[cell_codes[:, i]]
                          for i, (name, lv) in enumerate(levels.items())})
    cells[LA] = np.asarray(las, dtype=object)[cell_la]
    cells["count"] = np.bincount(cell_idx, minlength=len(cell_rows))
    cells.index.name = "cell"
    return RegressionData(
        patterns=patterns, cells=cells, cell_codes=cell_codes, cell_la=cell_la,
        cell_count=cells["count"].to_numpy(), outcome_matrix=out_rows, row_pattern=rows[:, 0],
        row_cell=rows[:, 1], row_outcome=rows[:, 2], row_count=row_count.astype(np.int64),
        index=row_idx.ravel().astype(np.int64), levels=levels, references=refs, las=las,
        outcomes=out_names, parents={o: parents[o] for o in out_names})


def _at_risk(data: RegressionData) -> np.ndarray:
    """Outcome combination x outcome: 1 where the outcome was at risk (its parent reached)."""
    y = data.outcome_matrix
    risk = np.ones_like(y, dtype=float)
    for j, o in enumerate(data.outcomes):
        p = data.parents.get(o)
        if p is not None:
            risk[:, j] = y[:, data.outcomes.index(p)]
    return risk


def _contrast_dim(cov: str) -> str:
    return f"{cov}_contrast"


def _initial_values(data: RegressionData, em: EMResult, a: float, b: float) -> dict:
    """Start at the EM mode: its profiles and weights, no covariate or LA effects, and distal
    probabilities from the EM memberships (so chains begin in the mode EM found)."""
    w = np.clip(em.weights, INIT_CLIP, None)
    w = w / w.sum()
    resp = posterior_membership(data.patterns.matrix, w, em.profiles)[data.row_pattern]
    resp = resp * data.row_count[:, None]
    y = data.outcome_matrix[data.row_outcome].astype(float)
    risk = _at_risk(data)[data.row_outcome]
    events = resp.T @ (y * risk)
    trials = resp.T @ risk
    distal = (events + a) / (trials + a + b)
    logw = np.log(w)
    init = {"item_prob": np.clip(em.profiles, INIT_CLIP, 1 - INIT_CLIP), "intercept": logw - logw.mean()}
    if data.outcomes:
        init["distal_cond"] = np.clip(distal, INIT_CLIP, 1 - INIT_CLIP)
    return init


def build_regression_model(data: RegressionData, n_classes: int,
                           priors: RegressionPriors = RegressionPriors(),
                           initial: EMResult | None = None) -> pm.Model:
    """PyMC model with dims ``class``, ``factor``, ``outcome``, ``la``, one dim per covariate
    (all levels) and ``<covariate>_contrast`` (non-reference levels)."""
    if n_classes < 2:
        raise ValueError("latent class regression needs n_classes >= 2")
    coords = {"class": class_labels(n_classes), "factor": list(data.patterns.factors),
              "outcome": list(data.outcomes), LA: list(data.las), "row": np.arange(data.n_rows),
              "pattern": np.arange(data.patterns.n_patterns)}
    for cov, lv in data.levels.items():
        coords[cov] = list(lv)
        coords[_contrast_dim(cov)] = [v for v in lv if v != data.references[cov]]
    init = {}
    if initial is not None:
        if initial.profiles.shape != (n_classes, len(data.patterns.factors)):
            raise ValueError("initial solution does not match n_classes x factors")
        init = _initial_values(data, initial, priors.distal_a, priors.distal_b)
    risk = _at_risk(data)
    with pm.Model(coords=coords) as model:
        y = pm.Data("pattern_matrix", data.patterns.matrix.astype("float64"), dims=("pattern", "factor"))
        count = pm.Data("row_count", data.row_count.astype("float64"), dims="row")
        item = pm.Beta("item_prob", alpha=priors.item_a, beta=priors.item_b, dims=("class", "factor"),
                       initval=init.get("item_prob"))
        has_outcomes = len(data.outcomes) > 0
        if has_outcomes:
            distal_cond = pm.Beta("distal_cond", alpha=priors.distal_a, beta=priors.distal_b,
                                  dims=("class", "outcome"), initval=init.get("distal_cond"))
        intercept = pm.ZeroSumNormal("intercept", sigma=priors.intercept_sd, dims="class",
                                     initval=init.get("intercept"))
        eta = intercept[None, :]
        for i, (cov, lv) in enumerate(data.levels.items()):
            nonref = [j for j, v in enumerate(lv) if v != data.references[cov]]
            full = pt.zeros((len(lv), n_classes))
            if nonref:
                raw = pm.ZeroSumNormal(f"effect_{cov}_raw", sigma=priors.effect_sd,
                                       dims=(_contrast_dim(cov), "class"))
                full = pt.set_subtensor(full[nonref], raw)
            effect = pm.Deterministic(f"effect_{cov}", full, dims=(cov, "class"))
            eta = eta + effect[data.cell_codes[:, i]]
        la_sd = pm.HalfNormal("la_sd", sigma=priors.la_sd, dims="class")
        la_z = pm.ZeroSumNormal("la_z", sigma=1.0, dims=(LA, "class"))
        scaled = la_z * la_sd[None, :]
        la_effect = pm.Deterministic("la_effect", scaled - scaled.mean(axis=1, keepdims=True),
                                     dims=(LA, "class"))
        eta = eta + la_effect[data.cell_la]
        log_prior_class = log_softmax(eta, axis=1)                       # cell x class
        if has_outcomes:
            parent_prob = [None if data.parents[o] is None
                           else distal_cond[:, data.outcomes.index(data.parents[o])] for o in data.outcomes]
            distal = pt.stack([distal_cond[:, j] if p is None else distal_cond[:, j] * p
                               for j, p in enumerate(parent_prob)], axis=1)
            pm.Deterministic("distal_prob", distal, dims=("class", "outcome"))
            yo = data.outcome_matrix.astype("float64")
            log_outcome = (pt.dot(yo * risk, pt.log(distal_cond).T)
                           + pt.dot((1.0 - yo) * risk, pt.log1p(-distal_cond).T))  # combination x class
        else:  # no distal outcomes: latent class regression on covariates and LA only
            log_outcome = pt.zeros((data.outcome_matrix.shape[0], n_classes))
        log_pattern = pattern_class_loglik(y, item)                         # pattern x class
        joint = (log_prior_class[data.row_cell] + log_pattern[data.row_pattern]
                 + log_outcome[data.row_outcome])
        pm.Potential("weighted_loglik", pt.sum(count * pm.math.logsumexp(joint, axis=1, keepdims=False)))
        cell_share = data.cell_count.astype("float64") / data.n_episodes
        pm.Deterministic("class_weight", pt.dot(cell_share, pt.exp(log_prior_class)), dims="class")
    return model


def parameter_names(data: RegressionData) -> list[str]:
    """The quantities whose diagnostics a citable result needs (reference zeros drop out)."""
    return (["class_weight", "item_prob"] + (["distal_prob"] if data.outcomes else []) + ["intercept"]
            + [f"effect_{cov}" for cov in data.covariates] + ["la_sd", "la_effect"])


@dataclass
class RegressionFit:
    data: RegressionData
    em: EMResult
    idata: az.InferenceData          # aligned; classes in the reported order
    alignment: Alignment
    convergence: pd.DataFrame        # R-hat, bulk/tail ESS after alignment
    gate: dict                       # ConvergenceGate.check on the aligned posterior

    @property
    def citable(self) -> bool:
        """Passes the gate and shows no unresolved multimodality."""
        return bool(self.gate["passed"] and not self.alignment.multimodal)

    def derived(self, prob: float = 0.9) -> xr.Dataset:
        return summarise(derived_draws(self.idata, self.data), prob)


def fit_latent_class_regression(data: RegressionData, n_classes: int,
                                settings: SamplerSettings = SamplerSettings(),
                                priors: RegressionPriors = RegressionPriors(), *,
                                n_starts: int = 20, em_seed: int = 0,
                                reference: xr.DataArray | np.ndarray | None = None,
                                level: str = "draw", tolerance: float = 0.1,
                                gate: ConvergenceGate = ConvergenceGate()) -> RegressionFit:
    """Start every chain at the best of ``n_starts`` EM runs on the patterns, sample, align
    labels on the item profiles and permute every class-indexed quantity (effects, LA
    effects, distal probabilities) with them; diagnostics on the aligned posterior."""
    em = fit_em(data.patterns, n_classes, n_starts=n_starts, seed=em_seed, a=priors.item_a, b=priors.item_b)
    # nutpie's unconstrained copies (``*__``) would keep the raw labels through alignment
    raw = drop_unconstrained(fit(build_regression_model(data, n_classes, priors, initial=em), settings))
    alignment = align_labels(raw, reference, level=level, tolerance=tolerance)
    alignment.idata.posterior.attrs.update(
        references=repr(data.references), priors=repr(priors.describe()),
        coding="sum-to-zero over classes; reference level per covariate")
    names = parameter_names(data)
    return RegressionFit(data=data, em=em, idata=alignment.idata, alignment=alignment,
                         convergence=convergence_table(alignment.idata, names),
                         gate=gate.check(alignment.idata, names))


def _stacked(var: xr.DataArray, *rest: str) -> np.ndarray:
    """(sample, ...) numpy array, chains and draws stacked."""
    arr = var.transpose("chain", "draw", *rest).to_numpy()
    return arr.reshape(-1, *arr.shape[2:])


def derived_draws(idata: az.InferenceData, data: RegressionData) -> xr.Dataset:
    """Posterior draws of the quantities a user cites, on an aligned posterior.

    ``prevalence_by_<cov>`` (level x class) and ``prevalence_by_la`` (la x class) are
    standardised: the class shares if every episode had that level (or LA), all else as
    observed, so differences reflect the effects, not case mix.  ``distal_prob`` is
    P(outcome | class); ``class_weight`` the class shares in the data.
    """
    post = idata.posterior
    shape = (post.sizes["chain"], post.sizes["draw"])
    classes = post["class"].to_numpy()
    intercept = _stacked(post["intercept"], "class")
    tables = {cov: _stacked(post[f"effect_{cov}"], cov, "class") for cov in data.covariates}
    tables[LA] = _stacked(post["la_effect"], LA, "class")
    cell_level = {cov: data.cell_codes[:, i] for i, cov in enumerate(data.covariates)}
    cell_level[LA] = data.cell_la
    share = data.cell_count / data.n_episodes
    values = {name: np.empty((len(intercept), t.shape[1], len(classes))) for name, t in tables.items()}
    # in chunks of draws: sample x cell x class would not fit in memory on a national extract
    for start in range(0, len(intercept), DRAW_CHUNK):
        s = slice(start, start + DRAW_CHUNK)
        parts = {name: t[s][:, cell_level[name]] for name, t in tables.items()}
        eta = intercept[s][:, None, :] + sum(parts.values())              # sample x cell x class
        for name, t in tables.items():
            rest = eta - parts[name]
            for j in range(t.shape[1]):
                values[name][s, j] = np.einsum("sck,c->sk", softmax(rest + t[s, j][:, None, :], axis=2), share)
    levels = dict(data.levels, **{LA: data.las})
    out = {f"prevalence_by_{name}": xr.DataArray(
        v.reshape(*shape, *v.shape[1:]), dims=("chain", "draw", name, "class"),
        coords={name: list(levels[name]), "class": classes}) for name, v in values.items()}
    for name in ("distal_prob", "class_weight"):
        if name in post:  # no distal_prob when the model has no outcomes
            out[name] = post[name]
    return xr.Dataset(out, coords={"chain": post["chain"], "draw": post["draw"]})


def summarise(draws: xr.Dataset, prob: float = 0.9) -> xr.Dataset:
    """``<name>_mean``, ``<name>_lower``, ``<name>_upper`` (equal-tailed) for every variable."""
    q = [(1 - prob) / 2, 1 - (1 - prob) / 2]
    out = {}
    for name, var in draws.data_vars.items():
        bounds = var.quantile(q, dim=("chain", "draw"))
        out[f"{name}_mean"] = var.mean(("chain", "draw"))
        out[f"{name}_lower"] = bounds.isel(quantile=0, drop=True)
        out[f"{name}_upper"] = bounds.isel(quantile=1, drop=True)
    return xr.Dataset(out, attrs={"interval_prob": prob, "interval": "equal-tailed",
                                  "prevalence": "standardised to the observed case mix"})
