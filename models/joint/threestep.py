"""The three-step approach the joint model replaces: latent class fit -> modal class -> gradient model.

1. the Bayesian latent class model on the factor patterns (:mod:`models.latent_class.fit`);
2. each episode takes its modal class (the most probable class given its pattern);
3. the transition-scale gradient model (:mod:`models.gradient.model`) is fitted with the
   modal class as a covariate: class-specific intercepts and class-specific gradient shifts
   at every stage, LA and LSOA effects, the within/between split.

Step 3 treats the modal class as known: misclassified episodes pull every class's
outcome parameters towards the others' (bias), and the uncertainty of the classification
never reaches the intervals (overconfidence).  :func:`class_parameters` restates the
gradient model's posterior in the joint model's names (``class_intercept``,
``class_gradient`` by stage and class, ``between_effect``), so :mod:`models.joint.effects`
reads both the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from models.gradient.model import GradientSpec, build_gradient_model
from models.joint.data import JointData
from models.latent_class.fit import LatentClassFit, fit_latent_class
from models.latent_class.model import LatentClassPriors
from models.latent_class.profiles import membership
from models.priors import PriorSet, get_prior_set
from models.sampling import SamplerSettings, fit


@dataclass
class ThreeStepFit:
    latent_class: LatentClassFit
    modal: np.ndarray            # modal class label per unique pattern
    cells: pd.DataFrame          # binomial transition cells with the modal class
    spec: GradientSpec
    idata: az.InferenceData      # the gradient model's posterior (step 3)

    def class_parameters(self) -> xr.Dataset:
        return class_parameters(self.idata.posterior)


def modal_transition_cells(data: JointData, class_of_pattern: np.ndarray) -> pd.DataFrame:
    """Binomial cells (stage x cell x class) from the joint data, each episode counted in its
    pattern's modal class: ``trials`` at risk of the stage, ``successes`` reaching it."""
    rows = data.rows
    path = data.row_path()
    cell = data.row_cell()
    klass = np.asarray(class_of_pattern)[rows["pattern"].to_numpy()]
    count = rows["count"].to_numpy()
    parts = []
    for j, stage in enumerate(data.stages):
        risk = data.at_risk[path, j] > 0
        frame = pd.DataFrame({"cell": cell[risk], "demand_class": klass[risk], "trials": count[risk],
                              "successes": count[risk] * data.reached[path[risk], j].astype(np.int64)})
        grouped = frame.groupby(["cell", "demand_class"], sort=True).sum().reset_index()
        grouped.insert(0, "stage", stage)
        parts.append(grouped)
    out = pd.concat(parts, ignore_index=True)
    out = out.join(data.cells, on="cell").drop(columns="cell")
    out["year"] = 0  # one period: the gradient model then fits no year effects
    out["stage"] = pd.Categorical(out["stage"], categories=list(data.stages))
    out["demand_class"] = pd.Categorical(out["demand_class"], categories=sorted(set(map(str, class_of_pattern))))
    out[["trials", "successes"]] = out[["trials", "successes"]].astype("int64")
    return out


def three_step(data: JointData, n_classes: int, settings: SamplerSettings = SamplerSettings(),
               priors: PriorSet | None = None, lc_priors: LatentClassPriors = LatentClassPriors(), *,
               n_starts: int = 20, em_seed: int = 0, reference: xr.DataArray | np.ndarray | None = None,
               lc_settings: SamplerSettings | None = None) -> ThreeStepFit:
    """Fit the three steps on the same data as the joint model (``reference``: class x factor
    item profiles to label classes by, as in :func:`models.joint.fit.fit_joint`)."""
    priors = priors or get_prior_set("default")
    lc = fit_latent_class(data.patterns, n_classes, lc_settings or settings, lc_priors,
                          n_starts=n_starts, em_seed=em_seed, reference=reference)
    member = membership(lc.idata, data.patterns)
    labels = [str(c) for c in member["class"].to_numpy()]
    modal = np.array(labels, dtype=object)[member.to_numpy().argmax(axis=1)]
    cells = modal_transition_cells(data, modal)
    present = [c for c in labels if c in set(modal)]
    spec = GradientSpec(scale="transition", covariates=(*data.covariates, "demand_class"),
                        year_effects=False, reference={"demand_class": present[0]})
    idata = fit(build_gradient_model(cells, spec, priors), settings)
    return ThreeStepFit(latent_class=lc, modal=modal, cells=cells, spec=spec, idata=idata)


def class_parameters(post: xr.Dataset) -> xr.Dataset:
    """The gradient model's class terms in the joint model's names and dims (stage, class):
    intercept + class effect, within effect + class gradient shift, and the between and
    contextual effects (common to classes)."""
    effect = post["demand_class_effect"].rename(demand_class="class")
    shift = (post["demand_class_gradient_shift"].rename(demand_class="class")
             if "demand_class_gradient_shift" in post else 0.0 * effect)
    return xr.Dataset({
        "class_intercept": (post["intercept"] + effect).transpose("chain", "draw", "stage", "class"),
        "class_gradient": (post["within_effect"] + shift).transpose("chain", "draw", "stage", "class"),
        "between_effect": post["between_effect"],
        "contextual_effect": post["contextual_effect"],
    })
