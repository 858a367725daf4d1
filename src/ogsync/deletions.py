"""What Ordergroove's deletion webhooks mean for the warehouse.

Future, unsent orders and items are hard-deleted with no tombstone in the API; the
`order.delete` and `item.remove` webhooks are the only record of it. An order's deletion takes
its items with it ("deleted orders no longer include their items").
"""

from __future__ import annotations

from dataclasses import dataclass

from ogsync.endpoints import BY_NAME, Endpoint
from ogsync.vocabulary import DeletionReason


@dataclass(frozen=True)
class DeletionEvent:
    event_type: str
    endpoint: Endpoint
    # Child endpoint whose rows go with the deleted record, and the child's linking column.
    cascade: tuple[Endpoint, str] | None = None

    @property
    def reason(self) -> str:
        return DeletionReason.webhook(self.event_type)


DELETION_EVENTS: dict[str, DeletionEvent] = {
    "order.delete": DeletionEvent(
        "order.delete",
        BY_NAME["orders"],
        (BY_NAME["items"], BY_NAME["items"].field_named("order").column),
    ),
    "item.remove": DeletionEvent("item.remove", BY_NAME["items"]),
}

# Order status "unsent": the only orders (and their items) Ordergroove ever hard-deletes.
UNSENT = 1

# Endpoints a deletion can touch, directly or through a cascade.
DELETABLE: tuple[Endpoint, ...] = (BY_NAME["orders"], BY_NAME["items"])
