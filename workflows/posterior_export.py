"""The one confidentiality filter for every posterior the workbench writes to disk.

A posterior file may be shared like a table, so it keeps only what a reader cites: draws of
parameters that are not indexed by anything finer than an LA (no LSOA, cell, pattern or
episode arrays, which are case-level data or a short step from it), the sampler's
statistics, and, where PSIS-LOO needs it, the pointwise log-likelihood.  Observed and
constant data (cell counts) are never written.  The sampler's unconstrained copies
(names ending ``__``) are dropped.
"""

from __future__ import annotations

from pathlib import Path

from models.sampling import CASE_LEVEL_DIMS

#: A dimension whose name contains one of these indexes case-level data.
PRIVATE_DIMS = CASE_LEVEL_DIMS


def is_private_dim(dim: str) -> bool:
    return any(part in dim for part in PRIVATE_DIMS)


def publishable(idata, variables: list[str] | tuple[str, ...] | None = None, *,
                log_likelihood: bool = False, coords: dict | None = None):
    """``idata`` reduced to what may be written: see the module docstring.

    ``variables`` limits the posterior to those names (default: all that pass the filter);
    ``coords`` relabels dimensions (e.g. aligned class names); ``log_likelihood`` keeps the
    pointwise log-likelihood for PSIS-LOO (a cached model comparison needs it).
    """
    import arviz as az

    post = idata.posterior
    names = [v for v in (variables if variables is not None else post.data_vars) if v in post]
    names = [v for v in names if not v.endswith("__") and not any(is_private_dim(d) for d in post[v].dims)]
    post = post[names]
    post = post.drop_vars([c for c in post.coords if c not in post.dims and c not in ("chain", "draw")
                           and any(is_private_dim(d) for d in post[c].dims)])
    if coords:
        post = post.assign_coords(coords)
    post.attrs = {k: str(v) for k, v in post.attrs.items()}
    groups = {"posterior": post}
    if "sample_stats" in idata.groups():
        groups["sample_stats"] = idata.sample_stats
    if log_likelihood and "log_likelihood" in idata.groups():
        groups["log_likelihood"] = idata.log_likelihood
    return az.InferenceData(**groups)


def write(idata, target: str | Path, variables=None, **kwargs) -> Path:
    """Write :func:`publishable` ``idata`` as NetCDF to ``target``."""
    publishable(idata, variables, **kwargs).to_netcdf(str(target))
    return Path(target)
