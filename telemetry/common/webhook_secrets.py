"""The webhook signing secrets: MongoDB `webhook_secrets`, one document per endpoint, apart
from the project document so that the dashboard's read-only user, which reads `projects`,
cannot read them (docs/notify.md, "Where the secrets live").

    {"project": "<project hash>", "endpoint": "wh_...",      # the key (unique index)
     "secret": "whsec_...",                                 # signs every delivery
     "previous_secret": "whsec_...",                        # after a rotation: also signs
     "previous_secret_until": <date>,                       #   until then (24 hours)
     "created_at": <date>, "rotated_at": <date>}            # rotated_at only after a rotation

Invariants:
- Only `telemetry-admin webhook` (telemetry/admin/notify.py) writes here and only notify's
  delivery and the admin read here; tests/test_layers.py keeps every other module out.
- An endpoint of a project document (telemetry/common/projects.py: id, url, events) is
  signed with the secret stored under (project hash, endpoint id); an endpoint without one
  is never posted to unsigned (telemetry/notify/deliver.py).
- `migrate` moves the secrets that older releases kept inside the project document here,
  idempotently: copied first (kept if already here), then removed from the project.
"""

from __future__ import annotations

import base64
import binascii
import secrets as random_bytes
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from telemetry.common import projects, wire

WEBHOOK_SECRETS = "webhook_secrets"  # the MongoDB collection
KEY_INDEX = "project_endpoint_unique"

PROJECT = "project"
ENDPOINT = "endpoint"
SECRET = "secret"  # noqa: S105 - the field name, not a secret
# After a rotation the old secret keeps signing beside the new one until `previous_secret_until`
# (Standard Webhooks: several space-separated signatures), so a receiver switches without a gap.
PREVIOUS_SECRET = "previous_secret"  # noqa: S105 - the field name, not a secret
PREVIOUS_UNTIL = "previous_secret_until"
CREATED_AT = "created_at"
ROTATED_AT = "rotated_at"
FIELDS = (PROJECT, ENDPOINT, SECRET, PREVIOUS_SECRET, PREVIOUS_UNTIL, CREATED_AT, ROTATED_AT)
ROTATION_KEYS = (PREVIOUS_SECRET, PREVIOUS_UNTIL, ROTATED_AT)
ROTATION_GRACE_HOURS = 24
# Standard Webhooks: `whsec_` + base64 of the key; the key is 24 to 64 random bytes.
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = (24, 64)


def secret_value(value: Any) -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 to 64 bytes; InvalidProject otherwise."""
    if not isinstance(value, str) or not value.startswith(SECRET_PREFIX):
        raise projects.InvalidProject(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as e:
        raise projects.InvalidProject("a webhook secret is `whsec_` + base64") from e
    low, high = SECRET_BYTES
    if not low <= len(key) <= high:
        raise projects.InvalidProject(f"a webhook secret holds {low} to {high} bytes, this one {len(key)}")
    return value


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random_bytes.token_bytes(32)).decode()


def _utc(value: datetime) -> datetime:
    """MongoDB stores UTC without a zone: the project's client (mongo.py, tz_aware) gives it back
    aware, any other client naive."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def validate(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document as a plain dict (without `_id`) if it keeps the shape above; InvalidProject otherwise."""
    document = {k: v for k, v in document.items() if k != "_id"}
    unknown = sorted(set(document) - set(FIELDS))
    if unknown:
        raise projects.InvalidProject(f"unknown webhook secret field(s) {', '.join(unknown)}")
    missing = [k for k in (PROJECT, ENDPOINT, SECRET, CREATED_AT) if k not in document]
    if missing:
        raise projects.InvalidProject(f"a webhook secret document needs {', '.join(missing)}")
    if not isinstance(document[PROJECT], str) or not wire.HASH_PATTERN.fullmatch(document[PROJECT]):
        raise projects.InvalidProject(f"{PROJECT} is not a project hash: {document[PROJECT]!r}")
    if not isinstance(document[ENDPOINT], str) or not projects.WEBHOOK_ID_PATTERN.fullmatch(document[ENDPOINT]):
        raise projects.InvalidProject(f"{ENDPOINT} is not a webhook id: {document[ENDPOINT]!r}")
    secret_value(document[SECRET])
    rotation = [k for k in (PREVIOUS_SECRET, PREVIOUS_UNTIL) if k in document]
    if len(rotation) == 1:
        raise projects.InvalidProject(f"after a rotation both {PREVIOUS_SECRET} and {PREVIOUS_UNTIL} are set")
    if rotation:
        secret_value(document[PREVIOUS_SECRET])
    for key in (PREVIOUS_UNTIL, CREATED_AT, ROTATED_AT):
        if key in document and not isinstance(document[key], datetime):
            raise projects.InvalidProject(f"{key} must be a date and time")
    return document


