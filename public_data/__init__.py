"""Public-data ETL: the reference tables and the LA x year panel, built from the published
files in ``data/raw`` (``build-reference``, ``build-panel``) and read back with fixed dtypes.

``raw`` finds and copies the published inputs both builds read, ``reference`` builds
``data/reference`` (LSOA, authority, factor prevalence), ``tables`` reads those tables, and
``panel`` builds and reads ``data/panel``.  Nothing here imports a model family
or a verb: from the workbench it uses only ``workflows.atomic``, ``workflows.errors`` and
``workflows.paths``.
"""
