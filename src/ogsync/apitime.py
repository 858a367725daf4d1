"""The API's naive local timestamps, and their conversion to and from aware UTC instants.

Ordergroove renders times as naive "YYYY-MM-DD HH:MM:SS" strings in its own zone and reads
range filters the same way. Every conversion between that and UTC lives here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

API_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FILTER_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
DEFAULT_API_TIMEZONE = "America/Chicago"


def zone(name: str) -> ZoneInfo:
    """The named IANA zone, or ValueError with a message fit for a user."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as America/Chicago"
        ) from exc


def to_local_naive(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def from_local_naive(local: datetime, tz: ZoneInfo, *, fold: int = 0) -> datetime:
    """An aware UTC instant for a naive wall-clock time in `tz`.

    `fold` picks the occurrence of a wall time repeated when clocks go back (0: the first).
    """
    return local.replace(tzinfo=tz, fold=fold).astimezone(UTC)


def format_api(instant: datetime, tz: ZoneInfo) -> str:
    """How the API renders an instant in a record: naive, in its zone."""
    return to_local_naive(instant, tz).strftime(API_DATETIME_FORMAT)


def format_filter(instant: datetime, tz: ZoneInfo) -> str:
    """How a range filter value is written for the API: naive, in its zone."""
    return to_local_naive(instant, tz).strftime(FILTER_DATETIME_FORMAT)


def parse_api(value: object, tz: ZoneInfo) -> datetime | None:
    """A record's timestamp as aware UTC, or None when it is not a real time ("null", Feb 29...)."""
    if not isinstance(value, str):
        return None
    try:
        local = datetime.strptime(value.strip(), API_DATETIME_FORMAT)
    except ValueError:
        return None
    return from_local_naive(local, tz)


def parse_filter(value: str, *, end: bool) -> datetime:
    """A range filter value as a naive local datetime; raises ValueError when malformed.

    A date alone covers its whole day: as a start it means 00:00:00, as an end 23:59:59.
    """
    text = value.strip()
    for fmt in (FILTER_DATETIME_FORMAT, API_DATETIME_FORMAT):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    day = date.fromisoformat(text) if len(text) == 10 else None
    if day is None:
        raise ValueError("Enter a valid date/time.")
    return datetime.combine(day, time(23, 59, 59) if end else time(0, 0, 0))


def from_epoch(seconds: int | float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
