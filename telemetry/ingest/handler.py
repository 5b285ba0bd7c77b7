"""The HTTP side of ingest: one request in, at most one object in Cloud Storage out.

Invariants: a 200 is answered only after the ping's object was written. Bad
input gets a JSON 4xx naming the problem and stores nothing. A storage failure
after bounded retries gets a 503, and any other failure (settings that do not
parse, a bug) a 500; both carry `Retry-After`. Every answer is JSON, and every
request logs exactly one structured line.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

import flask
import orjson
from werkzeug.http import parse_options_header

from telemetry.common import config, logs, privacy, wire
from telemetry.common.logs import get_logger
from telemetry.common.stored_ping import StoredPing
from telemetry.ingest.object_writer import ObjectWriter, StorageUnavailable
from telemetry.ingest.settings import IngestSettings

log = get_logger("telemetry.ingest")

ALLOWED_METHODS = "GET, POST"
# Retry-After when even the settings could not be read (RETRY_AFTER_SECONDS is one of them).
FALLBACK_RETRY_AFTER_SECONDS = 30


@cache
def instance() -> tuple[IngestSettings, ObjectWriter]:
    """Settings and storage writer, made once per function instance (a failure is retried next request)."""
    settings = IngestSettings.from_env()
    return settings, ObjectWriter(settings)


def reset_instance() -> None:
    """Forget the settings and writer (tests that change the environment)."""
    instance.cache_clear()


def client_ip(request: flask.Request, trusted_hops: int) -> str | None:
    """The client's address: the X-Forwarded-For entry `trusted_hops` from the end.

    Each trusted proxy appends the address it was reached from, so that entry is the one
    the first of them saw: the client's (Google's front end is one such proxy, the local
    gateway plays it). The entries before it are whatever the client wrote, and are never
    used. A header with fewer entries, or an entry that is not an IP address, did not
    come through the proxies the setting names (or names too many): then the peer address,
    the one address the client cannot choose (deployed, a front end's, not the client's).
    """
    return _client_address(request, trusted_hops)[0]


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _client_address(request: flask.Request, trusted_hops: int) -> tuple[str | None, Address | None]:
    """`client_ip`, and the address as `ipaddress` read it when it came from X-Forwarded-For
    (None for the peer address, which nothing here reads)."""
    forwarded = request.environ.get("HTTP_X_FORWARDED_FOR")
    if forwarded:
        # rsplit: at most trusted_hops + 1 parts, however many entries a client sent.
        entries = forwarded.rsplit(",", trusted_hops)
        if len(entries) >= trusted_hops:
            candidate = entries[-trusted_hops].strip()
            try:
                return candidate, ipaddress.ip_address(candidate)
            except ValueError:
                pass
    return request.remote_addr, None


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> flask.Response:
    return flask.Response(
        orjson.dumps(body),
        status=status,
        mimetype="application/json",
        headers=headers,
    )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> flask.Response:
    return _json_response(status, {"ok": False, "error": code, "message": message}, headers)


class IncompleteBody(wire.PayloadError):
    """The body ended before its Content-Length, or its chunked framing is broken."""


def _read_body(request: flask.Request, content_length: int | None, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` bytes; raises IncompleteBody.
    `content_length` is the request's (werkzeug parses the header anew on each access).

    A body shorter than its Content-Length is one the client did not finish (it hung
    up, or lied): a truncated form can still parse as a ping, so it is refused, never
    stored. An error while reading is the client's framing, whatever the server
    names it (gunicorn: NoMoreData, an OSError, for a connection that ends early,
    InvalidChunkSize, a plain ParseException, for a bad chunk; werkzeug:
    ClientDisconnected), so any error of the read is a 400, not a 500.
    """
    if content_length is not None and content_length > limit:
        return None
    try:
        body = request.stream.read(limit + 1)
    except Exception as e:  # see above: the server's reader only fails on the client's bytes
        raise IncompleteBody("incomplete_body", f"the body could not be read to its end: {e}") from e
    if len(body) > limit:
        return None
    if content_length is not None and len(body) < content_length:
        raise IncompleteBody("incomplete_body", f"the body ended after {len(body)} of its {content_length} bytes")
    return body


def _retry_after() -> str:
    try:
        return str(instance()[0].retry_after_seconds)
    except Exception:  # the settings themselves are what failed
        return str(FALLBACK_RETRY_AFTER_SECONDS)


