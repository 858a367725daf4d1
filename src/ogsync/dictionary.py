"""The data dictionary: every table ogsync writes, every column's meaning, and the documented
codes (order status, `every_period`, ...), from one source: the endpoint table
(`ogsync.endpoints`, each field's description) and the metadata columns defined here.

`ogsync schema` prints it, the warehouses that keep comments get them (`COMMENT ON`), the
`codes` table holds the codes, and the dbt package's docs are generated from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ogsync.deletions import DELETION_EVENTS
from ogsync.destinations.base import (
    BACKFILL_TABLE,
    CURRENT_VIEW_SUFFIX,
    DELETIONS_TABLE,
    DEPRECATED_VIEW_SUFFIX,
    EVENTS_TABLE,
    REJECTED_TABLE,
    RUNS_TABLE,
    STATE_TABLE,
)
from ogsync.destinations.sql_rules import RULES_TABLE
from ogsync.endpoints import BY_NAME, ENDPOINTS, Endpoint, Field, FieldType
from ogsync.governance import NONE, Governance
from ogsync.vocabulary import DeletionReason, RunKind, RunStatus
from ogsync.webhooks.inbox import TABLE as INBOX_TABLE

# The table of documented codes, in every warehouse's schema.
CODES_TABLE = "codes"


@dataclass(frozen=True)
class Code:
    endpoint: str  # the table whose column holds the code
    field: str  # the column
    code: str  # as stored (text, whatever the column's type)
    label: str  # short, for reports ("unsent")
    description: str = ""


# Every coded value Ordergroove's API reference documents. Sources: Orders > Order Status
# Codes (1 to 18; 19 and 20 from the API facts this project started from, which name them
# without saying more), Customers > List (phone_type), Payments > Credit Card Types (cc_type),
# Payments > List (payment_method's words; the Subscription Manager's Object Reference gives
# them as 1 and 2), the Object Reference (order type, raw_subscription_type, product_type,
# every_period), Orders > List (product_type plan), and the offer profiles' `status` filter.
CODES: tuple[Code, ...] = (
    Code("orders", "status", "1", "unsent", "Upcoming: to be placed when its place date comes"),
    Code("orders", "status", "3", "rejected", "Placing it failed until the retry limit ran out"),
    Code("orders", "status", "4", "cancelled", "Cancelled before it was placed"),
    Code("orders", "status", "5", "success", "Placed in the merchant's store"),
    Code("orders", "status", "6", "send now", "Asked to be placed at once; its next order exists"),
    Code("orders", "status", "9", "pending batch",
         "Sent in a batch file (legacy file-based placement), awaiting the response file"),
    Code("orders", "status", "10", "pending verification",
         "Waiting for the merchant or the store to confirm it was placed"),
    Code("orders", "status", "11", "pending placement",
         "In Ordergroove's queue, to be placed shortly"),
    Code("orders", "status", "12", "preparation error",
         "Something failed before placing it could be attempted"),
    Code("orders", "status", "13", "connection error",
         "The connection failed while placing it, so whether it was placed is unknown; "
         "it may be retried"),
    Code("orders", "status", "14", "response error",
         "The store's answer could not be understood; not retried"),
    Code("orders", "status", "15", "generic error",
         "A generic error came back or was assumed; retried as often as the merchant set"),
    Code("orders", "status", "17", "merged",
         "Merged into another order, named by merged_order_id in its extra_data"),
    Code("orders", "status", "18", "credit card retry",
         "Failed with error 140 (the card) and is going through the card retry process"),
    Code("orders", "status", "19", "awaiting retry instructions",
         "Failed and waiting to be told whether to retry"),
    Code("orders", "status", "20", "awaiting classification",
         "Failed and waiting for its failure to be classified"),
    Code("orders", "type", "1", "subscription", "A subscription order, the usual kind"),
    Code("subscriptions", "every_period", "1", "days"),
    Code("subscriptions", "every_period", "2", "weeks"),
    Code("subscriptions", "every_period", "3", "months"),
    Code("subscriptions", "raw_subscription_type", "replenishment", "checkout",
         "Made when the customer checked out"),
    Code("subscriptions", "raw_subscription_type", "IU replenishment", "instant upsell",
         "Made through Instant Upsell"),
    Code("subscriptions", "raw_subscription_type", "CSA replenishment", "customer service",
         "Made by customer service in Ordergroove's admin tool"),
    Code("customers", "phone_type", "0", "invalid", "Not a valid phone number"),
    Code("customers", "phone_type", "1", "landline"),
    Code("customers", "phone_type", "2", "mobile"),
    Code("customers", "phone_type", "3", "VoIP"),
    Code("payments", "cc_type", "1", "Visa"),
    Code("payments", "cc_type", "2", "Mastercard"),
    Code("payments", "cc_type", "3", "American Express"),
    Code("payments", "cc_type", "4", "Discover"),
    Code("payments", "cc_type", "5", "Diners"),
    Code("payments", "cc_type", "6", "JCB"),
    Code("payments", "payment_method", "credit card", "credit card"),
    Code("payments", "payment_method", "paypal", "PayPal"),
    Code("payments", "payment_method", "1", "credit card", "As the Object Reference codes it"),
    Code("payments", "payment_method", "2", "PayPal", "As the Object Reference codes it"),
    Code("products", "every_period", "1", "days"),
    Code("products", "every_period", "2", "weeks"),
    Code("products", "every_period", "3", "months"),
    Code("products", "product_type", "standard", "standard", "A product on its own"),
    Code("products", "product_type", "bundle", "legacy bundle",
         "A bundle of other products, legacy bundles"),
    Code("products", "product_type", "dynamic price bundle", "dynamic price bundle",
         "A bundle priced by its components"),
    Code("products", "product_type", "static price bundle", "static price bundle",
         "A bundle with a price of its own"),
    Code("products", "product_type", "plan", "plan", "A digital plan"),
    Code("offer_profiles", "status", "available", "available", "In use"),
    Code("offer_profiles", "status", "archived", "archived", "Kept, no longer in use"),
)  # fmt: skip


@dataclass(frozen=True)
class ColumnDoc:
    name: str  # as in the warehouse
    type: str  # the logical type (ogsync.endpoints.FieldType value, or e.g. "timestamp")
    description: str


@dataclass(frozen=True)
class TableDoc:
    name: str
    description: str  # one line: what a row is
    columns: tuple[ColumnDoc, ...]
    key: tuple[str, ...] = ()  # the columns that identify a row


def labels(endpoint: str, field: str) -> dict[str, str]:
    """The documented codes of one column: code -> label."""
    return {c.code: c.label for c in CODES if c.endpoint == endpoint and c.field == field}


# -- the columns ogsync adds (docs/design.md, "Warehouse contract" and what follows it) --------

_REASONS = ", ".join(
    [
        *(DeletionReason.webhook(t) for t in DELETION_EVENTS),
        f"{DeletionReason.FULL_REFRESH} (a full refresh no longer returned it)",
        f"{DeletionReason.RECONCILE} (the API answered that it no longer exists)",
    ]
)

META_DOCS = (
    ColumnDoc("_raw", "json", "The record exactly as the API sent it (after the settings' "
              "field rules): a value that did not fit its typed column is still here."),
    ColumnDoc("_updated_latest", "timestamp", "The latest instant the update time can mean: "
              "the update time, or an hour later for a wall time the API's zone repeats when "
              "clocks go back. Upserts compare versions with it, so a newer one always wins."),
    ColumnDoc("_synced_at", "timestamp", "When ogsync wrote this version of the row."),
    ColumnDoc("_run_id", "text", f"The run that wrote it: `{RUNS_TABLE}.run_id`."),
    ColumnDoc("_deleted_at", "timestamp", "When the record was deleted at Ordergroove (or found "
              "gone); empty while it is live."),
    ColumnDoc("_deleted_reason", "text", f"How the deletion was learnt: {_REASONS}."),
)  # fmt: skip

HISTORY_DOCS = (
    ColumnDoc("_raw", "json", "The version exactly as the API sent it (after the settings' "
              "field rules)."),
    ColumnDoc("_valid_from", "timestamp", "When this version took effect: its update time (for "
              "records without one, when it was first synced)."),
    ColumnDoc("_valid_to", "timestamp", "When it stopped being the record's state: the next "
              "version's `_valid_from`, or a deletion in between; empty while current."),
    ColumnDoc("_is_current", "boolean", "True for the record's current version: not replaced, "
              "not deleted."),
    ColumnDoc("_closed_reason", "text", "Why a deletion closed this version (the words of "
              "`_deleted_reason`); empty when a newer version replaced it, or while current."),
    ColumnDoc("_version_hash", "text", "A hash of the version's content (`_raw`): the record's "
              "key and this hash identify a version."),
    ColumnDoc("_updated_latest", "timestamp", "The latest instant the update time can mean (an "
              "hour later for a wall time the API's zone repeats)."),
    ColumnDoc("_synced_at", "timestamp", "When ogsync first wrote this version."),
    ColumnDoc("_run_id", "text", f"The run that first wrote it: `{RUNS_TABLE}.run_id`."),
)  # fmt: skip


def _c(name: str, kind: str, description: str) -> ColumnDoc:
    return ColumnDoc(name, kind, description)


_RUN_KINDS = ", ".join(RunKind)
_RUN_STATUSES = ", ".join(RunStatus)

BOOKKEEPING = (
    TableDoc(
        RUNS_TABLE,
        "One row per run and endpoint: what the run fetched and wrote, and how it ended.",
        (
            _c("run_id", "text", "The run's id, shared by its endpoints' rows."),
            _c("endpoint", "text", "The endpoint this row counts."),
            _c("kind", "text", f"What the run did: {_RUN_KINDS}."),
            _c("started_at", "timestamp", "When the run started (its upper bound, on the API's "
               "clock unless `clock` says local)."),
            _c("window_start", "timestamp", "Start of the window of update times it asked for "
               "(empty for a full refresh)."),
            _c("window_end", "timestamp", "End of that window."),
            _c("pages", "integer", "Pages fetched."),
            _c("requests", "integer", "HTTP requests made, retries included."),
            _c("retries", "integer", "Requests retried (429, 423, 5xx, timeouts, broken bodies)."),
            _c("rate_limit_waits", "integer", "Times the run waited for the rate limit."),
            _c("records", "integer", "Rows written to the endpoint's table."),
            _c("soft_deletes", "integer", "Rows soft-deleted (`_deleted_at` set)."),
            _c("warnings", "integer", "Values that did not fit their typed column (kept in "
               "`_raw`)."),
            _c("status", "text", f"How it stands: {_RUN_STATUSES}."),
            _c("error", "text", "What went wrong, if it failed."),
            _c("finished_at", "timestamp", "When it ended; empty while it runs."),
            _c("rejected", "integer", f"Records set aside in `{REJECTED_TABLE}` instead of "
               "loaded."),
            _c("clock", "text", "Whose clock bounded the run: api (the API's Date header) or "
               "local."),
        ),
        ("run_id", "endpoint"),
    ),
    TableDoc(
        STATE_TABLE,
        "One row per endpoint: how far it is synced, and where an interrupted window resumes.",
        (
            _c("endpoint", "text", "The endpoint."),
            _c("watermark", "timestamp", "Everything updated before this is in the warehouse: "
               "the next incremental run asks from here, less the overlap."),
            _c("checkpoint_start", "timestamp", "Start of an interrupted window."),
            _c("checkpoint_end", "timestamp", "End of an interrupted window."),
            _c("checkpoint_url", "text", "The `next` link the interrupted window resumes from."),
            _c("checkpoint_watermark", "timestamp", "The watermark that finishing the "
               "interrupted window commits."),
            _c("last_records", "integer", "Records the endpoint had in its last run (the "
               "largest endpoints start first)."),
            _c("updated_at", "timestamp", "When this row last changed."),
        ),
        ("endpoint",),
    ),
    TableDoc(
        DELETIONS_TABLE,
        "Every tombstone: one row per deletion ogsync learnt of, applied or still waiting "
        "for its record.",
        (
            _c("endpoint", "text", "The table of the deleted record."),
            _c("record_id", "text", "The deleted record's key."),
            _c("deleted_at", "timestamp", "When it was deleted (the webhook's time, or when "
               "ogsync found it gone)."),
            _c("reason", "text", f"How the deletion was learnt: {_REASONS}."),
            _c("source", "text", "What told: the webhook event's id, or the run's id."),
            _c("recorded_at", "timestamp", "When ogsync recorded it."),
        ),
    ),
    TableDoc(
        BACKFILL_TABLE,
        "One row per backfill window: how far it got, so that a stopped backfill resumes.",
        (
            _c("endpoint", "text", "The endpoint."),
            _c("window_start", "timestamp", "Start of the window."),
            _c("window_end", "timestamp", "End of the window."),
            _c("next_url", "text", "The `next` link to resume from; empty once done."),
            _c("done_at", "timestamp", "When the window was finished; empty until then."),
        ),
        ("endpoint", "window_start", "window_end"),
    ),
    TableDoc(
        REJECTED_TABLE,
        "Input that could not be applied, kept whole with the reason: API records and webhook "
        "events.",
        (
            _c("source", "text", "webhook, or the endpoint the record came from."),
            _c("item_id", "text", "The event's id or the record's key, as received."),
            _c("reason", "text", "Why it could not be applied."),
            _c("payload", "text", "The input exactly as received (JSON text)."),
            _c("run_id", "text", "The run that set it aside, if a run did."),
            _c("rejected_at", "timestamp", "When it was set aside."),
        ),
    ),
    TableDoc(
        RULES_TABLE,
        "One row per endpoint: the field rules (left out, hashed) its rows were written with.",
        (
            _c("endpoint", "text", "The endpoint."),
            _c("rules", "text", "The rules as JSON (fields excluded and hashed, and a check of "
               "the hash key, never the key); empty for none."),
            _c("recorded_at", "timestamp", "When these rules were recorded."),
        ),
        ("endpoint",),
    ),
    TableDoc(
        EVENTS_TABLE,
        "Every webhook event received, once each.",
        (
            _c("event_id", "text", "The event's id (duplicate deliveries share it)."),
            _c("type", "text", "The event's type, such as order.delete or subscription.cancel."),
            _c("created", "timestamp", "When Ordergroove created the event."),
            _c("object_type", "text", "The kind of object it is about (order, item, ...)."),
            _c("object_id", "text", "The object's id."),
            _c("payload", "json", "The whole event as received (after the field rules)."),
            _c("stored_at", "timestamp", "When ogsync stored it."),
        ),
        ("event_id",),
    ),
    TableDoc(
        CODES_TABLE,
        "The codes Ordergroove documents for coded columns, with their meaning: join on "
        "endpoint, field and code to decode.",
        (
            _c("endpoint", "text", "The table whose column holds the code."),
            _c("field", "text", "The column."),
            _c("code", "text", "The value as stored, as text."),
            _c("label", "text", "What it means, in a word or two."),
            _c("description", "text", "What it means, in a sentence (may be empty)."),
        ),
        ("endpoint", "field", "code"),
    ),
)  # fmt: skip

INBOX = TableDoc(
    INBOX_TABLE,
    "The webhook receiver's durable inbox (PostgreSQL warehouses that hold it): every event as "
    "received, until applied.",
    (
        _c("event_id", "text", "The event's id."),
        _c("type", "text", "The event's type."),
        _c("created", "integer", "When Ordergroove created the event (unix seconds)."),
        _c("object_type", "text", "The kind of object it is about."),
        _c("object_id", "text", "The object's id."),
        _c("order_id", "text", "For an item event, the item's order."),
        _c("payload", "text", "The event as received (JSON text, after the field rules)."),
        _c("received_at", "timestamp", "When the receiver accepted it."),
        _c("applied_at", "timestamp", "When it was applied to the warehouse; empty until then."),
    ),
    ("event_id",),
)


LEASES = TableDoc(
    "_ogsync_leases",
    "Who may write the schema (Snowflake, which has no advisory locks): one row per lease, "
    "renewed while its run goes on; a run that died gives its lease up when it lapses.",
    (
        _c("name", "text", "What is held: schema (the whole of it), an endpoint, or the row "
           "every acquisition updates first."),
        _c("holder", "text", "The run holding it."),
        _c("mode", "text", "exclusive or shared."),
        _c("host", "text", "The machine the run is on."),
        _c("pid", "integer", "The run's process id there."),
        _c("session_id", "text", "The run's Snowflake session."),
        _c("acquired_at", "timestamp", "When the lease was taken."),
        _c("expires_at", "timestamp", "When it lapses unless renewed."),
    ),
)  # fmt: skip

# Tables only some warehouses write, by name (`WarehouseKind.own_tables` says which).
WAREHOUSE_TABLES = {doc.name: doc for doc in (INBOX, LEASES)}


# -- the tables ----------------------------------------------------------------------------


def _codes_text(endpoint: str, column: str) -> str:
    codes = [c for c in CODES if c.endpoint == endpoint and c.field == column]
    if not codes:
        return ""
    shown = [c.code if c.code == c.label else f"{c.code} = {c.label}" for c in codes]
    return f" Codes (table {CODES_TABLE}): {', '.join(shown)}."


def _field_doc(ep: Endpoint, f: Field, hashed: frozenset[str]) -> ColumnDoc:
    kind = "json" if f.type == FieldType.JSON_TEXT else str(f.type)
    if f.name in hashed:
        return ColumnDoc(
            f.column,
            "text",
            f"{f.description} Hashed by the settings: HMAC-SHA-256 hex of the value, so equal "
            "values stay equal and joins still work.",
        )
    return ColumnDoc(f.column, kind, f.description + _codes_text(ep.name, f.column))


def _hashed(ep: Endpoint) -> frozenset[str]:
    return Governance.rules_of(ep.rules).hash


def endpoint_tables(ep: Endpoint) -> list[TableDoc]:
    """An endpoint's table, its `_current` view (and that view's deprecated alias, `_live`)
    and, when it keeps history, its history table, for the endpoint as the warehouse keeps it
    (`Governance.endpoint`)."""
    hashed = _hashed(ep)
    fields = tuple(_field_doc(ep, f, hashed) for f in ep.fields)
    key = (ep.column_key,)
    what = ep.description or f"A record of {ep.path}."
    docs = [
        TableDoc(
            ep.name,
            f"{what} One row per record as GET {ep.path} last returned it; a deleted record "
            "stays, with `_deleted_at` set.",
            fields + META_DOCS,
            key,
        ),
        TableDoc(
            ep.name + CURRENT_VIEW_SUFFIX,
            f"The rows of {ep.name} not deleted (`_deleted_at` empty).",
            fields + META_DOCS,
            key,
        ),
        TableDoc(
            ep.name + DEPRECATED_VIEW_SUFFIX,
            f"Deprecated: use {ep.name}{CURRENT_VIEW_SUFFIX}. Removed in ogsync 0.2.",
            fields + META_DOCS,
            key,
        ),
    ]
    if ep.history:
        docs.append(
            TableDoc(
                f"{ep.name}_history",
                f"Every version of each record of {ep.name} ogsync has seen, valid from "
                "`_valid_from` to `_valid_to` (versions made and replaced between two syncs "
                "were never seen).",
                fields + HISTORY_DOCS,
                (*key, "_version_hash"),
            )
        )
    return docs


def warehouse_tables(endpoints: Iterable[Endpoint], *, also: Iterable[str] = ()) -> list[TableDoc]:
    """Every table and view ogsync writes for these endpoints (as the warehouse keeps them),
    then the bookkeeping tables, and those of `WAREHOUSE_TABLES` named in `also`."""
    docs = [doc for ep in endpoints for doc in endpoint_tables(ep)]
    return docs + list(BOOKKEEPING) + [WAREHOUSE_TABLES[name] for name in also]


def tables(governance: Governance = NONE, *, also: Iterable[str] = ()) -> list[TableDoc]:
    """Every table ogsync writes with these settings: the nine endpoint tables (fields the
    rules leave out are gone, hashed ones are described as hashed), their `_current` views
    (and deprecated `_live` aliases), the
    history tables the settings keep, the bookkeeping tables and `codes`. NONE keeps no history
    and no rules: pass a merchant's `Settings.rules` for theirs. `also` adds tables only some
    warehouses write (`WarehouseKind.own_tables`: the inbox, Snowflake's leases)."""
    return warehouse_tables(governance.endpoints(ENDPOINTS), also=also)


def table(name: str, governance: Governance = NONE) -> TableDoc:
    """One table by name; a history table is found whether or not the settings keep it."""
    every = Governance(frozenset(BY_NAME), governance.rules, governance.hash_key)
    for doc in tables(every, also=WAREHOUSE_TABLES):
        if doc.name == name:
            return doc
    raise KeyError(name)
