"""Atomic writes, and the one rule for output folders: never lose a file the workbench did
not write.

Files go to a temporary path beside the target and are moved into place, so an interrupted
run leaves either the old output or the new one, never half of one.

Output folders (every verb's ``--out``) follow one rule, checked before any work starts and
again when the result is moved into place:

* a folder that does not exist, or an empty one, is written;
* a folder holding the workbench's own ``manifest.json`` (a previous run's output) is
  replaced or resumed, unless it also holds files the workbench did not write (the manifest
  lists every file it wrote);
* anything else (a folder of the user's files, a file in the way) is refused with a one-line
  message and exit code 2.  ``--overwrite`` lets the workbench write its files *into* such a
  folder: same-named files are replaced, every other file is left exactly where it was.
  A file in the way of a folder is refused even then: it is never moved or deleted.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from workflows.errors import UserError

MANIFEST = "manifest.json"
#: Stamped into every output folder's manifest: what marks a folder as the workbench's own.
OWNER_KEY, OWNER = "written_by", "csc-inequalities workbench"
#: Manifests written before the stamp existed carry one of these keys.
_LEGACY_KEYS = ("code_version", "cache_key")
#: Marker file inside a temporary output folder, so a later run knows it may sweep it.
_TMP_MARKER = ".workbench-temporary"

#: The user's ``--overwrite``, set once by the CLI for the whole verb.
overwrite_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar("overwrite_allowed", default=False)


@contextlib.contextmanager
def allow_overwrite(value: bool) -> Iterator[None]:
    """Within the block, output folders of the user's own files may be written into."""
    token = overwrite_allowed.set(bool(value))
    try:
        yield
    finally:
        overwrite_allowed.reset(token)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path; on success it replaces ``target`` atomically."""
    target = Path(target)
    _make_parent(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give files the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | os.PathLike, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


# --- who owns a folder ---------------------------------------------------------------------

def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The workbench's manifest in ``folder``, or None where there is none (or not ours)."""
    try:
        man = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(man, dict):
        return None
    if man.get(OWNER_KEY) == OWNER or any(k in man for k in _LEGACY_KEYS):
        return man
    return None


def foreign_files(folder: str | os.PathLike) -> list[Path]:
    """What under ``folder`` the workbench did not write, by its manifest.

    A folder without the workbench's manifest: every entry in it (its top level).  A
    manifest written before the workbench listed its outputs vouches for the whole folder
    (such folders were always replaced as a whole, so they held nothing else).  Temporary
    outputs of an interrupted run of ours are not counted.
    """
    folder = Path(folder)
    man = read_manifest(folder)
    if man is None:
        return sorted(p for p in folder.iterdir() if not _is_ours_temporary(p))
    listed = man.get("outputs")
    if listed is None:
        return []
    ours = set(listed) | {MANIFEST}
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if _is_ours_temporary(folder / rel.parts[0]):
            continue
        if (path.is_file() or path.is_symlink()) and rel.as_posix() not in ours:
            found.append(path)
    return found


def check_output_dir(target: str | os.PathLike, overwrite: bool | None = None, *, what: str = "output folder") -> Path:
    """Refuse (``UserError``, exit code 2) a target the workbench may not write; return it
    as an absolute path.  See the module docstring for the rule."""
    overwrite = overwrite_allowed.get() if overwrite is None else overwrite
    target = _absolute(target)
    for parent in (target, *target.parents):
        if parent.exists() and not parent.is_dir():
            where = "is" if parent == target else f"is inside {parent}, which is"
            raise UserError(f"{what} {target} {where} a file, not a folder: choose another path "
                            "(the file is left as it is)")
        if parent.is_dir():
            break
    if not target.is_dir():
        return target
    foreign = foreign_files(target)
    if foreign and not overwrite:
        first = foreign[0].relative_to(target)
        more = f" and {len(foreign) - 1} other file(s)" if len(foreign) > 1 else ""
        kind = ("holds files the workbench did not write" if read_manifest(target) is not None
                else "is not empty and is not a workbench output folder")
        raise UserError(f"{what} {target} {kind} ({first}{more}): choose a new or empty folder, "
                        "or pass --overwrite to write into it (your other files are kept)")
    return target


def output_dir(given: str | os.PathLike | None, default: str | os.PathLike) -> Path:
    """A verb's output folder (``--out`` or its default under results/), checked by the
    rule before any work starts."""
    return check_output_dir(given if given is not None else default)


# --- atomic output folders -----------------------------------------------------------------

