"""The README's webhook receiver, run as written, against what notify sends (telemetry/notify/webhooks.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from telemetry.common import webhook_secrets
from telemetry.notify import events, webhooks

README = Path(__file__).resolve().parents[1] / "README.md"


def receiver(secret: str):
    """The README's example with its secret filled in, and what it handled."""
    section = README.read_text(encoding="utf-8").split("### A webhook receiver", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    handled: list[tuple[str, dict]] = []
    seen: set[str] = set()

    def already_seen(webhook_id: str) -> bool:
        found = webhook_id in seen
        seen.add(webhook_id)
        return found

    namespace = {
        "__name__": "__main__",  # as when the example is run as a script
        "already_seen": already_seen,
        "handle": lambda kind, data: handled.append((kind, data)),
    }
    exec(compile(code.replace('"whsec_..."', repr(secret)), str(README), "exec"), namespace)  # noqa: S102 - our own README
    return namespace["app"].test_client(), handled


def signed(event: events.Event, secret: str, sent_at: datetime) -> tuple[bytes, dict[str, str]]:
    payload = webhooks.body(event)
    return payload, webhooks.headers(event.id, payload, [secret], sent_at)


EVENT = events.Event(
    events.event_id(events.SITE_DEACTIVATED, "ping-1"),
    "p1",
    events.SITE_DEACTIVATED,
    datetime(2026, 12, 1, 10, tzinfo=UTC),
    {"reason": "too-expensive", "reason_info": "ça coûte trop"},
)


def test_the_readme_receiver_accepts_a_delivery_once_and_refuses_a_forgery():
    secret = webhook_secrets.new_secret()
    client, handled = receiver(secret)
    payload, headers = signed(EVENT, secret, datetime.now(UTC))

    assert client.post("/telemetry", data=payload, headers=headers).status_code == 204
    assert client.post("/telemetry", data=payload, headers=headers).status_code == 204  # a retry: not handled again
    assert handled == [(events.SITE_DEACTIVATED, EVENT.data)]

    _, forged = signed(EVENT, webhook_secrets.new_secret(), datetime.now(UTC))
    assert client.post("/telemetry", data=payload, headers=forged).status_code == 400
    stale_payload, stale = signed(EVENT, secret, datetime.now(UTC) - timedelta(hours=1))
    assert client.post("/telemetry", data=stale_payload, headers=stale).status_code == 400
    assert (
        client.post("/telemetry", data=payload.replace(b"too-expensive", b"too-cheap"), headers=headers).status_code
        == 400
    )
    assert len(handled) == 1
