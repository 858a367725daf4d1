"""How a person at this shell runs a program that lives beside this Python."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def runnable(name: str) -> str:
    """The command that runs `name` from this Python's folder (`ogsync`, `python`): the bare
    name when the shell's PATH finds that very file, else its path (relative to the current
    folder when under it, as `.venv/bin/ogsync` after `make demo`)."""
    here = Path(sys.executable).with_name(name)
    found = shutil.which(name)
    if found and Path(found).resolve() == here.resolve():
        return name
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return os.fspath(here)
