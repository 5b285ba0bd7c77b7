"""Fixtures for tests that run against the local stack (`make test` starts it)."""

from __future__ import annotations

import os

import pytest
from google.cloud import storage

from telemetry.common import cloud, mongo

STACK_VARIABLES = ("INGEST_URL", "STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "TRACKING_BUCKET", "GCP_PROJECT")


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    missing = [name for name in STACK_VARIABLES if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"the local stack's variables are not set ({', '.join(missing)}): run `make test`, "
            "or `make up` and `. .local/env` first"
        )
    return {name: os.environ[name] for name in STACK_VARIABLES}


@pytest.fixture(scope="session")
def bucket(stack_env) -> storage.Bucket:
    return cloud.storage_client(stack_env["GCP_PROJECT"]).bucket(stack_env["TRACKING_BUCKET"])


@pytest.fixture(scope="session")
def ingest_url(stack_env) -> str:
    return stack_env["INGEST_URL"]


@pytest.fixture(scope="module")
def db():
    """The stack's MongoDB database (tests keep to project hashes of their own)."""
    database = mongo.database(os.environ["MONGODB_URI"], os.environ["MONGODB_DB"])
    yield database
    database.client.close()


@pytest.fixture(scope="module")
def bq():
    return cloud.bigquery_client(os.environ["GCP_PROJECT"])
