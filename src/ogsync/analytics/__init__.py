"""Analytics on the synced warehouse: the dbt package in the repository's `dbt/` folder.

- `ogsync.analytics.generate` writes the package's sources and staging models from the data
  dictionary (`ogsync.dictionary`), so dbt's docs describe every column as `ogsync schema` does;
- `ogsync.analytics.scaffold` is `ogsync dbt init`: a dbt project whose profile points at the
  configured warehouse;
- `ogsync.analytics.build` runs dbt (an optional extra, `ogsync[dbt]`) and reads the marts back,
  for `ogsync demo`.
"""

from __future__ import annotations

from pathlib import Path

# The dbt package's name (its dbt_project.yml) and the name of its source.
PACKAGE_NAME = "ordergroove"
SOURCE_NAME = "ordergroove"

# A wheel carries the package inside ogsync (see pyproject.toml); a checkout has it at the top.
_IN_WHEEL = Path(__file__).resolve().parent.parent / "dbt_package"
_IN_CHECKOUT = Path(__file__).resolve().parents[3] / "dbt"


def package_dir() -> Path:
    """Where the dbt package is on this machine: inside the installed wheel, or the checkout's
    `dbt/` folder for an editable install."""
    for candidate in (_IN_WHEEL, _IN_CHECKOUT):
        if (candidate / "dbt_project.yml").is_file():
            return candidate
    raise FileNotFoundError(
        f"the ogsync dbt package is not installed (looked in {_IN_WHEEL} and {_IN_CHECKOUT})"
    )
