"""Fit the joint model end to end: EM start, MCMC, label alignment, diagnostics.

Chains start at the best of many EM runs of the factor part (the mixture is multimodal),
then every class-indexed parameter (weights, item probabilities, class intercepts and
gradients, LA deviations of the class logits) is permuted with the same per-draw
permutation found on the item probabilities (:func:`models.latent_class.labels.align_labels`),
so a class's outcome parameters travel with its profile.  Diagnostics are read after
alignment: R-hat on raw labels measures label switching, not convergence.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from models.joint.data import JointData
from models.joint.model import JointSpec, build_joint_model, initial_values
from models.latent_class.em import EMResult, fit_em
from models.latent_class.labels import Alignment, align_labels
from models.latent_class.model import LatentClassPriors
from models.priors import PriorSet, get_prior_set
from models.sampling import ConvergenceGate, SamplerSettings, convergence_table, fit

CORE = ["class_weight", "item_prob", "class_intercept", "class_gradient", "within_effect",
        "contextual_effect", "la_sd", "la_slope_sd", "lsoa_sd", "la_class_sd"]


@dataclass
class JointFit:
    data: JointData
    spec: JointSpec
    em: EMResult
    idata: az.InferenceData          # aligned; classes in the reported order
    alignment: Alignment
    convergence: pd.DataFrame
    gate: dict

    @property
    def citable(self) -> bool:
        return bool(self.gate["passed"] and not self.alignment.multimodal)


def fit_joint(data: JointData, spec: JointSpec, settings: SamplerSettings = SamplerSettings(),
              priors: PriorSet | None = None, lc_priors: LatentClassPriors = LatentClassPriors(), *,
              n_starts: int = 20, em_seed: int = 0, reference: xr.DataArray | np.ndarray | None = None,
              tolerance: float = 0.1, gate: ConvergenceGate = ConvergenceGate()) -> JointFit:
    """EM start, sample, align labels (to ``reference`` item profiles, class x factor, if given)."""
    priors = priors or get_prior_set("default")
    em = fit_em(data.patterns, spec.n_classes, n_starts=n_starts, seed=em_seed,
                alpha=lc_priors.weight_concentration, a=lc_priors.item_a, b=lc_priors.item_b)
    model = build_joint_model(data, spec, priors, lc_priors, initial=initial_values(data, em))
    raw = fit(model, settings)
    if spec.n_classes > 1:
        alignment = align_labels(raw, reference, level="draw", tolerance=tolerance)
    else:
        alignment = align_labels(raw, None, level="chain", tolerance=tolerance)
    idata = alignment.idata
    idata.posterior.attrs["joint_spec"] = str(spec.as_dict())
    return JointFit(data=data, spec=spec, em=em, idata=idata, alignment=alignment,
                    convergence=convergence_table(idata, CORE), gate=gate.check(idata, CORE))