def secret_document(project_hash: str, endpoint_id: str, secret: str, now: datetime) -> dict[str, Any]:
    """A new endpoint's secret document, validated."""
    return validate({PROJECT: project_hash, ENDPOINT: endpoint_id, SECRET: secret, CREATED_AT: now})


def rotated(document: Mapping[str, Any], now: datetime) -> tuple[dict[str, Any], str]:
    """The document with a new secret; returns (document, the new secret). The old secret
    keeps signing beside it for ROTATION_GRACE_HOURS after `now`."""
    secret = new_secret()
    changed = {
        **document,
        SECRET: secret,
        PREVIOUS_SECRET: document[SECRET],
        PREVIOUS_UNTIL: now + timedelta(hours=ROTATION_GRACE_HOURS),
        ROTATED_AT: now,
    }
    return validate(changed), secret


def signing_secrets(document: Mapping[str, Any], now: datetime) -> list[str]:
    """The secrets that sign a delivery at `now`: the current one, and the one it
    replaced while that one's grace lasts."""
    secrets = [document[SECRET]]
    until = document.get(PREVIOUS_UNTIL)
    if document.get(PREVIOUS_SECRET) and until is not None and now < _utc(until):
        secrets.append(document[PREVIOUS_SECRET])
    return secrets


# --- MongoDB -------------------------------------------------------------------------


def _key(project_hash: str, endpoint_id: str) -> dict[str, str]:
    return {PROJECT: project_hash, ENDPOINT: endpoint_id}


def ensure_indexes(db: Any) -> None:
    """The unique key (project, endpoint). Idempotent."""
    db[WEBHOOK_SECRETS].create_index([(PROJECT, 1), (ENDPOINT, 1)], unique=True, name=KEY_INDEX)


def load(db: Any, project_hash: str, endpoint_id: str) -> dict[str, Any] | None:
    """The endpoint's secret document; None when it has none."""
    return db[WEBHOOK_SECRETS].find_one(_key(project_hash, endpoint_id), {"_id": 0})


def add(db: Any, document: Mapping[str, Any]) -> None:
    """Store a new endpoint's secret (an endpoint id is new, so nothing is replaced)."""
    document = validate(document)
    ensure_indexes(db)
    db[WEBHOOK_SECRETS].insert_one(document)


def rotate(db: Any, project_hash: str, endpoint_id: str, now: datetime) -> str:
    """Rotate the endpoint's secret; returns the new one. InvalidProject when it has none,
    or when another rotation changed it meanwhile (nothing is written then)."""
    current = load(db, project_hash, endpoint_id)
    if current is None:
        raise projects.InvalidProject(
            f"webhook {endpoint_id!r} of {project_hash!r} has no secret (telemetry-admin webhook migrate-secrets)"
        )
    changed, secret = rotated(current, now)
    result = db[WEBHOOK_SECRETS].replace_one({**_key(project_hash, endpoint_id), SECRET: current[SECRET]}, changed)
    if not result.matched_count:
        raise projects.InvalidProject(f"webhook {endpoint_id!r}'s secret changed meanwhile: rotate again")
    return secret


def delete(db: Any, project_hash: str, endpoint_id: str) -> int:
    """Delete the endpoint's secret; the number deleted (0 or 1)."""
    return db[WEBHOOK_SECRETS].delete_one(_key(project_hash, endpoint_id)).deleted_count


@dataclass
class Migration:
    """What `migrate` did: secrets copied here, endpoints whose secret was already here,
    projects whose documents lost their secrets, and the endpoints it could not move (why)."""

    copied: int = 0
    already_here: int = 0
    projects_cleared: int = 0
    failed: list[str] = field(default_factory=list)


def migrate(db: Any, now: datetime, hashes: Iterable[str] | None = None) -> Migration:
    """Move the secrets older releases kept in project documents (only those of `hashes`,
    if given) here. Idempotent and safe to stop anywhere: each secret is inserted unless its
    endpoint has one here already (a rotation since, or a run that stopped half-way), and a
    project's document loses its secrets only once all of them are here."""
    summary = Migration()
    ensure_indexes(db)
    for project_hash, endpoints in projects.legacy_webhook_secrets(db, hashes).items():
        moved = []
        for endpoint_id, held in endpoints.items():
            try:
                document = validate({**_key(project_hash, endpoint_id), **held, CREATED_AT: now})
            except projects.InvalidProject as e:
                summary.failed.append(f"{project_hash}/{endpoint_id}: {e}")
                continue
            result = db[WEBHOOK_SECRETS].update_one(
                _key(project_hash, endpoint_id), {"$setOnInsert": document}, upsert=True
            )
            if result.upserted_id is not None:
                summary.copied += 1
            else:
                summary.already_here += 1
            moved.append(endpoint_id)
        if moved and projects.drop_legacy_webhook_secrets(db, project_hash, moved):
            summary.projects_cleared += 1
    return summary