@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool | None = None) -> Iterator[Path]:
    """Yield a temporary directory; on success it becomes ``target``.

    A new folder or one the workbench wholly owns is replaced as a whole (readers see the old
    folder until the new one is complete).  With ``--overwrite``, a folder holding other
    files gets the new files moved in one by one and keeps the rest.
    """
    target = check_output_dir(target, overwrite)
    recover_interrupted_swap(target)
    _make_parent(target)
    _sweep_own_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    (tmp / _TMP_MARKER).touch()
    try:
        yield tmp
        _stamp_manifest(tmp)  # before the marker goes: a kill in between leaves a folder still ours
        (tmp / _TMP_MARKER).unlink()
        target = check_output_dir(target, overwrite)  # the folder may have changed meanwhile
        if not target.exists():
            os.replace(tmp, target)
        elif read_manifest(target) is not None and not foreign_files(target):
            _swap(tmp, target)
        else:  # an empty folder of the user's, or --overwrite: keep the folder and what is in it
            _merge_into(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def recover_interrupted_swap(target: str | os.PathLike) -> None:
    """Undo what a run killed between the two renames of a swap left: the previous output
    waits beside the target as ``.NAME.old``; put it back (or drop it when the new output
    made it into place)."""
    target = _absolute(target)
    old = _old_path(target)
    if not old.is_dir() or read_manifest(old) is None:
        return
    if target.exists():
        shutil.rmtree(old)
    else:
        os.replace(old, target)


def sweep_temporaries(folder: str | os.PathLike) -> int:
    """Remove the temporary files and folders (``.NAME.*.tmp``) an interrupted run left in
    ``folder``, a folder of the workbench's own, after putting back any previous output a
    killed swap had moved aside (``.NAME.old``); returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    count = 0
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.startswith(".") and name.endswith(".old") and path.is_dir():
            recover_interrupted_swap(folder / name[1:-len(".old")])
            count += not path.exists()
        elif name.startswith(".") and name.endswith(".tmp") and path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            count += 1
    return count


def _sweep_own_temporaries(target: Path) -> None:
    """Temporary folders an interrupted run for this same target left beside it (they hold
    our marker, so they are ours to remove)."""
    for path in target.parent.glob(f".{target.name}.*.tmp"):
        if _is_ours_temporary(path):
            shutil.rmtree(path, ignore_errors=True)


def _swap(tmp: Path, target: Path) -> None:
    old = _old_path(target)
    if old.exists():
        recover_interrupted_swap(target)
    if old.exists():  # not ours: keep it, use another name
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        old.rmdir()
    os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old)


def _merge_into(tmp: Path, target: Path) -> None:
    """Move each new file into ``target``; drop files of the previous run that this run did
    not write again; never touch anything else."""
    previous = read_manifest(target)
    stale = set(previous.get("outputs", ())) if previous is not None else set()
    new_files = sorted(p for p in tmp.rglob("*") if p.is_file() and p.name != MANIFEST)
    for path in new_files:
        rel = path.relative_to(tmp)
        dest = target / rel
        if dest.is_dir() and not dest.is_symlink():
            raise UserError(f"output folder {target}: {rel} is a folder of yours where the workbench "
                            "writes a file; move it and run again")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        stale.discard(rel.as_posix())
    for rel in sorted(stale):
        path = target / rel
        if path.is_file():
            path.unlink()
    os.replace(tmp / MANIFEST, target / MANIFEST)


def _stamp_manifest(folder: Path) -> None:
    """Mark ``folder`` as the workbench's and list every file in it, in its manifest."""
    path = folder / MANIFEST
    try:
        man = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except ValueError:
        man = {}
    if not isinstance(man, dict):
        man = {}
    man[OWNER_KEY] = OWNER
    man["outputs"] = output_files(folder)
    path.write_text(json.dumps(man, indent=1, default=str) + "\n", encoding="utf-8")


def output_files(folder: str | os.PathLike) -> list[str]:
    """Every file under ``folder`` its manifest lists as an output: not that manifest, not the
    temporary marker, nothing inside an interrupted run's ``.NAME.*.tmp`` / ``.NAME.old``."""
    folder = Path(folder)
    files = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if (path.is_file() and rel.as_posix() != MANIFEST and path.name != _TMP_MARKER
                and not any(p.startswith(".") and p.endswith((".tmp", ".old")) for p in rel.parts)):
            files.append(rel.as_posix())
    return sorted(files)


def stamp_run_folder(folder: str | os.PathLike, command: str) -> None:
    """Claim a run folder (``fit``, ``demo``) that is filled section by section: its manifest
    is written before the first section, so a killed run's folder is still the workbench's."""
    folder = check_output_dir(folder)
    if read_manifest(folder) is None:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / MANIFEST, json.dumps({OWNER_KEY: OWNER, "command": command,
                                                  "status": "started"}, indent=1) + "\n")


def _is_ours_temporary(path: Path) -> bool:
    """A temporary output of ours: a folder from :func:`atomic_dir` (it holds the marker) or
    a file from :func:`atomic_path` (``.NAME.XXXXXXXX.tmp``)."""
    name = path.name
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    if path.is_dir():  # marker until the manifest is stamped, then the manifest; empty just after mkdtemp
        return ((path / _TMP_MARKER).exists() or read_manifest(path) is not None
                or not any(path.iterdir()))
    parts = name[1:-len(".tmp")].rsplit(".", 1)
    return path.is_file() and len(parts) == 2 and len(parts[1]) == 8


def _old_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def _absolute(target: str | os.PathLike) -> Path:
    path = Path(target).expanduser()
    try:
        return path.resolve()
    except (OSError, RuntimeError) as err:
        raise UserError(f"output path {path}: {err}") from None


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"cannot write {target}: a file stands where a folder of its path should be") from None
    except PermissionError:
        raise UserError(f"cannot write {target}: permission denied in {target.parent}") from None
    except OSError as err:
        raise UserError(f"cannot write {target}: {err.strerror or err}") from None
