"""The one way the product opens MongoDB: a client bounded in time.

Shared by the pipelines, the analytics function, the report and the local
tools. pymongo is imported where it is used, as in telemetry.common.cloud: the
ingest functions' zip carries common/ without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemetry.common import config

if TYPE_CHECKING:
    from pymongo.database import Database

SERVER_SELECTION_SECONDS = 10  # a server that is down fails a call this soon (within the timeout)


def database(uri: str, name: str, timeout_seconds: float | None = None) -> Database:
    """A client bounded in time: `timeout_seconds` (default MONGODB_TIMEOUT_SECONDS) caps each
    connection attempt and each socket read, so a server that accepts connections but stops
    answering (frozen, or a dead peer behind a live load balancer) fails a call instead of
    hanging it; pymongo's own default reads without a timeout. A retryable write that times out
    is tried once more, so one call takes at most about twice the bound (plus server selection)."""
    import pymongo

    seconds = float(config.get_int("MONGODB_TIMEOUT_SECONDS")) if timeout_seconds is None else timeout_seconds
    ms = int(seconds * 1000)
    client: pymongo.MongoClient = pymongo.MongoClient(
        uri,
        tz_aware=True,
        serverSelectionTimeoutMS=min(ms, SERVER_SELECTION_SECONDS * 1000),
        connectTimeoutMS=ms,
        socketTimeoutMS=ms,
    )
    if config.get("MONGODB_EMULATOR"):
        # The local stand-in: its collections also refuse what MongoDB refuses and it does not.
        from telemetry.common import mongo_limits

        return mongo_limits.limited_database(client, name)
    return client[name]
