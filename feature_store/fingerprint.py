"""A source file's fingerprint: what the store records of it, and whether it changed since."""

from __future__ import annotations

import hashlib
import os
import stat

from feature_store.schema import Fingerprint


def hashed(path: str) -> Fingerprint:
    """Size, mtime and sha256 of the content; OSError when it cannot be read."""
    status = os.stat(path)
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    return Fingerprint(status.st_size, status.st_mtime_ns, digest)


def unhashed(path: str) -> Fingerprint | None:
    """Size and mtime alone, for a file that failed before it was hashed: a broken file is
    never read twice, and the plan still tells whether it changed since."""
    try:
        status = file_stat(path)
    except OSError:
        return None
    return Fingerprint(status.st_size, status.st_mtime_ns, None)


def with_current_mtime(path: str, stored: Fingerprint) -> Fingerprint:
    """The same content under a new mtime (a copy, a touch): kept, or every later run would
    hash the file again."""
    status = file_stat(path)
    return Fingerprint(status.st_size, status.st_mtime_ns, stored.sha256)


def same_file(path: str, stored: Fingerprint | None) -> bool:
    """Whether the file is still the one fingerprinted: the same size and mtime or, when
    those differ, the same content hash. Only regular files are hashed here: reading a FIFO
    or a device would block the plan, which no time limit covers."""
    if stored is None:
        return False
    try:
        now = file_stat(path)
    except OSError:
        return False
    if (now.st_size, now.st_mtime_ns) == (stored.size, stored.mtime_ns):
        return True
    if stored.sha256 is None or not stat.S_ISREG(now.st_mode):
        return False
    try:
        return hashed(path).sha256 == stored.sha256
    except OSError:
        return False


def file_stat(path: str) -> os.stat_result:
    """The file's stat, or the link's own where a link points nowhere: mended later, it then
    counts as a changed file."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return os.lstat(path)
