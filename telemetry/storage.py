"""Writing ping objects to Cloud Storage, with bounded retries.

Invariant: `PingStore.put` returns only once the object exists in the bucket;
otherwise it raises `StorageUnavailable`. Objects are written with
`ifGenerationMatch=0`, so a retry can never overwrite, and a 412 on a retry
means an earlier try did land.

Why not `google.cloud.storage`: each ping is one small object written once,
which is one documented JSON API request (a media upload). `Blob.upload_from_string`
sends that same request through requests and google-resumable-media, and that
stack cost more CPU per ping than the rest of the function together (measured
with `make bench-ingest` and py-spy), on the product's hottest path. Here the
request goes through google-auth's own urllib3 transport, which still handles
credentials and token refresh, and the function's cold start skips importing
the storage library.
"""

from __future__ import annotations

import random
import time
from urllib.parse import quote, urlencode

import google.auth
import urllib3
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.urllib3 import AuthorizedHttp

from telemetry import config
from telemetry.config import IngestSettings
from telemetry.logs import get_logger

log = get_logger("telemetry.storage")

PRODUCTION_ENDPOINT = "https://storage.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)

# Upper bound on concurrent uploads from one instance (gunicorn threads, or Cloud
# Functions' per-instance concurrency); urllib3 never opens more than this.
CONNECTION_POOL_SIZE = 64
# Objects per page when a reader lists the bucket: Cloud Storage's default, stated
# because fake-gcs-server's is unbounded (a 17k-object hour came back as one 20 MB page).
LIST_PAGE_SIZE = 1000


class StorageUnavailable(RuntimeError):
    """The object could not be written; the caller must not report success."""


class TransientStorageError(RuntimeError):
    """A try failed in a way another try may fix."""


class ObjectExists(RuntimeError):
    """412: an object of that name is already there."""


# Failures worth another try: the network hiccupped, or the service answered
# 408, 429 or 5xx. Anything else (403 permission, 404 no such bucket) is a
# deployment fault: retrying only adds latency, so it fails at once.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError, TransientStorageError)
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def backoff_seconds(attempt: int) -> float:
    """Full-jitter exponential backoff: up to 0.1 s after try 1, 0.2 s after try 2..."""
    return random.uniform(0, 0.1 * (2 ** (attempt - 1)))


def _http_and_endpoint() -> tuple[AuthorizedHttp, str]:
    """An authorized connection pool to the real service, or to fake-gcs-server
    when STORAGE_EMULATOR_HOST is set (anonymous, as the emulator expects)."""
    emulator = config.get("STORAGE_EMULATOR_HOST")
    if emulator:
        credentials, endpoint = AnonymousCredentials(), emulator.rstrip("/")
    else:
        credentials, _ = google.auth.default(scopes=SCOPES)
        endpoint = PRODUCTION_ENDPOINT
    pool = urllib3.PoolManager(maxsize=CONNECTION_POOL_SIZE, block=False, retries=False)
    return AuthorizedHttp(credentials, http=pool), endpoint


class PingStore:
    """One bucket and one connection pool, shared by every request of an instance (thread-safe)."""

    def __init__(self, settings: IngestSettings):
        self._settings = settings
        self._http, endpoint = _http_and_endpoint()
        self._upload_url = f"{endpoint}/upload/storage/v1/b/{quote(settings.bucket, safe='')}/o"
        self._timeout = urllib3.Timeout(total=settings.storage_timeout_seconds)

    def _upload(self, name: str, data: bytes) -> None:
        query = urlencode({"uploadType": "media", "name": name, "ifGenerationMatch": "0"})
        response = self._http.urlopen(
            "POST",
            f"{self._upload_url}?{query}",
            body=data,
            headers={"Content-Type": "application/json"},
            timeout=self._timeout,
            retries=False,
        )
        status = response.status
        if status < 300:
            return
        detail = f"HTTP {status}: {response.data[:300]!r}"
        if status == 412:
            raise ObjectExists(detail)
        if status in TRANSIENT_STATUSES:
            raise TransientStorageError(detail)
        raise StorageUnavailable(f"object {name} not written: {detail}")

    def put(self, name: str, data: bytes) -> None:
        attempts = self._settings.storage_attempts
        for attempt in range(1, attempts + 1):
            try:
                self._upload(name, data)
                return
            except ObjectExists as e:
                if attempt > 1:
                    return  # an earlier try wrote it and its answer was lost
                raise StorageUnavailable(f"object {name} already exists") from e
            except TRANSIENT_ERRORS as e:
                log.warning(
                    "storage write failed, will retry" if attempt < attempts else "storage write failed",
                    extra={"object": name, "attempt": attempt, "error": repr(e)},
                )
                if attempt == attempts:
                    raise StorageUnavailable(f"object {name} not written after {attempts} tries: {e!r}") from e
                time.sleep(backoff_seconds(attempt))
