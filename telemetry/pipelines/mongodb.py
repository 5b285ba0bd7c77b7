"""MongoDB: the projects the dashboard owns, and the latest state of every site.

Invariants:
- `sites` and `deactivations` hold one document per (`hash`, `url`), enforced
  by a unique index.
- An older ping never overwrites newer state: a ping's fields are merged
  only while the stored `received_at` is older. `first_seen` and `last_seen`
  move only outward. Replaying any set of pings, in any order, any number of
  times, ends in the same documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
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


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _newest_wins(received_at: datetime, fields: dict[str, Any]) -> dict[str, Any]:
    """Pipeline stage: merge `fields` into the document only if it holds an older ping
    (by received_at, then ping_id, so that the result never depends on the order
    the updates arrive in).

    The guard lives in the update, not in the filter, so the filter is exactly the
    unique (hash, url) key and any MongoDB answers it from that index (SecantusDB,
    the local stand-in, scans the collection for any extra predicate). Values are
    `$literal`, so a string such as "$100" is never read as a field path.
    """
    stored_at = {"$ifNull": ["$received_at", EPOCH]}
    stored_is_older = {
        "$or": [
            {"$lt": [stored_at, received_at]},
            {"$and": [{"$eq": [stored_at, received_at]}, {"$lt": [{"$ifNull": ["$ping_id", ""]}, fields["ping_id"]]}]},
        ]
    }
    merged = {"$mergeObjects": ["$$ROOT", {"$literal": {**fields, "received_at": received_at}}]}
    return {"$replaceWith": {"$cond": [stored_is_older, merged, "$$ROOT"]}}


def _is_new(field: str) -> dict[str, Any]:
    return {"$eq": [{"$type": f"${field}"}, "missing"]}


SiteState = tuple[dict[str, Any], datetime, datetime]


def newer(record: dict[str, Any], than: dict[str, Any]) -> bool:
    """The order of pings of one site, as `site_update` applies it: received_at, then ping_id."""
    return (record["received_at"], record["ping_id"]) > (than["received_at"], than["ping_id"])


def latest_per_site(site_records: Iterable[dict[str, Any]]) -> list[SiteState]:
    """Records -> (newest record, first seen, last seen), one per (hash, url), in first-seen order."""
    folded: dict[tuple[str, str], SiteState] = {}
    for record in site_records:
        key = (record["hash"], record["url"])
        at = record["received_at"]
        previous = folded.get(key)
        if previous is None:
            folded[key] = (record, at, at)
            continue
        newest = record if newer(record, previous[0]) else previous[0]
        folded[key] = (newest, min(previous[1], at), max(previous[2], at))
    return list(folded.values())


def site_update(record: dict[str, Any], first_seen: datetime, last_seen: datetime, mail: bool) -> UpdateOne:
    """One upsert that folds a site's latest record of a run into `sites`.

    Creates the document if needed; sets the record's fields only if it is newer
    than what is stored; widens first/last seen; and marks a site that is new
    to a project with a mail integration as pending.
    """
    fields = {k: v for k, v in record.items() if k not in ("hash", "url")}
    stages: list[dict[str, Any]] = []
    if mail:
        pending = {"$literal": {"status": MAIL_PENDING}}
        stages.append({"$set": {"mail": {"$cond": [_is_new("first_seen"), pending, "$mail"]}}})
    stages.append(_newest_wins(record["received_at"], fields))
    stages.append(
        {
            "$set": {
                "first_seen": {"$min": [{"$ifNull": ["$first_seen", first_seen]}, first_seen]},
                "last_seen": {"$max": [{"$ifNull": ["$last_seen", last_seen]}, last_seen]},
            }
        }
    )
    return UpdateOne({"hash": record["hash"], "url": record["url"]}, stages, upsert=True)


def deactivation_update(record: dict[str, Any]) -> UpdateOne:
    """Upsert the latest deactivation of a site; an older one changes nothing but the first date."""
    received_at = record["received_at"]
    fields = {k: v for k, v in record.items() if k not in ("hash", "url")}
    first = {"$min": [{"$ifNull": ["$first_deactivated_at", received_at]}, received_at]}
    return UpdateOne(
        {"hash": record["hash"], "url": record["url"]},
        [_newest_wins(received_at, fields), {"$set": {"first_deactivated_at": first}}],
        upsert=True,
    )


def apply(collection: Collection, updates: Iterable[UpdateOne]) -> pymongo.results.BulkWriteResult | None:
    """Run independent updates in one bulk call."""
    updates = list(updates)
    if not updates:
        return None
    return collection.bulk_write(updates, ordered=False)


def claim_pending_mail(collection: Collection, project_hash: str, urls: list[str], claim: str) -> list[str]:
    """Atomically move the given sites from pending to sending under `claim`; returns the urls moved.

    A site leaves `pending` once, so its contact goes out at most once, however
    often a run or a bundle is retried. Every query names (hash, url), so it is
    served by the unique index, not a scan of `sites`.
    """
    collection.update_many(
        {"hash": project_hash, "url": {"$in": urls}, "mail.status": MAIL_PENDING},
        {"$set": {"mail.status": MAIL_SENDING, "mail.claim": claim}},
    )
    claimed = collection.find({"hash": project_hash, "url": {"$in": urls}, "mail.claim": claim}, {"_id": 0, "url": 1})
    return [doc["url"] for doc in claimed]


def finish_mail(
    collection: Collection,
    project_hash: str,
    urls: list[str],
    claim: str,
    status: str,
    at: datetime,
    error: str | None = None,
) -> None:
    """Mark the sites claimed under `claim` as sent or failed."""
    update: dict[str, Any] = {"mail.status": status, "mail.finished_at": at}
    if error:
        update["mail.error"] = error[:500]
    collection.update_many({"hash": project_hash, "url": {"$in": urls}, "mail.claim": claim}, {"$set": update})
