"""From a stored ping to the records the dashboard reads: clean, cast, shape.

Pure functions, no I/O: the pipelines call them inside their transforms and
the tests call them directly. The site record has one shape for MongoDB
`sites` and BigQuery `sites` (only `custom_fields` is serialised differently
for BigQuery, as a JSON string); the BigQuery column list lives in
telemetry/pipelines/tables/*/schema.json and `test_records` keeps the two in step.

WordPress stores titles and names HTML-escaped and `esc_url` writes `&` as
`&#038;`, so those fields are decoded here, once (`display_text`). What a user
typed as `reason_info` is kept as received.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from telemetry.common import privacy, projects, sites, stored_ping, wire
from telemetry.common.stored_ping import StoredPing
from telemetry.pipelines import geo

# Rejection reasons, each counted by the pipelines.
INVALID_OBJECT = stored_ping.INVALID_OBJECT  # not the JSON object ingest writes
INVALID_PAYLOAD = stored_ping.INVALID_PAYLOAD  # breaks a key rule or lacks a required field
UNKNOWN_PROJECT = "unknown_project"
INVALID_REASON = "invalid_reason"  # a reason_id that is not a slug
MISSING_OBJECT = "missing_object"  # notified, but gone from the bucket
# A field whose value cannot become its column's type: a count that is not an integer
# within INT64, a flag that is not a yes/no word, `plugins` that is not an object,
# a `url` that stops being a URL once its HTML entities are decoded. Values the
# sinks cannot hold would fail the whole run; ones that mean nothing are set aside
# with the field named rather than stored as a silent NULL.
INVALID_VALUE = "invalid_value"
# BigQuery refuses streamed rows whose partition (the `received_at` day) is more than
# five years back or one year ahead; such a ping is set aside before it fails the run.
RECEIVED_AT_OUT_OF_RANGE = "received_at_out_of_range"
# One of the ping's BigQuery rows is over warehouse.MAX_ROW_BYTES: set aside before
# staging, as BigQuery would refuse it.
ROW_TOO_LARGE = "row_too_large"
# A load job refused the row all the same (warehouse.HistoryWriter.load); `detail`
# names the table and quotes BigQuery's errors.
BIGQUERY_REFUSED = "bigquery_refused"
REJECTION_REASONS = (
    INVALID_OBJECT,
    INVALID_PAYLOAD,
    UNKNOWN_PROJECT,
    INVALID_REASON,
    MISSING_OBJECT,
    INVALID_VALUE,
    RECEIVED_AT_OUT_OF_RANGE,
    ROW_TOO_LARGE,
    BIGQUERY_REFUSED,
)

# What a `rejected` row keeps of a payload: its first 64 KiB of JSON text, then
# `payload_truncated`. Enough to read any ping a real site sends whole (a realistic
# track ping is 1-8 KB), and it bounds a rejected row to well under 100 KB whatever
# was sent: a 256 KiB body of control characters, each escaped to 6 bytes, made
# 574 KB rows, and 19 of them overflowed a 10 MB request.
MAX_REJECTED_PAYLOAD_BYTES = 64 * 1024
# What `detail` keeps (characters): the reason's explanation, with the values it quotes cut.
MAX_DETAIL_CHARS = 1000
# What `hash` keeps of a payload's `hash` (characters): a project hash is 32; a longer
# one names no project, and the payload keeps its head.
MAX_REJECTED_HASH_CHARS = 64

# BigQuery INTEGER and MongoDB's largest integer: both are 64-bit.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The streaming window, a day inside BigQuery's own bounds on each side (5 years are
# at least 1,826 days): what `received_at` may be, relative to the run's clock.
STREAMING_PAST = timedelta(days=1825)
STREAMING_FUTURE = timedelta(days=364)
_INTEGER = re.compile(r"-?[0-9]{1,19}")

_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off", ""})


class Rejected(ValueError):
    """A ping the pipelines set aside; `reason` is one of REJECTION_REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def read_stored_ping(name: str, data: bytes, now: datetime | None = None) -> StoredPing:
    """`StoredPing.parse`, its failures as Rejected (INVALID_OBJECT or INVALID_PAYLOAD), and
    RECEIVED_AT_OUT_OF_RANGE for a ping BigQuery would not take (see `in_streaming_window`)."""
    try:
        ping = StoredPing.parse(name, data)
    except stored_ping.StoredPingError as e:
        raise Rejected(e.reason, e.detail) from e
    now = now or datetime.now(UTC)
    if not in_streaming_window(ping.received_at, now):
        raise Rejected(
            RECEIVED_AT_OUT_OF_RANGE,
            f"received_at {stored_ping.format_timestamp(ping.received_at)} is more than "
            f"{STREAMING_PAST.days} days before or {STREAMING_FUTURE.days} days after this run "
            f"({stored_ping.format_timestamp(now)}): BigQuery refuses such partitions",
        )
    return ping


