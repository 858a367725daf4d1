"""Why a warehouse cannot be used: one line each, for the user."""

from __future__ import annotations

from pathlib import Path


class DestinationError(Exception):
    """The warehouse cannot be used as configured (one line, for the user)."""


class AlreadyRunning(DestinationError):
    """Another ogsync run holds this warehouse."""

    def __init__(self, message: str, snapshot: Path | None = None) -> None:
        super().__init__(message)
        self.snapshot = snapshot  # where the run holding it keeps its status for readers
