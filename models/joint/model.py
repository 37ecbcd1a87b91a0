"""The joint model: latent demand class x social gradient x LA/LSOA effects, in one posterior.

For an assessed episode with factor pattern y, in cell c (LA l, LSOA j, covariates x), on
outcome path o, the class k is marginalised:

    log P(y, o | c) = logsumexp_k [ log w[c, k] + log P(y | k) + log P(o | k, c) ]

- membership: ``log w[c, :] = log_softmax(log class_weight + la_class_effect[l])`` (LA
  deviations zero-sum over classes, optional);
- factors: local independence, ``P(y | k) = prod_j item_prob[k, j]^y_j (1 - item_prob[k, j])^(1-y_j)``;
- outcomes: ``P(o | k, c) = prod_s [at risk of s on o] p_sk^reached (1 - p_sk)^(1-reached)``
  with, per stage s (each given its parent stage),

      logit p_sk = class_intercept[s, k] + class_gradient[s, k] * within + between_effect[s] * between
                   + la_effect[l, s] + la_slope[l, s] * within + lsoa_effect[j, s] + covariates[x, s]

  ``class_gradient[s, k] = within_effect[s] + class_slope_shift[k]`` (``class_slopes="shared"``:
  one shift per class at every stage, as the simulator has it) or ``class_slope_shift[s, k]``
  (``"by_stage"``); the shifts sum to zero over classes, so ``within_effect`` is the
  unweighted class-average gradient and the class priors stay exchangeable (label switching
  is then handled after sampling, :mod:`models.joint.fit`).
  ``between_effect = within_effect + contextual_effect``; the between-LA effect is common
  to classes, so a class's contextual (inverse intervention) effect is
  ``between_effect - class_gradient``: classes with steeper gradients have a more negative one.

Group effects are centred or non-centred by level (``JointSpec.centred``); covariates use
reference coding (main effects per stage, common to classes).  The likelihood is a
``pm.Potential`` on the counts of :class:`models.joint.data.JointData` (same posterior as one
mixture row per episode).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from models.gradient.model import covariate_coords, group_level
from models.joint.data import JointData
from models.latent_class.em import EMResult, posterior_membership
from models.latent_class.model import INIT_CLIP, LatentClassPriors, class_labels, pattern_class_loglik
from models.priors import PriorSet

#: LSOA effects are centred (under ``centred="auto"``) where an LSOA's own data give its
#: effect a standard error below this: half the typical LSOA SD (0.1).
LSOA_CENTRE_SE = 0.05
#: Half-normal scale of the SD of LA deviations of the class logits (truth: 0.25).
LA_CLASS_SD = 0.5


@dataclass(frozen=True)
class JointSpec:
    """What the joint model contains."""

    n_classes: int
    class_slopes: str = "shared"          # "shared" or "by_stage"
    la_effects: bool = True
    la_slopes: bool = True
    lsoa_effects: bool = True
    la_class_weights: bool = True         # class weights vary by LA
    #: Levels in the centred form ("la", "la_slope", "lsoa", "la_class"); the others are
    #: non-centred.  An LA holds thousands of episodes, so its intercept and its class
    #: logits are pinned by its own data: the centred form mixes far better there (as in
    #: the gradient model's centring plan); LA slopes are weakly informed.  ``"auto"`` is
    #: ("la", "la_class") plus LSOA effects centred at the stages where an LSOA's own data
    #: pin its effect (:func:`lsoa_centring`).
    centred: str | tuple[str, ...] = "auto"
    reference: dict = field(default_factory=dict)  # covariate -> reference level

    def __post_init__(self):
        if self.n_classes < 1:
            raise ValueError("n_classes must be >= 1")
        if self.class_slopes not in ("shared", "by_stage"):
            raise ValueError(f"class_slopes must be 'shared' or 'by_stage', got {self.class_slopes!r}")
        unknown = set(self.levels_centred) - {"la", "la_slope", "lsoa", "la_class"}
        if unknown:
            raise ValueError(f"unknown levels in centred: {sorted(unknown)}")
        if not self.la_effects and self.la_slopes:
            raise ValueError("la_slopes needs la_effects")

    @property
    def levels_centred(self) -> tuple[str, ...]:
        return ("la", "la_class") if self.centred == "auto" else tuple(self.centred)

    def as_dict(self) -> dict:
        return asdict(self)


def lsoa_centring(data: JointData, spec: JointSpec) -> np.ndarray:
    """Per stage: centre the LSOA effects?  Under ``"auto"``, where the mean Fisher
    information per LSOA (at-risk episodes x p(1 - p)) puts an LSOA's own standard error
    below ``LSOA_CENTRE_SE``; otherwise as ``centred`` says.  The threshold is stricter than
    the gradient model's: centring an LSOA level whose SE is close to its SD lowered the ESS
    of that SD (benchmarks/RESULTS.md, "LSOA centring in the joint model")."""
    if spec.centred != "auto":
        return np.full(len(data.stages), "lsoa" in spec.centred)
    path = data.row_path()
    count = data.rows["count"].to_numpy(float)
    risk = (data.at_risk[path] * count[:, None]).sum(axis=0)
    p = ((data.at_risk * data.reached)[path] * count[:, None]).sum(axis=0) / np.maximum(risk, 1)
    n_lsoa = data.cells["lsoa_code"].nunique()
    info = risk * p * (1 - p) / n_lsoa
    return 1.0 / np.sqrt(np.maximum(info, 1e-12)) <= LSOA_CENTRE_SE


def _centre(data: JointData) -> np.ndarray:
    """Empirical logit of each stage among those at risk: the class intercepts' prior centre."""
    counts = data.rows.groupby("pair")["count"].sum().reindex(range(len(data.pairs)), fill_value=0)
    n_path = np.bincount(data.pairs["path"].to_numpy(), weights=counts.to_numpy(), minlength=len(data.paths))
    risk = n_path @ data.at_risk
    success = n_path @ (data.at_risk * data.reached)
    p = (success + 0.5) / (risk + 1.0)
    return np.log(p) - np.log1p(-p)


