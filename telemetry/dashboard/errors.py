"""The API's error answers: `{"ok": false, "error": CODE, "message": TEXT}`, every one.

CODE is a stable machine name; TEXT says what to fix and never echoes more
than a short excerpt of what the client sent.
"""

from __future__ import annotations

from flask import Response, jsonify

BAD_REQUEST = "bad_request"
INVALID_LIMIT = "invalid_limit"
INVALID_CURSOR = "invalid_cursor"
INVALID_PARAMETER = "invalid_parameter"
UNAUTHORIZED = "unauthorized"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
INTERNAL = "internal_error"
UNAVAILABLE = "unavailable"

# Retry-After of a 503 when MongoDB did not answer (a failover or a timeout passes in seconds).
DATABASE_RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """An answer other than 200, raised anywhere below a route."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def envelope(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"ok": False, "error": code, "message": message})
    response.status_code = status
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


def unauthorized(message: str) -> ApiError:
    # RFC 6750 section 3: a 401 names the scheme the client must use.
    return ApiError(401, UNAUTHORIZED, message, {"WWW-Authenticate": 'Bearer realm="telemetry"'})


def project_not_found() -> ApiError:
    """The one answer for a project that does not exist and for one the key does not open."""
    return ApiError(404, NOT_FOUND, "no such project")
