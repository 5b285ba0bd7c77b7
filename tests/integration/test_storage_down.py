"""When Cloud Storage cannot be reached, the answer is 503, never 200.

The function runs in-process (functions-framework's own app for functions/track)
with STORAGE_EMULATOR_HOST pointing at a port where nothing listens: a real
connection failure, no mock.
"""

from __future__ import annotations

import socket
from pathlib import Path

import functions_framework
import pytest

from telemetry import ingest

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends


@pytest.fixture
def track_app_without_storage(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("STORAGE_ATTEMPTS", "3")
    ingest.reset_instance()
    app = functions_framework.create_app(target="track", source=str(ROOT / "functions" / "track" / "main.py"))
    yield app.test_client()
    ingest.reset_instance()


def test_storage_down_answers_503_with_retry_after(track_app_without_storage, caplog):
    response = track_app_without_storage.post(
        "/",
        data="hash=abc&url=https%3A%2F%2Fx.org",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert response.get_json()["error"] == "storage_unavailable"
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("storage write failed, will retry") == 2  # bounded: 3 tries in all
    assert messages.count("storage write failed") == 1
    [request_log] = [record for record in caplog.records if record.getMessage() == "request failed"]
    assert request_log.reason == "storage_unavailable" and request_log.status == 503


def test_bad_input_is_still_4xx_when_storage_is_down(track_app_without_storage):
    response = track_app_without_storage.post("/", data="url=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
