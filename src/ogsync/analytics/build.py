"""Running dbt on a scaffolded project, and reading the marts back (for `ogsync demo`).

dbt is an optional extra (`pip install 'ogsync[dbt]'`), so nothing here imports it: dbt runs
as its own process, the `dbt` program installed beside this Python, which also keeps its
logging and global state out of ours.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ogsync.extras import install_hint

INSTALL_HINT = install_hint("dbt")


def dbt_program() -> str | None:
    """The `dbt` program of this Python's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("dbt")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("dbt")


def dbt_available(adapter: str = "duckdb") -> bool:
    """dbt and the adapter for the warehouse (`duckdb`, `postgres`) are installed."""
    try:
        found = importlib.util.find_spec(f"dbt.adapters.{adapter}") is not None
    except ModuleNotFoundError:
        found = False
    return found and dbt_program() is not None


def dbt_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # No usage statistics sent anywhere, and no colour codes in captured output.
    env.update({"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"})
    env["DBT_USE_COLORS"] = "false"
    env.update(extra or {})
    return env


def run_dbt(
    project: Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """`dbt ARGS` in the project's folder, with its own profiles.yml; output captured."""
    program = dbt_program()
    if program is None:
        raise FileNotFoundError(f"dbt is not installed: {INSTALL_HINT}")
    command = [program, *args, "--project-dir", str(project), "--profiles-dir", str(project)]
    return subprocess.run(
        command,
        cwd=project,
        env=dbt_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def build_package(
    project: Path, *, env: Mapping[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """`dbt deps` (links the local package) then `dbt build`; the first that fails is
    returned, else the build."""
    deps = run_dbt(project, ["deps"], env=env, timeout=timeout)
    if deps.returncode != 0:
        return deps
    return run_dbt(project, ["build"], env=env, timeout=timeout)


@dataclass(frozen=True)
class MonthSummary:
    month: date
    active_subscriptions: int
    mrr: float
    new_mrr: float  # new and reactivated
    churned_mrr: float  # churned and contraction
    cancellations: int


def monthly_summary(duckdb_path: Path, schema: str, months: int = 12) -> list[MonthSummary]:
    """The last `months` months of the MRR and churn marts, from a DuckDB warehouse."""
    import duckdb

    marts = f'"{schema}_analytics"'
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        rows = conn.execute(
            f"""
            WITH mrr AS (
                SELECT month_start, sum(active_subscriptions) AS active, sum(mrr) AS mrr,
                    sum(new_mrr + reactivated_mrr) AS won,
                    sum(churned_mrr + contraction_mrr) AS lost
                FROM {marts}.ordergroove__monthly_recurring_revenue GROUP BY month_start
            ), churn AS (
                SELECT month_start, sum(cancellations) AS cancellations
                FROM {marts}.ordergroove__churn_analysis GROUP BY month_start
            )
            SELECT mrr.month_start, mrr.active, mrr.mrr, mrr.won, mrr.lost,
                coalesce(churn.cancellations, 0)
            FROM mrr LEFT JOIN churn USING (month_start)
            ORDER BY mrr.month_start DESC LIMIT ?
            """,
            [months],
        ).fetchall()
    return [
        MonthSummary(m, int(a), float(r), float(w), float(lost), int(c))
        for m, a, r, w, lost, c in reversed(rows)
    ]


BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(value: float, largest: float, width: int = 24) -> str:
    """A horizontal bar of `value` against `largest`, `width` cells long at most, in eighths."""
    if largest <= 0 or value <= 0:
        return ""
    eighths = round(value / largest * width * 8)
    return "█" * (eighths // 8) + (BLOCKS[eighths % 8] if eighths % 8 else "")
