"""MongoDB: the projects the dashboard owns, and the latest state of every site.

Invariants:
- `sites` and `deactivations` hold one document per (`hash`, `url`), enforced
  by a unique index.
- An older ping never overwrites newer state: the `$set` of a ping's fields
  only applies while the stored `received_at` is older. `first_seen` and
  `last_seen` move only outward (`$min`/`$max`). Replaying any set of pings,
  in any order, any number of times, ends in the same documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pymongo
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database

PROJECTS = "projects"
SITES = "sites"
DEACTIVATIONS = "deactivations"

MAIL_PENDING = "pending"
MAIL_SENDING = "sending"
MAIL_SENT = "sent"
MAIL_FAILED = "failed"


def database(uri: str, name: str) -> Database:
    client: pymongo.MongoClient = pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10_000)
    return client[name]


def ensure_indexes(db: Database) -> None:
    """Idempotent: creating an index that exists with the same spec is a no-op."""
    db[SITES].create_index([("hash", 1), ("url", 1)], unique=True, name="hash_url_unique")
    db[SITES].create_index([("hash", 1), ("last_seen", -1)], name="hash_last_seen")
    db[DEACTIVATIONS].create_index([("hash", 1), ("url", 1)], unique=True, name="hash_url_unique")
    db[PROJECTS].create_index([("hash", 1)], unique=True, name="hash_unique")


def load_projects(db: Database) -> dict[str, dict[str, Any]]:
    """Every project by hash, with the fields the pipelines use."""
    fields = {
        "_id": 0,
        "hash": 1,
        "name": 1,
        "type": 1,
        "custom_fields": 1,
        "mail_integrations": 1,
        "deactivation_reasons": 1,
    }
    return {doc["hash"]: doc for doc in db[PROJECTS].find({}, fields)}


def enabled_mail_integrations(project: dict[str, Any]) -> list[str]:
    integrations = project.get("mail_integrations") or {}
    return sorted(
        name for name, settings in integrations.items() if isinstance(settings, dict) and settings.get("enabled")
    )


def _newer_than_stored(received_at: datetime) -> dict[str, Any]:
    return {"$or": [{"received_at": {"$lt": received_at}}, {"received_at": {"$exists": False}}]}


def site_updates(record: dict[str, Any], first_seen: datetime, last_seen: datetime, mail: bool) -> list[UpdateOne]:
    """The two updates that fold one site's latest record into `sites`.

    The first creates the document if needed and widens first/last seen (and
    marks a new site of a project with a mail integration as pending); the
    second sets the record's fields only if it is newer than what is stored.
    """
    key = {"hash": record["hash"], "url": record["url"]}
    on_insert = {"mail": {"status": MAIL_PENDING}} if mail else {}
    seen: dict[str, Any] = {"$min": {"first_seen": first_seen}, "$max": {"last_seen": last_seen}}
    if on_insert:
        seen["$setOnInsert"] = on_insert
    fields = {k: v for k, v in record.items() if k not in ("hash", "url")}
    return [
        UpdateOne(key, seen, upsert=True),
        UpdateOne({**key, **_newer_than_stored(record["received_at"])}, {"$set": fields}),
    ]


def deactivation_update(record: dict[str, Any]) -> list[UpdateOne]:
    """Upsert the latest deactivation of a site; an older one changes nothing."""
    key = {"hash": record["hash"], "url": record["url"]}
    fields = {k: v for k, v in record.items() if k not in ("hash", "url")}
    return [
        UpdateOne(key, {"$setOnInsert": {"first_deactivated_at": record["received_at"]}}, upsert=True),
        UpdateOne({**key, **_newer_than_stored(record["received_at"])}, {"$set": fields}),
    ]


def apply(collection: Collection, updates: Iterable[UpdateOne]) -> pymongo.results.BulkWriteResult | None:
    """Run the updates in order (each pair depends on its first creating the document)."""
    updates = list(updates)
    if not updates:
        return None
    return collection.bulk_write(updates, ordered=True)


def claim_pending_mail(collection: Collection, project_hash: str, urls: list[str], claim: str) -> list[dict[str, Any]]:
    """Atomically move the given sites from pending to sending under `claim`, and return those moved.

    A site leaves `pending` once, so its contact goes out at most once, however
    often a run or a bundle is retried.
    """
    collection.update_many(
        {"hash": project_hash, "url": {"$in": urls}, "mail.status": MAIL_PENDING},
        {"$set": {"mail.status": MAIL_SENDING, "mail.claim": claim}},
    )
    return list(collection.find({"mail.claim": claim, "mail.status": MAIL_SENDING}, {"_id": 0, "url": 1}))


def finish_mail(collection: Collection, claim: str, status: str, at: datetime, error: str | None = None) -> None:
    update: dict[str, Any] = {"mail.status": status, "mail.finished_at": at}
    if error:
        update["mail.error"] = error[:500]
    collection.update_many({"mail.claim": claim}, {"$set": update})
