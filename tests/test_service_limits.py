"""The pure parts of the local stack's limits: what each service refuses, and how the
proxy and the seams find what to check (the refusals themselves are shown against the
running stack in tests/integration/test_limits.py)."""

from __future__ import annotations

import json

import pytest
from google.pubsub_v1 import types as pubsub_types
from pymongo import InsertOne, ReplaceOne, UpdateMany, UpdateOne

from telemetry.common import mongo_limits, pubsub_limits, service_limits
from telemetry.common.service_limits import MONGODB_MAX_NESTING_DEPTH as DEPTH
from telemetry.local import limits


def test_bigquery_request_bytes():
    assert service_limits.bq_request_too_large(10_485_760) is None
    refusal = service_limits.bq_request_too_large(10_485_761)
    assert (refusal.status, refusal.reason) == (400, "badRequest")
    assert json.loads(refusal.json_body()) == {
        "error": {
            "code": 400,
            "message": "Request payload size exceeds the limit: 10485760 bytes.",
            "errors": [
                {
                    "message": "Request payload size exceeds the limit: 10485760 bytes.",
                    "domain": "global",
                    "reason": "badRequest",
                }
            ],
            "status": "INVALID_ARGUMENT",
        }
    }


def test_bigquery_row_bytes_are_the_compact_utf8_json_of_the_row():
    assert service_limits.bq_row_bytes({"insertId": "x" * 99, "json": {"a": "é"}}) == len('{"a":"é"}'.encode())


def test_bigquery_rows_over_the_row_limit_stop_the_others():
    small, large = {"json": {"s": "x"}}, {"json": {"s": "x" * service_limits.BQ_MAX_ROW_BYTES}}
    errors, kept = service_limits.bq_insert_errors([small, large, small], skip_invalid_rows=False)
    assert [(e["index"], e["errors"][0]["reason"]) for e in errors] == [(0, "stopped"), (1, "invalid"), (2, "stopped")]
    assert errors[1]["errors"][0]["message"] == (
        f"Maximum allowed row size exceeded. Allowed: 5242880 Row size: {service_limits.BQ_MAX_ROW_BYTES + 8}"
    )
    assert kept == []
    errors, kept = service_limits.bq_insert_errors([small, large, small], skip_invalid_rows=True)
    assert [e["index"] for e in errors] == [1] and kept == [0, 2]
    assert service_limits.bq_insert_errors([small, small], skip_invalid_rows=False) == ([], [0, 1])


QUERY_CHARS = 1024 * 1024


def _query(chars: int) -> dict:
    return {"query": "x" * chars}


def _job(query_chars: int = 0, uris: int = 0) -> dict:
    if query_chars:
        return {"configuration": {"query": _query(query_chars)}}
    return {"configuration": {"load": {"sourceUris": ["gs://b/o"] * uris}}}


@pytest.mark.parametrize(
    ("path", "over", "at_limit", "message"),
    [
        ("/bigquery/v2/projects/p/queries", _query(QUERY_CHARS + 1), _query(QUERY_CHARS), "The query is too large."),
        ("/bigquery/v2/projects/p/jobs", _job(QUERY_CHARS + 1), _job(QUERY_CHARS), "The query is too large."),
        ("/bigquery/v2/projects/p/jobs", _job(uris=10_001), _job(uris=10_000), "Too many sources provided: 10001."),
        (
            "/bigquery/v2/projects/p/datasets/d/tables/t/insertAll",
            {"rows": [{}] * 50_001},
            {"rows": [{}] * 50_000},
            "too many rows",
        ),
    ],
)
def test_bigquery_refusals_and_their_limits(path, over, at_limit, message):
    refusal, _ = limits.bigquery_refusal("POST", path, json.dumps(over).encode())
    assert refusal.status == 400 and refusal.message.startswith(message)
    assert limits.bigquery_refusal("POST", path, json.dumps(at_limit).encode())[0] is None


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("a" * 1024, False),
        ("é" * 512, False),
        ("a" * 1025, True),
        ("é" * 512 + "a", True),
        ("a\nb", True),
        ("a\rb", True),
        (".", True),
        ("..", True),
        ("./a", False),
        (".well-known/acme-challenge/x", True),
        (".well-known/other", False),
    ],
)
def test_cloud_storage_object_names(name, refused):
    assert (service_limits.gcs_name_refusal(name) is not None) is refused


def test_cloud_storage_names_are_found_in_paths_queries_and_upload_metadata():
    assert limits.storage_object_names("/storage/v1/b/bkt/o/a%2Fb%0A", {}) == ["a/b\n"]
    assert limits.storage_object_names("/download/storage/v1/b/bkt/o/x.json", {"alt": ["media"]}) == ["x.json"]
    assert limits.storage_object_names("/upload/storage/v1/b/bkt/o", {"name": ["n"]}) == ["n"]
    assert limits.storage_object_names("/storage/v1/b/bkt/o/src/rewriteTo/b/b2/o/dst", {}) == ["src", "dst"]
    assert limits.storage_object_names("/storage/v1/b/bkt/o", {"prefix": ["p"]}) == []
    body = (
        b'--==0==\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{"name": "a/b.json"}\r\n'
        b"--==0==\r\ncontent-type: application/json\r\n\r\n{}\r\n--==0==--"
    )
    assert limits.multipart_metadata('multipart/related; boundary="==0=="', body) == {"name": "a/b.json"}
    assert limits.multipart_metadata("multipart/related", body) is None
    assert limits.storage_reads_metadata("POST", "/upload/storage/v1/b/b/o", {"uploadType": ["resumable"]})
    assert not limits.storage_reads_metadata("POST", "/upload/storage/v1/b/b/o", {"uploadType": ["media"]})


