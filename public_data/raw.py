"""The published files a build reads: where each is kept under ``data/raw``, where to get it,
finding its stored copy (``NAME`` or ``NAME.gz``) and copying it in from a shared folder.

Both builds (``public_data.reference``, ``public_data.panel``) list their inputs as
:class:`RawFile` and share these steps.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from workflows import atomic, paths
from workflows.errors import UserError


@dataclass(frozen=True)
class RawFile:
    """One raw input: its key, its path under the raw folder and where to get it."""

    key: str
    relpath: str
    origin: str


def stored_path(raw_dir: Path, spec: RawFile, verb: str) -> Path:
    """The stored copy of a raw file (``NAME`` or ``NAME.gz``); a UserError if neither exists,
    saying how ``verb`` copies it in or where to download it."""
    plain = Path(raw_dir) / spec.relpath
    for candidate in (plain, plain.with_name(plain.name + ".gz")):
        if candidate.exists():
            return candidate
    raise UserError(
        f"missing raw file {plain} (or {plain.name}.gz). Get it with `python -m workflows "
        f"{verb} --copy-raw-from {paths.SHARED_RAW_DIR}` if the shared folder exists, "
        f"otherwise download {spec.origin} and save it as {plain}.")


def stored_paths(raw_dir: Path, raw_files, verb: str) -> dict[str, Path]:
    """The stored copy of every one of ``raw_files``, by key: all are found before any is read,
    so a missing file stops a build before minutes of reading."""
    return {spec.key: stored_path(raw_dir, spec, verb) for spec in raw_files}


def copy_files(source_dir: Path, raw_dir: Path, raw_files) -> list[Path]:
    """Copy ``raw_files`` from a shared folder into ``raw_dir``, CSVs gzip-compressed (mtime 0,
    so reproducible)."""
    written = []
    for spec in raw_files:
        src = Path(source_dir) / spec.relpath
        if not src.exists():
            raise UserError(f"missing {src} in the shared folder; {spec.origin}")
        data = src.read_bytes()
        target = Path(raw_dir) / spec.relpath
        if spec.relpath.endswith(".csv"):
            data = gzip.compress(data, compresslevel=9, mtime=0)
            target = target.with_name(target.name + ".gz")
        written.append(atomic.write_bytes(target, data))
    return written
