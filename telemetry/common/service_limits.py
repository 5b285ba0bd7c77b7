"""The documented limits of the services the product calls, and how each service refuses.

One home for each number, shared by the local stack's HTTP proxy in front of
bqemulator and fake-gcs-server (telemetry/local/limits.py) and by the checks
that telemetry.common.cloud and telemetry.common.mongo add to their clients when
they talk to an emulator. The emulators enforce none of these; Google Cloud
and MongoDB do. Each refusal below returns the status, reason and message the
real service answers with, quoted from the source named beside it, so that the
client libraries raise what they raise in production. docs/local-stack.md
lists them in a table with the tests that show them.

Pure functions only: no I/O, no client libraries (the ingest functions' zip
carries common/ without them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# --- BigQuery (https://cloud.google.com/bigquery/quotas) -----------------------------------

# "Maximum HTTP request size: 10 MB", answered 400 "Request payload size exceeds the limit:
# 10485760 bytes." (googleapis/google-cloud-go#2855; googleapis/python-bigquery#1409).
BQ_MAX_REQUEST_BYTES = 10_485_760
# Streaming inserts: "Maximum row size: 5 MB" (googleapis/google-cloud-go#2855: "Maximum allowed
# row size exceeded. Allowed: 5242880 Row size: 5242894").
BQ_MAX_ROW_BYTES = 5_242_880
# Streaming inserts: "Maximum rows per request: 50,000 rows" (500 recommended).
BQ_MAX_ROWS_PER_REQUEST = 50_000
# "Maximum query length: 1,024K characters", answered "The query is too large. The maximum standard
# SQL query length is 1024.00K characters, ..." (airbytehq/airbyte#36303): 1024 x 1024 characters.
BQ_MAX_QUERY_CHARS = 1024 * 1024
# Load jobs: "Maximum number of source URIs in job configuration: 10,000 URIs", answered 400
# "Too many sources provided: 44603. Limit is 10000." (MobilityData/mobility-feed-api#1609).
BQ_MAX_LOAD_SOURCE_URIS = 10_000

# --- Cloud Storage (https://cloud.google.com/storage/docs/objects#naming) ----------------------

# "Object names can contain any sequence of valid Unicode characters, of length 1-1024 bytes when
# UTF-8 encoded. Object names cannot contain Carriage Return or Line Feed characters. Object names
# cannot start with .well-known/acme-challenge/. Object names cannot be named . or .."
GCS_MAX_OBJECT_NAME_BYTES = 1024
GCS_FORBIDDEN_NAMES = (".", "..")
GCS_FORBIDDEN_PREFIX = ".well-known/acme-challenge/"

# --- Pub/Sub (https://cloud.google.com/pubsub/quotas#resource_limits) --------------------------

# "Publish request: 10 MB (total size)"; the service answers InvalidArgument "The value for
# 10159812 is too large. You passed request_size in the request, but the maximum value is
# 10000000." (googleapis/google-cloud-python#5898; the service swaps the two placeholders).
PUBSUB_MAX_PUBLISH_REQUEST_BYTES = 10_000_000
# "Publish request: 1,000 messages": "The value for 1100 is too large. You passed message_count in
# the request, but the maximum value is 1000." (googleapis/google-cloud-java#4757).
PUBSUB_MAX_MESSAGES_PER_PUBLISH = 1000
# ModifyAckDeadline: "The minimum deadline you can specify is 0 seconds. The maximum deadline you
# can specify is 600 seconds"; refused with "Invalid ack deadline given (ack_deadline=715). The ack
# deadline must be between 0 and 600 seconds." (commercetools/fs2-queues#141).
PUBSUB_MAX_ACK_DEADLINE_SECONDS = 600
# Subscription.ack_deadline_seconds: "The minimum custom deadline you can specify is 10 seconds.
# ... If this parameter is 0, a default value of 10 seconds is used."
PUBSUB_MIN_SUBSCRIPTION_ACK_DEADLINE_SECONDS = 10
# A pull returns at most 1,000 messages, however many it asks for (PullRequest.max_messages: "The
# Pub/Sub system may return fewer than the number specified"; a larger number is accepted, not
# refused), and max_messages must be positive: "A required argument is missing in the request:
# (argument="max_messages")." (googleapis/google-cloud-java#997).
PUBSUB_MAX_MESSAGES_PER_PULL = 1000

# --- MongoDB (https://www.mongodb.com/docs/manual/reference/limits/) ----------------------------

# "The maximum BSON document size is 16 mebibytes." SecantusDB enforces it itself, with mongod's
# code (10334 BSONObjectTooLarge) and wording, on inserts and on documents an update grows.
MONGODB_MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
# "MongoDB supports no more than 100 levels of nesting for BSON documents. Each object or array
# adds a level." mongod itself refuses past its storage depth (maxBSONDepth 200 less 20 = 180) with
# code 15 (Overflow); the local stack holds the code to the documented 100, which is stricter.
MONGODB_MAX_NESTING_DEPTH = 100
MONGODB_OVERFLOW_CODE = 15


@dataclass(frozen=True)
class Refusal:
    """What the service answers instead of doing the request."""

    status: int
    message: str
    reason: str
    grpc_status: str = "INVALID_ARGUMENT"

    def json_body(self) -> bytes:
        """The JSON error body of Google's JSON APIs (the one the client libraries parse)."""
        error: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
        }
        if self.grpc_status:
            error["status"] = self.grpc_status
        return json.dumps({"error": error}).encode()


