"""Fixtures for the webhook tests: SQLite and PostgreSQL inboxes, a receiver over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from webhook_support import SECRET

from ogsync.destinations.postgres_inbox import PostgresInbox
from ogsync.webhooks.inbox import GroupCommitInbox, SQLiteInbox
from ogsync.webhooks.receiver import RunningReceiver, receiver_in_thread


@pytest.fixture
def sqlite_inbox(tmp_path: Path) -> Iterator[SQLiteInbox]:
    inbox = SQLiteInbox(tmp_path / "inbox.sqlite")
    try:
        yield inbox
    finally:
        inbox.close()


@pytest.fixture
def postgres_inbox(postgres_server: Any) -> Iterator[PostgresInbox]:
    inbox = PostgresInbox(postgres_server.url, f"inbox_{uuid.uuid4().hex[:12]}")
    try:
        yield inbox
    finally:
        inbox.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_inbox(request: pytest.FixtureRequest) -> GroupCommitInbox:
    return request.getfixturevalue(f"{request.param}_inbox")


class Receiver:
    """A receiver running in a thread and an HTTP client to it."""

    def __init__(self, running: RunningReceiver, inbox: GroupCommitInbox) -> None:
        self.running = running
        self.inbox = inbox
        self.url = running.url
        self.port = int(running.url.rsplit(":", 1)[1])
        self.client = httpx.Client(base_url=running.url, timeout=10)

    def post(self, body: bytes, headers: dict[str, str] | None = None, **kw: Any):
        return self.client.post("/webhooks/ordergroove", content=body, headers=headers, **kw)


@pytest.fixture
def make_receiver(
    sqlite_inbox: SQLiteInbox,
) -> Callable[..., AbstractContextManager[Receiver]]:
    """`with make_receiver(secrets=[...], inbox=..., **build_receiver_kwargs) as r:`."""

    @contextmanager
    def make(
        secrets: list[str] | None = None, inbox: Any = None, **kwargs: Any
    ) -> Iterator[Receiver]:
        chosen = inbox if inbox is not None else sqlite_inbox
        with receiver_in_thread(chosen, secrets or [SECRET], **kwargs) as running:
            receiver = Receiver(running, chosen)
            try:
                yield receiver
            finally:
                receiver.client.close()

    return make


@pytest.fixture
def receiver(make_receiver) -> Iterator[Receiver]:
    with make_receiver() as running:
        yield running
