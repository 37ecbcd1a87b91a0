"""PyTensor links to a BLAS in a pip-installed environment (workflows.runtime.link_blas)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workflows import paths, runtime

LINKABLE = runtime.bundled_openblas() is not None
needs_bundled_blas = pytest.mark.skipif(not LINKABLE, reason="no SciPy-bundled OpenBLAS here (conda, macOS, Windows)")


def _pytensor_source() -> Path:
    import importlib.util

    return Path(importlib.util.find_spec("pytensor").origin).parent


def test_every_blas_routine_pytensor_calls_is_mapped():
    """A PyTensor upgrade that calls a routine not in BLAS_ROUTINES would fail to link."""
    root = _pytensor_source()
    called = set()
    for path in [*(root / "tensor").glob("blas*.py"), root / "sparse" / "rewriting.py"]:
        if path.name == "blas_headers.py":  # declarations of the whole BLAS, not calls
            continue
        called |= set(re.findall(r"\b([sd][a-z0-9]+_)\(", path.read_text(encoding="utf-8")))
        called |= set(re.findall(r"\"([sd](?:axpy|scal|copy|swap|dot|gemm|gemv|ger)_)\"", path.read_text(encoding="utf-8")))
    assert called, "found no BLAS call in PyTensor's source: the scan is out of date"
    assert called <= set(runtime.BLAS_ROUTINES), sorted(called - set(runtime.BLAS_ROUTINES))


@needs_bundled_blas
def test_bundled_openblas_exports_the_prefixed_routines():
    names = runtime._dynamic_symbols(runtime.bundled_openblas())
    assert b"\0scipy_dgemm_\0" in names and b"\0dgemm_\0" not in names


def _python(code: str, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "PYTENSORRC")}
    return subprocess.run([sys.executable, "-c", code], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                          timeout=600, env={**full, **env})


@needs_bundled_blas
def test_prepared_process_links_pytensor_to_blas_without_a_warning(tmp_path):
    code = """
import warnings
warnings.simplefilter("error")  # PyTensor's "could not link to a BLAS installation" is a UserWarning
from workflows import runtime
runtime.prepare()
import numpy as np, pytensor, pytensor.tensor as pt
assert "scipy_openblas" in pytensor.config.blas__ldflags, pytensor.config.blas__ldflags
A, x = pt.dmatrix(), pt.dvector()
f = pytensor.function([A, x], [A @ x, A @ A.T, pt.outer(x, x)])
ops = {type(n.op).__name__ for n in f.maker.fgraph.toposort()}
assert {"CGemv", "CGer"} <= ops, ops
a, v = np.arange(12.0).reshape(3, 4) / 7, np.arange(4.0)
Av, AAt, xx = f(a, v)
np.testing.assert_allclose(Av, a @ v)
np.testing.assert_allclose(AAt, a @ a.T)
print("ok")
"""
    result = _python(code, HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
    assert "blas" not in result.stderr.lower(), result.stderr


def test_a_blas_the_user_chose_is_left_alone(tmp_path):
    rc = tmp_path / "pytensorrc"
    rc.write_text("[blas]\nldflags = -lmyblas\n")
    code = "import os\nfrom workflows import runtime\nprint(runtime.link_blas(), os.environ.get('PYTENSOR_FLAGS', ''))"
    mine = _python(code, PYTENSOR_FLAGS="blas__ldflags=-lmyblas")
    assert mine.stdout.strip() == "None blas__ldflags=-lmyblas", mine.stderr
    from_rc = _python(code, PYTENSORRC=str(rc))
    assert from_rc.stdout.strip() == "None", from_rc.stderr
    no_compiler = _python(code, PYTENSOR_FLAGS="cxx=")
    assert no_compiler.stdout.strip() == "None cxx=", no_compiler.stderr


@needs_bundled_blas
def test_flags_keep_the_users_other_pytensor_flags(tmp_path):
    code = "import os\nfrom workflows import runtime\nruntime.link_blas()\nprint(os.environ['PYTENSOR_FLAGS'])"
    result = _python(code, PYTENSOR_FLAGS=f"base_compiledir={tmp_path}")
    flags = result.stdout.strip().split(",")
    assert flags[0] == f"base_compiledir={tmp_path}" and flags[1].startswith("blas__ldflags=-L"), flags
