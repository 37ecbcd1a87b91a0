"""The command-line front door, run as users run it: ``python -m workflows ...``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from _seeds import seed

from models.simulation.presets import PRESETS
from workflows import paths
from workflows.cli import VERBS


def run_cli(*args, timeout=300):
    env = {**os.environ, "COLUMNS": "200"}  # argparse must not wrap help lines mid-text
    return subprocess.run([sys.executable, "-m", "workflows", *map(str, args)], cwd=paths.REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_verb():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert len(VERBS) >= 5
    for verb, (_, help_text) in VERBS.items():
        assert verb in result.stdout, verb
        assert help_text in result.stdout, verb


def test_no_verb_is_a_usage_error():
    result = run_cli()
    assert result.returncode == 2
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    config = folder / "tiny.toml"
    config.write_text(f'[data]\npreset = "tiny"\nseed = {seed(5)}\n\n[report]\nsuppression_threshold = 10\n')
    out = folder / "results"
    first = run_cli("demo", "--config", config, "--out", out)
    second = run_cli("demo", "--config", config, "--out", out)
    return out, first, second


def test_demo_end_to_end_writes_the_report(demo_runs):
    out, first, _ = demo_runs
    assert first.returncode == 0, first.stderr
    report = out / "describe" / "report.html"
    assert report.is_file() and report.stat().st_size > 10_000
    assert f"report: {report}" in first.stdout
    assert "simulating tiny" in first.stdout
    assert (out / "data" / "extract.csv").is_file()
    assert "Traceback" not in first.stderr


def test_demo_index_links_every_report_and_figure_and_nothing_is_broken(demo_runs):
    from _links import broken_links, references
    from workflows import atomic

    out, first, second = demo_runs
    index = out / "index.html"
    assert f"index: {index}" in second.stdout
    hrefs = {value for _, attr, value in references(index)[0] if attr == "href"}
    assert "describe/report.html" in hrefs
    figures = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert figures and figures <= hrefs
    assert broken_links(index) == []
    for report in out.rglob("report.html"):
        assert broken_links(report) == [], report
    man = atomic.read_manifest(out)
    assert man["status"] == "done" and "index.html" in man["outputs"] and "describe/report.html" in man["outputs"]
    assert atomic.foreign_files(out) == []  # every file of the run is listed: a third run is not refused
    (out / "my-notes.txt").write_text("mine\n")
    assert [p.name for p in atomic.foreign_files(out)] == ["my-notes.txt"]
    (out / "my-notes.txt").unlink()


def test_demo_second_run_reuses_the_simulation(demo_runs):
    out, first, second = demo_runs
    assert second.returncode == 0, second.stderr
    assert "reusing" in second.stdout
    assert "simulating" not in second.stdout
    assert f"report: {out / 'describe' / 'report.html'}" in second.stdout


def test_unknown_preset_names_the_valid_ones(tmp_path):
    result = run_cli("simulate", "--preset", "nope", "--out", tmp_path / "sim")
    assert result.returncode != 0
    assert "nope" in result.stderr
    for name in PRESETS:
        assert name in result.stderr, name
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "sim").exists()


def test_describe_missing_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-extract.csv"
    result = run_cli("describe", missing, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "error:" in result.stderr
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_demo_with_a_bad_config_is_a_clear_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[data]\npreset = "tiny"\nseed = "abc"\n')
    result = run_cli("demo", "--config", config, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "error:" in result.stderr and "data.seed" in result.stderr
    assert "Traceback" not in result.stderr
