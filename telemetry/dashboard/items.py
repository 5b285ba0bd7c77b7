"""What the API shows of a document: the fields of a site, of a deactivation, of a figure.

One list of fields per kind serves the JSON items and the CSV columns alike.
The sites' personal fields (`admin_email`, `first_name`, `last_name`,
`ip_address`) and the pipelines' bookkeeping (`ping_id`, `mail`) are not shown:
the API serves the figures and the site list, not the contacts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from telemetry.common.projects import project_reason_labels

SITE_FIELDS = (
    "url",
    "site",
    "status",
    "first_seen",
    "last_seen",
    "project_version",
    "wp_version",
    "php_version",
    "mysql_version",
    "server_software",
    "locale",
    "country",
    "hosting",
    "multisite",
    "is_local",
    "theme_name",
    "theme_version",
    "users_total",
    "active_plugins",
    "inactive_plugins",
    "custom_fields",
)
TIME_FIELDS = ("first_seen", "last_seen", "deactivated_at")

DEACTIVATION_FIELDS = ("url", "site", "reason_id", "reason", "reason_info", "project_version", "deactivated_at")

# What to read of each document (a projection: no more leaves MongoDB than is shown).
SITE_PROJECTION = {"_id": 0, **{field: 1 for field in SITE_FIELDS}}
DEACTIVATION_PROJECTION = {
    "_id": 0,
    "url": 1,
    "site": 1,
    "reason_id": 1,
    "reason_info": 1,
    "project_version": 1,
    "received_at": 1,
}


def iso_time(at: datetime) -> str:
    """UTC, to the millisecond MongoDB keeps, with a `Z`: 2026-11-23T11:00:00.123Z."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_value(value: Any) -> Any:
    return iso_time(value) if isinstance(value, datetime) else value


def site_item(doc: dict[str, Any]) -> dict[str, Any]:
    """Every field of SITE_FIELDS, null where the document has none."""
    return {field: doc.get(field) for field in SITE_FIELDS}


def deactivation_item(doc: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The deactivation with its reason's label: the project's own, else the slug itself."""
    reason = doc.get("reason_id")
    return {
        "url": doc.get("url"),
        "site": doc.get("site"),
        "reason_id": reason,
        "reason": None if reason is None else labels.get(reason, reason),
        "reason_info": doc.get("reason_info"),
        "project_version": doc.get("project_version"),
        "deactivated_at": doc.get("received_at"),
    }


def reason_labels(project: dict[str, Any]) -> dict[str, str]:
    return project_reason_labels(project)


def as_json(item: dict[str, Any]) -> dict[str, Any]:
    """The item with its times as ISO 8601 text."""
    return {key: _json_value(value) for key, value in item.items()}
