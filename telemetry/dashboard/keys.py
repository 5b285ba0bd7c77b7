"""API keys: each bound to one project, stored only as a hash, revocable.

A key reads `wpt_<id>_<secret>`:
- `id`, 12 hex digits (48 random bits), names the key in `telemetry-admin key
  list|revoke` and in logs; it is not secret, and it is the document's `_id`,
  so a request finds its key by primary key, never by searching on the secret.
- `secret`, 43 base64url characters: 256 bits from `secrets` (the issue asks for
  at least 128).

Stored in MongoDB `api_keys`, one document per key: `_id` (the id), `project`
(the project's hash), `sha256` (hex SHA-256 of the whole key), `created_at`,
`revoked_at` (null until revoked), `note`. The key itself is printed once,
when it is made, and kept nowhere.

Why SHA-256 and no slow KDF (bcrypt, scrypt, Argon2): those make each guess of
a *low-entropy* secret (a password) expensive, so that a stolen hash cannot be
reversed by trying likely passwords. A key here is 256 random bits: nothing
is likely, and 2^255 guesses on average cost the same whatever the hash's speed.
A fast hash also keeps every API request cheap. For the same reason no salt is
needed: no two keys share a secret, and no table of precomputed hashes covers a
256-bit space.

The presented key's hash is compared with the stored one by
`hmac.compare_digest`, in time independent of where they differ.

Why a collection of their own and not a field of the project document:
`projects` is read by the pipelines and replaced whole by `project add`
(`replace_one`), which would drop a project's keys; kept apart, the secrets'
hashes are read only by the dashboard and the admin tool, and a key's lifecycle
(made, listed, revoked) touches no project document.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database

COLLECTION = "api_keys"
PREFIX = "wpt"
ID_BYTES = 6  # 12 hex digits
SECRET_BYTES = 32  # 256 bits
KEY_PATTERN = re.compile(rf"{PREFIX}_(?P<id>[0-9a-f]{{{ID_BYTES * 2}}})_(?P<secret>[A-Za-z0-9_-]{{43}})")


@dataclass(frozen=True)
class NewKey:
    id: str
    project: str
    key: str  # shown once, stored nowhere


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def make_key() -> tuple[str, str]:
    """(id, key): a new random key and its id."""
    key_id = secrets.token_hex(ID_BYTES)
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def ensure_indexes(db: Database) -> None:
    db[COLLECTION].create_index([("project", 1), ("created_at", 1)], name="project_created_at")


def create(db: Database, project_hash: str, note: str = "", now: datetime | None = None) -> NewKey:
    """A new key for the project; its hash is stored, the key is returned once."""
    key_id, key = make_key()
    db[COLLECTION].insert_one(
        {
            "_id": key_id,
            "project": project_hash,
            "sha256": digest(key),
            "created_at": now or datetime.now(UTC),
            "revoked_at": None,
            "note": note,
        }
    )
    return NewKey(key_id, project_hash, key)


def listing(db: Database, project_hash: str | None = None) -> list[dict[str, Any]]:
    """Every key's id, project, times and note (never its hash), oldest first."""
    query = {} if project_hash is None else {"project": project_hash}
    fields = {"sha256": 0}
    return list(db[COLLECTION].find(query, fields).sort([("project", 1), ("created_at", 1)]))


def revoke(db: Database, key_id: str, now: datetime | None = None) -> bool:
    """Revoke the key; False if there is no such key. Revoking twice keeps the first time."""
    result = db[COLLECTION].update_one(
        {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": now or datetime.now(UTC)}}
    )
    if result.matched_count:
        return True
    return db[COLLECTION].count_documents({"_id": key_id}, limit=1) == 1


def authenticate(db: Database, presented: str) -> dict[str, Any] | None:
    """The key's document if `presented` is a live key, else None (unknown, malformed or revoked)."""
    match = KEY_PATTERN.fullmatch(presented)
    if match is None:
        return None
    stored = db[COLLECTION].find_one({"_id": match["id"]})
    if stored is None or not isinstance(stored.get("sha256"), str):
        return None
    if not hmac.compare_digest(stored["sha256"].encode("ascii"), digest(presented).encode("ascii")):
        return None
    if stored.get("revoked_at") is not None:
        return None
    return stored
