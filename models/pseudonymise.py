"""Pseudonymisation of child identifiers with a keyed hash (HMAC-SHA256).

Why a keyed hash with a salt kept on the analyst's machine: the same child must get the
same pseudonym every time the workbench runs on that machine, so that episodes of one child
can be linked across runs and across extracts (re-referrals, repeat plans) without the
original identifier ever being stored in outputs.  A plain (unkeyed) hash of a short id
such as a case number can be reversed by hashing every possible id; with a secret 32-byte
key that is infeasible for anyone who does not hold the salt file.  The salt lives OUTSIDE
the repository (``~/.config/csc-inequalities/pseudonym.salt``, or the path in
``CSC_PSEUDONYM_SALT_FILE``) so it is never committed or shared with results; deleting it
breaks linkage with earlier runs, which is the way to "forget" a mapping.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import numpy as np
import pandas as pd

SALT_ENV_VAR = "CSC_PSEUDONYM_SALT_FILE"
DEFAULT_SALT_PATH = Path("~/.config/csc-inequalities/pseudonym.salt")
SALT_BYTES = 32
PREFIX = "c_"
HEX_CHARS = 16  # 64 bits: collisions are negligible for any LA's number of children


def default_salt_path() -> Path:
    """The salt file location: ``$CSC_PSEUDONYM_SALT_FILE`` or the per-user default."""
    env = os.environ.get(SALT_ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_SALT_PATH.expanduser()


def read_salt(path: str | os.PathLike) -> bytes:
    """Read an existing salt file; raise ``FileNotFoundError``/``ValueError`` if unusable."""
    data = Path(path).read_bytes()
    if len(data) < 16:
        raise ValueError(f"salt file {path} holds {len(data)} bytes; at least 16 are needed")
    return data


def load_or_create_salt(path: str | os.PathLike | None = None) -> bytes:
    """Return the salt at ``path`` (default :func:`default_salt_path`), creating it if absent.

    A new salt is 32 random bytes written with mode 0600 (only this user can read it),
    created exclusively so two runs starting at once cannot write different salts.
    """
    target = Path(path).expanduser() if path is not None else default_salt_path()
    if target.exists():
        return read_salt(target)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return read_salt(target)
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(SALT_BYTES))
    os.chmod(target, 0o600)
    return read_salt(target)


def pseudonym(child_id: str, salt: bytes) -> str:
    """Pseudonym of one id: ``c_`` + first 16 hex chars of HMAC-SHA256(salt, id)."""
    digest = hmac.new(salt, str(child_id).encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:HEX_CHARS]


def pseudonymise_ids(ids: pd.Series, salt: bytes) -> pd.Series:
    """Pseudonymise a series of ids (hashing each distinct id once; children recur)."""
    if not isinstance(salt, (bytes, bytearray)) or len(salt) == 0:
        raise ValueError("salt must be non-empty bytes")
    codes, uniques = pd.factorize(ids.astype(str).to_numpy(dtype=object), sort=False)
    keyed = hmac.new(bytes(salt), digestmod=hashlib.sha256)  # key schedule done once

    def one(u: str) -> str:
        h = keyed.copy()
        h.update(u.encode("utf-8"))
        return PREFIX + h.hexdigest()[:HEX_CHARS]

    mapped = np.array([one(u) for u in uniques], dtype=object)
    return pd.Series(mapped[codes], index=ids.index, name=ids.name)
