"""The HTTP side of ingest: one request in, at most one object in Cloud Storage out.

Invariant: a 200 is answered only after the ping's object was written. Bad
input gets a JSON 4xx naming the problem and stores nothing; a storage failure
after bounded retries gets a 503 with `Retry-After`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import flask

from telemetry import config, payload
from telemetry.logs import get_logger
from telemetry.records import format_timestamp
from telemetry.storage import PingStore, StorageUnavailable

log = get_logger("telemetry.ingest")

ALLOWED_METHODS = "GET, POST"

_instance_lock = threading.Lock()
_instance: tuple[config.IngestSettings, PingStore] | None = None


def _settings_and_store() -> tuple[config.IngestSettings, PingStore]:
    """Settings and storage client, created once per function instance."""
    global _instance
    if _instance is None:
        with _instance_lock:
            if _instance is None:
                settings = config.IngestSettings.from_env()
                _instance = (settings, PingStore(settings))
    return _instance


def reset_instance() -> None:
    """Forget the cached settings and client (tests that change the environment)."""
    global _instance
    with _instance_lock:
        _instance = None


@dataclass(frozen=True)
class Ping:
    """What one accepted request becomes: the stored object's content and name."""

    id: str
    received_at: datetime
    route: str
    user_agent: str | None
    content_type: str | None
    client_ip: str | None
    payload: dict[str, Any]
    raw: str

    @property
    def object_name(self) -> str:
        return object_name(self.route, self.received_at, self.id)

    def to_json(self) -> bytes:
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
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def object_name(route: str, received_at: datetime, ping_id: str) -> str:
    """`<route>/YYYY/MM/DD/HH/<id>.json`, by the hour of receipt in UTC."""
    return f"{route}/{received_at.astimezone(UTC):%Y/%m/%d/%H}/{ping_id}.json"


def client_ip(request: flask.Request) -> str | None:
    """The first address of X-Forwarded-For (as Cloud Run sets it), else the peer."""
    forwarded = request.headers.get("X-Forwarded-For", "")
    first = forwarded.split(",")[0].strip()
    return first or request.remote_addr


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> flask.Response:
    return flask.Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        mimetype="application/json",
        headers=headers,
    )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> flask.Response:
    return _json_response(status, {"ok": False, "error": code, "message": message}, headers)


def _read_body(request: flask.Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = request.stream.read(limit + 1)
    return None if len(body) > limit else body


def handle(route: str, request: flask.Request) -> flask.Response:
    """Serve one request to `route`; logs one structured line whatever happens."""
    started = time.perf_counter()
    size = request.content_length or 0
    ping_id: str | None = None
    reason: str | None = None
    try:
        settings, store = _settings_and_store()
        if request.method == "GET":
            response = _json_response(200, {"ok": True, "route": route})
        elif request.method != "POST":
            reason = "method_not_allowed"
            response = _error(
                405, reason, "use POST to send a ping, GET for a health check", {"Allow": ALLOWED_METHODS}
            )
        else:
            body = _read_body(request, settings.max_body_bytes)
            if body is None:
                reason = "body_too_large"
                response = _error(413, reason, f"body is larger than {settings.max_body_bytes} bytes")
            else:
                size = len(body)
                ping = _accept(route, request, body, settings)
                ping_id = ping.id
                store.put(ping.object_name, ping.to_json())
                response = _json_response(200, {"ok": True, "id": ping.id})
    except payload.PayloadError as e:
        reason = e.code
        response = _error(e.status, e.code, e.message)
    except StorageUnavailable as e:
        reason = "storage_unavailable"
        retry_after = _settings_and_store()[0].retry_after_seconds
        log.error("ping not stored", extra={"route": route, "ping_id": ping_id, "error": str(e)})
        response = _error(503, reason, "the ping could not be stored; retry later", {"Retry-After": str(retry_after)})
    latency = time.perf_counter() - started
    _log_request(route, request, response.status_code, size, latency, reason, ping_id)
    return response


def _accept(route: str, request: flask.Request, body: bytes, settings: config.IngestSettings) -> Ping:
    limits = payload.Limits(
        max_depth=settings.max_depth,
        max_keys=settings.max_keys,
        max_value_chars=settings.max_value_chars,
        max_key_chars=settings.max_key_chars,
    )
    content_type = request.headers.get("Content-Type")
    parsed = payload.parse_body(body, content_type, limits)
    payload.validate(route, parsed)
    return Ping(
        id=str(uuid.uuid4()),
        received_at=datetime.now(UTC),
        route=route,
        user_agent=request.headers.get("User-Agent"),
        content_type=content_type,
        client_ip=client_ip(request),
        payload=parsed,
        raw=body.decode("utf-8"),
    )


def _log_request(
    route: str,
    request: flask.Request,
    status: int,
    size: int,
    latency: float,
    reason: str | None,
    ping_id: str | None,
) -> None:
    fields = {
        "route": route,
        "status": status,
        "size": size,
        "latency_ms": round(latency * 1000, 3),
        "reason": reason,
        "ping_id": ping_id,
        "httpRequest": {
            "requestMethod": request.method,
            "status": status,
            "requestSize": str(size),
            "latency": f"{latency:.6f}s",
            "remoteIp": client_ip(request),
            "userAgent": request.headers.get("User-Agent"),
        },
    }
    if status >= 500:
        log.error("request failed", extra=fields)
    elif status >= 400:
        log.warning("request rejected", extra=fields)
    else:
        log.info("request served", extra=fields)
