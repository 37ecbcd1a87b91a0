"""When a finished result folder can be reused, and how uncitable tables are marked.

Every workflow that writes ``results/<run>/`` records a cache key in its manifest. The key
hashes everything that could change the result: the input files' bytes, the run's
settings, the suppression rule and the source of the code that fits and reports, so an
unchanged run is reused and a change to any of them refits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path

import pandas as pd

from workflows import provenance

NOT_FOR_CITATION = "NOT FOR CITATION: the sampler did not pass the convergence gate"


def run_key(*, files: tuple[str | Path, ...] = (), settings: object = None, code: tuple[str, ...] = ()) -> str:
    """sha256 over the files' bytes, the settings (dataclasses or JSON-able values) and the
    source of the ``code`` modules/packages."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(provenance.sha256_file(path).encode())
    digest.update(json.dumps(_plain(settings), sort_keys=True, default=str).encode())
    if code:
        digest.update(provenance.source_fingerprint(*code).encode())
    return digest.hexdigest()


def is_current(out_dir: str | Path, key: str, marker: str = "report.html") -> bool:
    """True when ``out_dir`` holds a complete result (``marker`` written) made under ``key``."""
    out_dir = Path(out_dir)
    try:
        recorded = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return recorded.get("cache_key") == key and (out_dir / marker).exists()


def flag_uncitable(table: pd.DataFrame, citable: bool, reason: str = NOT_FOR_CITATION) -> pd.DataFrame:
    """The table itself says it is not for citation when its fit failed the gate, so a
    CSV copied out of the report cannot lose the warning."""
    if citable:
        return table
    out = table.copy()
    out["status"] = reason
    return out


def _plain(value):
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
