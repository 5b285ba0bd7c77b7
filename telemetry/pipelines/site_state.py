"""The pipelines' state in MongoDB: the latest state of every site (`sites`), the
latest deactivation (`deactivations`), the mail state machine and its hourly quota
(`mail_quota`), and the indexes they rely on. The client comes from
telemetry/common/mongo.py; the projects the dashboard owns are read through
telemetry/common/projects.py.

Invariants:
- `sites` and `deactivations` hold one document per (`hash`, `url`), enforced
  by a unique index.
- An older ping never overwrites newer state: a ping's fields are merged
  only while the stored `received_at` is older. `first_seen` and `last_seen`
  move only outward. Replaying any set of pings, in any order, any number of
  times, ends in the same documents.
- A site's `mail` moves pending -> sending -> sent, or -> failed (due again
  after a backoff) -> sending ... -> abandoned after MAIL_MAX_ATTEMPTS calls.
  Only a claim (`claim_mail`, one atomic update per document) enters `sending`,
  and only from a state that is due (`mail.due_at` passed, or none yet), so a
  contact goes to the mail API once per attempt however many runs and bundles
  race. A `sending` claim not finished within MAIL_RECLAIM_AFTER was lost with
  its worker, and is due again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database

from telemetry.common import projects, sites
from telemetry.common.sites import DEACTIVATIONS, SITES

MAIL_QUOTA = "mail_quota"  # contacts sent per project and hour (reserve_mail_contacts)

MAIL_PENDING = "pending"
MAIL_SENDING = "sending"
MAIL_SENT = "sent"
MAIL_FAILED = "failed"
MAIL_ABANDONED = "abandoned"
MAIL_OPEN = (MAIL_PENDING, MAIL_FAILED, MAIL_SENDING)  # the states a claim takes a due site from
# Calls per contact before it is abandoned; after failed call n the next is due
# MAIL_RETRY_BACKOFF * 2**(n-1) later: 1, 2, 4, 8, 16 hours, about 31 hours of tries.
MAIL_MAX_ATTEMPTS = 6
MAIL_RETRY_BACKOFF = timedelta(hours=1)
# A `sending` claim older than this was lost (its worker died between claim and
# finish): due again. Far above one mail API call, its retries included
# (mail.MAX_CALL_SECONDS, about a minute; tests/test_site_state.py checks the margin).
MAIL_RECLAIM_AFTER = timedelta(hours=1)
MAIL_QUOTA_KEEP = timedelta(days=2)  # a quota document's life (a TTL index removes it)


INDEX_NOT_FOUND = 27  # MongoDB's error code for dropping an index that does not exist


def ensure_indexes(db: Database) -> None:
    """Every index the pipelines rely on, the projects' (projects.ensure_indexes) included.

    Idempotent: creating an index that exists with the same spec is a no-op."""
    db[SITES].create_index(sites.UNIQUE_KEYS, unique=True, name=sites.UNIQUE_INDEX)
    db[DEACTIVATIONS].create_index(sites.UNIQUE_KEYS, unique=True, name=sites.UNIQUE_INDEX)
    # The dashboard's lists (telemetry/dashboard/queries.py): keyset pages in (time desc, url) order,
    # unfiltered and by each filter that can bound the range.
    for collection, indexes in sites.LIST_INDEXES.items():
        for name, keys in indexes.items():
            db[collection].create_index(keys, name=name)
    # (hash, last_seen desc), the dashboard's earlier index: a prefix of hash_last_seen_url, so dropped.
    if "hash_last_seen" in db[SITES].index_information():
        try:
            db[SITES].drop_index("hash_last_seen")
        except pymongo.errors.OperationFailure as e:
            if e.code != INDEX_NOT_FOUND:  # another run dropped it first
                raise
    db[SITES].create_index([("hash", 1), ("mail.status", 1), ("mail.due_at", 1)], name="hash_mail_due")
    projects.ensure_indexes(db)
    db[MAIL_QUOTA].create_index([("expires_at", 1)], expireAfterSeconds=0, name="expires_at_ttl")


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


def _due(now: datetime) -> dict[str, Any]:
    """`mail.due_at` passed, or not set (a site marked pending has none)."""
    return {"$or": [{"mail.due_at": {"$lte": now}}, {"mail.due_at": None}]}


def due_mail(collection: Collection, project_hash: str, now: datetime, limit: int, urls: list[str] | None = None):
    """Up to `limit` urls of the project's sites whose mail is due (of `urls`, if given).

    Without `urls` (the sweep of a whole project), one query per state and form of
    `due_at`, each a range of the (hash, mail.status, mail.due_at) index.
    """
    if urls is not None:
        query = {"hash": project_hash, "url": {"$in": urls}, "mail.status": {"$in": list(MAIL_OPEN)}, **_due(now)}
        return [doc["url"] for doc in collection.find(query, {"_id": 0, "url": 1}).limit(limit)]
    found: list[str] = []
    for status in MAIL_OPEN:
        for due_at in ({"$lte": now}, None):
            if len(found) >= limit:
                return found
            query = {"hash": project_hash, "mail.status": status, "mail.due_at": due_at}
            found += [doc["url"] for doc in collection.find(query, {"_id": 0, "url": 1}).limit(limit - len(found))]
    return found


def claim_mail(
    collection: Collection, project_hash: str, urls: list[str], claim: str, now: datetime
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Atomically move the given sites whose mail is due to `sending` under `claim`.

    Returns how many left each state ({"pending": n, "failed": n, "sending": n}) and
    the claimed documents (contact fields and `mail`). Each document is claimed by
    one update at most: the claim sets `due_at` MAIL_RECLAIM_AFTER ahead, so no
    other claim finds it due until then. Every query names (hash, url), so it is
    served by the unique index, not a scan of `sites`.
    """
    taken = {}
    for status in MAIL_OPEN:
        result = collection.update_many(
            {"hash": project_hash, "url": {"$in": urls}, "mail.status": status, **_due(now)},
            {
                "$set": {
                    "mail.status": MAIL_SENDING,
                    "mail.claim": claim,
                    "mail.claimed_at": now,
                    "mail.due_at": now + MAIL_RECLAIM_AFTER,
                },
                "$inc": {"mail.attempts": 1},
            },
        )
        taken[status] = result.modified_count
    fields = {"_id": 0, "url": 1, "site": 1, "admin_email": 1, "first_name": 1, "last_name": 1, "mail": 1}
    claimed = list(collection.find({"hash": project_hash, "url": {"$in": urls}, "mail.claim": claim}, fields))
    return taken, claimed


