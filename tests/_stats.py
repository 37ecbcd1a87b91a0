"""The bounds behind the suite's stochastic assertions (tests/README.md, "Stochastic
assertions and seeds").

Rule: an assertion about a posterior or any other random quantity fails with probability at
most ``P_FALSE`` (1 in 1,000) when the code is right, for any ``CSC_TEST_SEED_OFFSET``.  Its
tolerance comes from one of these calculations, never from one seed's outcome:

- :func:`max_misses`: "at most m of n intervals at level q miss the truth".  For a calibrated
  posterior each interval misses with probability 1 - q; the misses are counted as
  independent (binomial), and m is the smallest count whose tail is <= ``P_FALSE``.
- :func:`z_bound`: "every one of n posterior means lies within z posterior SDs of its true
  value", for posteriors that are close to normal (regression coefficients informed by
  thousands of observations).  Two-sided normal tail, Bonferroni over n, widened for the
  Monte Carlo error of the mean and SD estimated from draws with the given ESS.
- :func:`rhat_limit`: a loose R-hat limit that a sampler which works exceeds with probability
  <= ``P_FALSE``, given the bulk ESS that the same check requires (a tail measured on
  autocorrelated chains, see the constant below).
- :func:`mc_sd`: the Monte Carlo SD of a probability estimated from posterior draws.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

#: The largest probability that one stochastic assertion fails when the code is right.
P_FALSE = 1e-3


def miss_probability(m: int, n: int, level: float) -> float:
    """P(more than ``m`` of ``n`` independent ``level`` intervals miss) for calibrated intervals."""
    return float(stats.binom.sf(m, n, 1.0 - level))


def max_misses(n: int, level: float, p_false: float = P_FALSE) -> int:
    """The fewest misses m with P(more than m of n ``level`` intervals miss) <= ``p_false``."""
    for m in range(n + 1):
        if miss_probability(m, n, level) <= p_false:
            return m
    return n


def z_bound(n: int = 1, p_false: float = P_FALSE, ess: float | None = None, df: int | None = None) -> float:
    """|posterior mean - truth| / posterior SD that n posteriors all stay within with
    probability >= 1 - ``p_false`` (two-sided, Bonferroni over n).

    Normal by default: a coefficient informed by thousands of observations.  ``df``: the
    coefficient is set by few groups (six LAs: ``df`` = groups - coefficients), so the
    standardised error is a Student t with ``df`` degrees of freedom over its own SD.  With
    ``ess`` (the smallest bulk ESS among them) the bound is widened for the Monte Carlo error
    of the mean (variance 1/ESS in posterior SD units) and of the SD (relative variance
    1/(2 ESS), which scales z): z x sqrt(1 + (1 + z^2/2)/ESS)."""
    if df is None:
        z = float(stats.norm.isf(p_false / (2 * n)))
    else:
        z = float(stats.t.isf(p_false / (2 * n), df) / np.sqrt(df / (df - 2)))
    if ess is not None:
        z *= float(np.sqrt(1.0 + (1.0 + z * z / 2.0) / ess))
    return z


def z_score(draws, truth) -> np.ndarray:
    """(posterior mean - truth) / posterior SD over all draws (array or xarray with chain and
    draw dims first; trailing dims are kept)."""
    values = np.asarray(draws, dtype=float)
    flat = values.reshape(-1, *values.shape[2:]) if values.ndim >= 2 else values.reshape(-1)
    return (flat.mean(axis=0) - np.asarray(truth, dtype=float)) / flat.std(axis=0)


def normal_tail(z: float) -> float:
    """Two-sided standard normal tail P(|Z| > z)."""
    return float(2 * stats.norm.sf(abs(z)))


def one_sided_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return float(stats.norm.sf(z))


def mc_sd(p: float, ess: float) -> float:
    """Monte Carlo SD of a posterior probability ``p`` estimated from draws with this ESS."""
    return float(np.sqrt(max(p * (1 - p), 0.0) / ess))


#: Upper tail of (R-hat - 1) x bulk ESS for one quantity of chains that sample their target
#: correctly: P((R-hat - 1) x ESS > value) = key.  Measured on 2 chains of AR(1) draws
#: (autocorrelation 0.6, 0.8, 0.9; 300 and 500 draws per chain; bulk ESS 32-150) with ArviZ's
#: R-hat (the larger of rank-normalised split R-hat and its folded version): 1,500,000
#: replicates, the three settings giving the same tail.  A chain stuck elsewhere gives
#: R-hat - 1 of order one whatever the ESS.
RHAT_ESS_TAIL = {1e-2: 7.25, 1e-3: 10.44, 1e-4: 13.42, 1e-5: 16.2}


def rhat_limit(min_ess: float, n_quantities: int = 1, p_false: float = P_FALSE) -> float:
    """An R-hat limit that ``n_quantities`` correctly sampled quantities, each with bulk ESS
    >= ``min_ess``, all stay under with probability >= 1 - ``p_false`` (Bonferroni)."""
    per = p_false / n_quantities
    levels = sorted(RHAT_ESS_TAIL, reverse=True)
    # log-linear interpolation of the measured tail; beyond 1e-5, extrapolate the last slope
    logs = np.log10(levels)
    values = np.array([RHAT_ESS_TAIL[p] for p in levels])
    c = float(np.interp(-np.log10(per), -logs, values, right=np.nan))
    if np.isnan(c):
        slope = (values[-1] - values[-2]) / (logs[-2] - logs[-1])
        c = values[-1] + slope * (logs[-1] - np.log10(per))
    return 1.0 + c / min_ess


def sign_floor(truth: float, sd: float, level: float, n: int = 1, ess: float = 200.0,
               p_false: float = P_FALSE) -> float:
    """The posterior probability of the true sign that the data guarantee: ``level`` where a
    calibrated, near-normal posterior with this SD about this truth reaches it with
    probability >= 1 - ``p_false`` (Bonferroni over n), else the lower value it does reach.

    P(sign) ~ Phi(m / SD) with the posterior mean m ~ N(truth, SD^2) (calibration), so it stays
    above Phi(|truth| / SD - z) but for probability p_false / 2 (z one-sided, over n); the
    estimate from draws adds Monte Carlo error, allowed for with the other p_false / 2."""
    z = float(stats.norm.isf(p_false / (2 * n)))
    floor = float(stats.norm.cdf(abs(truth) / sd - z))
    floor -= z * mc_sd(floor, ess)
    return max(min(level, floor), 0.0)


def corr_floor(truth, sd, p_false: float = P_FALSE, sims: int = 20_000) -> float:
    """The correlation between posterior medians and true values (over units: LAs) that a
    calibrated posterior stays above with probability >= 1 - ``p_false``: each median's error
    is drawn from N(0, its posterior SD^2) ``sims`` times (a fixed numerical integration, not
    one of the suite's random draws) and the ``p_false`` quantile of the correlation taken."""
    truth = np.asarray(truth, dtype=float)
    rng = np.random.default_rng(20240601)
    est = truth[None, :] + rng.normal(size=(sims, truth.size)) * np.asarray(sd, dtype=float)[None, :]
    est -= est.mean(axis=1, keepdims=True)
    t = truth - truth.mean()
    corr = (est @ t) / (np.sqrt((est ** 2).sum(axis=1)) * np.sqrt((t ** 2).sum()))
    return float(np.quantile(corr, p_false))


def max_block_misses(block_sizes, level: float, p_false: float = P_FALSE) -> int:
    """Like :func:`max_misses` for intervals that come in blocks which miss together (an LA's
    missing years share its level and trend): each block misses all its intervals with
    probability 1 - ``level``, independently of the others (the worst case within a block).
    The fewest misses m with P(more than m intervals miss) <= ``p_false``."""
    dist = np.array([1.0])
    for size in np.asarray(block_sizes, dtype=int):
        step = np.zeros(len(dist) + size)
        step[:len(dist)] += level * dist
        step[size:] += (1 - level) * dist
        dist = step
    tail = dist[::-1].cumsum()[::-1]   # tail[m] = P(misses >= m)
    for m in range(len(dist)):
        if m + 1 >= len(dist) or tail[m + 1] <= p_false:
            return m
    return len(dist) - 1


def order_floor(deltas, sds, level: float, n: int = 1, ess: float = 200.0, p_false: float = P_FALSE) -> float:
    """The posterior probability of an ordering (one class steeper than each of the others)
    that the data guarantee: the ordering fails only if some contrast i (true value
    ``deltas[i]`` > 0, posterior SD ``sds[i]``) comes out negative, so
    P(ordering) >= 1 - sum_i Phi(z - delta_i / SD_i) but for probability p_false / 2 (each
    contrast's posterior mean within z SDs of its truth, one-sided, Bonferroni over the
    contrasts and n); the other p_false / 2 allows for the Monte Carlo error of the estimate.
    Capped at ``level``; 0 where the data guarantee nothing."""
    deltas, sds = np.asarray(deltas, float), np.asarray(sds, float)
    z = float(stats.norm.isf(p_false / (2 * n * len(deltas))))
    floor = 1.0 - float(np.sum(stats.norm.cdf(z - deltas / sds)))
    floor -= float(stats.norm.isf(p_false / (2 * n))) * mc_sd(min(max(floor, 0.0), 1.0), ess)
    return max(min(level, floor), 0.0)


def mahalanobis(draws, truth) -> float:
    """(mean - truth)' S^-1 (mean - truth) for draws (sample x k) with sample covariance S: a
    chi-square with k degrees of freedom for a calibrated, near-normal posterior."""
    draws = np.asarray(draws, dtype=float)
    diff = draws.mean(axis=0) - np.asarray(truth, dtype=float)
    return float(diff @ np.linalg.solve(np.cov(draws, rowvar=False), diff))


def mahalanobis_bound(k: int, ess: float | None = None, p_false: float = P_FALSE) -> float:
    """The value :func:`mahalanobis` of k near-normal quantities stays under with probability
    >= 1 - ``p_false``: chi-square(k); with ``ess``, Hotelling's T^2 for a covariance estimated
    from about ESS independent draws, times (1 + 1/ESS) for the Monte Carlo error of the mean."""
    if ess is None:
        return float(stats.chi2.isf(p_false, k))
    n = float(ess)
    return float(k * (n - 1) / (n - k) * stats.f.isf(p_false, k, n - k) * (1 + 1 / n))


#: The bulk and tail ESS below which a test calls a short run's sampler broken.  Measured, not
#: derived: the smallest any CORE quantity reached over seed offsets 0-3 was 28-34 for the
#: six-LA gradient and joint fits at 2 x 500 draws (tests/README.md); chains on a broken
#: geometry give single figures.
BROKEN_ESS = 10


def sampler_check(idata, var_names, max_divergences: int, min_ess: float = BROKEN_ESS,
                  p_false: float = P_FALSE) -> dict:
    """A short run's sampler works: every quantity's R-hat within what its own ESS allows
    (:func:`rhat_limit` per quantity at the smaller of bulk and tail ESS, Bonferroni over all
    of them: P <= ``p_false`` for chains that behave like the AR(1) chains the tail was
    measured on; real posteriors with heavy tails can exceed it, as the joint fit did at seed
    offset 1), no ESS below ``min_ess``, at most ``max_divergences``.

    A fixed R-hat limit and ESS floor (the reporting gate's shape) either fail by chance on a
    slow-mixing SD or pass chains that disagree; judging R-hat against each quantity's own ESS
    does neither.  Returns the figures, the quantities that failed and ``passed``."""
    from models.sampling import convergence_table, divergences

    table = convergence_table(idata, var_names)
    n = len(table)
    # the smaller of bulk and tail ESS: ArviZ's R-hat is the larger of the rank-normalised and
    # the folded (tail) one, and on the joint fit a quantity with high bulk ESS crossed the
    # bulk-based limit through its tails (seed offset 1)
    ess = np.minimum(table["ess_bulk"], table["ess_tail"]).clip(lower=1.0)
    limits = np.array([rhat_limit(e, n, p_false) for e in ess])
    over = table.index[table["r_hat"].to_numpy() > limits].tolist()
    low = table.index[(table["ess_bulk"] < min_ess) | (table["ess_tail"] < min_ess)].tolist()
    div = int(divergences(idata))
    return {"max_r_hat": float(table["r_hat"].max()), "min_ess_bulk": float(table["ess_bulk"].min()),
            "min_ess_tail": float(table["ess_tail"].min()), "divergences": div,
            "r_hat_beyond_its_ess": over, "ess_below_floor": low,
            "passed": not over and not low and div <= max_divergences}


def min_ess(draws) -> float:
    """The smallest bulk ESS among the quantities in ``draws``: an xarray with chain and draw
    dims, or an array shaped (chain, draw, ...)."""
    import arviz as az

    values = np.asarray(draws.transpose("chain", "draw", ...) if hasattr(draws, "dims") else draws)
    return float(np.min(az.ess(az.convert_to_dataset({"x": values}))["x"].values))
