"""From a stored ping to the records the dashboard reads: clean, cast, shape.

Pure functions, no I/O: the pipelines call them inside their transforms and
the tests call them directly. The site record has one shape for MongoDB
`sites` and BigQuery `sites` (only `custom_fields` is serialised differently
for BigQuery, as a JSON string); the BigQuery column list lives in
telemetry/schemas/*.json and `test_records` keeps the two in step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from telemetry import payload as wire

ACTIVE = "active"
DEACTIVATED = "deactivated"

# Rejection reasons, each counted by the pipelines.
INVALID_OBJECT = "invalid_object"  # not the JSON object ingest writes
INVALID_PAYLOAD = "invalid_payload"  # fails the wire-format rules
UNKNOWN_PROJECT = "unknown_project"
UNKNOWN_REASON = "unknown_reason"
MISSING_OBJECT = "missing_object"  # notified, but gone from the bucket
REJECTION_REASONS = (INVALID_OBJECT, INVALID_PAYLOAD, UNKNOWN_PROJECT, UNKNOWN_REASON, MISSING_OBJECT)

_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off", ""})


class Rejected(ValueError):
    """A ping the pipelines set aside; `reason` is one of REJECTION_REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class StoredPing:
    """The object ingest wrote: `<route>/YYYY/MM/DD/HH/<id>.json`."""

    source: str
    id: str
    route: str
    received_at: datetime
    payload: dict[str, Any]


def parse_timestamp(text: str) -> datetime:
    """`2026-11-23T11:47:18.123456Z` -> aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def format_timestamp(moment: datetime) -> str:
    """UTC, microseconds, `Z` suffix: `2026-11-23T11:47:18.123456Z` (what ingest stores, what parse_timestamp reads)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def route_of(source: str) -> str | None:
    """The route an object name belongs to, from its prefix."""
    prefix = source.split("/", 1)[0]
    return prefix if prefix in wire.ROUTES else None


def parse_stored_ping(source: str, data: bytes) -> StoredPing:
    """Decode one stored object; raises Rejected with INVALID_OBJECT or INVALID_PAYLOAD."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Rejected(INVALID_OBJECT, f"not a JSON object: {e}") from e
    if not isinstance(obj, dict):
        raise Rejected(INVALID_OBJECT, "not a JSON object")
    try:
        ping_id, route, received, body = obj["id"], obj["route"], obj["received_at"], obj["payload"]
        if not (isinstance(ping_id, str) and isinstance(route, str) and isinstance(body, dict)):
            raise TypeError("id, route and payload have the wrong types")
        received_at = parse_timestamp(received)
    except (KeyError, TypeError, ValueError) as e:
        raise Rejected(INVALID_OBJECT, f"not a stored ping: {e!r}") from e
    if route != route_of(source):
        raise Rejected(INVALID_OBJECT, f"route {route!r} does not match the object's folder")
    try:
        wire.check_structure(body)
        wire.validate(route, body)
    except wire.PayloadError as e:
        raise Rejected(INVALID_PAYLOAD, f"{e.code}: {e.message}") from e
    return StoredPing(source=source, id=ping_id, route=route, received_at=received_at, payload=body)


# --- casting --------------------------------------------------------------------


def to_int(value: Any) -> int | None:
    """Counts arrive as strings (form bodies) or numbers (JSON); anything else is None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit() and text.isascii():
            return int(text)
    return None


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


def normalize_url(url: str) -> str:
    """Scheme and host in lowercase, no trailing slash, no fragment; path and query kept."""
    parts = urlsplit(url.strip())
    netloc = parts.netloc.lower()
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), netloc, path, parts.query, ""))


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
        plugins.append({"slug": str(slug), "name": to_text(info.get("name")), "version": to_text(info.get("version"))})
    return plugins


