"""The JSON API under /v1: sites and deactivations (pages and CSV exports), figures, and its OpenAPI description.

Every request but /v1/openapi.json carries `Authorization: Bearer KEY`, or,
from the dashboard's own page, its sign-in session cookie (sessions.py).
- No key, a malformed, unknown or revoked key: 401.
- A live key and a path of another project, or of none: 404 "no such project",
  the same answer either way, so a key tells nothing of other projects.
Every answer is JSON (the CSV exports aside); every error is the envelope of errors.py.
"""

from __future__ import annotations

import hmac
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from telemetry.analytics import metrics
from telemetry.common.logs import get_logger
from telemetry.common.projects import REASON_SLUG
from telemetry.common.sites import ACTIVE, DEACTIVATED
from telemetry.dashboard import csv_export, items, keys, paging, queries, sessions
from telemetry.dashboard.bounds import DEFAULT_FIGURE_DAYS, MAX_FIGURE_DAYS, MAX_Q_CHARS, MAX_VERSION_CHARS
from telemetry.dashboard.errors import (
    INVALID_CURSOR,
    INVALID_LIMIT,
    INVALID_PARAMETER,
    ApiError,
    project_not_found,
    unauthorized,
)
from telemetry.dashboard.openapi import SPEC

log = get_logger(__name__)

api = Blueprint("api", __name__, url_prefix="/v1")

STATUSES = (ACTIVE, DEACTIVATED)
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def database():
    """The app's MongoDB database (app.py puts the factory in `app.extensions`)."""
    return current_app.extensions["telemetry_db"]()


# --- auth ---------------------------------------------------------------------------


def bearer_key() -> str:
    header = request.headers.get("Authorization")
    if not header:
        raise unauthorized("send the project's API key as `Authorization: Bearer KEY`")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise unauthorized("the Authorization header must be `Bearer KEY`")
    return key.strip()


def request_key(db) -> dict[str, Any] | None:
    """The live key of the request: its Bearer key; without an Authorization header, the dashboard
    page's sign-in session (sessions.py), for the page's own requests only (Sec-Fetch-Site)."""
    if "Authorization" not in request.headers and sessions.COOKIE in request.cookies:
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise unauthorized("the sign-in session serves the dashboard's own page only")
        return sessions.live_key(db, request)
    return keys.authenticate(db, bearer_key())


def authorised_project(project_hash: str) -> dict[str, Any]:
    """The project of the path, if the request's key opens it; else 401 or 404 (see the module's docstring)."""
    db = database()
    key = request_key(db)
    if key is None:
        raise unauthorized("the API key is not valid, or has been revoked")
    if not hmac_equal(key["project"], project_hash):
        raise project_not_found()
    project = queries.project(db, project_hash)
    if project is None:
        raise project_not_found()
    return project


def hmac_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


# --- parameters -------------------------------------------------------------------


def _text(name: str, max_chars: int, controls: bool = False) -> str | None:
    """An optional text parameter; empty means absent."""
    value = request.args.get(name)
    if not value:
        return None
    if len(value) > max_chars:
        raise ApiError(400, INVALID_PARAMETER, f"{name} is longer than {max_chars} characters")
    if not controls and _CONTROL.search(value):
        raise ApiError(400, INVALID_PARAMETER, f"{name} holds a control character")
    return value


def site_filters() -> queries.SiteFilters:
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, INVALID_PARAMETER, f"status must be one of {', '.join(STATUSES)}, got {status[:40]!r}")
    return queries.SiteFilters(
        status=status,
        version=_text("version", MAX_VERSION_CHARS),
        q=_text("q", MAX_Q_CHARS),
    )


def reason_filter() -> str | None:
    reason = request.args.get("reason")
    if reason is None:
        return None
    if not REASON_SLUG.fullmatch(reason):
        raise ApiError(400, INVALID_PARAMETER, f"reason must be a reason slug (A-Z a-z 0-9 _ -), got {reason[:40]!r}")
    return reason


def page_parameters(kind: str) -> tuple[int, paging.Position | None]:
    try:
        limit = paging.parse_limit(request.args.get("limit"))
    except paging.InvalidLimit as e:
        raise ApiError(400, INVALID_LIMIT, str(e)) from e
    cursor = request.args.get("cursor")
    if cursor is None:
        return limit, None
    try:
        return limit, paging.decode(cursor, kind)
    except paging.InvalidCursor as e:
        raise ApiError(400, INVALID_CURSOR, str(e)) from e


