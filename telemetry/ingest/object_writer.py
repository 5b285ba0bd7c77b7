"""Writing stored pings to Cloud Storage, with bounded retries.

Invariant: `ObjectWriter.put` returns only once the object exists in the
bucket; otherwise it raises `StorageUnavailable`. Objects are written with
`ifGenerationMatch=0`, so a retry can never overwrite, and a 412 after a retry
means an earlier try did land.

Why not `google.cloud.storage`: each ping is one small object written once,
which is one documented JSON API request (a media upload). `Blob.upload_from_string`
sends that same request through requests and google-resumable-media, and that
stack cost more CPU per ping than the rest of the function together (measured
with `make bench-ingest` and py-spy), on the product's hottest path. Here the
request goes through google-auth's own urllib3 transport, which still handles
credentials and token refresh, over one urllib3 connection pool to the one
host (not a PoolManager: per upload, that spent a third of urllib3's CPU
parsing the URL and finding the pool again), and retries follow urllib3's
`Retry`, the same policy object the mail client uses.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import google.auth.exceptions
import urllib3
from google.auth.transport.urllib3 import AuthorizedHttp
from urllib3.util.retry import Retry

from telemetry.common import cloud
from telemetry.common.logs import get_logger
from telemetry.common.stored_ping import CONTENT_TYPE
from telemetry.ingest.settings import IngestSettings

log = get_logger("telemetry.ingest")

# Upper bound on concurrent uploads from one instance (gunicorn threads, or Cloud
# Functions' per-instance concurrency); urllib3 never opens more than this.
CONNECTION_POOL_SIZE = 64

# Answers worth another try: the service was busy or failed inside. Anything
# else (403 permission, 404 no such bucket) is a deployment fault: retrying
# only adds latency, so it fails at once.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# Failures after which the ping may still be stored by a later try, so the client
# is told 503 with Retry-After. urllib3's Retry has already spent the tries by then.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    # Connection refused or reset, timeouts, retries exhausted (MaxRetryError).
    urllib3.exceptions.HTTPError,
    # Socket-level errors urllib3 does not wrap.
    OSError,
    # The token endpoint or metadata server could not be reached.
    google.auth.exceptions.TransportError,
    # The token endpoint refused a refresh (it answers 5xx or 4xx while it has trouble).
    google.auth.exceptions.RefreshError,
)


class StorageUnavailable(RuntimeError):
    """The object could not be written; the caller must not report success."""


def retry_policy(attempts: int) -> Retry:
    """`attempts` tries in all, on connection errors and on TRANSIENT_STATUSES, with
    jittered exponential backoff (0.1 s, 0.2 s, ... plus up to 0.1 s). POST is safe
    to retry here: `ifGenerationMatch=0` makes a repeated upload a no-op 412."""
    return Retry(
        total=attempts - 1,
        status_forcelist=TRANSIENT_STATUSES,
        allowed_methods=None,
        backoff_factor=0.1,
        backoff_jitter=0.1,
        raise_on_status=False,
        respect_retry_after_header=False,
    )


class ObjectWriter:
    """One bucket and one connection pool, shared by every request of an instance (thread-safe)."""

    def __init__(self, settings: IngestSettings):
        credentials, endpoint = cloud.storage_credentials_and_endpoint()
        pool = urllib3.connection_from_url(endpoint, maxsize=CONNECTION_POOL_SIZE, block=False)
        self._http = AuthorizedHttp(credentials, http=pool)
        # A path: the pool is the endpoint's.
        self._upload_path = f"/upload/storage/v1/b/{quote(settings.bucket, safe='')}/o"
        self._timeout = urllib3.Timeout(total=settings.storage_timeout_seconds)
        self._retries = retry_policy(settings.storage_attempts)

    def put(self, name: str, data: bytes) -> None:
        query = urlencode({"uploadType": "media", "name": name, "ifGenerationMatch": "0"})
        try:
            response = self._http.urlopen(
                "POST",
                f"{self._upload_path}?{query}",
                body=data,
                headers={"Content-Type": CONTENT_TYPE},
                timeout=self._timeout,
                retries=self._retries,
            )
        except TRANSIENT_ERRORS as e:
            log.warning("storage write failed", extra={"object": name, "error": repr(e)})
            raise StorageUnavailable(f"object {name} not written: {e!r}") from e
        status = response.status
        if status < 300:
            return
        retried = bool(response.retries and response.retries.history)
        if status == 412 and retried:
            return  # an earlier try wrote it and its answer was lost
        detail = f"HTTP {status}: {response.data[:300]!r}"
        log.warning("storage write failed", extra={"object": name, "error": detail, "retried": retried})
        raise StorageUnavailable(f"object {name} not written: {detail}")
