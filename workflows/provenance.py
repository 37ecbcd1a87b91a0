"""What produced a result: code version, package versions, inputs' hashes, seed, timings.

Every command that writes results writes a ``manifest.json`` built here, so any number in
a report can be traced to the exact code, data and configuration that made it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from workflows import atomic, paths

PACKAGES = ("numpy", "pandas", "scipy", "xarray", "matplotlib", "pymc", "pytensor", "arviz",
            "nutpie", "pyarrow")


def code_version() -> str:
    """``git describe`` of the repository (with ``-dirty`` for uncommitted changes)."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                             cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(command: str, inputs: dict[str, str | Path] | None = None, **extra) -> dict:
    """A manifest dict: pass input files to hash and any config, seed or timings as ``extra``."""
    return {
        atomic.OWNER_KEY: atomic.OWNER,
        "command": command,
        "argv": [_file_name_only(a) for a in sys.argv],
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "packages": package_versions(),
        "inputs": {name: {"path": str(p), "sha256": sha256_file(p)} for name, p in (inputs or {}).items()},
        **extra,
    }


def _file_name_only(arg: str) -> str:
    """A command-line argument with any folder part dropped (``--out=/home/x/la/run`` ->
    ``--out=run``): the folders an analyst keeps files in can identify them."""
    prefix, sep, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if "/" not in value and os.sep not in value:
        return arg
    return f"{prefix}{sep}{Path(value).name or value}"


def source_fingerprint(*modules: str) -> str:
    """sha256 over the source files of the given packages/modules (e.g. ``models.simulation``).

    Caches key on it, so a result is reused only when the code that made it is unchanged,
    whether or not that code was committed.
    """
    import importlib

    digest = hashlib.sha256()
    for name in modules:
        module = importlib.import_module(name)
        files = ([Path(module.__file__)] if not hasattr(module, "__path__")
                 else sorted(Path(module.__path__[0]).rglob("*.py")))
        for f in files:
            digest.update(f.name.encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


def redact_extract(man: dict, extract_path: str | Path, key: str = "extract") -> dict:
    """Keep only the extract's file name in a manifest (inputs and argv): the folder an
    LA analyst keeps it in can identify them."""
    extract_path = Path(extract_path)
    if key in man.get("inputs", {}):
        man["inputs"][key]["path"] = extract_path.name

    def same(arg: str) -> bool:
        try:
            return Path(arg).resolve() == extract_path.resolve()
        except (OSError, ValueError):
            return False

    man["argv"] = [extract_path.name if same(a) else a for a in man.get("argv", [])]
    return man
