"""Named, swappable prior sets for the multilevel models.

Scales: logit (transitions) or log (population rates), with deprivation in decile units,
so a slope of 0.26 is the published x1.3 per decile step.  Each set names every prior, so
a methodologist can refit under another set by name and compare (``workflows sensitivity``).

- ``default``: weakly informative; slopes N(0, 0.3) (x1.35 per decile step at 1 SD, x1.8
  at 2 SD: well beyond the published x1.3 for plans), intercepts N(empirical, 1), SDs
  half-normal.  Its prior predictive rates per 10,000 by decile stay within a factor of
  about 10-30 of the observed overall rate (notebook 02), rather than reaching the
  tens of thousands a flatter set allows.
- ``wide``: everything four times wider: how much do conclusions lean on the default?
- ``pc``: exponential (penalised-complexity style) priors on the SDs, shrinking group
  variation towards none: P(LA SD > 1) = 0.01, P(LA slope SD > 0.2) = 0.01.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pymc as pm


@dataclass(frozen=True)
class SDPrior:
    """A prior on a standard deviation: half-normal (scale) or exponential (``rate``)."""

    kind: str
    scale: float

    def __call__(self, name: str, dims=None):
        if self.kind == "halfnormal":
            return pm.HalfNormal(name, sigma=self.scale, dims=dims)
        if self.kind == "exponential":
            return pm.Exponential(name, lam=1.0 / self.scale, dims=dims)
        raise ValueError(f"unknown SD prior kind {self.kind!r}")

    def describe(self) -> str:
        if self.kind == "halfnormal":
            return f"HalfNormal({self.scale:g})"
        return f"Exponential(rate={1 / self.scale:.3g})"


@dataclass(frozen=True)
class PriorSet:
    """Every prior of the gradient models, by role."""

    name: str
    intercept_sd: float       # N(mu, sd) around the empirical logit/log of the stage's rate
    slope_sd: float           # within (social gradient) and contextual effects
    covariate_sd: float       # main effects of age group, ethnicity, class, year
    interaction_sd: float     # covariate x deprivation gradient shifts
    la_sd: SDPrior
    la_slope_sd: SDPrior
    lsoa_sd: SDPrior
    lkj_eta: float = 2.0      # LKJ shape when LA effects are correlated across stages

    def describe(self) -> dict[str, str]:
        return {
            "intercept": f"Normal(empirical, {self.intercept_sd:g})",
            "within / contextual": f"Normal(0, {self.slope_sd:g})",
            "covariates, years": f"Normal(0, {self.covariate_sd:g})",
            "gradient interactions": f"Normal(0, {self.interaction_sd:g})",
            "LA intercept SD": self.la_sd.describe(),
            "LA slope SD": self.la_slope_sd.describe(),
            "LSOA SD": self.lsoa_sd.describe(),
            "LKJ eta": f"{self.lkj_eta:g}",
        }

    def as_dict(self) -> dict:
        return asdict(self)


def _exp_for(upper: float, tail: float) -> SDPrior:
    """Exponential with P(SD > upper) = tail (the PC-prior recipe); stored by its mean."""
    return SDPrior("exponential", upper / -np.log(tail))


PRIOR_SETS: dict[str, PriorSet] = {
    "default": PriorSet("default", 1.0, 0.3, 1.0, 0.15, SDPrior("halfnormal", 0.5),
                        SDPrior("halfnormal", 0.1), SDPrior("halfnormal", 0.5)),
    "wide": PriorSet("wide", 4.0, 1.2, 4.0, 0.6, SDPrior("halfnormal", 2.0),
                     SDPrior("halfnormal", 0.4), SDPrior("halfnormal", 2.0), lkj_eta=1.0),
    "pc": PriorSet("pc", 1.0, 0.3, 1.0, 0.15, _exp_for(1.0, 0.01), _exp_for(0.2, 0.01),
                   _exp_for(1.0, 0.01)),
}


def get_prior_set(name: str) -> PriorSet:
    try:
        return PRIOR_SETS[name]
    except KeyError:
        raise KeyError(f"unknown prior set {name!r}; choose one of {', '.join(PRIOR_SETS)}") from None
