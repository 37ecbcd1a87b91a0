"""Atomic writes: a failure leaves the old file or folder exactly as it was."""

from __future__ import annotations

import json
import os
import stat

import pytest

from workflows import atomic


class Boom(RuntimeError):
    pass


def _siblings(folder):
    return sorted(p.name for p in folder.iterdir())


def _tree(folder):
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_exception_in_atomic_path_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with pytest.raises(Boom):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            assert tmp.parent == tmp_path and tmp != target
            raise Boom
    assert target.read_text() == "old\n"
    assert _siblings(tmp_path) == ["out.txt"]


def test_exception_with_no_old_file_leaves_nothing(tmp_path):
    with pytest.raises(Boom):
        with atomic.atomic_path(tmp_path / "new.txt") as tmp:
            tmp.write_text("x")
            raise Boom
    assert _siblings(tmp_path) == []


def test_success_replaces_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    assert atomic.write_text(target, "new ü\n") == target
    assert target.read_text(encoding="utf-8") == "new ü\n"
    atomic.write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert _siblings(tmp_path) == ["out.txt"]


def test_parent_folders_are_created(tmp_path):
    target = tmp_path / "a" / "b" / "c.txt"
    atomic.write_text(target, "deep")
    assert target.read_text() == "deep"


def test_file_mode_follows_umask_not_0600(tmp_path, umask_022):
    target = tmp_path / "out.txt"
    atomic.write_text(target, "x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_file_mode_follows_a_stricter_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.write_text(tmp_path / "out.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o640


def _old_dir(tmp_path):
    """A previous output of the workbench: its manifest lists every file it wrote."""
    target = tmp_path / "report"
    (target / "tables").mkdir(parents=True)
    (target / "report.md").write_text("old report\n")
    (target / "tables" / "a.csv").write_text("a,b\n1,2\n")
    (target / "manifest.json").write_text(json.dumps(
        {atomic.OWNER_KEY: atomic.OWNER, "outputs": ["report.md", "tables/a.csv"]}))
    (tmp_path / "neighbour.txt").write_text("leave me\n")
    return target


def _without_manifest(tree):
    return {k: v for k, v in tree.items() if not k.endswith("manifest.json")}


def test_exception_in_atomic_dir_leaves_old_directory_exactly(tmp_path):
    target = _old_dir(tmp_path)
    before, siblings = _tree(target), _siblings(tmp_path)
    with pytest.raises(Boom):
        with atomic.atomic_dir(target) as tmp:
            assert tmp.parent == tmp_path and tmp.is_dir() and tmp != target
            (tmp / "report.md").write_text("new, half written")
            (tmp / "sub").mkdir()
            raise Boom
    assert _tree(target) == before
    assert _siblings(tmp_path) == siblings


def test_atomic_dir_success_replaces_the_folder_wholly(tmp_path):
    target = _old_dir(tmp_path)
    with atomic.atomic_dir(target) as tmp:
        (tmp / "report.md").write_text("new report\n")
        (tmp / "figures").mkdir()
        (tmp / "figures" / "f.png").write_bytes(b"png")
        # Until the block ends, the old folder is still what readers see.
        assert (target / "report.md").read_text() == "old report\n"
    assert _without_manifest(_tree(target)) == {"report.md": b"new report\n", "figures": None,
                                                "figures/f.png": b"png"}
    assert not (target / "tables").exists()  # old files gone
    assert _siblings(tmp_path) == ["neighbour.txt", "report"]
    assert not [n for n in _siblings(tmp_path) if n.startswith(".report.")]
    man = json.loads((target / "manifest.json").read_text())
    assert man[atomic.OWNER_KEY] == atomic.OWNER and man["outputs"] == ["figures/f.png", "report.md"]


def test_atomic_dir_creates_a_new_folder(tmp_path):
    with atomic.atomic_dir(tmp_path / "x" / "new") as tmp:
        (tmp / "f").write_text("1")
    assert _without_manifest(_tree(tmp_path / "x")) == {"new": None, "new/f": b"1"}


def test_atomic_dir_drops_a_stale_old_folder_of_its_own(tmp_path):
    target = _old_dir(tmp_path)
    stale = tmp_path / ".report.old"
    stale.mkdir()
    (stale / "manifest.json").write_text(json.dumps({atomic.OWNER_KEY: atomic.OWNER, "outputs": ["junk"]}))
    (stale / "junk").write_text("from an interrupted run")
    with atomic.atomic_dir(target) as tmp:
        (tmp / "f").write_text("new")
    assert _without_manifest(_tree(target)) == {"f": b"new"}
    assert _siblings(tmp_path) == ["neighbour.txt", "report"]


def test_atomic_dir_keeps_a_hidden_old_folder_it_did_not_write(tmp_path):
    target = _old_dir(tmp_path)
    theirs = tmp_path / ".report.old"
    theirs.mkdir()
    (theirs / "notes").write_text("the user's")
    with atomic.atomic_dir(target) as tmp:
        (tmp / "f").write_text("new")
    assert (theirs / "notes").read_text() == "the user's"
    assert _without_manifest(_tree(target)) == {"f": b"new"}
    assert [n for n in _siblings(tmp_path) if not n.startswith(".report.old")] == ["neighbour.txt", "report"]


@pytest.mark.parametrize("left", ["marker", "stamped", "empty"])
def test_a_killed_runs_temporary_is_swept_at_every_stage(tmp_path, left):
    """A kill can land just after mkdtemp (empty), while the output is written (marker), or
    after the manifest is stamped and the marker dropped (stamped): each is ours and the next
    run removes it; a user's hidden folder of the same shape holding files is kept."""
    target = tmp_path / "report"
    leftover = tmp_path / ".report.abcd1234.tmp"
    leftover.mkdir()
    if left == "marker":
        (leftover / ".workbench-temporary").touch()
        (leftover / "half.csv").write_text("a\n")
    elif left == "stamped":
        (leftover / "manifest.json").write_text(json.dumps({atomic.OWNER_KEY: atomic.OWNER}))
    users = tmp_path / ".report.user0000.tmp"
    users.mkdir()
    (users / "mine.txt").write_text("keep")
    with atomic.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("new")
    assert not leftover.exists()
    assert (users / "mine.txt").read_text() == "keep"
    assert (target / "a.txt").read_text() == "new"
    assert ".workbench-temporary" not in json.loads((target / "manifest.json").read_text())["outputs"]
