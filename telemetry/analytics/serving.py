"""The serving copy: MongoDB `analytics`, the figures the dashboard reads.

One document per (`hash`, `metric`, `day`), unique by index; its shape is in
telemetry/analytics/metrics.py. A day's documents are replaced from that day's
rows of BigQuery `analytics_daily`, so the two always hold the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from pymongo import ReplaceOne
from pymongo.database import Database

from telemetry.analytics import metrics

# A breakdown's labels become MongoDB field names. Dots are fine (MongoDB 5+ stores
# them), but a name may not start with `$` nor hold a NUL, and labels are values
# the sites sent: those two characters are replaced by look-alikes.
_FIELD_NAME_SAFE = str.maketrans({"\x00": "\ufffd"})


def field_name(label: str) -> str:
    label = label.translate(_FIELD_NAME_SAFE)
    return "\uff04" + label[1:] if label.startswith("$") else label


def ensure_indexes(db: Database) -> None:
    db[metrics.COLLECTION].create_index(
        [("hash", 1), ("metric", 1), ("day", 1)], unique=True, name="hash_metric_day_unique"
    )
    db[metrics.COLLECTION].create_index([("day", 1)], name="day")


def document(day: date, row: Mapping[str, Any]) -> dict[str, Any]:
    """The serving document of one `analytics_daily` row."""
    metric = metrics.named(row["metric"])
    doc: dict[str, Any] = {"hash": row["hash"], "metric": metric.name, "day": day.strftime(metrics.DAY_FORMAT)}
    if metric.kind is metrics.Kind.SCALAR:
        value = row["value"]
        doc["value"] = int(value) if metric in metrics.COUNTS and value is not None else value
    elif metric.kind is metrics.Kind.BREAKDOWN:
        doc["breakdown"] = _counts((entry["label"], entry["count"]) for entry in row["breakdown"])
    else:
        pairs = [(*entry["label"].split(":", 1), entry["count"]) for entry in row["breakdown"]]
        events = _counts((label, n) for part, label, n in pairs if part == metrics.RATE_EVENTS)
        sites = _counts((label, n) for part, label, n in pairs if part == metrics.RATE_SITES)
        doc["rates"] = {label: metric.per * events.get(label, 0) / n for label, n in sites.items() if n}
        doc["breakdown"] = events
        doc["sites"] = sites
    return doc


def _counts(entries: Iterable[tuple[str, int]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label, n in entries:
        name = field_name(label)
        counts[name] = counts.get(name, 0) + n
    return counts


def replace_day(db: Database, day: date, documents: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """Make `day`'s documents exactly `documents`; returns (written, deleted).

    Upserts first, then deletes what the day no longer has: a failure in between
    leaves every figure either as it was or as it is now, never missing.
    """
    collection = db[metrics.COLLECTION]
    documents = list(documents)
    wanted = {(doc["hash"], doc["metric"]) for doc in documents}
    if documents:
        collection.bulk_write(
            [ReplaceOne({k: doc[k] for k in ("hash", "metric", "day")}, doc, upsert=True) for doc in documents],
            ordered=False,
        )
    day_text = day.strftime(metrics.DAY_FORMAT)
    stale = [
        existing["_id"]
        for existing in collection.find({"day": day_text}, {"hash": 1, "metric": 1})
        if (existing["hash"], existing["metric"]) not in wanted
    ]
    if stale:
        collection.delete_many({"_id": {"$in": stale}})
    return len(documents), len(stale)
