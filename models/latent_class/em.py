"""Penalised EM for the latent class model on weighted patterns, in numpy.

Why: the likelihood is multimodal, so MCMC chains start from the best of many EM runs
(the posterior mode under the same Beta/Dirichlet priors), and BIC/entropy are read at
that mode.  With all prior parameters 1 the mode is the maximum-likelihood estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from models.latent_class.patterns import Patterns
from models.sampling import one_blas_thread


@dataclass(frozen=True)
class EMResult:
    weights: np.ndarray        # class
    profiles: np.ndarray       # class x factor, P(factor recorded | class)
    loglik: float              # log-likelihood (no prior) at the solution
    log_posterior: float       # log-likelihood + log prior kernel (what EM maximised)
    iterations: int
    converged: bool
    start_logliks: np.ndarray  # log-likelihood of every start (finished runs first, best first)


def joint_log(matrix: np.ndarray, weights: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """log(w_k) + log P(pattern | class k), pattern x class.

    Probabilities are clipped to [1e-300, 1] inside the logs so that 0 * log(0) counts as 0
    at boundary estimates (published MLEs sit at 0 and 1).
    """
    y = matrix.astype(float)
    tiny = np.finfo(float).tiny
    logp = np.log(np.clip(profiles, tiny, 1.0))
    log1mp = np.log(np.clip(1.0 - profiles, tiny, 1.0))
    with np.errstate(divide="ignore"):
        logw = np.log(weights)
    # y logp + (1 - y) log1mp = y (logp - log1mp) + log1mp: one matrix product, not two.
    return logw[None, :] + y @ (logp - log1mp).T + log1mp.sum(axis=1)[None, :]


def pattern_loglik(matrix: np.ndarray, weights: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Marginal log-likelihood of each pattern (class summed out)."""
    return logsumexp(joint_log(matrix, weights, profiles), axis=1)


def posterior_membership(matrix: np.ndarray, weights: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """P(class | pattern), pattern x class."""
    joint = joint_log(matrix, weights, profiles)
    return np.exp(joint - logsumexp(joint, axis=1, keepdims=True))


def _one_run(y, counts, weights, profiles, alpha, a, b, max_iter, tol):
    prev = -np.inf
    for it in range(1, max_iter + 1):
        joint = joint_log(y, weights, profiles)
        norm = logsumexp(joint, axis=1)
        resp = np.exp(joint - norm[:, None]) * counts[:, None]
        nk = resp.sum(axis=0)
        weights = (nk + alpha - 1) / (counts.sum() + weights.size * (alpha - 1))
        profiles = (resp.T @ y + a - 1) / (nk[:, None] + a + b - 2)
        weights = np.clip(weights, 1e-300, None)
        weights /= weights.sum()
        profiles = np.clip(profiles, 0.0, 1.0)
        lp = float(counts @ norm) + _log_prior(weights, profiles, alpha, a, b)
        if abs(lp - prev) < tol * (1 + abs(lp)):
            return weights, profiles, it, True
        prev = lp
    return weights, profiles, max_iter, False


def _log_prior(weights, profiles, alpha, a, b) -> float:
    """Log prior kernel; a flat term (parameter 1) is skipped, so boundary MLEs stay finite."""
    total = 0.0
    with np.errstate(divide="ignore"):
        for coef, values in ((alpha - 1, np.log(weights)), (a - 1, np.log(profiles)),
                             (b - 1, np.log1p(-profiles))):
            if coef != 0:
                total += float(coef * values.sum())
    return total


def fit_em(patterns: Patterns, n_classes: int, *, n_starts: int = 20, seed: int = 0,
           alpha: float = 1.0, a: float = 1.0, b: float = 1.0, max_iter: int = 5000,
           tol: float = 1e-10, screen_iter: int = 150, n_finish: int = 3) -> EMResult:
    """Best of ``n_starts`` EM runs from random starts (profiles U(0.05, 0.95), equal weights).

    Every start runs ``screen_iter`` iterations; the best ``n_finish`` are then run to
    convergence (``tol``, relative change of the objective) and the best of those kept.
    ``alpha``, ``a``, ``b`` are the Dirichlet and Beta prior parameters: EM then finds the
    posterior mode (their pseudo-counts keep estimates off 0 and 1 when above 1).
    """
    if n_classes < 1:
        raise ValueError("n_classes must be >= 1")
    with one_blas_thread():  # EM's small products: ~25x slower when BLAS threads fight
        return _fit_em(patterns, n_classes, n_starts, seed, alpha, a, b, max_iter, tol, screen_iter, n_finish)


def _fit_em(patterns, n_classes, n_starts, seed, alpha, a, b, max_iter, tol, screen_iter, n_finish):
    rng = np.random.default_rng(seed)
    y = patterns.matrix.astype(float)
    counts = patterns.counts.astype(float)

    def objective(w, p):
        ll = float(counts @ pattern_loglik(y, w, p))
        return ll + _log_prior(w, p, alpha, a, b), ll

    screened = []
    for _ in range(n_starts if n_classes > 1 else 1):
        w0 = np.full(n_classes, 1.0 / n_classes)
        p0 = rng.uniform(0.05, 0.95, size=(n_classes, y.shape[1]))
        w, p, _, _ = _one_run(y, counts, w0, p0, alpha, a, b, screen_iter, tol)
        screened.append((objective(w, p)[0], w, p))
    screened.sort(key=lambda r: -r[0])
    runs = []
    for _, w, p in screened[:n_finish]:
        w, p, it, ok = _one_run(y, counts, w, p, alpha, a, b, max_iter, tol)
        runs.append((*objective(w, p), w, p, it, ok))
    runs.sort(key=lambda r: -r[0])
    lp, ll, w, p, it, ok = runs[0]
    order = np.lexsort((np.arange(n_classes), -w))  # deterministic: largest class first
    logliks = [r[1] for r in runs] + [objective(w_, p_)[1] for _, w_, p_ in screened[n_finish:]]
    return EMResult(weights=w[order], profiles=p[order], loglik=ll, log_posterior=lp, iterations=it,
                    converged=ok, start_logliks=np.array(logliks))
