"""What a vendor is told: one `Event` per fact, whatever channel carries it.

Invariants:
- `Event.id` is a function of the fact alone (`event_id`), never of the run that
  found it, so a re-run finds the same ids, the outbox stores each once, and a
  receiver can de-duplicate on the `webhook-id` header.
- `data` is JSON-serialisable and holds no site address or other personal data
  beyond what the vendor already stores for the site (docs/privacy.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Webhook event types (Standard Webhooks `type`); a vendor subscribes an endpoint to some of them.
SITE_ACTIVATED = "site.activated"
SITE_DEACTIVATED = "site.deactivated"
FIGURES_READY = "figures.ready"
WEBHOOK_TYPES = (SITE_ACTIVATED, SITE_DEACTIVATED, FIGURES_READY)

# Email-only kinds: the spike alert and the periodic digest.
DEACTIVATION_SPIKE = "deactivation.spike"
DIGEST = "digest"
# A deactivation is mailed to the project's alert recipients as well as posted to its webhooks.
EMAIL_TYPES = (SITE_DEACTIVATED, DEACTIVATION_SPIKE, DIGEST)

TYPES = tuple(dict.fromkeys(WEBHOOK_TYPES + EMAIL_TYPES))


@dataclass(frozen=True)
class Event:
    id: str
    project: str  # the project hash
    type: str  # one of TYPES
    occurred_at: datetime  # timezone-aware UTC
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"unknown event type {self.type!r}; known: {', '.join(TYPES)}")
        if self.occurred_at.tzinfo is None:
            raise ValueError("Event.occurred_at must be timezone-aware (UTC)")


def event_id(event_type: str, *key: str) -> str:
    """`evt_` + 32 hex digits of SHA-256 over the type and the fact's natural key
    (a ping id, or project + period): the same fact always gets the same id."""
    digest = hashlib.sha256("\x1f".join((event_type, *key)).encode()).hexdigest()
    return f"evt_{digest[:32]}"