def retry_due_at(attempts: int, at: datetime) -> datetime:
    """When a contact whose call number `attempts` failed is due again."""
    return at + MAIL_RETRY_BACKOFF * 2 ** max(attempts - 1, 0)


def finish_mail(
    collection: Collection,
    project_hash: str,
    claimed: list[dict[str, Any]],
    claim: str,
    sent: bool,
    at: datetime,
    summary: str | None = None,
) -> dict[str, int]:
    """Mark the sites still claimed under `claim` sent, or failed (due again after a
    backoff) or, after MAIL_MAX_ATTEMPTS calls, abandoned; returns the count per new state.

    `summary` is what is kept of the failure: a short text that quotes no contact
    (MailApiError.summary), never the API's answer.
    """
    mine = {"hash": project_hash, "mail.claim": claim, "mail.status": MAIL_SENDING}
    if sent:
        urls = [doc["url"] for doc in claimed]
        result = collection.update_many(
            {**mine, "url": {"$in": urls}},
            {
                "$set": {"mail.status": MAIL_SENT, "mail.finished_at": at},
                "$unset": {"mail.error": "", "mail.due_at": ""},
            },
        )
        return {MAIL_SENT: result.modified_count}
    by_attempts: dict[int, list[str]] = {}
    for doc in claimed:
        by_attempts.setdefault(int((doc.get("mail") or {}).get("attempts") or 1), []).append(doc["url"])
    counts = {MAIL_FAILED: 0, MAIL_ABANDONED: 0}
    for attempts, urls in sorted(by_attempts.items()):
        update: dict[str, Any] = {"mail.finished_at": at, "mail.error": (summary or "failed")[:200]}
        if attempts >= MAIL_MAX_ATTEMPTS:
            state, unset = MAIL_ABANDONED, {"$unset": {"mail.due_at": ""}}
        else:
            state, unset = MAIL_FAILED, {}
            update["mail.due_at"] = retry_due_at(attempts, at)
        update["mail.status"] = state
        result = collection.update_many({**mine, "url": {"$in": urls}}, {"$set": update, **unset})
        counts[state] += result.modified_count
    return counts


def defer_mail(collection: Collection, project_hash: str, urls: list[str], until: datetime) -> int:
    """Make the given sites' waiting mail (pending or failed) due no earlier than `until`."""
    result = collection.update_many(
        {"hash": project_hash, "url": {"$in": urls}, "mail.status": {"$in": [MAIL_PENDING, MAIL_FAILED]}},
        {"$max": {"mail.due_at": until}},
    )
    return result.modified_count


def reserve_mail_contacts(collection: Collection, project_hash: str, hour: datetime, wanted: int, bound: int) -> int:
    """Atomically take up to `wanted` of the `bound` contacts the project may send in `hour`; how many were granted.

    One document per project and hour counts the contacts reserved; one
    findAndModify raises it to at most `bound`, so concurrent bundles and runs
    never grant more than `bound` together.
    """
    if wanted <= 0:
        return 0
    before = collection.find_one_and_update(
        {"_id": f"{project_hash}/{hour:%Y-%m-%dT%H}"},
        [
            {
                "$set": {
                    "hash": project_hash,
                    "hour": hour,
                    "expires_at": hour + MAIL_QUOTA_KEEP,
                    "contacts": {"$min": [bound, {"$add": [{"$ifNull": ["$contacts", 0]}, wanted]}]},
                }
            }
        ],
        upsert=True,
        return_document=pymongo.ReturnDocument.BEFORE,
    )
    used = int(before.get("contacts", 0)) if before else 0
    return max(0, min(bound, used + wanted) - used)


def release_mail_contacts(collection: Collection, project_hash: str, hour: datetime, unused: int) -> None:
    """Give back reserved contacts that were not sent (another claim took their sites first)."""
    if unused > 0:
        collection.update_one({"_id": f"{project_hash}/{hour:%Y-%m-%dT%H}"}, {"$inc": {"contacts": -unused}})
