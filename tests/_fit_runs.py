"""One small ``fit`` run for test_fit_report_compare (cached: its tests share it, paid for once):
started, killed mid-run, resumed, rerun."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _seeds import seed
from workflows import paths

#: Every seed shifted by CSC_TEST_SEED_OFFSET (tests/_seeds.py).
CONFIG = f"""
[data]
preset = "tiny"
seed = {seed(4)}

[report]
suppression_threshold = 10

[gradient]
chains = 2
draws = 100
tune = 100
seed = {seed(3)}
scales = ["population"]

[compare]
variants = ["full", "no_lsoa_effects"]
stages = ["referral"]
chains = 2
draws = 150
tune = 150
seed = {seed(2)}
"""
KILL_AT = "fitting 2 variant(s)"  # the compare section has begun: gradient is finished


def fit_command(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "workflows", "fit", "--config", str(config), "--out", str(out),
            "--workers", "1", "--no-progress"]


def _env():
    return {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}


@functools.lru_cache(maxsize=1)
def interrupted_run() -> dict:
    """Run ``fit`` in a subprocess, SIGKILL it once the second section starts, look at what
    it left, then rerun to completion and once more unchanged."""
    folder = Path(tempfile.mkdtemp(prefix="fit-run-"))
    atexit.register(shutil.rmtree, folder, True)
    config = folder / "tiny.toml"
    config.write_text(CONFIG)
    out = folder / "run"
    proc = subprocess.Popen(fit_command(config, out), cwd=paths.REPO_ROOT, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first, deadline = [], time.monotonic() + 900
    for line in proc.stdout:
        first.append(line)
        if KILL_AT in line or time.monotonic() > deadline:
            time.sleep(1.0)   # well inside the compare fits (compilation alone takes longer)
            proc.kill()
            break
    proc.wait()
    killed = {"output": "".join(first), "returncode": proc.returncode,
              "files": sorted(str(p.relative_to(out)) for p in out.rglob("*")),
              "manifest": (out / "manifest.json").read_text() if (out / "manifest.json").exists() else None}
    # A kill while a folder was being written leaves its temporary twin: plant one to sweep.
    (out / ".compare.abc123.tmp").mkdir(parents=True, exist_ok=True)
    (out / ".compare.abc123.tmp" / "report.md").write_text("half")
    stamps = {p: (out / p).stat().st_mtime_ns for p in ("gradient/report.html", "gradient/posterior_population.nc")}
    second = subprocess.run(fit_command(config, out), cwd=paths.REPO_ROOT, env=_env(), text=True,
                            capture_output=True, timeout=900)
    stamps_second = {p: (out / p).stat().st_mtime_ns for p in ("gradient/report.html", "compare/report.html",
                                                               "compare-fits/full/posterior.nc")}
    manifest_second = (out / "manifest.json").read_text()
    third = subprocess.run(fit_command(config, out), cwd=paths.REPO_ROOT, env=_env(), text=True,
                           capture_output=True, timeout=900)
    return {"out": out, "config": config, "killed": killed, "second": second, "third": third,
            "stamps_after_kill": stamps, "stamps_second": stamps_second, "manifest_second": manifest_second}
