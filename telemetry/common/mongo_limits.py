"""MongoDB's nesting limit on the local stand-in, which does not enforce it.

SecantusDB refuses documents over 16 MiB as mongod does (pymongo refuses an
oversized insert itself, against the server's `maxBsonObjectSize`; the server
refuses an update that grows a document past it, code 10334), but it stores
documents nested past MongoDB's documented 100 levels. telemetry.common.mongo
hands out this Database when MONGODB_EMULATOR is set (the local stack sets it),
never in production: its collections refuse such writes before they are sent,
with mongod's code (15, Overflow) and wording, raised as the pymongo exception
the server's refusal raises (WriteError, BulkWriteError, OperationFailure).

Why here and not in a listener: pymongo's CommandListener only observes, and
pymongo has no hook that can refuse a command; a wire-protocol proxy could, but
cannot know an update's result without the server. So the writes the product
makes are checked where they are made (insert, replace, update, bulk_write,
find_one_and_*). An update's result depth is measured from the update itself:
each `$set`-style path with its value (a `$literal` unwrapped), `$push`-style
values one level down; other pipeline expressions count as written, which can
only over-count.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from telemetry.common import service_limits

# pymongo is imported where it is used (the ingest functions' zip carries common/ without it).

ARRAY_OPERATORS = ("$push", "$addToSet")


def _nested(path: str, value: Any) -> dict:
    """The document a dotted path with its value makes: "a.b", v -> {"a": {"b": v}}."""
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


def _unliteral(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$literal"}:
        return value["$literal"]
    return value


def update_result_shape(update: Any) -> list[Any]:
    """What an update writes, as documents whose depth is the depth the update gives the
    document (telemetry.common.service_limits.mongo_nesting_depth)."""
    shapes = []
    stages = update if isinstance(update, list) else [update]
    for stage in stages:
        if not isinstance(stage, dict):
            continue
        for operator, fields in stage.items():
            if operator in ("$replaceWith", "$replaceRoot"):
                shapes.append(_unliteral(fields.get("newRoot", fields) if isinstance(fields, dict) else fields))
                continue
            if not isinstance(fields, dict):
                continue
            for path, value in fields.items():
                value = _unliteral(value)
                if operator in ARRAY_OPERATORS:
                    each = value.get("$each") if isinstance(value, dict) and "$each" in value else [value]
                    value = each
                shapes.append(_nested(path, value))
    return shapes


def insert_refusal(document: Any) -> str | None:
    return service_limits.mongo_depth_refusal(document, "insert")


def update_refusal(update: Any) -> str | None:
    for shape in update_result_shape(update):
        refusal = service_limits.mongo_depth_refusal(shape, "update")
        if refusal:
            return refusal
    return None


def replacement_refusal(document: Any) -> str | None:
    return service_limits.mongo_depth_refusal(document, "update")


def operation_refusal(operation: Any) -> str | None:
    """The refusal of one bulk_write request (InsertOne, ReplaceOne, UpdateOne, UpdateMany)."""
    from pymongo import InsertOne, ReplaceOne

    document = getattr(operation, "_doc", None)  # pymongo keeps each request's document here
    if isinstance(operation, InsertOne):
        return insert_refusal(document)
    if isinstance(operation, ReplaceOne):
        return replacement_refusal(document)
    if document is not None:
        return update_refusal(document)
    return None


def limited_database(client: Any, name: str) -> Any:
    """The database `name` of `client`, its collections LimitedCollection."""
    return _classes()[1](client, name)


@functools.cache
def _classes() -> tuple[type, type]:
    """(LimitedCollection, LimitedDatabase), made on first use."""
    from pymongo import InsertOne
    from pymongo.collection import Collection
    from pymongo.database import Database
    from pymongo.errors import BulkWriteError, OperationFailure, WriteError

    def write_error(message: str) -> WriteError:
        code = service_limits.MONGODB_OVERFLOW_CODE
        return WriteError(message, code, {"index": 0, "code": code, "errmsg": message})

    class LimitedCollection(Collection):
        """A collection whose writes refuse documents nested past MongoDB's limit."""

        def insert_one(self, document, *args, **kwargs):
            refusal = insert_refusal(document)
            if refusal:
                raise write_error(refusal)
            return super().insert_one(document, *args, **kwargs)

        def replace_one(self, filter, replacement, *args, **kwargs):
            refusal = replacement_refusal(replacement)
            if refusal:
                raise write_error(refusal)
            return super().replace_one(filter, replacement, *args, **kwargs)

        def update_one(self, filter, update, *args, **kwargs):
            refusal = update_refusal(update)
            if refusal:
                raise write_error(refusal)
            return super().update_one(filter, update, *args, **kwargs)

        def update_many(self, filter, update, *args, **kwargs):
            refusal = update_refusal(update)
            if refusal:
                raise write_error(refusal)
            return super().update_many(filter, update, *args, **kwargs)

        def find_one_and_update(self, filter, update, *args, **kwargs):
            refusal = update_refusal(update)
            if refusal:
                raise OperationFailure(refusal, service_limits.MONGODB_OVERFLOW_CODE)
            return super().find_one_and_update(filter, update, *args, **kwargs)

        def find_one_and_replace(self, filter, replacement, *args, **kwargs):
            refusal = replacement_refusal(replacement)
            if refusal:
                raise OperationFailure(refusal, service_limits.MONGODB_OVERFLOW_CODE)
            return super().find_one_and_replace(filter, replacement, *args, **kwargs)

        def insert_many(self, documents: Iterable[Any], ordered: bool = True, *args, **kwargs):
            documents = list(documents)
            refusals = {i: r for i, document in enumerate(documents) if (r := insert_refusal(document))}
            if not refusals:
                return super().insert_many(documents, ordered, *args, **kwargs)
            requests = [InsertOne(document) for document in documents]
            return self._refuse_some(requests, refusals, ordered, kwargs)

        def bulk_write(self, requests, ordered: bool = True, *args, **kwargs):
            requests = list(requests)
            refusals = {i: r for i, request in enumerate(requests) if (r := operation_refusal(request))}
            if not refusals:
                return super().bulk_write(requests, ordered, *args, **kwargs)
            return self._refuse_some(requests, refusals, ordered, kwargs)

        def _refuse_some(self, requests: list, refusals: dict[int, str], ordered: bool, kwargs: dict):
            """As the server runs a batch with refused writes in it: ordered, the writes before the
            first refusal run and the rest do not; unordered, every other write runs. Then the
            BulkWriteError the server's answer raises, its indexes those of the caller's batch."""
            first = min(refusals)
            run = list(range(first)) if ordered else [i for i in range(len(requests)) if i not in refusals]
            details: dict[str, Any] = {
                "writeErrors": [],
                "writeConcernErrors": [],
                "nInserted": 0,
                "nUpserted": 0,
                "nMatched": 0,
                "nModified": 0,
                "nRemoved": 0,
                "upserted": [],
            }
            if run:
                try:
                    result = super().bulk_write([requests[i] for i in run], ordered, **kwargs).bulk_api_result
                except BulkWriteError as e:
                    result = e.details
                for key in ("nInserted", "nUpserted", "nMatched", "nModified", "nRemoved"):
                    details[key] = result.get(key, 0)
                details["upserted"] = [dict(u, index=run[u["index"]]) for u in result.get("upserted", [])]
                details["writeErrors"] = [dict(e, index=run[e["index"]]) for e in result.get("writeErrors", [])]
                details["writeConcernErrors"] = result.get("writeConcernErrors", [])
            code = service_limits.MONGODB_OVERFLOW_CODE
            refused = [first] if ordered else sorted(refusals)
            details["writeErrors"] += [
                {"index": i, "code": code, "errmsg": refusals[i], "op": getattr(requests[i], "_doc", None)}
                for i in refused
            ]
            details["writeErrors"].sort(key=lambda entry: entry["index"])
            raise BulkWriteError(details)

    class LimitedDatabase(Database):
        """A database whose collections are LimitedCollection."""

        def __getitem__(self, name: str) -> LimitedCollection:
            return LimitedCollection(self, name)

        def get_collection(self, name: str, *args, **kwargs) -> LimitedCollection:
            return LimitedCollection(self, name, False, *args, **kwargs)

    return LimitedCollection, LimitedDatabase
