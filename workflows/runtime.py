"""The process around a verb: cache folders that can be written, and no third-party banners.

PyMC, PyTensor, ArviZ, numba and matplotlib keep caches under the user's home.  On a locked
down analyst account or a read-only container that home cannot be written, and each of
them then fails with a traceback of its own.  :func:`prepare` runs before any of them is
imported: where the usual folders cannot be written it points all of them at one folder in
the system's temporary directory and says so once, in one line.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

#: Set once the caches were moved, so child processes (Dask workers) do not say it again.
_MOVED_FLAG = "CSC_WORKBENCH_CACHE_FALLBACK"


def writable(folder: Path) -> bool:
    """True when ``folder`` exists or can be made, and a file can be created in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
        return True
    except OSError:
        return False


def cache_folders() -> dict[str, Path]:
    """Where each library would keep its cache, as it would choose it."""
    home = Path(os.path.expanduser("~"))
    xdg = os.environ.get("XDG_CACHE_HOME")
    cache = Path(xdg) if xdg else home / ".cache"
    folders = {"ArviZ": cache, "numba": Path(os.environ.get("NUMBA_CACHE_DIR") or cache)}
    flags = dict(f.split("=", 1) for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if "=" in f)
    folders["PyTensor"] = Path(flags.get("base_compiledir") or home / ".pytensor").expanduser()
    folders["matplotlib"] = Path(os.environ.get("MPLCONFIGDIR") or home / ".config" / "matplotlib")
    return folders


def prepare(stream=sys.stderr) -> Path | None:
    """Make the caches writable (falling back to a temporary folder) and silence ArviZ's
    import banner; return the fallback folder when one was needed."""
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
    if os.environ.get(_MOVED_FLAG):
        return Path(os.environ[_MOVED_FLAG])
    blocked = [name for name, folder in cache_folders().items() if not writable(folder)]
    if not blocked:
        return None
    fallback = Path(tempfile.gettempdir()) / f"csc-workbench-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    fallback.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(fallback)
    os.environ["NUMBA_CACHE_DIR"] = str(fallback / "numba")
    os.environ["MPLCONFIGDIR"] = str(fallback / "matplotlib")
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",")
             if f and not f.startswith("base_compiledir=")]
    os.environ["PYTENSOR_FLAGS"] = ",".join([*flags, f"base_compiledir={fallback / 'pytensor'}"])
    os.environ[_MOVED_FLAG] = str(fallback)
    print(f"note: the cache folders of {', '.join(blocked)} cannot be written; using {fallback} "
          "instead (compiled models are not kept beyond this machine's temporary files)", file=stream)
    return fallback
