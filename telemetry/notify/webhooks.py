"""Webhook deliveries, per the Standard Webhooks specification (standardwebhooks.com).

The body is `{"type", "timestamp", "data"}` as JSON; the headers are `webhook-id`
(the event id: stable across tries and runs, so a receiver de-duplicates on it),
`webhook-timestamp` (this try's send time, Unix seconds) and `webhook-signature`
(`v1,` + base64 of HMAC-SHA256 over `id.timestamp.body` with the endpoint's
secret, from MongoDB `webhook_secrets`: telemetry/common/webhook_secrets.py),
signed by the `standardwebhooks` library (the specification's own).

One try is one POST to an address checked by telemetry/notify/addresses.py, with
connect and read bounds and at most MAX_ANSWER_BYTES of the answer read. A 2xx
answer is delivered; anything else (3xx included: redirects are not followed, as
the specification advises) is a failure that is retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import urllib3
from standardwebhooks import Webhook

from telemetry.common import projects
from telemetry.notify.addresses import RefusedAddress, checked_address
from telemetry.notify.events import Event
from telemetry.notify.outbox import Outcome

MAX_ANSWER_BYTES = 64 * 1024  # of an answer's body; only its start is kept, as the error
CHUNK_BYTES = 8 * 1024
USER_AGENT = "wp-telemetry-notify/1"


def body(event: Event) -> bytes:
    """The payload: the same bytes for every try of an event (the signature covers them)."""
    payload = {"type": event.type, "timestamp": event.occurred_at.astimezone(UTC).isoformat(), "data": event.data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def headers(event_id: str, payload: bytes, secrets: list[str], sent_at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one try: a signature per secret, space-separated
    (two only while a rotated secret's grace lasts)."""
    signatures = [
        Webhook(secret).sign(msg_id=event_id, timestamp=sent_at.astimezone(UTC), data=payload.decode())
        for secret in secrets
    ]
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def post(
    url: str,
    payload: bytes,
    request_headers: dict[str, str],
    connect_timeout: float,
    read_timeout: float,
    allow_private: bool,
) -> Outcome:
    """One try: POST `payload` to `url`, bounded; never raises for what a receiver does."""
    try:
        parts = urlsplit(projects.webhook_url(url, allow_http=allow_private))
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = checked_address(parts.hostname or "", port, allow_private)
    except (projects.InvalidProject, RefusedAddress) as e:
        return Outcome(False, error=f"refused: {e}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    common: dict[str, Any] = {"port": port, "timeout": timeout, "retries": False, "maxsize": 1}
    if parts.scheme == "https":
        # Connect to the checked address; the certificate must still name the URL's host.
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            address, server_hostname=parts.hostname, assert_hostname=parts.hostname, cert_reqs="CERT_REQUIRED", **common
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, **common)
    deadline = time.monotonic() + connect_timeout + 2 * read_timeout
    try:
        response = pool.urlopen(
            "POST",
            target,
            body=payload,
            headers={**request_headers, "host": parts.netloc},
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            answer = b""
            while len(answer) < MAX_ANSWER_BYTES and time.monotonic() < deadline:
                chunk = response.read(CHUNK_BYTES)
                if not chunk:
                    break
                answer += chunk
        finally:
            response.release_conn()
    except urllib3.exceptions.HTTPError as e:
        return Outcome(False, error=f"{type(e).__name__}: {e}")
    finally:
        pool.close()
    if 200 <= response.status < 300:
        return Outcome(True, status=response.status)
    text = answer[:200].decode("utf-8", "replace")
    return Outcome(False, status=response.status, error=f"HTTP {response.status}: {text}")


def deliver(event: Event, endpoint: Mapping[str, Any], secrets: list[str], settings: Any) -> Outcome:
    """One try of an event to one endpoint, signed with each of `secrets` (at least one:
    webhook_secrets.signing_secrets); `settings`: NotifySettings."""
    if not secrets:
        raise ValueError("a webhook is never posted unsigned")
    payload = body(event)
    sent_at = datetime.now(UTC)
    signed = headers(event.id, payload, secrets, sent_at)
    return post(
        endpoint[projects.WEBHOOK_URL],
        payload,
        signed,
        settings.connect_timeout,
        settings.read_timeout,
        settings.allow_private_webhooks,
    )
