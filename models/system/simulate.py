"""Panel-shaped synthetic data with known parameters, for recovery tests and notebooks.

Each function returns ``(panel, truth)``: a DataFrame with the panel's own column names
(``la_code``, ``year``, ``population_0_17``, ``idaci_2019``, counts ``*_n``, workforce
percentages) generated from the model it is named after, and a dict of the true values
(arrays labelled by the same stage / outcome order the model uses).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.system import data as sysdata


def _frame(n_la: int, years, rng) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The LA x year grid with populations and IDACI scores like England's (0.05-0.40)."""
    years = list(years)
    codes = [f"E0{9000000 + i:07d}" for i in range(n_la)]
    pop = np.exp(rng.normal(np.log(60_000), 0.6, n_la)).round()
    idaci = np.clip(rng.normal(0.17, 0.06, n_la), 0.04, 0.42).round(3)
    grid = pd.DataFrame([(c, y) for c in codes for y in years], columns=["la_code", "year"])
    li = np.repeat(np.arange(n_la), len(years))
    grid["la_name"] = [f"Simulated LA {i + 1}" for i in li]
    grid["region_name"] = "Simulated"
    growth = 1 + 0.003 * (grid["year"].to_numpy() - years[0])
    grid["population_0_17"] = (pop[li] * growth).round().astype("int64")
    grid["idaci_2019"] = idaci[li]
    return grid, li, idaci