def in_streaming_window(received_at: datetime, now: datetime) -> bool:
    """Whether BigQuery takes a streamed row dated `received_at` at `now`."""
    return now - STREAMING_PAST <= received_at <= now + STREAMING_FUTURE


# --- casting --------------------------------------------------------------------


def to_int(value: Any) -> int | None:
    """Counts arrive as strings (form bodies) or numbers (JSON); anything else, and any
    integer outside INT64 (what BigQuery and MongoDB hold), is None."""
    if isinstance(value, bool):
        return int(value)
    number = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        # At most 19 digits: never more than int() parses, and INT64 is checked below.
        if _INTEGER.fullmatch(text):
            number = int(text)
    return number if number is not None and INT64_MIN <= number <= INT64_MAX else None


def to_bool(value: Any) -> bool | None:
    """`Yes`/`No`, `1`/`0`, `true`/`false` and JSON booleans; anything else is None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0 if value in (0, 1) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def to_text(value: Any) -> str | None:
    """A stripped string, None for empty or for values that are not scalars."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        return text or None
    return None


def display_text(value: Any) -> str | None:
    """`to_text` of a value WordPress stored HTML-escaped, decoded once:
    `Bakery &amp; Café` -> `Bakery & Café`, `L&#039;Atelier` -> `L'Atelier`."""
    text = to_text(value)
    return to_text(html.unescape(text)) if text is not None else None


def normalize_url(url: str) -> str:
    """HTML entities decoded (`esc_url` writes `&` as `&#038;`), scheme and host in
    lowercase, no trailing slash, no fragment; path and query kept."""
    parts = urlsplit(html.unescape(url.strip()))
    netloc = parts.netloc.lower()
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), netloc, path, parts.query, ""))


def _absent(value: Any) -> bool:
    """No value at all: missing, null, an empty string or an empty array/object."""
    return value is None or value == "" or value == [] or value == {}


def _invalid(field: str, value: Any, wanted: str) -> Rejected:
    shown = repr(value)
    return Rejected(INVALID_VALUE, f"{field} {shown[:100]}{'…' if len(shown) > 100 else ''} is not {wanted}")


def int_field(field: str, value: Any) -> int | None:
    """`to_int`, None when absent; Rejected(INVALID_VALUE) for a value that is not an INT64."""
    if _absent(value):
        return None
    number = to_int(value)
    if number is None:
        raise _invalid(field, value, "an integer within INT64")
    return number


def bool_field(field: str, value: Any) -> bool | None:
    """`to_bool`, None when absent (`""` is False, as WordPress sends it); Rejected(INVALID_VALUE) otherwise."""
    if value is None or value == [] or value == {}:
        return None
    flag = to_bool(value)
    if flag is None:
        raise _invalid(field, value, "yes/no, 1/0, true/false or on/off")
    return flag


def url_field(url: str) -> str:
    """`normalize_url`; Rejected(INVALID_VALUE) when decoding its HTML entities breaks the URL
    (`https://&lbrack;@x.org` passes ingest, `https://[@x.org` is no URL)."""
    try:
        return normalize_url(url)
    except ValueError as e:
        raise _invalid("url", url, f"a URL once its HTML entities are decoded ({e})") from e


