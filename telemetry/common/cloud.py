"""The one seam between the local emulators and Google Cloud.

Every client of a Google service that the product makes comes from here. When
the service's `*_EMULATOR_HOST` variable is set (telemetry.common.config), the
client talks to that emulator with anonymous credentials; otherwise to the real
service with Application Default Credentials. Nothing else in the code knows
which of the two it is talking to.

With an emulator, the clients also refuse what the real service refuses and the
emulator does not: Pub/Sub's here (telemetry.common.pubsub_limits); BigQuery's
and Cloud Storage's in the local stack's proxy (telemetry/local/limits.py);
MongoDB's in telemetry.common.mongo. Clients of the real services are the
libraries' own, untouched.

The Google client libraries are imported inside the functions: the ingest
functions ship only google-auth and urllib3 (functions/requirements.txt), and
use `storage_credentials_and_endpoint` alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemetry.common import config

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud import bigquery, pubsub_v1, storage

STORAGE_API = "https://storage.googleapis.com"
STORAGE_SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)


def storage_credentials_and_endpoint() -> tuple[Credentials, str]:
    """Credentials and base URL of the Cloud Storage JSON API (or of fake-gcs-server)."""
    from google.auth.credentials import AnonymousCredentials

    emulator = config.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return AnonymousCredentials(), emulator.rstrip("/")
    import google.auth

    credentials, _ = google.auth.default(scopes=STORAGE_SCOPES)
    return credentials, STORAGE_API


def storage_client(project: str, connections: int | None = None) -> storage.Client:
    """`connections`: how many threads will share the client (requests keeps 10
    connections per host by default, and warns and reconnects beyond that)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    if config.get("STORAGE_EMULATOR_HOST"):  # the library reads the variable for its endpoint
        client = storage.Client(project=project, credentials=AnonymousCredentials())
    else:
        client = storage.Client(project=project)
    if connections:
        from requests.adapters import HTTPAdapter

        adapter = HTTPAdapter(pool_connections=connections, pool_maxsize=connections)
        for scheme in ("http://", "https://"):
            client._http.mount(scheme, adapter)  # the library's documented session; no public setter
    return client


def bigquery_client(project: str) -> bigquery.Client:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    emulator = config.get("BIGQUERY_EMULATOR_HOST")
    if emulator:
        return bigquery.Client(
            project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=emulator)
        )
    return bigquery.Client(project=project)


def pubsub_subscriber() -> pubsub_v1.SubscriberClient:
    """With PUBSUB_EMULATOR_HOST set, a client of the emulator that refuses what Pub/Sub
    refuses (telemetry.common.pubsub_limits); otherwise the library's own client."""
    from google.cloud import pubsub_v1

    emulator = config.get("PUBSUB_EMULATOR_HOST")
    if emulator:
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        from telemetry.common import pubsub_limits

        return pubsub_v1.SubscriberClient(
            transport=SubscriberGrpcTransport(channel=pubsub_limits.emulator_channel(emulator))
        )
    return pubsub_v1.SubscriberClient()


def pubsub_publisher() -> pubsub_v1.PublisherClient:
    """As pubsub_subscriber."""
    from google.cloud import pubsub_v1

    emulator = config.get("PUBSUB_EMULATOR_HOST")
    if emulator:
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        from telemetry.common import pubsub_limits

        return pubsub_v1.PublisherClient(
            transport=PublisherGrpcTransport(channel=pubsub_limits.emulator_channel(emulator))
        )
    return pubsub_v1.PublisherClient()


def secret_manager_client():
    """The Secret Manager client (telemetry.common.secrets); no emulator exists, so always
    the real service, with Application Default Credentials."""
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient()


def pubsub_call_bounds(seconds: float) -> dict:
    """`retry` and `timeout` for one Pub/Sub call, bounded by `seconds` in all: each try
    waits at most `seconds`, and no try starts after `seconds` (so a call that never gets
    an answer, e.g. from a frozen server, ends within about twice the bound). Retried:
    what the library itself retries (unavailable, deadline exceeded and the like)."""
    from google.api_core import exceptions, retry

    predicate = retry.if_exception_type(
        exceptions.Aborted,
        exceptions.DeadlineExceeded,
        exceptions.InternalServerError,
        exceptions.ResourceExhausted,
        exceptions.ServiceUnavailable,
        exceptions.Unknown,
    )
    return {
        "retry": retry.Retry(predicate=predicate, initial=0.1, maximum=min(10.0, seconds), timeout=seconds),
        "timeout": seconds,
    }


# The BigQuery and Cloud Storage call policy: one bound, BIGQUERY_TIMEOUT_SECONDS (the
# pipelines' --bigquery_timeout_seconds), for every call the pipelines, the analytics job,
# the audit and the erasure make. Unbounded, the libraries' own retries run for up to
# 600 s (2400 s for a failed query job), each HTTP request and each wait for a job
# without a timeout, so a server that stops answering would hang the caller. Here a
# call with its retries, or the wait for a job, lasts at most about `seconds` (twice,
# if a try starts late).


def bigquery_call_bounds(seconds: float) -> dict:
    """`retry` and `timeout` for one BigQuery API call, or for the wait for a load job:
    the library's own retry (what it deems transient), bounded by `seconds`."""
    from google.cloud import bigquery

    return {"retry": bigquery.DEFAULT_RETRY.with_timeout(seconds), "timeout": seconds}


def bigquery_query_bounds(seconds: float) -> dict:
    """As bigquery_call_bounds, for a query job and the wait for its result: a job that
    failed for a retryable reason is started again (`job_retry`), also within `seconds`."""
    from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

    return {**bigquery_call_bounds(seconds), "job_retry": DEFAULT_JOB_RETRY.with_timeout(seconds)}


def bigquery_job_timeout_ms(seconds: float) -> int:
    """A query job's `job_timeout_ms`: BigQuery stops the job on the server this long
    after its creation (best effort; telemetry.pipelines.run_lock.ttl_seconds)."""
    return int(seconds * 1000)


def storage_call_bounds(seconds: float) -> dict:
    """`retry` and `timeout` for one Cloud Storage call: the library's own retry (which
    retries a write only where it is idempotent), bounded by `seconds`."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return {"retry": DEFAULT_RETRY.with_timeout(seconds), "timeout": seconds}
