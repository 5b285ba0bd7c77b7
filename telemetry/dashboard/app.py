"""The dashboard's Flask app: the JSON API (api.py), the pages (pages.py), the error envelope for every answer but 200.

`create_app()` makes the app once per instance; functions/dashboard/main.py
hands it each request. The HTML pages (pages.py) register beside `api`.
The MongoDB client is made on first use, once per instance, from MONGODB_URI
and MONGODB_DB (a read-only database user in production: the dashboard
writes nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Flask, Request, Response
from pymongo.database import Database
from pymongo.errors import PyMongoError
from werkzeug.exceptions import HTTPException

from telemetry.common import config, mongo
from telemetry.common.logs import get_logger
from telemetry.dashboard import errors, sessions
from telemetry.dashboard.api import api
from telemetry.dashboard.pages import pages

log = get_logger(__name__)


def database_from_env() -> Callable[[], Database]:
    """A factory of the one database handle of this instance, made on its first call."""
    lock = threading.Lock()
    made: list[Database] = []

    def get() -> Database:
        if not made:
            with lock:
                if not made:
                    made.append(mongo.database(config.require("MONGODB_URI"), config.require("MONGODB_DB")))
        return made[0]

    return get


def create_app(database: Callable[[], Database] | None = None) -> Flask:
    # /assets, not Flask's /static: functions-framework's own app answers /static/* before the function.
    app = Flask(__name__, static_url_path="/assets")
    app.json.sort_keys = False  # items keep the order of their fields
    app.extensions["telemetry_db"] = database or database_from_env()
    app.register_blueprint(api)
    app.register_blueprint(pages)

    @app.errorhandler(sessions.SessionSecretMissing)
    def no_session_secret(e: sessions.SessionSecretMissing):
        log.error("the dashboard cannot sign anyone in: %s", e)
        return errors.envelope(503, errors.UNAVAILABLE, "sign-in is not configured on this server")

    @app.errorhandler(errors.ApiError)
    def api_error(e: errors.ApiError):
        return errors.envelope(e.status, e.code, e.message, e.headers)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        code = {404: errors.NOT_FOUND, 405: errors.METHOD_NOT_ALLOWED}.get(e.code or 500, errors.BAD_REQUEST)
        headers = {k: v for k, v in e.get_headers() if k.lower() == "allow"}
        message = "no such path" if e.code == 404 else (e.description or e.name)
        return errors.envelope(e.code or 500, code, message, headers)

    @app.errorhandler(PyMongoError)
    def database_error(e: PyMongoError):
        log.exception("MongoDB call failed")
        return errors.envelope(
            503,
            errors.UNAVAILABLE,
            "the database did not answer; try again",
            {"Retry-After": str(errors.DATABASE_RETRY_AFTER_SECONDS)},
        )

    @app.errorhandler(Exception)
    def internal_error(e: Exception):
        log.exception("unhandled error")
        return errors.envelope(500, errors.INTERNAL, "internal error")

    return app


def serve(app: Flask, request: Request) -> Response:
    """The app's answer to a request functions-framework hands the function."""
    with app.request_context(request.environ):
        return app.full_dispatch_request()
