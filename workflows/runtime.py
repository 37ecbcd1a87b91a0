"""The process around a verb: cache folders that can be written, PyTensor linked to a BLAS,
and no third-party banners.

PyMC, PyTensor, ArviZ, numba and matplotlib keep caches under the user's home.  On a locked
down analyst account or a read-only container that home cannot be written, and each of
them then fails with a traceback of its own.  :func:`prepare` runs before any of them is
imported: where the usual folders cannot be written it points all of them at one folder in
the system's temporary directory and says so once, in one line.

PyTensor's C backend calls the Fortran BLAS (``dgemm_``, ``dgemv_``, ...) and looks for a
system BLAS to link them against.  A pip-installed environment has none: the OpenBLAS that
SciPy's wheel bundles (``scipy.libs/libscipy_openblas*.so``) exports every routine under a
``scipy_`` prefix (``scipy_dgemm_``), so PyTensor's search fails, it warns "could not link
to a BLAS installation ... severely degraded", and its matrix products fall back to slower
code.  :func:`link_blas` points PyTensor at that bundled library, mapping each name it calls
to the prefixed one (``-Ddgemm_=scipy_dgemm_``); a BLAS the user configured, a conda
install (no ``scipy.libs``) and other platforms are left to PyTensor's own search.
"""

from __future__ import annotations

import importlib.util
import os
import struct
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
    """Make the caches writable (falling back to a temporary folder), link PyTensor to a
    BLAS (:func:`link_blas`) and silence ArviZ's import banner; return the fallback folder
    when one was needed."""
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
    link_blas()
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


# --- PyTensor and SciPy's bundled OpenBLAS ------------------------------------------------

#: The Fortran BLAS routines PyTensor's C code calls (``pytensor/tensor/blas*.py`` and
#: ``pytensor/sparse/rewriting.py``), in both precisions; tests/test_runtime.py checks the
#: installed PyTensor calls no other.
BLAS_ROUTINES = tuple(f"{p}{r}_" for p in "sd" for r in ("gemm", "gemv", "ger", "dot", "axpy", "scal", "copy", "swap"))
_BLAS_PREFIX = "scipy_"


def bundled_openblas() -> Path | None:
    """SciPy's bundled OpenBLAS (Linux wheels), when it exports every routine of
    :data:`BLAS_ROUTINES` under the ``scipy_`` prefix; found without importing SciPy."""
    if not sys.platform.startswith("linux"):
        return None
    spec = importlib.util.find_spec("scipy")
    if spec is None or spec.origin is None:
        return None
    for lib in sorted((Path(spec.origin).parent.parent / "scipy.libs").glob("libscipy_openblas*.so")):
        names = _dynamic_symbols(lib)
        if all(f"\0{_BLAS_PREFIX}{name}\0".encode() in names for name in BLAS_ROUTINES):
            return lib
    return None


def blas_ldflags(lib: Path) -> str:
    """PyTensor's ``blas__ldflags`` for ``lib``: its folder (PyTensor adds it as the rpath),
    the library, and each routine's name mapped to the prefixed one."""
    name = lib.name.removeprefix("lib").removesuffix(".so")
    defines = " ".join(f"-D{r}={_BLAS_PREFIX}{r}" for r in BLAS_ROUTINES)
    return f"-L{lib.parent} -l{name} {defines}"


def link_blas() -> str | None:
    """Point PyTensor (not yet imported) at SciPy's bundled OpenBLAS through
    ``PYTENSOR_FLAGS``, inherited by every child process (Dask workers, notebook kernels).
    Leaves alone a BLAS the user chose (``blas__ldflags`` in ``PYTENSOR_FLAGS`` or a
    ``.pytensorrc``), a process that imported PyTensor already, a machine without a C++
    compiler, and a path PyTensor could not parse.  Returns the flags set, or None."""
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    if "pytensor" in sys.modules or "blas__ldflags" in flags or "blas.ldflags" in flags or _pytensorrc_sets_blas():
        return None
    settings = dict(f.split("=", 1) for f in flags.split(",") if "=" in f)
    if "cxx" in settings and not settings["cxx"]:
        return None
    import shutil

    if not shutil.which(settings.get("cxx") or "g++"):
        return None
    lib = bundled_openblas()
    if lib is None or any(c in str(lib) for c in " ,'\"\t"):
        return None
    ldflags = blas_ldflags(lib)
    os.environ["PYTENSOR_FLAGS"] = ",".join([f for f in flags.split(",") if f] + [f"blas__ldflags={ldflags}"])
    return ldflags


def _pytensorrc_sets_blas() -> bool:
    rc = os.environ.get("PYTENSORRC")
    files = rc.split(os.pathsep) if rc else [os.path.expanduser(f"~/.pytensorrc{s}") for s in ("", ".txt")]
    for name in files:
        try:
            text = Path(name).expanduser().read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if "ldflags" in text:
            return True
    return False


def _dynamic_symbols(lib: Path) -> bytes:
    """The dynamic string table (exported and imported names) of a 64-bit little-endian ELF
    shared library, read from its section headers (auditwheel moves it to the end of a 25 MB
    file, so reading only it keeps ``prepare`` fast); empty when the file is anything else."""
    try:
        with open(lib, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return b""
            shoff, = struct.unpack_from("<Q", head, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            sections = [struct.unpack_from("<IIQQQQII", table, i * shentsize) for i in range(shnum)]
            for _name, kind, _flags, _addr, _offset, _size, link, _info in sections:
                if kind == 11:  # SHT_DYNSYM: sh_link is its string table
                    offset, size = sections[link][4], sections[link][5]
                    f.seek(offset)
                    return b"\0" + f.read(size)
    except (OSError, struct.error, IndexError):
        return b""
    return b""