# --- BigQuery -------------------------------------------------------------------------------


def bq_request_too_large(length: int) -> Refusal | None:
    if length <= BQ_MAX_REQUEST_BYTES:
        return None
    return Refusal(400, f"Request payload size exceeds the limit: {BQ_MAX_REQUEST_BYTES} bytes.", "badRequest")


def bq_too_many_rows(count: int) -> Refusal | None:
    """The wording of googleapis/google-cloud-go and wepay/kafka-connect-bigquery#298 reports."""
    if count <= BQ_MAX_ROWS_PER_REQUEST:
        return None
    return Refusal(
        400, f"too many rows present in the request, limit: {BQ_MAX_ROWS_PER_REQUEST} row count: {count}.", "invalid"
    )


def bq_row_bytes(row: Any) -> int:
    """A streamed row's size as the proxy measures it: the UTF-8 bytes of its `json` object
    written compactly (no spaces). BigQuery does not document its own measure; this one is the
    row as sent, less the request's framing, and agrees with googleapis/google-cloud-go#2855 to
    within the field name and quotes (a one-field row of 5,242,880 characters: 5,242,8xx)."""
    payload = row.get("json", row) if isinstance(row, dict) else row
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


def bq_insert_errors(rows: list[Any], skip_invalid_rows: bool) -> tuple[list[dict], list[int]]:
    """BigQuery's answer to rows over the row limit: `insertErrors` for them and, unless
    skipInvalidRows, `stopped` for every other row of the request (none of which is
    inserted). Returns (insertErrors, indexes of the rows to insert after all)."""
    too_large = {}
    for index, row in enumerate(rows):
        size = bq_row_bytes(row)
        if size > BQ_MAX_ROW_BYTES:
            too_large[index] = size
    if not too_large:
        return [], list(range(len(rows)))
    errors = []
    for index in range(len(rows)):
        if index in too_large:
            message = f"Maximum allowed row size exceeded. Allowed: {BQ_MAX_ROW_BYTES} Row size: {too_large[index]}"
            errors.append({"index": index, "errors": [_insert_error("invalid", message)]})
        elif not skip_invalid_rows:
            errors.append({"index": index, "errors": [_insert_error("stopped", "")]})
    kept = [] if not skip_invalid_rows else [i for i in range(len(rows)) if i not in too_large]
    return errors, kept


def _insert_error(reason: str, message: str) -> dict:
    return {"reason": reason, "location": "", "debugInfo": "", "message": message}


def bq_job_refusal(job: Any) -> Refusal | None:
    """jobs.insert: query text over the query limit, or a load job with too many source URIs."""
    configuration = job.get("configuration") if isinstance(job, dict) else None
    if not isinstance(configuration, dict):
        return None
    query = configuration.get("query")
    if isinstance(query, dict):
        refusal = bq_query_too_long(query.get("query"))
        if refusal:
            return refusal
    load = configuration.get("load")
    if isinstance(load, dict) and isinstance(load.get("sourceUris"), list):
        count = len(load["sourceUris"])
        if count > BQ_MAX_LOAD_SOURCE_URIS:
            return Refusal(400, f"Too many sources provided: {count}. Limit is {BQ_MAX_LOAD_SOURCE_URIS}.", "invalid")
    return None


def bq_query_too_long(query: Any) -> Refusal | None:
    if not isinstance(query, str) or len(query) <= BQ_MAX_QUERY_CHARS:
        return None
    return Refusal(
        400,
        "The query is too large. The maximum standard SQL query length is 1024.00K characters, "
        "including comments and white space characters.",
        "invalid",
    )


# --- Cloud Storage ----------------------------------------------------------------------------


