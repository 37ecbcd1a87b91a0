"""Fit a latent class model end to end: patterns, EM start, MCMC, label alignment, diagnostics.

Diagnostics are computed on the aligned posterior: R-hat on raw labels measures label
switching, not convergence.

nutpie also stores the sampler's unconstrained copies of the parameters (names ending in
``__``: ``class_weight_simplex__``, ``item_prob_logodds__``).  Alignment permutes only
variables with a ``class`` dim, and a simplex transform has K - 1 coordinates, so those
copies would silently keep the raw labels: they are dropped (:func:`drop_unconstrained`)
before alignment and diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from models.latent_class.em import EMResult, fit_em
from models.latent_class.labels import Alignment, align_labels
from models.latent_class.model import LatentClassPriors, build_model
from models.latent_class.patterns import Patterns, collapse
from models.sampling import ConvergenceGate, SamplerSettings, convergence_table, fit

VAR_NAMES = ["class_weight", "item_prob"]


def drop_unconstrained(idata: az.InferenceData) -> az.InferenceData:
    """``idata`` without the posterior's transformed-space variables (names ending in ``__``)
    and the dims only they used; a copy, or ``idata`` itself when there are none."""
    post = idata.posterior
    hidden = [name for name in post.data_vars if str(name).endswith("__")]
    if not hidden:
        return idata
    kept = post.drop_vars(hidden)
    used = {d for var in kept.data_vars.values() for d in var.dims}
    unused = [d for d in kept.dims if d not in used]
    if unused:
        kept = kept.drop_dims(unused)
    out = idata.copy()
    out.posterior = kept
    return out


@dataclass
class LatentClassFit:
    patterns: Patterns
    em: EMResult
    idata: az.InferenceData          # aligned; classes in the reported order
    alignment: Alignment
    convergence: pd.DataFrame        # R-hat, bulk/tail ESS after alignment
    gate: dict                       # ConvergenceGate.check on the aligned posterior

    @property
    def citable(self) -> bool:
        """Passes the gate and shows no unresolved multimodality."""
        return bool(self.gate["passed"] and not self.alignment.multimodal)


def fit_latent_class(data: pd.DataFrame | np.ndarray | Patterns, n_classes: int,
                     settings: SamplerSettings = SamplerSettings(),
                     priors: LatentClassPriors = LatentClassPriors(), *,
                     n_starts: int = 20, em_seed: int = 0,
                     reference: xr.DataArray | np.ndarray | None = None,
                     level: str = "draw", tolerance: float = 0.1,
                     gate: ConvergenceGate = ConvergenceGate()) -> LatentClassFit:
    """Collapse ``data`` to patterns, start every chain at the best of ``n_starts`` EM runs
    (posterior mode under ``priors``), sample, align labels (to ``reference`` if given)."""
    patterns = data if isinstance(data, Patterns) else collapse(data)
    em = fit_em(patterns, n_classes, n_starts=n_starts, seed=em_seed,
                alpha=priors.weight_concentration, a=priors.item_a, b=priors.item_b)
    raw = drop_unconstrained(fit(build_model(patterns, n_classes, priors, initial=em), settings))
    if n_classes > 1:
        alignment = align_labels(raw, reference, level=level, tolerance=tolerance)
    else:
        alignment = align_labels(raw, None, level="chain", tolerance=tolerance)
    var_names = VAR_NAMES if n_classes > 1 else ["item_prob"]
    return LatentClassFit(patterns=patterns, em=em, idata=alignment.idata, alignment=alignment,
                          convergence=convergence_table(alignment.idata, var_names),
                          gate=gate.check(alignment.idata, var_names))
