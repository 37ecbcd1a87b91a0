"""A ``fit`` run killed mid-way (SIGKILL: no chance to clean up) leaves no half-written
result; a rerun sweeps what the kill left, reuses the finished section and the extract,
completes; and a rerun with nothing changed refits nothing."""

from __future__ import annotations

import json

from _fit_runs import interrupted_run


def test_a_killed_run_leaves_only_finished_outputs():
    run = interrupted_run()
    killed = run["killed"]
    assert killed["returncode"] == -9, killed["output"][-2000:]
    files = killed["files"]
    # The finished section is whole, the interrupted one is absent (not half there).
    for name in ("gradient/report.html", "gradient/report.md", "gradient/manifest.json",
                 "gradient/posterior_population.nc", "data/extract.csv", "data/manifest.json"):
        assert name in files, name
    assert not any(f == "compare" or f.startswith("compare/") for f in files), files
    assert not any(f.startswith("summary") or f.startswith("report") for f in files), files
    # The run manifest written after the first section records it, and only it.
    manifest = json.loads(killed["manifest"])
    assert set(manifest["sections"]) == {"gradient"}
    assert not manifest["sections"]["gradient"]["reused"]


def test_the_rerun_resumes_and_completes():
    run = interrupted_run()
    second, out = run["second"], run["out"]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "removed 1 unfinished temporary output(s)" in second.stdout
    assert not (out / ".compare.abc123.tmp").exists()
    assert "reusing the tiny extract" in second.stdout and "simulating" not in second.stdout
    assert "[1/2] gradient: unchanged" in second.stdout
    assert "[2/2] compare ..." in second.stdout
    # The finished section was not rewritten: the same files, byte for byte in time.
    for path, stamp in run["stamps_after_kill"].items():
        assert (out / path).stat().st_mtime_ns == stamp, path
    manifest = json.loads(run["manifest_second"])
    assert manifest["sections"]["gradient"]["reused"] and not manifest["sections"]["compare"]["reused"]
    for name in ("report.html", "report.md", "summary.csv", "summary.md", "compare/report.html"):
        assert (out / name).is_file(), name
    assert not [p for p in out.rglob(".*") if p.name.endswith((".tmp", ".old"))]


def test_an_unchanged_rerun_does_not_refit():
    run = interrupted_run()
    third, out = run["third"], run["out"]
    assert third.returncode == 0, third.stderr[-3000:]
    assert "[1/2] gradient: unchanged" in third.stdout and "[2/2] compare: unchanged" in third.stdout
    assert "fitting" not in third.stdout
    for path, stamp in run["stamps_second"].items():
        assert (out / path).stat().st_mtime_ns == stamp, path
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(s["reused"] for s in manifest["sections"].values())
