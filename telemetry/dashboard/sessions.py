"""Sign-in sessions of the dashboard's page: a signed cookie, checked against the key on every request.

Why a signed cookie and no session store: the dashboard reads MongoDB through
a read-only database user (terraform/dashboard.tf) and writes nothing, so a
session cannot be a document. The cookie carries the key's id (`keys.py`: not
secret, the `api_keys` document's `_id`), its project and the time it was
signed; itsdangerous (Flask's own signing library) signs it with HMAC-SHA256
under DASHBOARD_SESSION_SECRET. Each request then reads the key's document by
that id, so revoking the key (`telemetry-admin key revoke`) ends every session
made with it at the next request; a session also ends SESSION_HOURS after the
sign-in, and at sign-out (the cookie is cleared). Changing the secret ends all.

The key itself is never in the cookie, a URL or a log: it is posted once, in
the sign-in form's body.

The cookie is `__Host-` prefixed (the browser takes it only Secure, from a
secure origin, for Path=/ and no Domain), HttpOnly (the page's script cannot
read it) and SameSite=Strict (no other site's page or link makes the browser
send it). Forms also carry a CSRF token (double submit: a random value in a
second `__Host-` cookie and in the form, compared in constant time), and a
POST whose Origin is another's is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pymongo.database import Database

from telemetry.common import config
from telemetry.dashboard import keys

COOKIE = "__Host-dashboard-session"
CSRF_COOKIE = "__Host-dashboard-csrf"
CSRF_FIELD = "csrf_token"
SESSION_HOURS = 8
MIN_SECRET_CHARS = 32
SALT = "telemetry-dashboard-session"


class SessionSecretMissing(RuntimeError):
    """DASHBOARD_SESSION_SECRET is unset or too short: nobody can sign in."""


@dataclass(frozen=True)
class Session:
    key_id: str
    project: str


def _serializer(env: dict[str, str] | None = None) -> URLSafeTimedSerializer:
    secret = config.get("DASHBOARD_SESSION_SECRET", env)
    if not secret or len(secret) < MIN_SECRET_CHARS:
        raise SessionSecretMissing(
            f"DASHBOARD_SESSION_SECRET must be set to a random value of at least {MIN_SECRET_CHARS} characters"
        )
    return URLSafeTimedSerializer(secret, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})


def _cookie_options() -> dict[str, Any]:
    return {"secure": True, "httponly": True, "samesite": "Strict", "path": "/"}


def start(response: Response, key: dict[str, Any]) -> None:
    """Set the session cookie for this live key's document (`keys.authenticate`)."""
    value = _serializer().dumps({"k": key["_id"], "p": key["project"]})
    response.set_cookie(COOKIE, value, max_age=SESSION_HOURS * 3600, **_cookie_options())


def end(response: Response) -> None:
    response.delete_cookie(COOKIE, **_cookie_options())


def live_key(db: Database, request: Request) -> dict[str, Any] | None:
    """The key document of the request's session, if it has one that is signed, unexpired and not revoked."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    try:
        payload = _serializer().loads(value, max_age=SESSION_HOURS * 3600)
    except BadSignature:  # also SignatureExpired, its subclass
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("k"), str) or not isinstance(payload.get("p"), str):
        return None
    key = db[keys.COLLECTION].find_one({"_id": payload["k"]}, {"sha256": 0})
    if key is None or key.get("revoked_at") is not None or key.get("project") != payload["p"]:
        return None
    return key


def session_of(db: Database, request: Request) -> Session | None:
    key = live_key(db, request)
    return None if key is None else Session(key["_id"], key["project"])


# --- CSRF --------------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The request's CSRF value (from its cookie), or a new one; `keep_csrf` sets the cookie on the answer."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)


def keep_csrf(response: Response, token: str) -> None:
    response.set_cookie(CSRF_COOKIE, token, max_age=SESSION_HOURS * 3600, **_cookie_options())


def csrf_ok(request: Request) -> bool:
    """A POST is the page's own: the form's token matches its cookie, and its Origin and
    Sec-Fetch-Site, where the browser sends them, say it came from this site."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    # The host alone: behind Cloud Run's TLS front end the request's own scheme reads http.
    if origin is not None and urlsplit(origin).netloc != request.host:
        return False
    cookie = request.cookies.get(CSRF_COOKIE, "")
    form = request.form.get(CSRF_FIELD, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode("utf-8"), form.encode("utf-8"))