def _index(values: pd.Series, labels: list[str]) -> np.ndarray:
    lookup = {lab: i for i, lab in enumerate(labels)}
    return values.astype(str).map(lookup).to_numpy(dtype="int64")


def model_coords(data: JointData, spec: JointSpec) -> dict[str, list]:
    cells = data.cells
    coords = {
        "class": class_labels(spec.n_classes),
        "factor": list(data.patterns.factors),
        "stage": list(data.stages),
        "la": sorted(cells["la_code"].astype(str).unique()),
        "lsoa": sorted(cells["lsoa_code"].astype(str).unique()),
        "pattern_id": np.arange(data.patterns.n_patterns),
    }
    coords.update(covariate_coords(cells, data.covariates, spec.reference))
    return coords


def initial_values(data: JointData, em: EMResult) -> dict[str, np.ndarray]:
    """Starting point from an EM solution of the factor part: class weights, item
    probabilities, and class intercepts from the episodes' EM memberships."""
    w = np.clip(em.weights, INIT_CLIP, None)
    w = w / w.sum()
    member = posterior_membership(data.patterns.matrix, em.weights, em.profiles)  # pattern x class
    resp = member[data.rows["pattern"].to_numpy()] * data.rows["count"].to_numpy()[:, None]
    path = data.row_path()
    risk = np.einsum("rk,rs->sk", resp, data.at_risk[path])
    success = np.einsum("rk,rs->sk", resp, (data.at_risk * data.reached)[path])
    p = (success + 0.5) / (risk + 1.0)
    return {"class_weight": w, "item_prob": np.clip(em.profiles, INIT_CLIP, 1 - INIT_CLIP),
            "class_intercept": np.log(p) - np.log1p(-p)}


