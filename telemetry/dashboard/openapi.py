"""The API's OpenAPI 3.0 description, served at /v1/openapi.json: the one home of the contract.

Written by hand beside the routes of api.py; tests/integration/test_dashboard_schemathesis.py
runs every operation of it against the local function (schemathesis), so a
route that answers what this does not describe fails the tests. Bounds here
are the code's own (paging.py, bounds.py), not copies.
"""

from __future__ import annotations

from typing import Any

from telemetry.analytics import metrics
from telemetry.common.sites import ACTIVE, DEACTIVATED
from telemetry.dashboard import errors, items, paging
from telemetry.dashboard.bounds import DEFAULT_FIGURE_DAYS, MAX_FIGURE_DAYS, MAX_Q_CHARS, MAX_VERSION_CHARS

NULLABLE_TEXT = {"type": "string", "nullable": True}
TIME = {"type": "string", "format": "date-time", "nullable": True}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _parameter(name: str, where: str, schema: dict[str, Any], description: str, required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required, "schema": schema, "description": description}


HASH = _parameter(
    "hash", "path", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "The project's hash.", required=True
)
LIMIT = _parameter(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": paging.MAX_LIMIT, "default": paging.DEFAULT_LIMIT},
    "Items per page.",
)
CURSOR = _parameter(
    "cursor",
    "query",
    {"type": "string", "maxLength": paging.MAX_CURSOR_CHARS},
    "`next_cursor` of the previous page, as it was returned; any other value is a 400.",
)
STATUS = _parameter("status", "query", {"type": "string", "enum": [ACTIVE, DEACTIVATED]}, "Only sites of this status.")
VERSION = _parameter(
    "version",
    "query",
    {"type": "string", "maxLength": MAX_VERSION_CHARS},
    "Only sites on this version of the project (`project_version`); empty: all.",
)
Q = _parameter(
    "q",
    "query",
    {"type": "string", "maxLength": MAX_Q_CHARS},
    "Only sites whose url or title contains this text, in any case; empty: all. Control characters are a 400.",
)
REASON = _parameter(
    "reason",
    "query",
    {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    "Only deactivations with this `reason_id`.",
)
SITE_FILTERS = [STATUS, VERSION, Q]

ERRORS = {
    "400": _error("A parameter is out of its bounds, or the cursor is not one this API returned."),
    "401": _error("No key, or a key that is unknown or revoked."),
    "404": _error("No such project, or the key is another project's."),
    "503": {
        **_error("The database did not answer in time (`unavailable`); nothing was changed, so try again."),
        "headers": {
            "Retry-After": {
                "description": f"Seconds to wait before trying again ({errors.DATABASE_RETRY_AFTER_SECONDS}).",
                "schema": {"type": "integer"},
            }
        },
    },
}

_SITE_PROPERTIES: dict[str, Any] = {
    "url": {"type": "string"},
    "site": NULLABLE_TEXT,
    "status": {"type": "string", "nullable": True},
    "first_seen": TIME,
    "last_seen": TIME,
    "project_version": NULLABLE_TEXT,
    "wp_version": NULLABLE_TEXT,
    "php_version": NULLABLE_TEXT,
    "mysql_version": NULLABLE_TEXT,
    "server_software": NULLABLE_TEXT,
    "locale": NULLABLE_TEXT,
    "country": {
        "type": "string",
        "nullable": True,
        "description": "Hosting country of the site's server, ISO 3166-1 alpha-2 (docs/geo.md).",
    },
    "hosting": {
        "type": "string",
        "nullable": True,
        "description": "Hosting company (or the network's organisation) of the site's server (docs/geo.md).",
    },
    "multisite": {"type": "boolean", "nullable": True},
    "is_local": {"type": "boolean", "nullable": True},
    "theme_name": NULLABLE_TEXT,
    "theme_version": NULLABLE_TEXT,
    "users_total": {"type": "integer", "nullable": True},
    "active_plugins": {"type": "integer", "nullable": True},
    "inactive_plugins": {"type": "integer", "nullable": True},
    "custom_fields": {"type": "object", "nullable": True, "description": "The project's whitelisted `extra` keys."},
}
_DEACTIVATION_PROPERTIES: dict[str, Any] = {
    "url": {"type": "string"},
    "site": NULLABLE_TEXT,
    "reason_id": NULLABLE_TEXT,
    "reason": {
        "type": "string",
        "nullable": True,
        "description": "The reason's label: the project's own, else the slug.",
    },
    "reason_info": NULLABLE_TEXT,
    "project_version": NULLABLE_TEXT,
    "deactivated_at": TIME,
}
assert tuple(_SITE_PROPERTIES) == items.SITE_FIELDS
assert tuple(_DEACTIVATION_PROPERTIES) == items.DEACTIVATION_FIELDS


def _page_of(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
            "next_cursor": {"type": "string", "nullable": True, "description": "null on the last page."},
        },
    }