def gcs_name_refusal(name: str) -> Refusal | None:
    """The JSON API's answer to an object name it does not accept (no status field: Cloud
    Storage's JSON errors carry code, message and errors only)."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > GCS_MAX_OBJECT_NAME_BYTES:
        # hashicorp/vault#18248: "The maximum object length is 1024 characters, but got a name with
        # 1028 characters: '2022-12-06T20:18:13Z/xxxxx-xxxxx-data-backup/logical/d33a3e49-...'"
        return Refusal(
            400,
            f"The maximum object length is {GCS_MAX_OBJECT_NAME_BYTES} characters, but got a name with "
            f"{size} characters: '{name[:64]}...'",
            "invalid",
            grpc_status="",
        )
    if "\r" in name or "\n" in name:
        # googleapis/google-cloud-go#196: "Error 400: Disallowed unicode characters present in object name"
        return Refusal(400, "Disallowed unicode characters present in object name", "invalid", grpc_status="")
    if name in GCS_FORBIDDEN_NAMES or name.startswith(GCS_FORBIDDEN_PREFIX) or not name:
        # The service's generic answer to a field it refuses (googleapis/google-cloud-go#196:
        # "Error 400: Invalid Value, invalid"); no thread quotes one for these names.
        return Refusal(400, "Invalid Value", "invalid", grpc_status="")
    return None


# --- Pub/Sub ----------------------------------------------------------------------------------


def pubsub_publish_refusal(request_bytes: int, message_count: int) -> str | None:
    """The detail of the InvalidArgument the service answers a publish request with, or None."""
    if request_bytes > PUBSUB_MAX_PUBLISH_REQUEST_BYTES:
        return (
            f"The value for {request_bytes} is too large. You passed request_size in the request, "
            f"but the maximum value is {PUBSUB_MAX_PUBLISH_REQUEST_BYTES}."
        )
    if message_count > PUBSUB_MAX_MESSAGES_PER_PUBLISH:
        return (
            f"The value for {message_count} is too large. You passed message_count in the request, "
            f"but the maximum value is {PUBSUB_MAX_MESSAGES_PER_PUBLISH}."
        )
    return None


def pubsub_modify_ack_deadline_refusal(seconds: int) -> str | None:
    if 0 <= seconds <= PUBSUB_MAX_ACK_DEADLINE_SECONDS:
        return None
    return (
        f"Invalid ack deadline given (ack_deadline={seconds}). "
        f"The ack deadline must be between 0 and {PUBSUB_MAX_ACK_DEADLINE_SECONDS} seconds."
    )


def pubsub_subscription_ack_deadline_refusal(seconds: int) -> str | None:
    """0 means the default (10 s); otherwise 10..600. No public thread quotes the service's
    wording for a subscription; this is the streaming pull's, the same range's refusal
    ("stream_ack_deadline_seconds must be between 10 and 600 seconds", googleapis/google-cloud-go#10557)."""
    if seconds == 0 or PUBSUB_MIN_SUBSCRIPTION_ACK_DEADLINE_SECONDS <= seconds <= PUBSUB_MAX_ACK_DEADLINE_SECONDS:
        return None
    return (
        f"ack_deadline_seconds must be between {PUBSUB_MIN_SUBSCRIPTION_ACK_DEADLINE_SECONDS} "
        f"and {PUBSUB_MAX_ACK_DEADLINE_SECONDS} seconds"
    )


def pubsub_pull_refusal(max_messages: int) -> str | None:
    if max_messages > 0:
        return None
    return 'A required argument is missing in the request: (argument="max_messages").'


# --- MongoDB -----------------------------------------------------------------------------------


def mongo_nesting_depth(value: Any) -> int:
    """Levels of nesting as mongod counts them: the document itself is level 1, and each
    non-empty object or array inside adds one (empty ones do not count). Iterative, so a
    hostile depth cannot exhaust the stack."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if not children:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def mongo_depth_refusal(document: Any, what: str = "insert") -> str | None:
    """mongod's message for a document past the nesting limit (code 15, Overflow):
    inserts "cannot insert document because it exceeds N levels of nesting", updates
    "Document exceeds maximum nesting depth of N" (mongo's storage_validation.cpp)."""
    if mongo_nesting_depth(document) <= MONGODB_MAX_NESTING_DEPTH:
        return None
    if what == "insert":
        return f"cannot insert document because it exceeds {MONGODB_MAX_NESTING_DEPTH} levels of nesting"
    return f"Document exceeds maximum nesting depth of {MONGODB_MAX_NESTING_DEPTH}"
