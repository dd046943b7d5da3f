"""Writing a file so that a crash leaves the old content or the new, never half.

Key files, virtual card images and meter states all need this: a temporary
file (mode 0600) in the same directory, written and fsynced, renamed over the
target (a rename within one file system is atomic), then the directory
fsynced so the rename itself survives a power loss.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, keep_previous: Path | None = None) -> None:
    """Replace ``path`` with ``data`` atomically; ``OSError`` on failure.

    With ``keep_previous`` the file being replaced is first renamed there, so
    a reader that finds the new file damaged can fall back to the last good
    one (a crash between the two renames leaves only the previous copy, which
    is the state before this write: nothing half-written either way).
    """
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as tmp:
            os.fchmod(tmp.fileno(), 0o600)
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
