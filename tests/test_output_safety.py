"""The one output rule, for every verb: a user's files are never deleted, moved or changed.

Every verb that takes ``--out`` refuses, before any work, a folder of the user's own files
and a file in the way (exit code 2, one line, no traceback); ``--overwrite`` writes the
workbench's files into such a folder and keeps every other file; a folder the workbench
wrote is replaced as before.  Also here: a killed swap is undone on the next run, the CLI
starts without PyMC for the verbs that do not fit, and cache folders that cannot be
written fall back to a temporary folder with one line said.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflows import atomic, paths
from workflows.cli import VERBS, build_parser, main

EXAMPLE = paths.DATA_DIR / "examples" / "extract_example.csv"

#: The least each verb with ``--out`` needs besides it.
VERB_ARGS = {
    "simulate": ["--preset", "tiny", "--seed", "1"],
    "describe": [EXAMPLE],
    "gradient": [EXAMPLE],
    "sensitivity": [EXAMPLE],
    "latent-class": [EXAMPLE],
    "joint": ["--extract", EXAMPLE],
    "fit": ["--config", "six-la"],
    "compare": ["--config", "compare"],
    "sbc": [],
    "system": [],
    "demo": [],
    "notebooks": [],
}


def _verbs_with_out() -> set[str]:
    verbs = set()
    for verb in VERBS:
        sub = build_parser([verb])._subparsers._group_actions[0].choices[verb]
        if any("--out" in a.option_strings for a in sub._actions):
            verbs.add(verb)
    return verbs


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def tiny_extract(tmp_path_factory):
    """A tiny simulated extract: big enough for a descriptive report."""
    from workflows.simulate import write_simulation

    out = tmp_path_factory.mktemp("tiny")
    write_simulation(out / "sim", "tiny", 3)
    return out / "sim" / "extract.csv"


@pytest.fixture
def users_folder(tmp_path):
    folder = tmp_path / "Documents"
    (folder / "chapter").mkdir(parents=True)
    (folder / "thesis.tex").write_text("\\section{Years of work}\n")
    (folder / "chapter" / "one.tex").write_text("one\n")
    return folder


def test_every_verb_with_out_is_covered():
    assert _verbs_with_out() == set(VERB_ARGS)


@pytest.mark.parametrize("verb", sorted(VERB_ARGS))
def test_a_folder_of_the_users_files_is_refused_before_any_work(verb, users_folder, capsys):
    before, siblings = _snapshot(users_folder), sorted(os.listdir(users_folder.parent))
    rc = main([verb, *map(str, VERB_ARGS[verb]), "--out", str(users_folder)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: --out ") and "(chapter and 1 other file(s))" in err
    assert str(users_folder) in err and "--overwrite" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert _snapshot(users_folder) == before
    assert sorted(os.listdir(users_folder.parent)) == siblings  # no temporary left beside it


@pytest.mark.parametrize("verb", sorted(VERB_ARGS))
def test_a_file_in_the_way_is_refused_and_never_moved(verb, tmp_path, capsys):
    the_file = tmp_path / "results.txt"
    the_file.write_text("mine\n")
    for out in (the_file, the_file / "sub"):
        rc = main([verb, *map(str, VERB_ARGS[verb]), "--out", str(out), "--overwrite"])
        err = capsys.readouterr().err
        assert rc == 2 and "is a file, not a folder" in err and "Traceback" not in err
        assert the_file.read_text() == "mine\n"
        assert sorted(os.listdir(tmp_path)) == ["results.txt"]


def test_describe_refuses_then_overwrite_keeps_the_users_files(tiny_extract, users_folder, capsys):
    before = _snapshot(users_folder)
    assert main(["describe", str(tiny_extract), "--out", str(users_folder)]) == 2
    assert _snapshot(users_folder) == before
    assert main(["describe", str(tiny_extract), "--out", str(users_folder), "--overwrite"]) == 0
    after = _snapshot(users_folder)
    assert {k: v for k, v in after.items() if k in before} == before  # every file of theirs intact
    assert "report.html" in after and "tables/funnel.csv" in after
    man = json.loads((users_folder / "manifest.json").read_text())
    assert set(man["outputs"]) == {k for k, v in after.items() if v is not None} - set(before) - {"manifest.json"}
    # Still their folder: a plain rerun is refused, a second --overwrite keeps their files again.
    assert main(["describe", str(tiny_extract), "--out", str(users_folder)]) == 2
    assert main(["describe", str(tiny_extract), "--out", str(users_folder), "--overwrite"]) == 0
    assert {k: v for k, v in _snapshot(users_folder).items() if k in before} == before
    assert not [p for p in users_folder.parent.iterdir() if p.name.startswith(".")]
    capsys.readouterr()


def test_overwrite_drops_only_the_previous_runs_own_files(users_folder):
    atomic_out = users_folder
    with atomic.allow_overwrite(True):
        with atomic.atomic_dir(atomic_out) as tmp:
            (tmp / "old_output.csv").write_text("1\n")
            (tmp / "kept.csv").write_text("1\n")
        with atomic.atomic_dir(atomic_out) as tmp:
            (tmp / "kept.csv").write_text("2\n")
    assert not (users_folder / "old_output.csv").exists()
    assert (users_folder / "kept.csv").read_text() == "2\n"
    assert (users_folder / "thesis.tex").read_text() == "\\section{Years of work}\n"
    assert (users_folder / "chapter" / "one.tex").read_text() == "one\n"


def test_a_workbench_folder_is_replaced_but_a_file_added_to_it_is_refused(tiny_extract, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["describe", str(tiny_extract), "--out", str(out)]) == 0
    (out / "tables" / "funnel.csv").write_text("stale")
    assert main(["describe", str(tiny_extract), "--out", str(out)]) == 0  # an earlier output: replaced
    assert (out / "tables" / "funnel.csv").read_text() != "stale"
    (out / "my_notes.txt").write_text("notes\n")
    assert main(["describe", str(tiny_extract), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds files the workbench did not write (my_notes.txt)" in err
    assert (out / "my_notes.txt").read_text() == "notes\n"
    assert main(["describe", str(tiny_extract), "--out", str(out), "--overwrite"]) == 0
    assert (out / "my_notes.txt").read_text() == "notes\n"


def test_an_empty_folder_is_written_in_place(tiny_extract, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    inode = out.stat().st_ino
    assert main(["describe", str(tiny_extract), "--out", str(out)]) == 0
    assert out.stat().st_ino == inode and (out / "report.html").is_file()


def test_a_swap_killed_between_its_renames_is_undone(tmp_path):
    """``kill -9`` after the old output was moved aside and before the new one moved in:
    the previous output waits as ``.NAME.old``; the next run puts it back first."""
    target = tmp_path / "report"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "report.md").write_text("previous\n")
    os.replace(target, tmp_path / ".report.old")  # the state the kill left
    atomic.sweep_temporaries(tmp_path)
    assert (target / "report.md").read_text() == "previous\n"
    assert not (tmp_path / ".report.old").exists()
    # A kill after the new output moved in, before the old was removed: the old goes.
    with atomic.atomic_dir(target) as tmp:
        (tmp / "report.md").write_text("newer\n")
    stale = tmp_path / ".report.old"
    stale.mkdir()
    (stale / "manifest.json").write_text(json.dumps({atomic.OWNER_KEY: atomic.OWNER, "outputs": []}))
    atomic.recover_interrupted_swap(target)
    assert not stale.exists() and (target / "report.md").read_text() == "newer\n"


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_validate_describe_and_help_do_not_import_pymc(tmp_path):
    code = ("import sys\nfrom workflows.cli import main\n"
            "for argv in (['validate', {ex!r}], ['describe', {ex!r}, '--out', {out!r}]):\n"
            "    assert main(argv) == 0\n"
            "    heavy = [m for m in ('pymc', 'pytensor', 'arviz', 'nutpie', 'numba') if m in sys.modules]\n"
            "    assert not heavy, (argv[0], heavy)\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "assert 'pymc' not in sys.modules\n").format(ex=str(EXAMPLE), out=str(tmp_path / "d"))
    result = _run(code)
    assert result.returncode == 0, result.stderr[-3000:]


def test_no_third_party_banner_on_a_normal_run(tmp_path):
    """A fresh home (ArviZ shows its refactor banner once a day per cache folder)."""
    result = subprocess.run([sys.executable, "-m", "workflows", "gradient", "--help"], cwd=paths.REPO_ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_unwritable_cache_folders_fall_back_to_a_temporary_folder_said_once(tmp_path):
    """A home under a file cannot be created by anyone, root included: what a read-only
    container or a locked-down account looks like to the libraries."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = {"HOME": str(blocker / "home"), "XDG_CACHE_HOME": "", "PYTENSOR_FLAGS": "", "MPLCONFIGDIR": "",
           "NUMBA_CACHE_DIR": "", "CSC_WORKBENCH_CACHE_FALLBACK": ""}
    code = ("import os\nfor k in ('XDG_CACHE_HOME','PYTENSOR_FLAGS','MPLCONFIGDIR','NUMBA_CACHE_DIR',"
            "'CSC_WORKBENCH_CACHE_FALLBACK'):\n    os.environ.pop(k, None)\n"
            "from workflows import runtime\nfolder = runtime.prepare()\n"
            "import arviz, pymc, pytensor, matplotlib\n"
            "assert str(folder) in str(pytensor.config.base_compiledir), pytensor.config.base_compiledir\n"
            "runtime.prepare()\nprint('ok')\n")
    result = _run(code, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
    notes = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and notes[0].startswith("note: the cache folders of "), result.stderr
    assert "Traceback" not in result.stderr


def test_describe_killed_at_any_moment_leaves_the_old_output_or_the_new_one(tiny_extract, tmp_path):
    """SIGKILL at 12 moments spread over a run that replaces an earlier output: after each,
    the folder (once a killed swap is undone, as the next run does first) is either the old
    output byte for byte or a complete new one, and the next run sweeps what the kill left.
    Which moments are hit varies with the machine; the property must hold at every one."""
    import signal
    import time

    out = tmp_path / "report"
    command = [sys.executable, "-m", "workflows", "describe", str(tiny_extract), "--out", str(out)]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    started = time.monotonic()
    assert subprocess.run(command, cwd=paths.REPO_ROOT, env=env, capture_output=True).returncode == 0
    duration = time.monotonic() - started
    old = _snapshot(out)
    for i in range(12):
        proc = subprocess.Popen(command, cwd=paths.REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(duration * (0.3 + 0.75 * i / 11))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        atomic.recover_interrupted_swap(out)
        now = _snapshot(out)
        if now != old:
            man = json.loads((out / "manifest.json").read_text())
            assert set(man["outputs"]) | {"manifest.json"} == {k for k, v in now.items() if v is not None}
            assert now["tables/funnel.csv"] == old["tables/funnel.csv"]  # same extract, same table
            old = now
    assert subprocess.run(command, cwd=paths.REPO_ROOT, env=env, capture_output=True).returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # nothing left beside it
