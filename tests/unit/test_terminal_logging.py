"""Log lines on a terminal go through the Console the progress bars use, so a line logged
while bars are drawn lands above them instead of breaking them."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import Progress

from ogsync.output import configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_on_a_terminal_the_log_shares_the_progress_console():
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=100)
    configure_logging("text", console=terminal)
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, RichHandler) and handler.console is terminal
    with Progress(console=terminal) as progress:
        progress.add_task("orders", total=None)
        logging.getLogger("ogsync").info("orders: window [2025-03] done")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # colours and cursor moves
    assert "orders: window [2025-03] done" in text  # text, not markup


def test_elsewhere_the_log_is_plain_lines():
    configure_logging("text", console=Console(file=io.StringIO()))
    [handler] = logging.getLogger().handlers
    assert not isinstance(handler, RichHandler)
    assert handler.formatter is not None
    assert handler.formatter._fmt == "%(asctime)s %(levelname)s %(message)s"


def test_verbose_logs_leave_out_the_http_librarys_own_lines():
    """urllib3 logs every request line (and a page's cursor) at DEBUG; --verbose is for ogsync's."""
    configure_logging("text", verbose=True, console=Console(file=io.StringIO()))
    assert logging.getLogger("ogsync").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("urllib3.connectionpool").isEnabledFor(logging.DEBUG)