def day_parameter(name: str, default: date) -> date:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        if not DAY.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError as e:
        raise ApiError(400, INVALID_PARAMETER, f"{name} must be a day as YYYY-MM-DD, got {raw[:40]!r}") from e


def page_answer(docs: list[dict[str, Any]], position: paging.Position | None, item) -> Response:
    response = jsonify(
        {
            "items": [items.as_json(item(doc)) for doc in docs],
            "next_cursor": None if position is None else paging.encode(position),
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _logged(name: str, chunks: Iterator[str]) -> Iterator[str]:
    """The chunks; a failure after the first has been sent (the status is gone) is logged, and the
    connection is closed without the chunked body's end, so the client sees the export broke off."""
    try:
        yield from chunks
    except Exception:
        log.exception("CSV export broke off", extra={"export": name})
        raise


def csv_answer(name: str, chunks: Iterator[str]) -> Response:
    """The export, its first chunk made before the answer starts: the query runs then, so a
    database that fails before the first row gets the JSON 503 like every other route."""
    first = next(chunks, None)
    body = itertools.chain([] if first is None else [first], chunks)
    response = Response(_logged(name, body), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- routes -----------------------------------------------------------------------


@api.get("/openapi.json")
def openapi():
    return jsonify(SPEC)


@api.get("/projects/<project_hash>/sites")
def sites(project_hash: str):
    authorised_project(project_hash)
    filters = site_filters()
    limit, position = page_parameters(queries.SITES_KIND)
    docs, next_position = queries.sites_page(database(), project_hash, filters, limit, position)
    return page_answer(docs, next_position, items.site_item)


@api.get("/projects/<project_hash>/sites.csv")
def sites_csv(project_hash: str):
    authorised_project(project_hash)
    filters = site_filters()
    cursor = queries.sites_export(database(), project_hash, filters)
    return csv_answer(f"sites-{project_hash}.csv", csv_export.stream(items.SITE_FIELDS, cursor, items.site_item))


@api.get("/projects/<project_hash>/deactivations")
def deactivations(project_hash: str):
    project = authorised_project(project_hash)
    reason = reason_filter()
    limit, position = page_parameters(queries.DEACTIVATIONS_KIND)
    docs, next_position = queries.deactivations_page(database(), project_hash, reason, limit, position)
    labels = items.reason_labels(project)
    return page_answer(docs, next_position, lambda doc: items.deactivation_item(doc, labels))


@api.get("/projects/<project_hash>/deactivations.csv")
def deactivations_csv(project_hash: str):
    project = authorised_project(project_hash)
    reason = reason_filter()
    labels = items.reason_labels(project)
    cursor = queries.deactivations_export(database(), project_hash, reason)
    chunks = csv_export.stream(items.DEACTIVATION_FIELDS, cursor, lambda doc: items.deactivation_item(doc, labels))
    return csv_answer(f"deactivations-{project_hash}.csv", chunks)


@api.get("/projects/<project_hash>/figures")
def figures(project_hash: str):
    authorised_project(project_hash)
    metric = request.args.get("metric")
    if metric is not None and not metrics.is_name(metric):
        names = ", ".join((*metrics.BY_NAME, f"{metrics.CUSTOM_FIELD_PREFIX}<key>"))
        raise ApiError(400, INVALID_PARAMETER, f"metric must be one of {names}")
    last = day_parameter("to", datetime.now(UTC).date())
    if request.args.get("from") is None:
        try:
            first = last - timedelta(days=DEFAULT_FIGURE_DAYS - 1)
        except OverflowError as e:  # a `to` in the first days of year 1
            raise ApiError(
                400, INVALID_PARAMETER, f"to leaves no room for the default {DEFAULT_FIGURE_DAYS} days"
            ) from e
    else:
        first = day_parameter("from", last)
    if first > last:
        raise ApiError(400, INVALID_PARAMETER, "from must not be after to")
    if (last - first).days + 1 > MAX_FIGURE_DAYS:
        raise ApiError(400, INVALID_PARAMETER, f"from..to spans more than {MAX_FIGURE_DAYS} days")
    docs = queries.figures(database(), project_hash, metric, first, last)
    response = jsonify(
        {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "items": docs,
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response
