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

# The summary of a project's UTC day of site events past NOTIFY_MAX_SITE_EVENTS_PER_DAY
# (telemetry/notify/site_events.py), by the type it summarises. Not subscribed to on its own:
# it goes wherever its type goes, so an endpoint of `site.deactivated` learns what it was not sent.
SITE_ACTIVATED_OVERFLOW = "site.activated.overflow"
SITE_DEACTIVATED_OVERFLOW = "site.deactivated.overflow"
OVERFLOW_OF = {SITE_ACTIVATED: SITE_ACTIVATED_OVERFLOW, SITE_DEACTIVATED: SITE_DEACTIVATED_OVERFLOW}
SUMMARISED_BY = {overflow: summarised for summarised, overflow in OVERFLOW_OF.items()}
# Every type posted to webhooks.
POSTED_TYPES = WEBHOOK_TYPES + tuple(SUMMARISED_BY)

# Email-only kinds: the spike alert and the periodic digest.
DEACTIVATION_SPIKE = "deactivation.spike"
DIGEST = "digest"
# The types with a mail to the project's alert recipients (registry.RENDERERS names each one's
# renderer; a test keeps them equal): a deactivation and its day's summary are mailed as well as
# posted to webhooks.
EMAIL_TYPES = (SITE_DEACTIVATED, SITE_DEACTIVATED_OVERFLOW, DEACTIVATION_SPIKE, DIGEST)

TYPES = tuple(dict.fromkeys(POSTED_TYPES + EMAIL_TYPES))


def subscription(event_type: str) -> str:
    """The type a webhook endpoint subscribes to to be sent events of `event_type`: the type
    itself, or for a day's summary the type it summarises."""
    return SUMMARISED_BY.get(event_type, event_type)


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