def _list(summary: str, page: str, parameters: list[dict]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [HASH, LIMIT, CURSOR, *parameters],
            "responses": {
                "200": {
                    "description": "A page, newest first.",
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{page}"}}},
                },
                **ERRORS,
            },
        }
    }


def _csv(summary: str, columns: tuple[str, ...], parameters: list[dict]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "description": f"Columns: {', '.join(columns)}. Text cells beginning with = + - @, a tab or a carriage "
            "return are prefixed with ' (they would be formulas in a spreadsheet).",
            "parameters": [HASH, *parameters],
            "responses": {
                "200": {
                    "description": "Header row, then every row.",
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                },
                **ERRORS,
            },
        }
    }


SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "WordPress telemetry: the vendor's API",
        "version": "1",
        "description": "Sites, deactivations and daily figures of one project. Every operation but this "
        "description needs `Authorization: Bearer KEY`, a key of the project in the path "
        '(`telemetry-admin key create --project HASH`). Errors are `{"ok": false, "error": CODE, "message": TEXT}`.',
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["ok", "error", "message"],
                "additionalProperties": False,
                "properties": {
                    "ok": {"type": "boolean", "enum": [False]},
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
            "Site": {
                "type": "object",
                "required": list(items.SITE_FIELDS),
                "additionalProperties": False,
                "properties": _SITE_PROPERTIES,
            },
            "Deactivation": {
                "type": "object",
                "required": list(items.DEACTIVATION_FIELDS),
                "additionalProperties": False,
                "properties": _DEACTIVATION_PROPERTIES,
            },
            "SitesPage": _page_of("Site"),
            "DeactivationsPage": _page_of("Deactivation"),
            "Figure": {
                "type": "object",
                "required": ["metric", "day"],
                "additionalProperties": False,
                "description": (
                    "One document of the serving copy: a scalar has `value`, a distribution `breakdown`; a rate per"
                    " label has `rates` (per 1,000 sites), `breakdown` (its events) and `sites` (docs/analytics.md)."
                ),
                "properties": {
                    "metric": {"type": "string", "pattern": metrics.NAME_PATTERN},
                    "day": {"type": "string", "format": "date"},
                    "value": {"type": "number", "nullable": True},
                    "breakdown": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "rates": {"type": "object", "additionalProperties": {"type": "number"}},
                    "sites": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
            },
            "Figures": {
                "type": "object",
                "required": ["from", "to", "items"],
                "additionalProperties": False,
                "properties": {
                    "from": {"type": "string", "format": "date"},
                    "to": {"type": "string", "format": "date"},
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Figure"}},
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/openapi.json": {
            "get": {
                "summary": "This description.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.0",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/v1/projects/{hash}/sites": _list("The project's sites, newest `last_seen` first.", "SitesPage", SITE_FILTERS),
        "/v1/projects/{hash}/sites.csv": _csv(
            "Every matching site as CSV, in url order.", items.SITE_FIELDS, SITE_FILTERS
        ),
        "/v1/projects/{hash}/deactivations": _list(
            "Each site's latest deactivation, newest first.", "DeactivationsPage", [REASON]
        ),
        "/v1/projects/{hash}/deactivations.csv": _csv(
            "Every matching deactivation as CSV, in url order.", items.DEACTIVATION_FIELDS, [REASON]
        ),
        "/v1/projects/{hash}/figures": {
            "get": {
                "summary": "The daily figures of the serving copy for the days from..to.",
                "parameters": [
                    HASH,
                    _parameter(
                        "metric",
                        "query",
                        {"type": "string", "pattern": metrics.NAME_PATTERN},
                        f"One metric (docs/analytics.md), or `{metrics.CUSTOM_FIELD_PREFIX}<key>` for a custom field;"
                        " absent: all.",
                    ),
                    _parameter(
                        "from",
                        "query",
                        {"type": "string", "format": "date"},
                        f"First day (UTC), YYYY-MM-DD; default: {DEFAULT_FIGURE_DAYS - 1} days before `to`.",
                    ),
                    _parameter("to", "query", {"type": "string", "format": "date"}, "Last day (UTC); default: today."),
                ],
                "responses": {
                    "200": {
                        "description": f"By metric, then day. At most {MAX_FIGURE_DAYS} days.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Figures"}}},
                    },
                    **ERRORS,
                },
            }
        },
    },
}
