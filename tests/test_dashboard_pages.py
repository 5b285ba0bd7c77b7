"""The dashboard's pages without MongoDB: vendored libraries, headers, the sign-in form, the session cookie's signature.

The pages against the stack, in Chromium: tests/integration/test_dashboard_pages.py.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import altair as alt
import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from telemetry.dashboard import sessions, vendor
from telemetry.dashboard.app import create_app

STATIC = Path(__file__).resolve().parents[1] / "telemetry" / "dashboard" / "static"
SECRET = "s" * 40


class NoDatabase:
    """Stands for MongoDB where a test must show that it is not read: any use fails."""

    def __getitem__(self, name):
        raise AssertionError(f"MongoDB read ({name}) where none was expected")


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv("DASHBOARD_SESSION_SECRET", SECRET)
    return create_app(database=NoDatabase).test_client()


def test_vendored_libraries_are_the_pinned_files_with_their_licences():
    for path, sha256 in vendor.SCRIPTS.items():
        assert hashlib.sha256((STATIC / path).read_bytes()).hexdigest() == sha256, path
        assert (STATIC / path.replace(".min.js", ".LICENSE")).is_file(), path
    # The Vega-Lite the page loads is the one whose schema Altair writes the specs in.
    assert alt.SCHEMA_VERSION == f"v{vendor.VEGA_LITE}"
    assert f'"{vendor.VEGA_LITE}"' in (STATIC / f"vendor/vega-lite-{vendor.VEGA_LITE}.min.js").read_text()


def test_the_sign_in_page_is_a_post_form_with_a_token_under_a_strict_policy(client):
    answer = client.get("/sign-in")
    assert answer.status_code == 200
    csp = answer.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe" not in csp and "http" not in csp
    assert answer.headers["X-Frame-Options"] == "DENY" and answer.headers["Cache-Control"] == "no-store"
    page = answer.get_data(as_text=True)
    assert re.search(r'<form class="sign-in" method="post" action="/sign-in"', page)
    assert 'type="password"' in page and "<script" not in page and " style=" not in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{sessions.CSRF_COOKIE}={token};")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie


def test_a_post_without_its_token_is_refused_before_any_key_is_read(client):
    assert client.post("/sign-in", data={"key": "wpt_x"}).status_code == 403
    client.get("/sign-in")
    assert client.post("/sign-in", data={"key": "wpt_x", "csrf_token": "guess"}).status_code == 403
    assert client.post("/sign-out").status_code == 403


def test_the_api_without_key_or_session_is_still_a_401(client):
    assert client.get("/v1/projects/abc/sites").status_code == 401


def request_with_cookie(value: str) -> Request:
    return Request(EnvironBuilder(path="/", headers={"Cookie": f"{sessions.COOKIE}={value}"}).get_environ())


def test_the_session_cookie_is_signed_and_a_changed_one_is_no_session(monkeypatch):
    monkeypatch.setenv("DASHBOARD_SESSION_SECRET", SECRET)
    response = Response()
    sessions.start(response, {"_id": "0123456789ab", "project": "p" * 32})
    header = response.headers["Set-Cookie"]
    assert f"Max-Age={sessions.SESSION_HOURS * 3600}" in header
    value = header.split(";")[0].split("=", 1)[1]
    # The signature's first character, not its last: the last base64 character of a 32-byte
    # HMAC carries 4 padding bits, so some changes to it decode to the same signature.
    at = value.rindex(".") + 1
    forged = value[:at] + ("A" if value[at] != "A" else "B") + value[at + 1 :]
    for changed in (forged, value + "x", "", "garbage"):
        assert sessions.live_key(NoDatabase(), request_with_cookie(changed)) is None
    monkeypatch.setenv("DASHBOARD_SESSION_SECRET", "t" * 40)  # a new secret ends every session
    assert sessions.live_key(NoDatabase(), request_with_cookie(value)) is None


def test_without_a_secret_nobody_can_sign_in(monkeypatch):
    monkeypatch.delenv("DASHBOARD_SESSION_SECRET", raising=False)
    with pytest.raises(sessions.SessionSecretMissing):
        sessions.start(Response(), {"_id": "0123456789ab", "project": "p" * 32})
    client = create_app(database=NoDatabase).test_client()
    client.set_cookie(sessions.COOKIE, "anything")
    answer = client.get("/")
    assert answer.status_code == 503 and answer.get_json()["message"] == "sign-in is not configured on this server"
