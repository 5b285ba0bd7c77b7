"""Ingest when something other than the request is wrong: every answer stays JSON,
every request one log line, and nothing is answered 200 that was not stored.

The function runs in-process (functions-framework's own app for functions/track),
so its environment can be broken on purpose. Storage is either the local stack's
fake-gcs-server or a port where nothing listens (a real connection failure). The
OAuth token endpoint has no local stand-in: a tiny HTTP server in the test plays
it, and a service-account key made here points google-auth at it, so the real
google-auth code refreshes (and fails) as it would in production.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import functions_framework
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from telemetry.ingest import handler
from tests.conftest import closed_port

ROOT = Path(__file__).resolve().parents[2]
BODY = "hash=abc&url=https%3A%2F%2Fx.org"
FORM = "application/x-www-form-urlencoded"


def track_app():
    handler.reset_instance()
    app = functions_framework.create_app(target="track", source=str(ROOT / "functions" / "track" / "main.py"))
    return app.test_client()


def request_logs(caplog) -> list:
    return [r for r in caplog.records if r.getMessage() in ("request served", "request rejected", "request failed")]


@pytest.fixture
def track_app_without_storage(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("STORAGE_ATTEMPTS", "3")
    yield track_app()
    handler.reset_instance()


def test_storage_down_answers_503_with_retry_after(track_app_without_storage, caplog):
    response = track_app_without_storage.post("/", data=BODY, content_type=FORM)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert response.get_json()["error"] == "storage_unavailable"
    retries = [r for r in caplog.records if r.name == "urllib3.connectionpool" and "Retrying" in r.getMessage()]
    assert len(retries) == 2  # bounded: 3 tries in all, by urllib3's Retry
    [request_log] = request_logs(caplog)
    assert request_log.reason == "storage_unavailable" and request_log.status == 503


def test_bad_input_is_still_4xx_when_storage_is_down(track_app_without_storage):
    response = track_app_without_storage.post("/", data="url=x", content_type=FORM)
    assert response.status_code == 400


class _TokenEndpoint(http.server.BaseHTTPRequestHandler):
    status = 400
    calls = 0

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls += 1
        body = json.dumps({"error": "invalid_grant", "error_description": "refused by the test"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def service_account_key(tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # throwaway: the endpoint is the test's
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(params=["refresh_refused", "token_endpoint_unreachable"])
def track_app_whose_token_refresh_fails(request, monkeypatch, tmp_path, service_account_key):
    server = None
    if request.param == "refresh_refused":  # google.auth.exceptions.RefreshError
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        token_uri = f"http://127.0.0.1:{server.server_address[1]}/token"
    else:  # google.auth.exceptions.TransportError
        token_uri = f"http://127.0.0.1:{closed_port()}/token"
    key = {
        "type": "service_account",
        "project_id": "local-telemetry",
        "private_key_id": "test",
        "private_key": service_account_key,
        "client_email": "ingest@local-telemetry.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(key))
    # Real credentials: no emulator, so google.auth.default() reads the key. The refresh
    # fails before any request to Cloud Storage is made.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    yield track_app()
    handler.reset_instance()
    if server:
        server.shutdown()


def test_a_failed_token_refresh_is_a_json_503_with_one_log_line(track_app_whose_token_refresh_fails, caplog):
    response = track_app_whose_token_refresh_fails.post("/", data=BODY, content_type=FORM)
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Retry-After"] == "30"
    assert response.get_json()["error"] == "storage_unavailable"
    [request_log] = request_logs(caplog)
    assert request_log.status == 503 and request_log.reason == "storage_unavailable"


def test_settings_that_do_not_parse_are_a_json_500_with_a_logged_stack_trace(monkeypatch, caplog):
    monkeypatch.setenv("MAX_KEYS", "lots")
    client = track_app()
    try:
        response = client.post("/", data=BODY, content_type=FORM)
    finally:
        handler.reset_instance()
    assert response.status_code == 500
    assert response.headers["Retry-After"] == "30"
    assert response.get_json() == {
        "ok": False,
        "error": "internal_error",
        "message": "the ping could not be stored; retry later",
    }
    [trace] = [r for r in caplog.records if r.getMessage() == "request failed unexpectedly"]
    assert trace.exc_info and "MAX_KEYS must be an integer" in str(trace.exc_info[1])
    [request_log] = request_logs(caplog)
    assert request_log.status == 500 and request_log.reason == "internal_error"