def test_pubsub_refusals_and_the_pull_cap():
    publish = pubsub_types.PublishRequest(topic="t", messages=[{"data": b"x" * 10_000_000}])
    assert "You passed request_size" in pubsub_limits.refusal(pubsub_limits.PUBLISH, publish)
    many = pubsub_types.PublishRequest(topic="t", messages=[{"data": b"x"}] * 1001)
    assert "You passed message_count" in pubsub_limits.refusal(pubsub_limits.PUBLISH, many)
    assert (
        pubsub_limits.refusal(pubsub_limits.PUBLISH, pubsub_types.PublishRequest(topic="t", messages=[{}] * 1000))
        is None
    )
    for seconds, refused in ((-1, True), (0, False), (600, False), (601, True)):
        request = pubsub_types.ModifyAckDeadlineRequest(ack_ids=["a"], ack_deadline_seconds=seconds)
        assert (pubsub_limits.refusal(pubsub_limits.MODIFY_ACK_DEADLINE, request) is not None) is refused
    for seconds, refused in ((0, False), (9, True), (10, False), (600, False), (601, True)):
        request = pubsub_types.Subscription(name="s", topic="t", ack_deadline_seconds=seconds)
        assert (pubsub_limits.refusal(pubsub_limits.CREATE_SUBSCRIPTION, request) is not None) is refused
    update = pubsub_types.UpdateSubscriptionRequest(
        subscription={"ack_deadline_seconds": 700}, update_mask={"paths": ["ack_deadline_seconds"]}
    )
    assert pubsub_limits.refusal(pubsub_limits.UPDATE_SUBSCRIPTION, update) is not None
    pull = pubsub_types.PullRequest(subscription="s", max_messages=5000)
    capped = pubsub_limits.capped_pull(pull)
    assert capped.max_messages == 1000 and pull.max_messages == 5000  # the caller's request is not changed
    assert pubsub_limits.capped_pull(pubsub_types.PullRequest(max_messages=10)).max_messages == 10
    assert pubsub_limits.refusal(pubsub_limits.PULL, pubsub_types.PullRequest(max_messages=0)) is not None


def _nested(depth: int) -> dict:
    document: dict = {"leaf": 1}
    for _ in range(depth - 1):
        document = {"n": document}
    return document


def test_mongodb_nesting_is_counted_as_mongod_counts_it():
    assert service_limits.mongo_nesting_depth({"a": 1}) == 1
    assert service_limits.mongo_nesting_depth({"a": {}}) == 1  # empty objects and arrays do not count
    assert service_limits.mongo_nesting_depth({"a": {"b": 1}}) == 2
    assert service_limits.mongo_nesting_depth({"a": [[1]]}) == 3
    assert service_limits.mongo_nesting_depth(_nested(100_000)) == 100_000  # no recursion


def test_mongodb_update_depth_from_the_update_itself():
    assert mongo_limits.update_refusal({"$set": {"a": _nested(DEPTH - 1)}}) is None
    assert mongo_limits.update_refusal({"$set": {"a": _nested(DEPTH)}}) is not None
    assert mongo_limits.update_refusal({"$set": {"a.b": _nested(DEPTH - 1)}}) is not None  # the path adds a level
    assert mongo_limits.update_refusal({"$push": {"a": _nested(DEPTH - 1)}}) is not None  # in an array: one more
    assert mongo_limits.update_refusal({"$push": {"a": {"$each": [_nested(DEPTH - 2)]}}}) is None
    pipeline = [{"$set": {"a": {"$literal": _nested(DEPTH - 1)}}}]
    assert mongo_limits.update_refusal(pipeline) is None
    assert mongo_limits.update_refusal([{"$set": {"a": {"$literal": _nested(DEPTH)}}}]) is not None
    assert mongo_limits.operation_refusal(InsertOne(_nested(DEPTH + 1))).startswith("cannot insert document")
    assert mongo_limits.operation_refusal(ReplaceOne({}, _nested(DEPTH + 1))).startswith("Document exceeds")
    assert mongo_limits.operation_refusal(UpdateOne({}, {"$set": {"x": _nested(DEPTH)}})) is not None
    assert mongo_limits.operation_refusal(UpdateMany({}, {"$set": {"x": 1}})) is None


def test_product_code_never_streams_into_bigquery():
    """No `insertAll` (insert_rows, insert_rows_json) in the product: its request and row
    limits, new-table 404s and streaming buffer cannot be reached (warehouse.py: load jobs)."""
    import ast
    from pathlib import Path

    import telemetry

    calls = []
    for path in sorted(Path(telemetry.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("insert_rows", "insert_rows_json", "insertAll"):
                calls.append(f"{path.name}:{node.lineno}")
    assert calls == []
