"""Statistical core of the workbench: schema, areas, cells, priors, simulation and models.

Functions here take and return in-memory objects (DataFrames, xarray, InferenceData);
they never read files or print.  File handling lives in :mod:`workflows`.
"""