def _ols(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Least-squares coefficients (intercept first) of each column of y on x."""
    design = np.column_stack([np.ones(len(x)), x])
    return np.linalg.lstsq(design, y, rcond=None)[0]


def _corr(k: int, rho: float) -> np.ndarray:
    return np.full((k, k), rho) + (1 - rho) * np.eye(k)


def _nb(rng, mu: np.ndarray, cv: float) -> np.ndarray:
    """Negative binomial with mean mu and extra-Poisson coefficient of variation cv."""
    return rng.poisson(mu * rng.gamma(1 / cv**2, cv**2, size=mu.shape))


def simulate_trend_panel(n_la: int = 30, years=range(2015, 2021), seed: int = 1,
                         stages=("referrals", "cpp_start", "cla_31mar")):
    """Counts from the trend model (:mod:`models.system.trends`) with known slopes."""
    rng = np.random.default_rng(seed)
    grid, li, _ = _frame(n_la, years, rng)
    years = sorted(grid["year"].unique())
    t = grid["year"].to_numpy(float) - np.mean(years)
    base = {"referrals": 550, "s47": 160, "icpc": 65, "cpp_start": 60, "cpp_31mar": 45,
            "cla_31mar": 68, "cin_31mar": 330, "assessments": 520}
    slope_of = {"referrals": -0.01, "cpp_start": 0.02, "cla_31mar": 0.03}
    k = len(stages)
    intercept = np.log([base[s] / 1e4 for s in stages])
    slope = np.array([slope_of.get(s, 0.0) for s in stages])
    sd = np.r_[np.full(k, 0.3), np.full(k, 0.03)]
    corr = _corr(2 * k, 0.3)
    u = rng.multivariate_normal(np.zeros(2 * k), corr * np.outer(sd, sd), size=n_la)
    cv = 0.06
    for j, s in enumerate(stages):
        mu = grid["population_0_17"].to_numpy() * np.exp(intercept[j] + slope[j] * t + u[li, j] + u[li, k + j] * t)
        grid[sysdata.MEASURES[s][0]] = _nb(rng, mu, cv)
    truth = {"stages": list(stages), "intercept": intercept, "slope": slope, "la_level": u[:, :k],
             "la_trend": u[:, k:], "la_sd": sd, "overdispersion": cv, "centre_year": float(np.mean(years)),
             # what one sample of LAs reveals: the national values plus the mean drawn LA effect
             "slope_sample": slope + u[:, k:].mean(axis=0), "intercept_sample": intercept + u[:, :k].mean(axis=0)}
    return grid, truth


def simulate_gradient_panel(n_la: int = 30, years=range(2015, 2021), seed: int = 2,
                            stages=("referrals", "s47", "cpp_start", "cla_31mar"),
                            gradient=(0.15, 0.25, 0.30, 0.35)):
    """Counts from the LA deprivation gradient model (:mod:`models.system.gradient`):
    log rate = intercept + gradient x IDACI z-score + year effect + LA effect."""
    rng = np.random.default_rng(seed)
    grid, li, idaci = _frame(n_la, years, rng)
    z = (idaci - idaci.mean()) / idaci.std()
    years = sorted(grid["year"].unique())
    yi = grid["year"].map({y: i for i, y in enumerate(years)}).to_numpy()
    base = {"referrals": 550, "s47": 160, "icpc": 65, "cpp_start": 60, "cla_31mar": 68, "cin_31mar": 330}
    k = len(stages)
    intercept = np.log([base[s] / 1e4 for s in stages])
    gradient = np.asarray(gradient, float)
    year = rng.normal(0, 0.05, (k, len(years)))
    year -= year.mean(axis=1, keepdims=True)
    sd = np.full(k, 0.25)
    u = rng.multivariate_normal(np.zeros(k), _corr(k, 0.5) * np.outer(sd, sd), size=n_la)
    cv = 0.06
    for j, s in enumerate(stages):
        mu = grid["population_0_17"].to_numpy() * np.exp(intercept[j] + gradient[j] * z[li] + year[j, yi] + u[li, j])
        grid[sysdata.MEASURES[s][0]] = _nb(rng, mu, cv)
    truth = {"stages": list(stages), "intercept": intercept, "gradient": gradient, "year_effect": year,
             "la_effect": u, "la_sd": sd,
             # with 30 LAs the drawn LA effects correlate with IDACI by chance: the slope of the
             # LAs' true levels on IDACI is what one sample of LAs can reveal
             "gradient_sample": _ols(gradient[None, :] * z[:, None] + u, z[:, None])[1]}
    return grid, truth


def simulate_conditions_panel(n_la: int = 30, years=range(2015, 2021), seed: int = 3):
    """LA-years from the screen/ration/churn model (:mod:`models.system.conditions`):
    NFA share (beta-binomial on referrals) and four continuous workforce / spend outcomes,
    on their transformed scales = intercept + b_dep x IDACI z + b_between x LA demand z +
    b_within x within-LA demand + year effect + correlated LA effect + noise."""
    rng = np.random.default_rng(seed)
    grid, li, idaci = _frame(n_la, years, rng)
    z = (idaci - idaci.mean()) / idaci.std()
    years = sorted(grid["year"].unique())
    yi = grid["year"].map({y: i for i, y in enumerate(years)}).to_numpy()
    n = len(grid)
    # demand: log CIN rate per child, higher in deprived LAs, varying within LA
    la_demand = np.log(0.033) + 0.25 * z + rng.normal(0, 0.15, n_la)
    log_cin = la_demand[li] + rng.normal(0, 0.08, n)
    pop = grid["population_0_17"].to_numpy()
    grid["cin_31mar_n"] = rng.poisson(pop * np.exp(log_cin))
    # the model's demand covariates, computed the way the model computes them
    cin_rate = np.log(grid["cin_31mar_n"] / pop)
    cin_rate = pd.Series(cin_rate.to_numpy())
    between_raw = pd.Series(cin_rate).groupby(li).transform("mean").to_numpy()
    la_b = pd.Series(cin_rate).groupby(li).mean().to_numpy()
    between = (between_raw - la_b.mean()) / la_b.std()
    within = (cin_rate - between_raw).to_numpy()

    outcomes = ["nfa", "caseload", "agency", "turnover", "vacancy"]
    transforms = {"caseload": "log", "agency": "logit_pct", "turnover": "logit_pct", "vacancy": "logit_pct"}
    columns = {"caseload": "caseload_fte", "agency": "agency_rate_pct", "turnover": "turnover_rate_pct",
               "vacancy": "vacancy_rate_pct"}
    intercept = np.array([np.log(0.08 / 0.92), np.log(16.5), np.log(0.15 / 0.85), np.log(0.15 / 0.85),
                          np.log(0.16 / 0.84)])
    b_dep = np.array([0.30, 0.05, 0.20, 0.10, 0.15])
    b_between = np.array([-0.20, 0.08, 0.00, 0.05, 0.10])
    b_within = np.array([-0.5, 0.3, 0.4, 0.0, 0.3])
    la_sd = np.array([0.6, 0.12, 0.45, 0.25, 0.35])
    corr = np.array([[1.0, 0.3, 0.2, 0.0, 0.1],
                     [0.3, 1.0, 0.4, 0.3, 0.3],
                     [0.2, 0.4, 1.0, 0.5, 0.6],
                     [0.0, 0.3, 0.5, 1.0, 0.4],
                     [0.1, 0.3, 0.6, 0.4, 1.0]])
    u = rng.multivariate_normal(np.zeros(5), corr * np.outer(la_sd, la_sd), size=n_la)
    year = rng.normal(0, 0.05, (5, len(years)))
    year -= year.mean(axis=1, keepdims=True)
    resid = np.array([np.nan, 0.06, 0.25, 0.20, 0.22])
    eta = (intercept[None, :] + b_dep[None, :] * z[li, None] + b_between[None, :] * between[:, None]
           + b_within[None, :] * within[:, None] + year[:, yi].T + u[li])
    referrals = rng.poisson(pop * 0.055)
    p = 1 / (1 + np.exp(-eta[:, 0]))
    phi = 150.0
    grid["referrals_n"] = referrals
    grid["referrals_nfa_n"] = rng.binomial(referrals, rng.beta(p * phi, (1 - p) * phi))
    for j, name in enumerate(outcomes[1:], start=1):
        value = eta[:, j] + rng.normal(0, resid[j], n)
        grid[columns[name]] = sysdata.back_transform(value, transforms[name]).round(3)
    la_between = pd.Series(between).groupby(li).first().to_numpy()
    la_true = b_dep[None, :] * z[:, None] + b_between[None, :] * la_between[:, None] + u
    coef = _ols(la_true, np.column_stack([z, la_between]))
    truth = {"outcomes": outcomes, "intercept": intercept, "b_deprivation": b_dep,
             "b_deprivation_sample": coef[1], "b_demand_between_sample": coef[2],
             "b_demand_between": b_between, "b_demand_within": b_within, "la_sd": la_sd, "la_corr": corr,
             "la_effect": u, "residual_sd": resid, "phi": phi}
    return grid, truth
