"""Which merchants an operation serves: the one named, or each the settings file lists.

Light on purpose (settings only): Airflow's DAG processor plans DAGs with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ogsync.config import ConfigError, Settings, load_settings, merchant_names


@dataclass(frozen=True)
class Merchant:
    name: str | None  # None: a settings file that lists no merchants
    settings: Settings

    @property
    def label(self) -> str:
        return self.name or ""


def merchants(
    flags: Mapping[str, Any] | None = None,
    *,
    config_path: Path | None = None,
    only: str | None = None,
    secrets: bool = True,
) -> list[Merchant]:
    """The merchant named `only`, else each merchant the settings file lists (a file without
    merchants is one merchant with no name). Every one's settings are read and checked before
    any work begins, so a mistake in the last merchant stops the first from running."""
    names: list[str | None] = [only] if only else list(merchant_names(config_path=config_path))
    return [
        Merchant(n, load_settings(flags, config_path=config_path, merchant=n, secrets=secrets))
        for n in names or [None]
    ]


def one_merchant(
    flags: Mapping[str, Any] | None = None,
    *,
    config_path: Path | None = None,
    only: str | None = None,
    what: str = "this command",
) -> Merchant:
    """For an operation that serves one merchant at a time (the webhook receiver)."""
    chosen = merchants(flags, config_path=config_path, only=only)
    if len(chosen) > 1:
        names = ", ".join(m.label for m in chosen)
        raise ConfigError(f"{what} serves one merchant: choose one with --merchant ({names})")
    return chosen[0]
