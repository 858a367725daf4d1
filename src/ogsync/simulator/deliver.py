"""Webhook delivery as Ordergroove does it: signed POSTs, retried on any non-2xx.

`duplicates` sends a share of events twice and `shuffle` sends each batch out of order, as
the real service may.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from ogsync.webhooks.signature import HEADER, sign

log = logging.getLogger("ogsync.simulator.webhooks")


@dataclass
class DeliveryStats:
    queued: int = 0
    attempts: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    gave_up: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    event_id: str = field(compare=False)
    event_type: str = field(compare=False)
    body: bytes = field(compare=False)
    attempts: int = field(default=0, compare=False)


class WebhookDeliverer:
    def __init__(
        self,
        url: str | None,
        secrets: list[str],
        *,
        seed: int = 0,
        duplicates: float = 0.0,
        shuffle: bool = False,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 600.0,
        max_attempts: int = 60,
        timeout_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._transport = transport  # tests shape errors here
        self.secrets = secrets
        self.rng = random.Random(seed ^ 0xB00C)
        self.duplicates = duplicates
        self.shuffle = shuffle
        self.retry_base = retry_base_seconds
        self.retry_max = retry_max_seconds
        self.max_attempts = max_attempts
        self.timeout = timeout_seconds
        self.stats = DeliveryStats()
        self._queue: list[_Pending] = []
        self._sending = 0
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent_ids: list[str] = []  # every delivery answered 2xx, duplicates included

    @property
    def enabled(self) -> bool:
        return bool(self.url and self.secrets)

    @property
    def pending(self) -> int:
        """Events not yet delivered or given up, the one being sent included."""
        return len(self._queue) + self._sending

    def enqueue(self, events: list[dict[str, Any]]) -> None:
        if not self.enabled or not events:
            return
        batch = list(events)
        batch += [e for e in events if self.rng.random() < self.duplicates]
        if self.shuffle:
            self.rng.shuffle(batch)
        now = time.monotonic()
        for event in batch:
            body = orjson.dumps(event)
            pending = _Pending(now, next(self._seq), event["id"], event["type"], body)
            heapq.heappush(self._queue, pending)
            self.stats.queued += 1
            self.stats.by_type[event["type"]] = self.stats.by_type.get(event["type"], 0) + 1
        self._wake.set()

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, transport=self._transport) as client:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                wait = self._queue[0].due - time.monotonic()
                if wait > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=wait)
                    continue
                item = heapq.heappop(self._queue)
                self._sending += 1
                try:
                    await self._attempt(client, item)
                finally:
                    self._sending -= 1

    async def _attempt(self, client: httpx.AsyncClient, item: _Pending) -> None:
        item.attempts += 1
        self.stats.attempts += 1
        headers = {
            "content-type": "application/json",
            HEADER: sign(self.secrets, int(time.time()), item.body),
        }
        try:
            response = await client.post(self.url or "", content=item.body, headers=headers)
            ok = 200 <= response.status_code < 300
        except httpx.HTTPError as exc:
            log.debug("webhook %s not delivered: %s", item.event_id, exc)
            ok = False
        except Exception as exc:
            # A receiver killed mid-request can surface from the HTTP stack as another error
            # (seen: AttributeError on the torn-down socket); the deliverer must outlive it.
            log.debug("webhook %s not delivered: %r", item.event_id, exc)
            ok = False
        if ok:
            self.stats.delivered += 1
            self.sent_ids.append(item.event_id)
            return
        self.stats.failed_attempts += 1
        if item.attempts >= self.max_attempts:
            self.stats.gave_up += 1
            log.warning("webhook %s dropped after %d attempts", item.event_id, item.attempts)
            return
        delay = min(self.retry_base * 2 ** (item.attempts - 1), self.retry_max)
        item.due = time.monotonic() + delay
        heapq.heappush(self._queue, item)
