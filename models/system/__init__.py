"""System conditions at local authority level (issue 6): models on the LA x year panel.

- :mod:`.data`: panel -> long arrays of observed cells, with the missing (suppressed) cells
  counted, never dropped as LAs;
- :mod:`.components`: LKJ-correlated LA effects, year effects centred within each outcome's
  own years, the prior set;
- :mod:`.trends`: the shift to late intervention (CPP and CLA relative to referrals, with
  LA-varying trends);
- :mod:`.conditions`: screen, ration and churn as one multivariate model;
- :mod:`.gradient`: the LA-level deprivation gradient of intervention rates;
- :mod:`.simulate`: panel-shaped data with known parameters, for recovery tests;
- :mod:`.plots`: figures (returned, never saved here).
"""