def handle(route: str, request: flask.Request) -> flask.Response:
    """Serve one request to `route`; logs one structured line whatever happens."""
    started = time.perf_counter()
    content_length = request.content_length
    size = content_length or 0
    ping_id: str | None = None
    reason: str | None = None
    address: str | None = None
    parsed_address: Address | None = None
    try:
        settings, writer = instance()
        address, parsed_address = _client_address(request, settings.trusted_proxy_hops)
        if request.method == "GET":
            response = _json_response(200, {"ok": True, "route": route})
        elif request.method != "POST":
            reason = "method_not_allowed"
            response = _error(
                405, reason, "use POST to send a ping, GET for a health check", {"Allow": ALLOWED_METHODS}
            )
        else:
            body = _read_body(request, content_length, settings.max_body_bytes)
            if body is None:
                reason = "body_too_large"
                response = _error(413, reason, f"body is larger than {settings.max_body_bytes} bytes")
            else:
                size = len(body)
                ping = _accept(route, request, body, settings, address)
                ping_id = ping.id
                writer.put(ping.object_name, ping.to_json())
                response = _json_response(200, {"ok": True, "id": ping.id})
    except wire.PayloadError as e:
        reason = e.code
        response = _error(e.status, e.code, e.message)
    except StorageUnavailable:
        reason = "storage_unavailable"
        response = _error(503, reason, "the ping could not be stored; retry later", {"Retry-After": _retry_after()})
    except Exception:
        reason = "internal_error"
        log.exception("request failed unexpectedly", extra={"route": route, "ping_id": ping_id})
        response = _error(500, reason, "the ping could not be stored; retry later", {"Retry-After": _retry_after()})
    latency = time.perf_counter() - started
    _log_request(route, request, response.status_code, size, latency, reason, ping_id, address, parsed_address)
    return response


def _accept(
    route: str, request: flask.Request, body: bytes, settings: IngestSettings, address: str | None
) -> StoredPing:
    # The headers straight from the WSGI environ (PEP 3333), where `request.headers` reads
    # them too, after rewriting the name on every call.
    header = request.environ.get("CONTENT_TYPE")
    mimetype, charset = content_type(header or "")
    parsed = wire.parse_body(body, mimetype, charset, settings.limits)
    wire.validate(route, parsed)
    return StoredPing(
        id=str(uuid.uuid4()),
        route=route,
        received_at=datetime.now(UTC),
        payload=parsed,
        user_agent=request.environ.get("HTTP_USER_AGENT"),
        content_type=header,
        client_ip=address,
        raw=body.decode("utf-8"),
    )


# Content-Type headers this long or shorter are remembered parsed (`content_type`).
CONTENT_TYPE_CACHE_MAX_CHARS = 256


def content_type(header: str) -> tuple[str, str | None]:
    """(mimetype, charset) of a Content-Type header, as werkzeug reads them for
    `request.mimetype` and `request.mimetype_params`. Nearly every request sends one of
    a few headers, so their parse is remembered (a bounded cache of short headers)."""
    if len(header) <= CONTENT_TYPE_CACHE_MAX_CHARS:
        return _cached_content_type(header)
    return _parsed_content_type(header)


def _parsed_content_type(header: str) -> tuple[str, str | None]:
    mimetype, params = parse_options_header(header)
    return mimetype.lower(), params.get("charset")


_cached_content_type = lru_cache(maxsize=64)(_parsed_content_type)


def _log_ip(request: flask.Request, address: str | None, parsed: Address | None) -> str | None:
    """The client address as the log line keeps it: truncated like `ip_address` (privacy policy).
    `address` is None when the settings could not be read: their defaults then. `parsed`:
    `address` as `_client_address` read it, if it did."""
    try:
        policy = instance()[0].privacy
    except Exception:  # the settings themselves failed: the defaults
        policy = privacy.DEFAULT
        address, parsed = _client_address(request, int(config.VARIABLES["TRUSTED_PROXY_HOPS"].default))
    return policy.ip(address, parsed)


def _log_request(
    route: str,
    request: flask.Request,
    status: int,
    size: int,
    latency: float,
    reason: str | None,
    ping_id: str | None,
    address: str | None,
    parsed_address: Address | None,
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
            "remoteIp": _log_ip(request, address, parsed_address),
            "userAgent": request.environ.get("HTTP_USER_AGENT"),
        },
    }
    if status >= 500:
        level, message = logging.ERROR, "request failed"
    elif status >= 400:
        level, message = logging.WARNING, "request rejected"
    else:
        level, message = logging.INFO, "request served"
    logs.log_fields(log, level, message, fields)
