"""Documents for the dashboard's tests and benchmark, shaped as the pipelines and the analytics job write them.

The shapes are the pipelines' (records.site_record, site_state.site_update) and the
serving copy's (serving.document); the pipelines' own tests prove those. Each
test works in a project of its own (a fresh hash), as the other integration
tests do in the stack's database.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database

from telemetry.common.projects import PROJECTS
from telemetry.dashboard import keys

BASE_TIME = datetime(2026, 11, 1, tzinfo=UTC)


def new_project(db: Database, name: str = "Test project", reasons: dict[str, str] | None = None) -> str:
    project_hash = uuid.uuid4().hex
    db[PROJECTS].insert_one(
        {
            "hash": project_hash,
            "name": name,
            "type": "plugin",
            "custom_fields": ["license_type"],
            "mail_integrations": {},
            "deactivation_reasons": reasons or {},
        }
    )
    return project_hash


def new_key(db: Database, project_hash: str) -> str:
    return keys.create(db, project_hash, note="test").key


def site_doc(project_hash: str, i: int, last_seen: datetime | None = None, **fields: Any) -> dict[str, Any]:
    seen = last_seen or BASE_TIME + timedelta(minutes=i)
    doc = {
        "hash": project_hash,
        "url": f"https://site-{i:06d}.example.org",
        "site": f"Site {i}",
        "admin_email": f"admin{i}@example.org",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "wp_version": "6.7.1",
        "php_version": "8.2.10",
        "mysql_version": "8.0.35",
        "server_software": "nginx/1.24.0",
        "locale": "en_US",
        "multisite": False,
        "debug_mode": False,
        "memory_limit": "256M",
        "theme_slug": "twentytwentyfive",
        "theme_name": "Twenty Twenty-Five",
        "theme_version": "1.0",
        "theme_uri": None,
        "theme_author": None,
        "users_total": 3,
        "active_plugins": 12,
        "inactive_plugins": 2,
        "plugins": [{"slug": "akismet", "name": "Akismet", "version": "5.3"}],
        "project_version": "2.1.0",
        "ip_address": "192.0.2.0",
        "country": "DE",
        "hosting": "Hetzner",
        "is_local": False,
        "tracking_skipped": False,
        "custom_fields": {"license_type": "pro"},
        "status": "active",
        "ping_id": uuid.uuid4().hex,
        "received_at": seen,
        "first_seen": seen - timedelta(days=30),
        "last_seen": seen,
    }
    doc.update(fields)
    return doc


def deactivation_doc(project_hash: str, i: int, reason: str | None, at: datetime | None = None, **fields: Any):
    doc = {
        "hash": project_hash,
        "url": f"https://site-{i:06d}.example.org",
        "site": f"Site {i}",
        "reason_id": reason,
        "reason_known": True,
        "reason_info": f"info {i}",
        "project_version": "2.1.0",
        "ping_id": uuid.uuid4().hex,
        "received_at": at or BASE_TIME + timedelta(minutes=i),
    }
    doc["first_deactivated_at"] = doc["received_at"]
    doc.update(fields)
    return doc


def figure_docs(project_hash: str, days: list[str]) -> list[dict[str, Any]]:
    docs = []
    for n, day in enumerate(days):
        docs.append({"hash": project_hash, "metric": "active_sites", "day": day, "value": 100 + n})
        docs.append({"hash": project_hash, "metric": "opt_in_rate", "day": day, "value": None if n == 0 else 0.5})
        docs.append({"hash": project_hash, "metric": "wp_version", "day": day, "breakdown": {"6.7": 60, "6.6": 40}})
    return docs
