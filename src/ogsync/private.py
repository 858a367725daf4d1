"""Files that hold customers' personal data are readable by their owner only.

The command line sets the process's umask once, before any thread starts, so every file it
creates (the DuckDB warehouse and its log, the webhook inbox and its WAL, the metrics and
status files) is born owner-only. A library caller's umask is its own business: there these
helpers tighten each file as soon as it exists.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

OWNER_ONLY = 0o600


def owner_only_umask() -> None:
    """Add group and other to the umask (call before any thread or file exists)."""
    os.umask(os.umask(0o077) | 0o077)


def tighten(*paths: str | os.PathLike[str]) -> None:
    """Make each existing file owner-only (one that doesn't exist yet is left alone)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chmod(path, OWNER_ONLY)


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` atomically (a reader sees the old file or the new one),
    owner-only whatever the umask."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:  # mkstemp makes it 0600
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
