"""The stored ping: what ingest writes to Cloud Storage and the pipelines read back.

One JSON object per accepted request, named `<route>/YYYY/MM/DD/HH/<id>.json`
by the hour of receipt in UTC:

    {"id": "c1d8f816-…", "received_at": "2026-11-23T11:52:36.758352Z", "route": "track",
     "user_agent": "Appsero/…;", "content_type": "application/x-www-form-urlencoded; charset=UTF-8",
     "client_ip": "203.0.113.7", "payload": {…}, "raw": "url=https%3A%2F%2F…"}

An object that a generator wrote (the demo's backdated history) also carries
`"synthetic": true`; a received ping never does.

The bytes: UTF-8 JSON without spaces, characters beyond ASCII as themselves
(never escaped to ASCII), numbers as JSON numbers. Written with orjson, the one
third-party import here: ingest writes an object per ping, and orjson takes a
fraction of the standard library's CPU for it (`make bench-ingest`). Read with
the standard library's `json`, which reads every object either ever wrote: its
own (older objects, integers of any size included) as well as orjson's.

This module is the format's only home: it names, writes, lists and reads the
objects. Ingest and the pipelines both import it; neither knows the layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from telemetry.common import wire

SUFFIX = ".json"
CONTENT_TYPE = "application/json"
_TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
_HOUR = "%Y/%m/%d/%H"
# Objects per page when a reader lists an hour: Cloud Storage's default, stated
# because fake-gcs-server's is unbounded (a 17k-object hour came back as one 20 MB page).
LIST_PAGE_SIZE = 1000

# Why a stored object could not be read back, as the pipelines count it.
INVALID_OBJECT = "invalid_object"  # not the JSON object ingest writes
INVALID_PAYLOAD = "invalid_payload"  # its payload breaks a rule that protects the sinks


class StoredPingError(ValueError):
    """An object that is not a readable stored ping; `reason` is INVALID_OBJECT or INVALID_PAYLOAD."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def format_timestamp(moment: datetime) -> str:
    """UTC with microseconds and a `Z`: `2026-11-23T11:47:18.123456Z`."""
    return moment.astimezone(UTC).strftime(_TIMESTAMP)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, _TIMESTAMP).replace(tzinfo=UTC)


# An hour as commands and template parameters name it (`--hour`, `hour`, the audit's hours).
HOUR_ARGUMENT = "%Y-%m-%dT%H"


def parse_hour(text: str) -> datetime:
    """A `YYYY-MM-DDTHH` (UTC) argument as the start of that hour."""
    try:
        return datetime.strptime(text, HOUR_ARGUMENT).replace(tzinfo=UTC)
    except ValueError as e:
        raise ValueError(f"an hour is YYYY-MM-DDTHH (UTC), got {text!r}") from e


def hour_folder(hour: datetime) -> str:
    """`YYYY/MM/DD/HH` of a moment, in UTC."""
    return hour.astimezone(UTC).strftime(_HOUR)


def hour_prefix(route: str, hour: datetime | str) -> str:
    """The prefix that lists one route's objects of one hour (`hour` as a moment or a `YYYY/MM/DD/HH` folder)."""
    folder = hour if isinstance(hour, str) else hour_folder(hour)
    return f"{route}/{folder}/"


def object_name(route: str, received_at: datetime, ping_id: str) -> str:
    return f"{hour_prefix(route, received_at)}{ping_id}{SUFFIX}"


def route_of(name: str) -> str | None:
    """The route an object name belongs to, from its prefix."""
    prefix = name.split("/", 1)[0]
    return prefix if prefix in wire.ROUTES else None


def is_object_of(name: str, route: str) -> bool:
    """Whether `name` is a stored ping of `route` (the prefix can hold other objects)."""
    return name.startswith(f"{route}/") and name.endswith(SUFFIX)


def received_at_of(name: str, data: bytes | None, fallback: datetime) -> datetime:
    """Best-effort receipt time of an object that could not be read: its `received_at`,
    else the hour in its name, else `fallback`."""
    if data:
        try:
            return parse_timestamp(json.loads(data)["received_at"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            pass
    try:
        return datetime.strptime("/".join(name.split("/")[1:5]), _HOUR).replace(tzinfo=UTC)
    except ValueError:
        return fallback


def payload_of(data: bytes) -> dict[str, Any] | None:
    """The `payload` object of an object that could not be read as a ping, if it has one."""
    try:
        body = json.loads(data).get("payload")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


@dataclass(frozen=True)
class StoredPing:
    """One accepted request. `payload` is the body as parsed by `wire`, values as sent."""

    id: str
    route: str
    received_at: datetime
    payload: dict[str, Any]
    user_agent: str | None = None
    content_type: str | None = None
    client_ip: str | None = None
    raw: str | None = None
    # Written by a generator (the demo's backdated history), not received from a
    # site. Stored only when true, so a received ping's envelope never carries it.
    synthetic: bool = False

    @property
    def object_name(self) -> str:
        return object_name(self.route, self.received_at, self.id)

    def to_json(self) -> bytes:
        """The object's bytes. The payload holds what JSON can say: strings, integers,
        finite floats, booleans, null, lists and objects with string keys (what `wire`
        accepts); a float that is not finite has no JSON form."""
        record = {
            "id": self.id,
            "received_at": format_timestamp(self.received_at),
            "route": self.route,
            "user_agent": self.user_agent,
            "content_type": self.content_type,
            "client_ip": self.client_ip,
            "payload": self.payload,
            "raw": self.raw,
        }
        if self.synthetic:
            record["synthetic"] = True
        try:
            return orjson.dumps(record)
        except orjson.JSONEncodeError:
            # An integer beyond 64 bits (a JSON body may hold one; orjson has no form for
            # it): the standard library writes it, to the same format.
            return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def parse(cls, name: str, data: bytes) -> StoredPing:
        """Read one object back; raises StoredPingError.

        Re-checks only what protects the sinks (the route's required fields and the
        key rules), never the size limits: ingest applied those with its settings.
        """
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise StoredPingError(INVALID_OBJECT, f"not a JSON object: {e}") from e
        if not isinstance(obj, dict):
            raise StoredPingError(INVALID_OBJECT, "not a JSON object")
        try:
            ping_id, route, received, body = obj["id"], obj["route"], obj["received_at"], obj["payload"]
            if not (isinstance(ping_id, str) and isinstance(route, str) and isinstance(body, dict)):
                raise TypeError("id, route and payload have the wrong types")
            received_at = parse_timestamp(received)
        except (KeyError, TypeError, ValueError) as e:
            raise StoredPingError(INVALID_OBJECT, f"not a stored ping: {e!r}") from e
        if route != route_of(name):
            raise StoredPingError(INVALID_OBJECT, f"route {route!r} does not match the object's folder")
        try:
            wire.check_keys(body)
            wire.validate(route, body)
        except wire.PayloadError as e:
            raise StoredPingError(INVALID_PAYLOAD, f"{e.code}: {e.message}") from e

        def text(field: str) -> str | None:
            value = obj.get(field)
            return value if isinstance(value, str) else None

        return cls(
            id=ping_id,
            route=route,
            received_at=received_at,
            payload=body,
            user_agent=text("user_agent"),
            content_type=text("content_type"),
            client_ip=text("client_ip"),
            raw=text("raw"),
            synthetic=obj.get("synthetic") is True,
        )
