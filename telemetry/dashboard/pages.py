"""The dashboard in a browser: sign in with the project's key, then one page per project.

- `GET /sign-in`, `POST /sign-in` (form: key, CSRF token), `POST /sign-out`.
- `GET /projects/{hash}`: the page. Its script (static/dashboard.js) draws the
  charts from `GET /projects/{hash}/charts.json` and reads the sites and the
  deactivations from the JSON API (/v1), with the session cookie; the CSV
  buttons are links to the API's exports.
- `GET /` sends a signed-in browser to its project's page, any other to the sign-in.

Everything the page loads comes from this function (static/, the vendored
Vega libraries in static/vendor/); every answer carries a Content-Security-Policy
that allows this origin only, no inline script and no eval (vega-embed's `ast`
mode interprets Vega's expressions instead of compiling them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, make_response, redirect, render_template, request, url_for

from telemetry.common.logs import get_logger
from telemetry.dashboard import api, keys, queries, sessions, vendor
from telemetry.report import charts

log = get_logger(__name__)

pages = Blueprint("pages", __name__)

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a form POST says `Origin: null`, and sessions.csrf_ok checks it.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
KEY_FIELD = "key"
MAX_KEY_CHARS = 200


@pages.after_app_request
def security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _html(template: str, status: int = 200, **context: Any) -> Response:
    """A page with a form: its CSRF token in the form and in its cookie; never cached."""
    token = sessions.csrf_token(request)
    response = make_response(
        render_template(
            template,
            csrf_field=sessions.CSRF_FIELD,
            csrf=token,
            session_hours=sessions.SESSION_HOURS,
            **context,
        ),
        status,
    )
    sessions.keep_csrf(response, token)
    response.headers["Cache-Control"] = "no-store"
    return response


def _see_other(endpoint: str, **values: str) -> Response:
    response = redirect(url_for(endpoint, **values), code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


@pages.get("/")
def home():
    session = sessions.session_of(api.database(), request)
    if session is None:
        return _see_other("pages.sign_in")
    return _see_other("pages.project_page", project_hash=session.project)


@pages.get("/sign-in")
def sign_in():
    return _html("sign_in.html")


@pages.post("/sign-in")
def sign_in_post():
    if not sessions.csrf_ok(request):
        return _html("sign_in.html", 403, error="The form had expired. Please sign in again.")
    presented = request.form.get(KEY_FIELD, "").strip()
    db = api.database()
    key = keys.authenticate(db, presented) if 0 < len(presented) <= MAX_KEY_CHARS else None
    if key is None:
        log.info("dashboard sign-in refused")
        return _html("sign_in.html", 401, error="That key is not valid, or it has been revoked.")
    response = _see_other("pages.project_page", project_hash=key["project"])
    sessions.start(response, key)
    log.info("dashboard sign-in", extra={"key_id": key["_id"], "project": key["project"]})
    return response


@pages.post("/sign-out")
def sign_out():
    if not sessions.csrf_ok(request):
        return _html("sign_in.html", 403, error="The form had expired; you are still signed in.")
    response = _see_other("pages.sign_in")
    sessions.end(response)
    return response


@pages.get("/projects/<project_hash>")
def project_page(project_hash: str):
    db = api.database()
    session = sessions.session_of(db, request)
    if session is None:
        return _see_other("pages.sign_in")
    project = queries.project(db, project_hash) if api.hmac_equal(session.project, project_hash) else None
    if project is None:
        return _html("not_found.html", 404)
    return _html(
        "project.html",
        project=project,
        project_hash=project_hash,
        scripts=[url_for("static", filename=path) for path in vendor.SCRIPTS],
    )


@pages.get("/projects/<project_hash>/charts.json")
def project_charts(project_hash: str):
    """The report's charts of this project, from the serving copy now: Vega-Lite specs with their data."""
    project = api.authorised_project(project_hash)
    documents = charts.serving_documents(api.database(), charts.DEFAULT_DAYS, [project_hash])
    latest = max((doc["day"] for doc in documents), default=None)
    shown: list[dict[str, Any]] = []
    figures: list[tuple[str, str]] = []
    if latest is not None:
        series = charts.Series(documents)
        end = charts.parse_day(latest)
        figures = list(charts.kpis(series, end))
        shown = [
            {"key": c.key, "metrics": list(c.metrics), "title": c.title, "note": c.note, "spec": c.spec}
            for c in charts.project_charts(project, series, end, charts.DEFAULT_DAYS)
        ]
    response = jsonify(
        {
            "latest_day": latest,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "kpis": [{"label": label, "value": value} for label, value in figures],
            "charts": shown,
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response