def _section(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def plugins_list(value: Any) -> list[dict[str, str | None]]:
    """`plugins[<slug>][name|version]` as a list of {slug, name, version}, by slug."""
    if not isinstance(value, dict):
        return []
    plugins = []
    for slug, info in sorted(value.items()):
        info = info if isinstance(info, dict) else {}
        plugins.append(
            {"slug": str(slug), "name": display_text(info.get("name")), "version": to_text(info.get("version"))}
        )
    return plugins


def plugins_field(value: Any) -> list[dict[str, str | None]]:
    """`plugins_list`; none when absent; Rejected(INVALID_VALUE) when `plugins` is not an object."""
    if _absent(value):
        return []
    if not isinstance(value, dict):
        raise _invalid("plugins", value, "an object of slug -> {name, version}")
    return plugins_list(value)


def custom_fields(body: dict[str, Any], whitelist: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Only the `extra` keys the project whitelisted, values as sent; Rejected(INVALID_VALUE)
    for an integer MongoDB cannot hold (JSON bodies carry integers of any size)."""
    extra = _section(body, "extra")
    kept = {key: extra[key] for key in whitelist if key in extra}
    stack: list[Any] = [kept]
    while stack:
        node = stack.pop()
        for value in node.values() if isinstance(node, dict) else node:
            if isinstance(value, (dict, list)):
                stack.append(value)
            elif isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
                raise _invalid("extra", value, "an integer within INT64")
    return kept


# --- records --------------------------------------------------------------------


def site_record(
    ping: StoredPing,
    project: dict[str, Any],
    status: str = sites.ACTIVE,
    policy: privacy.Policy = privacy.DEFAULT,
    locator: geo.Locator = geo.BUNDLED,
    located: geo.Located | None = None,
) -> dict[str, Any]:
    """The site record shared by MongoDB `sites` and BigQuery `sites`, personal fields as `policy` keeps them.

    `country` and `hosting` are `locator`'s labels of the whole address (`ip_address`, else
    the ping's `client_ip`), found before `policy` truncates it; `located`: those labels
    when the caller has them already (to count how they were found)."""
    body = ping.payload
    if located is None:
        located = locator.locate(body.get("ip_address"), ping.client_ip)
    server, wp, users = _section(body, "server"), _section(body, "wp"), _section(body, "users")
    record = {
        "hash": body["hash"],
        "url": url_field(body["url"]),
        "site": display_text(body.get("site")),
        "admin_email": to_text(body.get("admin_email")),
        "first_name": display_text(body.get("first_name")),
        "last_name": display_text(body.get("last_name")),
        "wp_version": to_text(wp.get("version")),
        "php_version": to_text(server.get("php_version")),
        "mysql_version": to_text(server.get("mysql_version")),
        "server_software": to_text(server.get("software")),
        "locale": to_text(wp.get("locale")),
        "multisite": bool_field("wp[multisite]", wp.get("multisite")),
        "debug_mode": bool_field("wp[debug_mode]", wp.get("debug_mode")),
        "memory_limit": to_text(wp.get("memory_limit")),
        "theme_slug": display_text(wp.get("theme_slug")),
        "theme_name": display_text(wp.get("theme_name")),
        "theme_version": display_text(wp.get("theme_version")),
        "theme_uri": display_text(wp.get("theme_uri")),
        "theme_author": display_text(wp.get("theme_author")),
        "users_total": int_field("users[total]", users.get("total")),
        "active_plugins": int_field("active_plugins", body.get("active_plugins")),
        "inactive_plugins": int_field("inactive_plugins", body.get("inactive_plugins")),
        "plugins": plugins_field(body.get("plugins")),
        "project_version": to_text(body.get("project_version")),
        "ip_address": to_text(body.get("ip_address")),
        "is_local": bool_field("is_local", body.get("is_local")),
        "tracking_skipped": bool_field("tracking_skipped", body.get("tracking_skipped")),
        "custom_fields": custom_fields(body, projects.custom_field_keys(project)),
        "status": status,
        "country": located.country,
        "hosting": located.hosting,
        "ping_id": ping.id,
        "received_at": ping.received_at,
    }
    return policy.site_record(record)


def deactivation_record(ping: StoredPing, project: dict[str, Any]) -> dict[str, Any]:
    """The deactivation record; raises Rejected(INVALID_REASON) for a reason_id that is not a slug.

    Every slug is kept, listed or not: plugin authors add their own through the
    client's filter. `reason_known` says whether the client or the project lists it.
    No reason at all (a theme switched away) is allowed, and so is `none`.
    """
    body = ping.payload
    reason = to_text(body.get("reason_id"))
    if reason is not None and not projects.REASON_SLUG.fullmatch(reason):
        raise Rejected(INVALID_REASON, f"reason_id {reason[:100]!r} is not a slug of at most 64 of A-Z a-z 0-9 _ -")
    return {
        "hash": body["hash"],
        "url": url_field(body["url"]),
        "site": display_text(body.get("site")),
        "reason_id": reason,
        "reason_known": None if reason is None else projects.is_known_reason(reason, project),
        "reason_info": to_text(body.get("reason_info")),
        "project_version": to_text(body.get("project_version")),
        "ping_id": ping.id,
        "received_at": ping.received_at,
    }


def tracking_skipped_row(ping: StoredPing) -> dict[str, Any]:
    """The opt-out row: no personal data."""
    return {
        "hash": ping.payload["hash"],
        "previously_skipped": bool_field("previously_skipped", ping.payload.get("previously_skipped")),
        "ping_id": ping.id,
        "received_at": ping.received_at,
    }


def rejected_row(
    name: str,
    reason: str,
    detail: str,
    received_at: datetime,
    body: dict[str, Any] | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A rejected record; its payload without any personal field (privacy.PERSONAL_FIELDS), whatever the policy.

    Bounded whatever was sent: `payload` keeps the first MAX_REJECTED_PAYLOAD_BYTES of
    its JSON text (`payload_truncated` then true, and the text is cut, no longer JSON),
    `detail` MAX_DETAIL_CHARS, `hash` MAX_REJECTED_HASH_CHARS.

    A `received_at` BigQuery would refuse (see `in_streaming_window`) is kept in
    `detail`, and the row is dated by the start of the day it is set aside on: in
    the window, and the same for every run of that day, so a re-run the same day
    stores it once (a re-run on a later day dates it anew: a second row).
    """
    now = now or datetime.now(UTC)
    if not in_streaming_window(received_at, now):
        detail = f"[received_at {stored_ping.format_timestamp(received_at)}] {detail}"
        received_at = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    kept = privacy.scrub_payload(body) if body else None
    project_hash = body.get("hash") if body and isinstance(body.get("hash"), str) else None
    payload, truncated = None, False
    if kept is not None:
        payload, truncated = capped_text(
            json.dumps(kept, ensure_ascii=False, sort_keys=True), MAX_REJECTED_PAYLOAD_BYTES
        )
    return {
        "route": stored_ping.route_of(name),
        "reason": reason,
        "detail": _cut(detail, MAX_DETAIL_CHARS),
        "source": name,
        "hash": _cut(project_hash, MAX_REJECTED_HASH_CHARS) if project_hash is not None else None,
        "received_at": received_at,
        "payload": payload,
        "payload_truncated": truncated,
    }


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def capped_text(text: str, max_bytes: int) -> tuple[str, bool]:
    """`text` cut to at most `max_bytes` of UTF-8, at a character boundary; and whether it was cut."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text, False
    return data[:max_bytes].decode("utf-8", "ignore"), True


def _history_route(table: str, row: dict[str, Any]) -> str:
    """The route whose ping made a history row: each table's own, `sites` by its status."""
    if table == "sites":
        return wire.DEACTIVATE if row.get("status") == sites.DEACTIVATED else wire.TRACK
    return {"deactivations": wire.DEACTIVATE, "tracking_skipped": wire.TRACKING_SKIPPED}[table]


def refused_row(table: str, row: dict[str, Any], errors: str) -> dict[str, Any]:
    """A `rejected` row for a staged row of `table` that a BigQuery load job refused.

    A history row becomes its ping's rejection (BIGQUERY_REFUSED; no payload: the row
    is not the payload, and it may hold personal fields). A refused `rejected` row is
    kept without its payload (`payload_truncated`), the refusal added to its detail.
    """
    received_at = stored_ping.parse_timestamp(row["received_at"])
    refusal = f"BigQuery refused its {table} row: {errors}"
    if table == "rejected":
        return {
            **row,
            "received_at": received_at,
            "detail": _cut(f"{refusal} [was {row.get('reason')}: {row.get('detail')}]", MAX_DETAIL_CHARS),
            "payload": None,
            "payload_truncated": True,
        }
    name = stored_ping.object_name(_history_route(table, row), received_at, str(row["ping_id"]))
    hash_value = row.get("hash")
    body = {"hash": hash_value} if isinstance(hash_value, str) else None
    return rejected_row(name, BIGQUERY_REFUSED, refusal, received_at, body)


def bigquery_row(record: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """`record` as a BigQuery row (a line of a load job's NDJSON file): only the table's columns, JSON-safe values."""
    row = {}
    for column in columns:
        value = record.get(column)
        if isinstance(value, datetime):
            value = stored_ping.format_timestamp(value)
        elif column == "custom_fields" and value is not None:
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        row[column] = value
    return row
