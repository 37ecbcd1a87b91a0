"""The Bayesian latent class model on weighted response patterns.

    class_weight ~ Dirichlet(alpha)                      (class)
    item_prob[k, j] ~ Beta(a, b)                          (class x factor)
    log P(pattern y) = logsumexp_k [log w_k + sum_j y_j log p_kj + (1 - y_j) log(1 - p_kj)]

The discrete class is marginalised (never sampled), and each unique pattern's
log-likelihood is multiplied by its count (a ``pm.Potential``): the same posterior as one
Bernoulli mixture row per episode.  Classes are exchangeable under these priors, so the
posterior has K! symmetric labellings: see :mod:`models.latent_class.labels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from models.latent_class.em import EMResult
from models.latent_class.patterns import Patterns

#: Initial values are kept this far from 0 and 1 (boundary MLEs have infinite logits).
INIT_CLIP = 1e-3


@dataclass(frozen=True)
class LatentClassPriors:
    """Dirichlet(``weight_concentration``) on class weights, Beta(``item_a``, ``item_b``) on items.

    The default is flat (all 1), as in the validation against published MLEs; larger
    values shrink small classes and boundary item probabilities.
    """

    weight_concentration: float = 1.0
    item_a: float = 1.0
    item_b: float = 1.0

    def describe(self) -> dict[str, str]:
        return {"class_weight": f"Dirichlet({self.weight_concentration:g})",
                "item_prob": f"Beta({self.item_a:g}, {self.item_b:g})"}


def class_labels(n_classes: int) -> list[str]:
    """Neutral labels ``c1..cK``; names come later, from profiles (:mod:`.profiles`)."""
    return [f"c{k + 1}" for k in range(n_classes)]


def pattern_class_loglik(matrix, profiles):
    """log P(pattern | class), pattern x class, as a PyTensor expression.

    ``sum_j y_j log p_kj + (1 - y_j) log(1 - p_kj) = sum_j y_j logit(p_kj) + sum_j log(1 - p_kj)``:
    one matrix product instead of two, in the log density and again in its gradient
    (benchmarks/bench_likelihood.py).
    """
    y = pt.as_tensor_variable(matrix)
    log_q = pt.log1p(-profiles)
    return pt.dot(y, (pt.log(profiles) - log_q).T) + pt.sum(log_q, axis=1)[None, :]


def build_model(patterns: Patterns, n_classes: int, priors: LatentClassPriors = LatentClassPriors(),
                initial: EMResult | None = None) -> pm.Model:
    """PyMC model with dims ``class``, ``factor``, ``pattern``.

    ``initial`` (an EM solution) sets the initial values every chain jitters around: chains
    then start in the best mode found by EM rather than wherever a random start falls.
    """
    if n_classes < 1:
        raise ValueError("n_classes must be >= 1")
    coords = {"class": class_labels(n_classes), "factor": list(patterns.factors),
              "pattern": np.arange(patterns.n_patterns)}
    init_w = init_p = None
    if initial is not None:
        if initial.profiles.shape != (n_classes, len(patterns.factors)):
            raise ValueError("initial solution does not match n_classes x factors")
        init_w = np.clip(initial.weights, INIT_CLIP, None)
        init_w = init_w / init_w.sum()
        init_p = np.clip(initial.profiles, INIT_CLIP, 1 - INIT_CLIP)
    with pm.Model(coords=coords) as model:
        y = pm.Data("pattern_matrix", patterns.matrix.astype("float64"), dims=("pattern", "factor"))
        counts = pm.Data("pattern_count", patterns.counts.astype("float64"), dims="pattern")
        if n_classes > 1:
            weight = pm.Dirichlet("class_weight", a=np.full(n_classes, priors.weight_concentration),
                                  dims="class", initval=init_w)
        else:  # one class: the weight is 1, not a parameter
            weight = pm.Deterministic("class_weight", pt.ones(1), dims="class")
        item = pm.Beta("item_prob", alpha=priors.item_a, beta=priors.item_b,
                       dims=("class", "factor"), initval=init_p)
        joint = pt.log(weight)[None, :] + pattern_class_loglik(y, item)
        pattern_ll = pm.math.logsumexp(joint, axis=1, keepdims=False)
        pm.Potential("weighted_loglik", pt.sum(counts * pattern_ll))
    return model
