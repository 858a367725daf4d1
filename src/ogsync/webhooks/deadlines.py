"""Deadlines for the receiver's connections, which uvicorn does not give.

uvicorn closes a keep-alive connection that stays silent, but a client that sends its request
headers a byte at a time, or opens a connection and sends a little now and then, holds a
connection (a file descriptor and a task) for as long as it likes: a few hundred of them starve
real deliveries. Here every connection must complete its request headers within a deadline of
its opening, and of its previous response; otherwise it is closed. The body has its own
deadline in the receiver.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

HEADER_TIMEOUT_SECONDS = 10.0


def with_header_deadline(seconds: float = HEADER_TIMEOUT_SECONDS) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools or h11), closing a connection whose request headers
    don't arrive within `seconds`."""
    base: Any = AutoHTTPProtocol

    class HeaderDeadline(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def _arm_header_deadline(self) -> None:
            # `cycle` is the request in hand; a new one means its headers were complete.
            self.loop.call_later(seconds, self._header_deadline, self.cycle)

        def _header_deadline(self, cycle_then: Any) -> None:
            if self.cycle is cycle_then and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline
