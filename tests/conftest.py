"""Every test: unit tests are fenced off every real service.

Tests under tests/integration/ are marked `integration` and talk to the local
stack (`make test` starts it). Every other test gets the services' variables
pointed at a closed port on the loopback (mozilla/gcp-ingestion's unit tests
do the same for Pub/Sub): a unit test that reaches for Cloud Storage,
BigQuery, Pub/Sub or MongoDB fails fast with a connection error instead of
touching the stack, or Google Cloud.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from hypothesis import settings

from telemetry.ingest import handler

INTEGRATION = Path(__file__).resolve().parent / "integration"

# Property-based tests (hypothesis): a few hundred examples each, no deadline (the
# machine is shared and timings are noisy). CI is derandomized, so a red CI reproduces;
# a developer's run draws new examples and keeps failing ones in .hypothesis/.
settings.register_profile("dev", max_examples=300, deadline=None)
settings.register_profile("ci", max_examples=300, deadline=None, derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def pytest_collection_modifyitems(items):
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def closed_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def fence_off_services(request, monkeypatch):
    if request.node.get_closest_marker("integration"):
        yield
        return
    nowhere = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{nowhere}")
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", f"http://{nowhere}")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", nowhere)
    monkeypatch.setenv("MONGODB_URI", f"mongodb://{nowhere}/?serverSelectionTimeoutMS=500")
    monkeypatch.delenv("INGEST_URL", raising=False)
    handler.reset_instance()
    yield
    handler.reset_instance()
