"""Label switching: align class labels across chains and draws, then fix a reported order.

The model's classes are exchangeable, so chains (or draws within a chain) may carry the
same solution under permuted labels; summaries and R-hat are meaningless until labels are
aligned.  Each draw's (or each chain's) classes are matched to a reference profile matrix
by the Hungarian algorithm on squared profile distance; without a given reference, the
reference starts as chain 0's mean and is refined to the pooled aligned mean until the
permutations stop changing (Stephens 2000, in its simplest form).

Alignment cannot merge genuinely different solutions: chains whose aligned mean profiles
still disagree beyond ``tolerance`` are reported as ``multimodal``, never averaged quietly.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment

PROFILE_VAR = "item_prob"
WEIGHT_VAR = "class_weight"


@dataclass
class Alignment:
    """An aligned posterior and how it was obtained.

    ``permutation[chain, draw, j]`` is the sampled label placed at reported position ``j``.
    ``chain_distance`` is, per chain, the largest absolute difference between its aligned
    mean item probabilities (or class weights) and the pooled mean; ``multimodal`` is True
    when any exceeds ``tolerance``.  ``switched_share`` is, per chain, the share of draws
    whose permutation differs from the chain's most common one (switching within a chain).
    ``reference`` is the pooled aligned mean item probability matrix (class x factor).
    """

    idata: az.InferenceData
    permutation: xr.DataArray
    reference: xr.DataArray
    chain_distance: xr.DataArray
    switched_share: xr.DataArray
    multimodal: bool
    tolerance: float
    iterations: int

    def summary(self) -> dict:
        return {"multimodal": self.multimodal, "tolerance": self.tolerance,
                "max_chain_distance": float(self.chain_distance.max()),
                "max_switched_share": float(self.switched_share.max()),
                "iterations": self.iterations}


def _match(cost: np.ndarray) -> np.ndarray:
    """Hungarian assignment for a stack of K x K costs -> (..., K) permutations."""
    flat = cost.reshape(-1, *cost.shape[-2:])
    out = np.empty(flat.shape[:2], dtype=np.int64)
    for i, c in enumerate(flat):
        rows, cols = linear_sum_assignment(c)
        out[i, rows] = cols
    return out.reshape(cost.shape[:-1])


def _cost(reference: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Squared distance of reference row j to candidate class k: (..., j, k)."""
    return ((reference[..., :, None, :] - profiles[..., None, :, :]) ** 2).sum(axis=-1)


def _permute(values: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Reorder axis 2 of (chain, draw, class, ...) by ``perm`` (chain, draw, class)."""
    idx = perm.reshape(perm.shape + (1,) * (values.ndim - 3))
    return np.take_along_axis(values, np.broadcast_to(idx, perm.shape + values.shape[3:]), axis=2)


def permute_classes(posterior: xr.Dataset, perm: np.ndarray) -> xr.Dataset:
    """Apply per-draw permutations to every variable with a ``class`` dim."""
    out = {}
    for name, var in posterior.data_vars.items():
        if "class" not in var.dims:
            out[name] = var
            continue
        rest = [d for d in var.dims if d not in ("chain", "draw", "class")]
        ordered = var.transpose("chain", "draw", "class", *rest)
        out[name] = ordered.copy(data=_permute(ordered.to_numpy(), perm)).transpose(*var.dims)
    return xr.Dataset(out, attrs=posterior.attrs)


def align_labels(idata: az.InferenceData, reference: xr.DataArray | np.ndarray | None = None, *,
                 level: str = "draw", tolerance: float = 0.1, max_iter: int = 50) -> Alignment:
    """Relabel ``idata``'s classes consistently and in a deterministic reported order.

    ``reference``: a class x factor matrix of item probabilities to align to; the reported
    classes then follow its rows (and take its ``class`` labels, if it has them).  Without
    it the reported order is by descending posterior mean class weight.
    ``level``: ``"draw"`` (every draw matched; handles switching within a chain) or
    ``"chain"`` (one permutation per chain, from the chain means).
    """
    if level not in ("draw", "chain"):
        raise ValueError("level must be 'draw' or 'chain'")
    post = idata.posterior
    profiles = post[PROFILE_VAR].transpose("chain", "draw", "class", "factor").to_numpy()
    n_chain, n_draw, n_class, _ = profiles.shape
    labels = list(post["class"].to_numpy())

    fixed = reference is not None
    if fixed:
        ref = np.asarray(reference.transpose("class", "factor").to_numpy()
                         if isinstance(reference, xr.DataArray) else reference, dtype=float)
        if ref.shape != profiles.shape[2:]:
            raise ValueError(f"reference shape {ref.shape} does not match class x factor {profiles.shape[2:]}")
        if isinstance(reference, xr.DataArray) and "class" in reference.coords:
            labels = [str(c) for c in reference["class"].to_numpy()]
    else:
        ref = profiles[0].mean(axis=0)

    perm = None
    for iteration in range(1, max_iter + 1):
        if level == "draw":
            new = _match(_cost(ref, profiles))
        else:
            new = np.broadcast_to(_match(_cost(ref, profiles.mean(axis=1)))[:, None, :],
                                  (n_chain, n_draw, n_class)).copy()
        stable = perm is not None and np.array_equal(new, perm)
        perm = new
        if fixed or stable:
            break
        ref = _permute(profiles, perm).mean(axis=(0, 1))

    if not fixed:  # reported order: largest class first, ties by position
        weights = _permute(post[WEIGHT_VAR].transpose("chain", "draw", "class").to_numpy(), perm)
        order = np.lexsort((np.arange(n_class), -weights.mean(axis=(0, 1))))
        perm = perm[:, :, order]
    aligned_post = permute_classes(post, perm).assign_coords({"class": labels})
    aligned = idata.copy()
    aligned.posterior = aligned_post

    chain_means = aligned_post[PROFILE_VAR].mean("draw")
    pooled = aligned_post[PROFILE_VAR].mean(("chain", "draw"))
    w_chain = aligned_post[WEIGHT_VAR].mean("draw")
    w_pooled = aligned_post[WEIGHT_VAR].mean(("chain", "draw"))
    distance = np.maximum(abs(chain_means - pooled).max(("class", "factor")),
                          abs(w_chain - w_pooled).max("class"))
    switched = [np.mean(~(perm[c] == _modal_row(perm[c])).all(axis=1)) for c in range(n_chain)]
    chain = post["chain"].to_numpy()
    return Alignment(
        idata=aligned,
        permutation=xr.DataArray(perm, dims=("chain", "draw", "class"),
                                 coords={"chain": chain, "draw": post["draw"].to_numpy(), "class": labels}),
        reference=pooled.rename("reference"),
        chain_distance=distance.rename("chain_distance"),
        switched_share=xr.DataArray(np.array(switched), dims="chain", coords={"chain": chain}),
        multimodal=bool((distance > tolerance).any()),
        tolerance=tolerance,
        iterations=iteration,
    )


def _modal_row(rows: np.ndarray) -> np.ndarray:
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    return unique[np.argmax(counts)]
