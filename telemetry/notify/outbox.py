"""The notify run's MongoDB state: the events found (the outbox), one delivery per
(event, target), and the watermark of what has been read.

Collections:
- `notify_events`: one document per event, `_id` = `Event.id`. Inserted with
  `$setOnInsert`, so finding an event again (the overlap, a re-run) changes nothing.
  `fanned_out` turns true once its deliveries exist.
- `notify_deliveries`: one document per (event, target), `_id` = "<event id>/<target>"
  with target `email:<address>` or `webhook:<endpoint id>`; inserted with
  `$setOnInsert` too, so a fan-out repeated after a crash adds nothing.
- `notify_state`: the watermark (`_id` "watermark"): the end of the last window whose
  events are all stored.

A delivery's `status` moves:

    pending --claim--> sending --sent--> sent
                          |----failed, due again----> pending (due_at = next try)
                          |----failed past the retry window, or refused for good--> set_aside
    pending --its target was removed from the project--> cancelled

Only `claim` enters `sending` (one atomic update, from a due `pending` or a lapsed
`sending`), and it sets `due_at` to the end of a lease far above one try's bound:
a run that dies between sending and marking leaves a claim that falls due again,
and the delivery is sent again with the same event id (at least once). Marking
is conditioned on the claim's token, so a late answer of a lapsed claim cannot
overwrite what a newer claim recorded.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument, UpdateOne

from telemetry.common import projects
from telemetry.notify import events, retry
from telemetry.notify.events import Event

EVENTS = "notify_events"
DELIVERIES = "notify_deliveries"
STATE = "notify_state"
WATERMARK_ID = "watermark"

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
SET_ASIDE = "set_aside"
CANCELLED = "cancelled"
DUE_STATES = (PENDING, SENDING)  # due once `due_at` has passed (a lapsed `sending` claim too)

EMAIL = "email"
WEBHOOK = "webhook"

# A claim lapses after this: far above one try (connect + twice the read bound, under a minute).
CLAIM_LEASE = timedelta(minutes=10)
# Events and deliveries are removed this long after they were found (TTL indexes): far
# longer than a window (NOTIFY_OVERLAP_HOURS) plus the retries (NOTIFY_RETRY_HOURS), which
# NotifySettings checks, so an event can never be found again after its record is gone.
KEEP = timedelta(days=30)
MAX_ERROR_CHARS = 500
FAN_OUT_BATCH = 500


def ensure_indexes(db: Any) -> None:
    """Idempotent."""
    keep = int(KEEP.total_seconds())
    db[EVENTS].create_index([("fanned_out", 1), ("found_at", 1)], name="fanned_out_found_at")
    db[EVENTS].create_index([("found_at", 1)], expireAfterSeconds=keep, name="found_at_ttl")
    # A project's events of one type and day: what the daily cap of site events counts (stored_count).
    db[EVENTS].create_index([("project", 1), ("type", 1), ("occurred_at", 1)], name="project_type_occurred_at")
    db[DELIVERIES].create_index([("status", 1), ("due_at", 1)], name="status_due_at")
    db[DELIVERIES].create_index([("event_id", 1)], name="event_id")
    db[DELIVERIES].create_index([("created_at", 1)], expireAfterSeconds=keep, name="created_at_ttl")


# --- the watermark ---------------------------------------------------------------------


def watermark(db: Any) -> datetime | None:
    doc = db[STATE].find_one({"_id": WATERMARK_ID})
    return doc["until"] if doc else None


def set_watermark(db: Any, until: datetime) -> None:
    """Move the watermark to `until`, never back."""
    db[STATE].update_one({"_id": WATERMARK_ID}, {"$max": {"until": until}}, upsert=True)


# --- events --------------------------------------------------------------------------


def add_events(db: Any, found: Iterable[Event], now: datetime) -> int:
    """Store the events not stored yet; returns how many were new."""
    updates = [
        UpdateOne(
            {"_id": e.id},
            {
                "$setOnInsert": {
                    "project": e.project,
                    "type": e.type,
                    "occurred_at": e.occurred_at,
                    "data": e.data,
                    "found_at": now,
                    "fanned_out": False,
                }
            },
            upsert=True,
        )
        for e in {e.id: e for e in found}.values()
    ]
    if not updates:
        return 0
    return len(db[EVENTS].bulk_write(updates, ordered=False).upserted_ids)


def event_from_document(doc: Mapping[str, Any]) -> Event:
    return Event(
        id=doc["_id"], project=doc["project"], type=doc["type"], occurred_at=doc["occurred_at"], data=doc["data"]
    )


# Ids per `$in` lookup of `ids_stored`.
OUTBOX_BATCH = 1000


def ids_stored(db: Any, ids: list[str]) -> set[str]:
    """Which of `ids` the outbox holds (`notify_events`, keyed by event id)."""
    found: set[str] = set()
    for start in range(0, len(ids), OUTBOX_BATCH):
        batch = ids[start : start + OUTBOX_BATCH]
        found.update(doc["_id"] for doc in db[EVENTS].find({"_id": {"$in": batch}}, {"_id": 1}))
    return found


def stored_count(db: Any, project: str, event_type: str, start: datetime, end: datetime) -> int:
    """How many events of this project and type the outbox holds with `start <= occurred_at < end`."""
    query = {"project": project, "type": event_type, "occurred_at": {"$gte": start, "$lt": end}}
    return db[EVENTS].count_documents(query)


def count_held_back(db: Any, summary: Event, held_back: int) -> int:
    """Record that `held_back` facts of a day's summary (events.SUMMARISED_BY) were not sent
    individually, as counted now; returns how many more that is than any run counted before
    (0 when none), so that the counters logged for a day add up to its count however many runs
    see it. The summary is stored first (add_events); its `data` keeps the count it was made with."""
    before = db[EVENTS].find_one_and_update(
        {"_id": summary.id},
        {"$max": {"held_back_counted": held_back}},
        projection={"held_back_counted": 1},
        return_document=ReturnDocument.BEFORE,
    )
    if before is None:
        return 0
    return max(0, held_back - (before.get("held_back_counted") or 0))


def targets(event: Event, project: Mapping[str, Any] | None, mailed_types: Iterable[str]) -> list[tuple[str, str]]:
    """(channel, target) of every delivery an event gets: the alert recipients for a
    type that has a mail (a deactivation only if its reason is alerted), and the
    webhook endpoints subscribed to its type (a day's summary: to the type it summarises)."""
    if project is None:
        return []
    found: list[tuple[str, str]] = []
    if event.type in mailed_types and (
        event.type != events.SITE_DEACTIVATED or projects.alerts_reason(project, event.data.get("reason_id"))
    ):
        found += [(EMAIL, address) for address in projects.alert_recipients(project)]
    if event.type in events.POSTED_TYPES:
        subscribed = projects.webhook_endpoints(project, events.subscription(event.type))
        found += [(WEBHOOK, e[projects.WEBHOOK_ID]) for e in subscribed]
    return found


def listened(project: Mapping[str, Any], event_type: str) -> bool:
    """Whether an event of this type would reach anyone of the project: alert recipients for
    a type with a mail (events.EMAIL_TYPES; whatever their reason filter), or a webhook
    endpoint subscribed to it. A producer of many events makes none that nobody listens to."""
    mailed = event_type in events.EMAIL_TYPES and bool(projects.alert_recipients(project))
    return mailed or bool(projects.webhook_endpoints(project, events.subscription(event_type)))


def delivery_id(event_id: str, channel: str, target: str) -> str:
    return f"{event_id}/{channel}:{target}"


def fan_out(db: Any, known: Mapping[str, Mapping[str, Any]], now: datetime, mailed_types: Iterable[str]) -> int:
    """Create the deliveries of every event not fanned out yet; returns how many were new."""
    mailed = tuple(mailed_types)
    created = 0
    while True:
        batch = list(db[EVENTS].find({"fanned_out": False}).sort("found_at", 1).limit(FAN_OUT_BATCH))
        if not batch:
            return created
        updates = []
        for doc in batch:
            event = event_from_document(doc)
            for channel, target in targets(event, known.get(event.project), mailed):
                document = {
                    "event_id": event.id,
                    "project": event.project,
                    "type": event.type,
                    "channel": channel,
                    "target": target,
                    "status": PENDING,
                    "due_at": now,
                    "attempts": 0,
                    "created_at": now,
                }
                _id = delivery_id(event.id, channel, target)
                updates.append(UpdateOne({"_id": _id}, {"$setOnInsert": document}, upsert=True))
        if updates:
            created += len(db[DELIVERIES].bulk_write(updates, ordered=False).upserted_ids)
        db[EVENTS].update_many({"_id": {"$in": [d["_id"] for d in batch]}}, {"$set": {"fanned_out": True}})


# --- deliveries ----------------------------------------------------------------------


def due(db: Any, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` deliveries due at `now`, the longest waiting first."""
    query = {"status": {"$in": list(DUE_STATES)}, "due_at": {"$lte": now}}
    return list(db[DELIVERIES].find(query).sort("due_at", 1).limit(limit))


def claim(db: Any, _id: str, now: datetime) -> dict[str, Any] | None:
    """Take a due delivery for one try; None when another run has it or it is no longer due."""
    return db[DELIVERIES].find_one_and_update(
        {"_id": _id, "status": {"$in": list(DUE_STATES)}, "due_at": {"$lte": now}},
        {
            "$set": {"status": SENDING, "due_at": now + CLAIM_LEASE, "claim": secrets.token_hex(8)},
            "$inc": {"attempts": 1},
            "$min": {"first_try_at": now},
        },
        return_document=ReturnDocument.AFTER,
    )


@dataclass(frozen=True)
class Outcome:
    """One try's result: `ok`, or the answer's status (HTTP or SMTP code, None without
    one) and the error; `permanent` failures are set aside without retrying."""

    ok: bool
    status: int | None = None
    error: str | None = None
    permanent: bool = False


def finish(
    db: Any,
    claimed: Mapping[str, Any],
    outcome: Outcome,
    now: datetime,
    first: timedelta,
    longest: timedelta,
    window: timedelta,
    rng: random.Random,
) -> str:
    """Record a try's outcome on the delivery it claimed; returns the delivery's new status
    (the claim's own status if a newer claim took it over meanwhile: nothing is written)."""
    fields: dict[str, Any] = {"last_status": outcome.status, "last_error": (outcome.error or "")[:MAX_ERROR_CHARS]}
    if outcome.ok:
        status, fields["sent_at"] = SENT, now
    else:
        next_at = None
        if not outcome.permanent:
            next_at = retry.next_try(claimed["attempts"], claimed["first_try_at"], now, first, longest, window, rng)
        if next_at is None:
            status, fields["set_aside_at"] = SET_ASIDE, now
        else:
            status, fields["due_at"] = PENDING, next_at
    result = db[DELIVERIES].update_one(
        {"_id": claimed["_id"], "status": SENDING, "claim": claimed["claim"]},
        {"$set": {"status": status, **fields}, "$unset": {"claim": ""}},
    )
    return status if result.matched_count else SENDING


def cancel(db: Any, claimed: Mapping[str, Any], reason: str, now: datetime) -> str:
    """The delivery's target is gone (recipient or endpoint removed, project deleted): no try."""
    db[DELIVERIES].update_one(
        {"_id": claimed["_id"], "status": SENDING, "claim": claimed["claim"]},
        {"$set": {"status": CANCELLED, "last_error": reason, "cancelled_at": now}, "$unset": {"claim": ""}},
    )
    return CANCELLED


def event_of(db: Any, event_id: str) -> Event | None:
    doc = db[EVENTS].find_one({"_id": event_id})
    return event_from_document(doc) if doc else None


def tally(db: Any) -> dict[str, Any]:
    """What the outbox holds: events per type, and deliveries per (type, channel, status)."""
    found = {doc["_id"]: doc["n"] for doc in db[EVENTS].aggregate([{"$group": {"_id": "$type", "n": {"$sum": 1}}}])}
    group = {"_id": {"type": "$type", "channel": "$channel", "status": "$status"}, "n": {"$sum": 1}}
    deliveries = {
        (doc["_id"]["type"], doc["_id"]["channel"], doc["_id"]["status"]): doc["n"]
        for doc in db[DELIVERIES].aggregate([{"$group": group}])
    }
    return {"events": found, "deliveries": deliveries}