def build_joint_model(data: JointData, spec: JointSpec, priors: PriorSet,
                      lc_priors: LatentClassPriors = LatentClassPriors(),
                      initial: dict[str, np.ndarray] | None = None) -> pm.Model:
    """Build (not fit) the joint model on ``data``; ``initial`` from :func:`initial_values`."""
    if data.patterns.n_patterns == 0:
        raise ValueError("no patterns")
    coords = model_coords(data, spec)
    n_class, n_stage = spec.n_classes, len(data.stages)
    cells = data.cells
    init = initial or {}
    if "item_prob" in init and init["item_prob"].shape != (n_class, len(coords["factor"])):
        raise ValueError("initial values do not match n_classes x factors")

    with pm.Model(coords=coords) as model:
        model.spec = spec
        # Arrays enter as data, not constants: numba inlines constants into the compiled
        # code, and compile time then grows with the data (minutes at 10,000 rows).
        cell_la_np = _index(cells["la_code"], coords["la"])
        cell_lsoa_np = _index(cells["lsoa_code"], coords["lsoa"])
        within = pm.Data("within", cells["dep_within"].to_numpy(float))
        # --- membership --------------------------------------------------------------
        if n_class > 1:
            weight = pm.Dirichlet("class_weight", a=np.full(n_class, lc_priors.weight_concentration),
                                  dims="class", initval=init.get("class_weight"))
        else:
            weight = pm.Deterministic("class_weight", pt.ones(1), dims="class")
        logw = pt.log(weight)[None, :] + pt.zeros((len(cells), n_class))
        if spec.la_class_weights and n_class > 1 and len(coords["la"]) > 1:
            la_class_sd = pm.HalfNormal("la_class_sd", LA_CLASS_SD)
            if "la_class" in spec.levels_centred:
                la_class = pm.ZeroSumNormal("la_class_effect", sigma=la_class_sd, dims=("la", "class"))
            else:
                z = pm.ZeroSumNormal("la_class_z", sigma=1.0, dims=("la", "class"))
                la_class = pm.Deterministic("la_class_effect", z * la_class_sd, dims=("la", "class"))
            logw = logw + _rows(la_class, cell_la_np, n_class)
            logw = logw - pm.math.logsumexp(logw, axis=1, keepdims=True)

        # --- factors -----------------------------------------------------------------
        item = pm.Beta("item_prob", alpha=lc_priors.item_a, beta=lc_priors.item_b,
                       dims=("class", "factor"), initval=init.get("item_prob"))
        y = pm.Data("pattern_matrix", data.patterns.matrix.astype("float64"), dims=("pattern_id", "factor"))
        log_pattern = pattern_class_loglik(y, item)  # pattern x class

        # --- outcomes ----------------------------------------------------------------
        # Class intercepts = stage intercept + class offsets (zero-sum over classes).  The LA
        # level is centred on stage intercept + between effect x LA deprivation (hierarchical
        # centring, as in the gradient model): with thousands of episodes per LA that level
        # is pinned by the data, and the intercept and the between effect are then informed
        # through the LA levels alone instead of riding a ridge with every class intercept.
        init_alpha = init.get("class_intercept")
        mu = pm.Normal("intercept", mu=_centre(data), sigma=priors.intercept_sd, dims="stage",
                       initval=None if init_alpha is None else init_alpha.mean(axis=1))
        if n_class > 1:
            offset = pm.ZeroSumNormal("class_offset", sigma=priors.intercept_sd, dims=("stage", "class"),
                                      initval=None if init_alpha is None
                                      else init_alpha - init_alpha.mean(axis=1, keepdims=True))
        else:
            offset = pt.zeros((n_stage, 1))
        pm.Deterministic("class_intercept", mu[:, None] + offset, dims=("stage", "class"))
        beta_w = pm.Normal("within_effect", 0.0, priors.slope_sd, dims="stage")
        contextual = pm.Normal("contextual_effect", 0.0, priors.slope_sd, dims="stage")
        beta_b = pm.Deterministic("between_effect", beta_w + contextual, dims="stage")
        if n_class > 1 and spec.class_slopes == "shared":
            shift = pm.ZeroSumNormal("class_slope_shift", sigma=priors.interaction_sd, dims="class")
            gradient = beta_w[:, None] + shift[None, :]
        elif n_class > 1:
            shift = pm.ZeroSumNormal("class_slope_shift", sigma=priors.interaction_sd, dims=("stage", "class"))
            gradient = beta_w[:, None] + shift
        else:
            gradient = beta_w[:, None] + pt.zeros((1, 1))
        gradient = pm.Deterministic("class_gradient", gradient, dims=("stage", "class"))

        la_between = (cells.groupby(cells["la_code"].astype(str))["dep_between"].first()
                      .reindex(coords["la"]).to_numpy(float))
        la_mean = mu[None, :] + beta_b[None, :] * la_between[:, None]               # la x stage
        if spec.la_effects and "la" in spec.levels_centred:
            la_level = pm.Normal("la_level", la_mean, priors.la_sd("la_sd", dims="stage"), dims=("la", "stage"))
        elif spec.la_effects:
            z = pm.Normal("la_z", 0.0, 1.0, dims=("la", "stage"))
            la_level = la_mean + z * priors.la_sd("la_sd", dims="stage")
        else:
            la_level = la_mean
        if spec.la_effects:
            pm.Deterministic("la_effect", la_level - la_mean, dims=("la", "stage"))
        eta = offset[None, :, :] + gradient[None, :, :] * within[:, None, None]      # cell x stage x class
        extra = _rows(la_level, cell_la_np, n_stage)
        if spec.la_slopes:
            la_slope = _group("la_slope", "la", priors.la_slope_sd("la_slope_sd", dims="stage"),
                              "la_slope" in spec.levels_centred)
            extra = extra + _rows(la_slope, cell_la_np, n_stage) * within[:, None]
        if spec.lsoa_effects:
            lsoa_eff = group_level(model, "lsoa_effect", "lsoa", pt.zeros((len(coords["lsoa"]), n_stage)),
                                    priors.lsoa_sd("lsoa_sd", dims="stage"), lsoa_centring(data, spec),
                                    list(data.stages))
            pm.Deterministic("lsoa_effect", lsoa_eff, dims=("lsoa", "stage"))
            extra = extra + _rows(lsoa_eff, cell_lsoa_np, n_stage)
        for cov in data.covariates:
            levels, nonref = coords[cov], coords[f"{cov}_nonref"]
            ref_pos = [i for i, lv in enumerate(levels) if lv not in nonref][0]
            raw = pm.Normal(f"{cov}_raw", 0.0, priors.covariate_sd, dims=(f"{cov}_nonref", "stage"))
            full = pt.concatenate([raw[:ref_pos], pt.zeros((1, n_stage)), raw[ref_pos:]], axis=0)
            effect = pm.Deterministic(f"{cov}_effect", full, dims=(cov, "stage"))
            extra = extra + _rows(effect, _index(cells[cov], levels), n_stage)
        eta = eta + extra[:, :, None]

        # log P(path | class, cell) for each unique (cell, path) pair: pair x class.
        pair_path = data.pairs["path"].to_numpy()
        pair_cell_np = data.pairs["cell"].to_numpy()
        success = pm.Data("pair_success", (data.at_risk * data.reached)[pair_path])
        failure = pm.Data("pair_failure", (data.at_risk * (1.0 - data.reached))[pair_path])
        eta_pair = _rows(eta.reshape((len(cells), n_stage * n_class)), pair_cell_np,
                         n_stage * n_class).reshape((len(data.pairs), n_stage, n_class))
        log_path = pt.sum(success[:, :, None] * -pt.softplus(-eta_pair)
                          + failure[:, :, None] * -pt.softplus(eta_pair), axis=1)

        rows = data.rows
        pattern_idx = rows["pattern"].to_numpy()
        pair_idx = rows["pair"].to_numpy()
        row_cell = pair_cell_np[pair_idx]
        count = pm.Data("row_count", rows["count"].to_numpy(float))
        joint = (_rows(logw, row_cell, n_class) + _rows(log_pattern, pattern_idx, n_class)
                 + _rows(log_path, pair_idx, n_class))
        row_ll = pm.math.logsumexp(joint, axis=1, keepdims=False)
        pm.Potential("joint_loglik", pt.sum(count * row_ll))
    return model