def custom_fields(body: dict[str, Any], whitelist: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Only the `extra` keys the project whitelisted, values as sent."""
    extra = _section(body, "extra")
    return {key: extra[key] for key in whitelist if key in extra}


# --- records --------------------------------------------------------------------


def site_record(ping: StoredPing, project: dict[str, Any], status: str = ACTIVE) -> dict[str, Any]:
    """The site record shared by MongoDB `sites` and BigQuery `sites`."""
    body = ping.payload
    server, wp, users = _section(body, "server"), _section(body, "wp"), _section(body, "users")
    return {
        "hash": body["hash"],
        "url": normalize_url(body["url"]),
        "site": to_text(body.get("site")),
        "admin_email": to_text(body.get("admin_email")),
        "first_name": to_text(body.get("first_name")),
        "last_name": to_text(body.get("last_name")),
        "wp_version": to_text(wp.get("version")),
        "php_version": to_text(server.get("php_version")),
        "mysql_version": to_text(server.get("mysql_version")),
        "server_software": to_text(server.get("software")),
        "locale": to_text(wp.get("locale")),
        "multisite": to_bool(wp.get("multisite")),
        "debug_mode": to_bool(wp.get("debug_mode")),
        "memory_limit": to_text(wp.get("memory_limit")),
        "theme_slug": to_text(wp.get("theme_slug")),
        "theme_name": to_text(wp.get("theme_name")),
        "theme_version": to_text(wp.get("theme_version")),
        "theme_uri": to_text(wp.get("theme_uri")),
        "theme_author": to_text(wp.get("theme_author")),
        "users_total": to_int(users.get("total")),
        "active_plugins": to_int(body.get("active_plugins")),
        "inactive_plugins": to_int(body.get("inactive_plugins")),
        "plugins": plugins_list(body.get("plugins")),
        "project_version": to_text(body.get("project_version")),
        "ip_address": to_text(body.get("ip_address")),
        "is_local": to_bool(body.get("is_local")),
        "tracking_skipped": to_bool(body.get("tracking_skipped")),
        "custom_fields": custom_fields(body, project.get("custom_fields") or []),
        "status": status,
        "ping_id": ping.id,
        "received_at": ping.received_at,
    }


def allowed_reasons(project: dict[str, Any]) -> frozenset[str]:
    return wire.CLIENT_DEACTIVATION_REASONS | frozenset(project.get("deactivation_reasons") or [])


def deactivation_record(ping: StoredPing, project: dict[str, Any]) -> dict[str, Any]:
    """The deactivation record; raises Rejected(UNKNOWN_REASON) for a reason the project does not know.

    No reason at all (a theme switched away) is allowed, and so is `none`.
    """
    body = ping.payload
    reason = to_text(body.get("reason_id"))
    if reason is not None and reason not in allowed_reasons(project):
        raise Rejected(UNKNOWN_REASON, f"reason_id {reason[:100]!r} is neither the client's nor the project's")
    return {
        "hash": body["hash"],
        "url": normalize_url(body["url"]),
        "site": to_text(body.get("site")),
        "reason_id": reason,
        "reason_info": to_text(body.get("reason_info")),
        "project_version": to_text(body.get("project_version")),
        "ping_id": ping.id,
        "received_at": ping.received_at,
    }


def tracking_skipped_row(ping: StoredPing) -> dict[str, Any]:
    """The opt-out row: no personal data."""
    return {
        "hash": ping.payload["hash"],
        "previously_skipped": to_bool(ping.payload.get("previously_skipped")),
        "ping_id": ping.id,
        "received_at": ping.received_at,
    }


def rejected_row(
    source: str, reason: str, detail: str, received_at: datetime, body: dict[str, Any] | None
) -> dict[str, Any]:
    """A rejected record, with `ip_address` and `admin_email` removed from its payload."""
    kept = {k: v for k, v in body.items() if k not in ("ip_address", "admin_email")} if body else None
    project_hash = body.get("hash") if body and isinstance(body.get("hash"), str) else None
    return {
        "route": route_of(source),
        "reason": reason,
        "detail": detail[:1000],
        "source": source,
        "hash": project_hash,
        "received_at": received_at,
        "payload": json.dumps(kept, ensure_ascii=False, sort_keys=True) if kept is not None else None,
    }


def received_at_of(source: str, data: bytes | None, fallback: datetime) -> datetime:
    """Best-effort receipt time of an object that could not be parsed: its `received_at`,
    else the hour in its name, else `fallback`."""
    if data:
        try:
            return parse_timestamp(json.loads(data)["received_at"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            pass
    parts = source.split("/")
    try:
        return datetime(*(int(p) for p in parts[1:5]), tzinfo=UTC)  # type: ignore[misc]
    except (ValueError, TypeError):
        return fallback


def bigquery_row(record: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """`record` as a row for `insert_rows_json`: only the table's columns, JSON-safe values."""
    row = {}
    for column in columns:
        value = record.get(column)
        if isinstance(value, datetime):
            value = format_timestamp(value)
        elif column == "custom_fields" and value is not None:
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        row[column] = value
    return row
