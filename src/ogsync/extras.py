"""The optional parts of ogsync, each installed by an extra named for its use.

`pip install ogsync` is the core: a sync into DuckDB, the webhook receiver and the simulator.
A part that needs more (a PostgreSQL driver, Airflow) says which extra to install when its
dependency is missing, in one line, rather than failing with an ImportError deep in a stack.
"""

from __future__ import annotations


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def install_hint(extra: str) -> str:
    return f"pip install 'ogsync[{extra}]'"


def missing_extra_message(what: str, extra: str) -> str:
    return f"{what} needs the '{extra}' extra, which is not installed: {install_hint(extra)}"


def is_missing_dependency(exc: ModuleNotFoundError) -> bool:
    """Whether the module not found is a third-party one (a missing extra), not one of ours
    (a bug, whose traceback must show)."""
    return bool(exc.name) and exc.name.split(".")[0] != "ogsync"