def _rows(matrix, idx: np.ndarray, n_col: int):
    """``matrix[idx]`` (rows of a 2-d tensor) through one flat 1-d gather: its gradient is a
    1-d scatter-add, which has a compiled implementation, unlike the 2-d one (see
    ``models.gradient.model._take``)."""
    flat = (np.asarray(idx, dtype="int64")[:, None] * n_col + np.arange(n_col)[None, :]).ravel()
    return matrix.flatten()[flat].reshape((len(idx), n_col))


def _group(name: str, dim: str, sd, centred: bool):
    """Group x stage effects ~ Normal(0, sd[stage]), centred or non-centred (``{name}_z``)."""
    if centred:
        return pm.Normal(name, 0.0, sd, dims=(dim, "stage"))
    z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=(dim, "stage"))
    return pm.Deterministic(name, z * sd, dims=(dim, "stage"))


def loglik_function(model: pm.Model):
    """A compiled function of a point (value variables) returning the data log-likelihood
    (the mixture potential alone, no priors): for checks of the likelihood itself."""
    pot = [p for p in model.potentials if p.name == "joint_loglik"][0]
    (pot,) = model.replace_rvs_by_values([pot])  # a function of the values, not of random draws
    return model.compile_fn(pot, inputs=model.value_vars, on_unused_input="ignore")
