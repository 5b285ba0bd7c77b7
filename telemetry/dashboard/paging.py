"""Keyset pagination: page sizes and opaque cursors.

A list is ordered by (time desc, url asc): `last_seen` for sites, `received_at`
for deactivations. `url` is unique within a project, so the pair is a total
order, and a cursor is the pair of the last item of a page. The next page is
everything strictly after it in that order: `time < t or (time == t and url > u)`.
A site whose document does not change between two pages keeps its place in
that order, so paging never repeats or skips it; a site that pings in between
moves to the front (its `last_seen` grows), which is a change.

A cursor is opaque to clients: base64url of a small JSON array naming the list
it belongs to. Anything that does not decode to exactly that shape is refused
(`InvalidCursor`), so a bad cursor is a 400, never a 500 and never a wrong page.
Times travel as whole milliseconds since the epoch: MongoDB stores dates to the
millisecond, so the round trip is exact.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_CURSOR_CHARS = 4096  # a url is at most 2,048 characters (wire.MAX_URL_CHARS); JSON escaping at most doubles it

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidCursor(ValueError):
    """The cursor was not made by this API for this list."""


class InvalidLimit(ValueError):
    pass


@dataclass(frozen=True)
class Position:
    """Where a page ended: the (time, url) of its last item, in the list `kind`."""

    kind: str
    time: datetime
    url: str


def parse_limit(raw: str | None) -> int:
    """`limit` from the query string: absent is DEFAULT_LIMIT; otherwise a decimal integer 1 to MAX_LIMIT."""
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4:
        raise InvalidLimit(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw[:20]!r}")
    value = int(raw)
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidLimit(f"limit must be an integer from 1 to {MAX_LIMIT}, got {value}")
    return value


def to_millis(at: datetime) -> int:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - EPOCH) // timedelta(milliseconds=1)


def from_millis(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def encode(position: Position) -> str:
    raw = json.dumps([position.kind, to_millis(position.time), position.url], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode(cursor: str, kind: str) -> Position:
    """The position a cursor of list `kind` names; InvalidCursor for anything else."""
    if not cursor or len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
        raise InvalidCursor("cursor is not one this API returned")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value: Any = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: `[[[[...`
        raise InvalidCursor("cursor is not one this API returned") from e
    if (
        not isinstance(value, list)
        or len(value) != 3
        or value[0] != kind
        or type(value[1]) is not int
        or not isinstance(value[2], str)
        or not value[2]
    ):
        raise InvalidCursor("cursor is not one this API returned for this list")
    try:
        at = from_millis(value[1])
    except OverflowError as e:
        raise InvalidCursor("cursor is not one this API returned") from e
    return Position(kind, at, value[2])


def after(position: Position, time_field: str) -> dict[str, Any]:
    """The MongoDB filter of everything after `position` in (time desc, url asc) order.

    Written as a range on the time (`<= t`), which bounds the index scan, and the tie
    rule as a residual test, rather than as a bare `$or` of two ranges: a top-level
    `$or` lets a planner split the query into two index scans and merge them.
    """
    return {
        time_field: {"$lte": position.time},
        "$or": [{time_field: {"$lt": position.time}}, {"url": {"$gt": position.url}}],
    }
