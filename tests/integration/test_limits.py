"""The local stack refuses what Google Cloud and MongoDB refuse, as they refuse it.

Each documented limit the product could reach is tried through the client
library the product uses, against the running stack: one step past the limit is
refused with the real service's status, reason and message (the sources are in
telemetry/common/service_limits.py), and the limit itself is accepted.
BigQuery and Cloud Storage answer through the stack's proxy
(telemetry/local/limits.py), Pub/Sub through telemetry.common.cloud's client,
MongoDB through telemetry.common.mongo's.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
import requests
from google.api_core.exceptions import BadRequest, InvalidArgument
from google.cloud import bigquery
from google.cloud.pubsub_v1.publisher.exceptions import MessageTooLargeError
from google.pubsub_v1.services.publisher.client import PublisherClient as PublishRpc
from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, WriteError

from telemetry.common import cloud, mongo, service_limits
from telemetry.common.service_limits import (
    BQ_MAX_LOAD_SOURCE_URIS,
    BQ_MAX_QUERY_CHARS,
    BQ_MAX_REQUEST_BYTES,
    BQ_MAX_ROW_BYTES,
    BQ_MAX_ROWS_PER_REQUEST,
    GCS_MAX_OBJECT_NAME_BYTES,
    MONGODB_MAX_DOCUMENT_BYTES,
    MONGODB_MAX_NESTING_DEPTH,
    PUBSUB_MAX_PUBLISH_REQUEST_BYTES,
)

RUN = uuid.uuid4().hex[:8]


# --- BigQuery: the proxy ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def table(bq) -> str:
    """A table of this module's own, in a dataset of its own (dropped at the end)."""
    dataset = f"limits_{RUN}"
    bq.create_dataset(dataset)
    table_id = f"{bq.project}.{dataset}.rows"
    schema = [bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("s", "STRING")]
    bq.create_table(bigquery.Table(table_id, schema=schema))
    yield table_id
    bq.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def _count(bq, table_id: str, where: str = "TRUE") -> int:
    [row] = bq.query(f"SELECT COUNT(*) AS n FROM `{table_id}` WHERE {where}").result()
    return row.n


def _row_of(size: int, row_id: int) -> dict:
    """A row whose size as the proxy measures it (service_limits.bq_row_bytes) is `size`."""
    row = {"id": row_id, "s": ""}
    row["s"] = "x" * (size - service_limits.bq_row_bytes({"json": row}))
    assert service_limits.bq_row_bytes({"json": row}) == size
    return row


def _reason(error: BadRequest) -> str:
    return error.response.json()["error"]["errors"][0]["reason"]


def _message(error: BadRequest) -> str:
    """The service's own message (the library's prefixes the method and URL)."""
    return error.response.json()["error"]["message"]


def test_insert_all_request_over_10_mb_is_refused_as_bigquery_refuses_it(bq, table):
    rows = [_row_of(3_600_000, i) for i in range(3)]  # each row within the row limit; 10.8 MB in all
    with pytest.raises(BadRequest) as refused:
        bq.insert_rows_json(table, rows)
    assert _message(refused.value) == "Request payload size exceeds the limit: 10485760 bytes."
    assert _reason(refused.value) == "badRequest"
    assert refused.value.response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert _count(bq, table, "id < 3") == 0

    # Just under: 10,485,760 bytes less the request's framing is accepted.
    rows = [_row_of(3_490_000, 10 + i) for i in range(3)]
    body = json.dumps({"rows": [{"insertId": str(uuid.uuid4()), "json": row} for row in rows]})
    assert BQ_MAX_REQUEST_BYTES - 50_000 < len(body) <= BQ_MAX_REQUEST_BYTES
    assert bq.insert_rows_json(table, rows) == []
    assert _count(bq, table, "id BETWEEN 10 AND 12") == 3


def test_a_row_over_5_mb_fails_and_stops_the_others_of_its_request(bq, table):
    rows = [_row_of(100, 20), _row_of(BQ_MAX_ROW_BYTES + 1, 21), _row_of(100, 22)]
    errors = bq.insert_rows_json(table, rows)
    assert errors == [
        {"index": 0, "errors": [{"reason": "stopped", "location": "", "debugInfo": "", "message": ""}]},
        {
            "index": 1,
            "errors": [
                {
                    "reason": "invalid",
                    "location": "",
                    "debugInfo": "",
                    "message": f"Maximum allowed row size exceeded. Allowed: 5242880 Row size: {BQ_MAX_ROW_BYTES + 1}",
                }
            ],
        },
        {"index": 2, "errors": [{"reason": "stopped", "location": "", "debugInfo": "", "message": ""}]},
    ]
    assert _count(bq, table, "id BETWEEN 20 AND 22") == 0  # stopped rows are not inserted

    # skipInvalidRows: BigQuery inserts the valid rows and reports only the invalid one.
    errors = bq.insert_rows_json(table, rows, skip_invalid_rows=True)
    assert [(e["index"], e["errors"][0]["reason"]) for e in errors] == [(1, "invalid")]
    assert _count(bq, table, "id BETWEEN 20 AND 22") == 2

    # Just under: a row of exactly 5,242,880 bytes is inserted.
    assert bq.insert_rows_json(table, [_row_of(BQ_MAX_ROW_BYTES, 23)]) == []
    assert _count(bq, table, "id = 23") == 1


def test_more_than_50000_rows_in_one_request_are_refused(bq, table):
    rows = [{"id": 100_000 + i} for i in range(BQ_MAX_ROWS_PER_REQUEST + 1)]
    with pytest.raises(BadRequest) as refused:
        bq.insert_rows_json(table, rows, row_ids=[None] * len(rows))
    assert _message(refused.value) == "too many rows present in the request, limit: 50000 row count: 50001."
    assert _count(bq, table, "id >= 100000") == 0
    # Just under: 50,000 rows pass the proxy (the emulator then inserts them).
    assert bq.insert_rows_json(table, rows[:-1], row_ids=[None] * (len(rows) - 1)) == []
    assert _count(bq, table, "id >= 100000") == BQ_MAX_ROWS_PER_REQUEST


def test_a_query_over_1024k_characters_is_refused(bq):
    head = "SELECT 1 AS one -- "
    with pytest.raises(BadRequest) as refused:
        bq.query(head + "x" * (BQ_MAX_QUERY_CHARS + 1 - len(head))).result()
    assert _message(refused.value).startswith("The query is too large. The maximum standard SQL query length is 1024")
    with pytest.raises(BadRequest):  # jobs.query, the other way in
        bq.query(head + "x" * (BQ_MAX_QUERY_CHARS + 1 - len(head)), api_method="QUERY").result()
    [row] = bq.query(head + "x" * (BQ_MAX_QUERY_CHARS - len(head))).result()
    assert row.one == 1


def test_a_load_job_of_more_than_10000_source_uris_is_refused(bq, table, bucket):
    table = f"{table}_loaded"  # a table of its own, empty
    bq.create_table(bigquery.Table(table, schema=bq.get_table(table.removesuffix("_loaded")).schema))
    blob = bucket.blob(f"limits-{RUN}/rows.json")
    blob.upload_from_string(b'{"id": 500, "s": "loaded"}\n')
    uri = f"gs://{bucket.name}/{blob.name}"
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON)
    with pytest.raises(BadRequest) as refused:
        bq.load_table_from_uri([uri] * (BQ_MAX_LOAD_SOURCE_URIS + 1), table, job_config=config)
    assert _message(refused.value) == "Too many sources provided: 10001. Limit is 10000."
    bq.load_table_from_uri([uri], table, job_config=config).result()  # within the limit: loaded
    assert _count(bq, table, "id = 500") == 1
    blob.delete()


# --- Cloud Storage: the proxy ----------------------------------------------------------------


def _name(size: int) -> str:
    """An object name of `size` bytes of UTF-8 (2-byte characters included), in path segments
    short enough for fake-gcs-server's filesystem (255 bytes a file name)."""
    stem = f"limits-{RUN}/"
    segment = "é" * 100 + "/"  # 201 bytes
    name = stem
    while len(name.encode()) + len(segment.encode()) < size:
        name += segment
    return name + "a" * (size - len(name.encode()))


def test_object_names_over_1024_bytes_are_refused_on_every_path(bucket, stack_env):
    too_long = _name(GCS_MAX_OBJECT_NAME_BYTES + 1)
    message = f"The maximum object length is 1024 characters, but got a name with 1025 characters: '{too_long[:64]}...'"
    blob = bucket.blob(too_long)
    with pytest.raises(BadRequest) as refused:
        blob.upload_from_string(b"{}")  # multipart upload: the name is in the metadata part
    assert _message(refused.value) == message and _reason(refused.value) == "invalid"
    resumable = bucket.blob(too_long, chunk_size=256 * 1024)
    with pytest.raises(BadRequest, match="The maximum object length is 1024"):
        resumable.upload_from_string(b"x" * (300 * 1024))  # resumable: the name is in the session's metadata
    # A media upload, as ingest's object writer sends it: the name is in the query string.
    url = f"{stack_env['STORAGE_EMULATOR_HOST']}/upload/storage/v1/b/{bucket.name}/o"
    media = requests.post(url, params={"uploadType": "media", "name": too_long}, data=b"{}", timeout=30)
    assert media.status_code == 400 and media.json()["error"]["message"] == message
    for call in (blob.reload, blob.download_as_bytes, blob.delete):
        with pytest.raises(BadRequest, match="The maximum object length is 1024"):
            call()
    assert not [b for b in bucket.list_blobs(prefix=f"limits-{RUN}/") if len(b.name.encode()) > 1024]

    # Just under: 1,024 bytes on each of the three upload paths, then read and deleted.
    name = _name(GCS_MAX_OBJECT_NAME_BYTES)
    assert len(name.encode()) == 1024
    bucket.blob(name).upload_from_string(b"{}")
    assert bucket.blob(name).download_as_bytes() == b"{}"
    bucket.blob(name, chunk_size=256 * 1024).upload_from_string(b"y" * (300 * 1024))
    assert requests.post(url, params={"uploadType": "media", "name": name}, data=b"{}", timeout=30).status_code == 200
    bucket.blob(name).delete()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("limits/line\nfeed", "Disallowed unicode characters present in object name"),
        ("limits/carriage\rreturn", "Disallowed unicode characters present in object name"),
        (".", "Invalid Value"),
        ("..", "Invalid Value"),
        (".well-known/acme-challenge/token", "Invalid Value"),
    ],
)
def test_names_cloud_storage_forbids_are_refused(bucket, name, message):
    with pytest.raises(BadRequest) as refused:
        bucket.blob(name).upload_from_string(b"{}")
    assert _message(refused.value) == message


# --- Pub/Sub: telemetry.common.cloud's clients -------------------------------------------------


@pytest.fixture(scope="module")
def topic(stack_env):
    """A topic and pull subscription of this module's own (not the pings' topic, which the
    pipelines read)."""
    publisher, subscriber = cloud.pubsub_publisher(), cloud.pubsub_subscriber()
    project = stack_env["GCP_PROJECT"]
    topic_path = publisher.topic_path(project, f"limits-{RUN}")
    subscription = subscriber.subscription_path(project, f"limits-{RUN}")
    publisher.create_topic(name=topic_path)
    subscriber.create_subscription(request={"name": subscription, "topic": topic_path, "ack_deadline_seconds": 60})
    yield publisher, subscriber, topic_path, subscription
    subscriber.delete_subscription(subscription=subscription)
    publisher.delete_topic(topic=topic_path)
    subscriber.close()


def _drain(subscriber, subscription) -> list:
    pulled = []
    while True:
        response = subscriber.pull(
            request={"subscription": subscription, "max_messages": 1000, "return_immediately": True}, timeout=30
        )
        if not response.received_messages:
            return pulled
        pulled += response.received_messages
        subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])


def test_publish_over_10_mb_is_refused(topic):
    publisher, subscriber, topic_path, subscription = topic
    # The library refuses it itself before sending (as it does against Pub/Sub) ...
    with pytest.raises(MessageTooLargeError):
        publisher.publish(topic_path, b"x" * PUBSUB_MAX_PUBLISH_REQUEST_BYTES)
    # ... and a request that reaches the service (the Publish RPC itself, unbatched) is refused by it.
    with pytest.raises(InvalidArgument) as refused:
        PublishRpc.publish(publisher, topic=topic_path, messages=[{"data": b"x" * PUBSUB_MAX_PUBLISH_REQUEST_BYTES}])
    assert refused.value.message.endswith("You passed request_size in the request, but the maximum value is 10000000.")
    with pytest.raises(InvalidArgument, match="You passed message_count in the request, but the maximum value is 1000"):
        PublishRpc.publish(publisher, topic=topic_path, messages=[{"data": b"m"}] * 1001)
    # Just under: a 9,999,900-byte message is published and delivered whole.
    data = b"y" * 9_999_900
    publisher.publish(topic_path, data).result(timeout=60)
    [message] = _drain(subscriber, subscription)
    assert message.message.data == data


def test_ack_deadlines_outside_the_range_are_refused(topic, stack_env):
    publisher, subscriber, topic_path, subscription = topic
    publisher.publish(topic_path, b"lease").result(timeout=30)
    response = subscriber.pull(request={"subscription": subscription, "max_messages": 10}, timeout=30)
    ack_ids = [m.ack_id for m in response.received_messages]
    assert ack_ids
    for seconds in (601, -1):
        with pytest.raises(InvalidArgument) as refused:
            subscriber.modify_ack_deadline(
                request={"subscription": subscription, "ack_ids": ack_ids, "ack_deadline_seconds": seconds}
            )
        assert refused.value.message == (
            f"Invalid ack deadline given (ack_deadline={seconds}). The ack deadline must be between 0 and 600 seconds."
        )
    for seconds in (600, 0):  # the bounds themselves are accepted (0: redeliver now)
        subscriber.modify_ack_deadline(
            request={"subscription": subscription, "ack_ids": ack_ids, "ack_deadline_seconds": seconds}
        )
    _drain(subscriber, subscription)

    project = stack_env["GCP_PROJECT"]
    for seconds in (9, 601):
        name = subscriber.subscription_path(project, f"limits-{RUN}-{seconds}")
        with pytest.raises(InvalidArgument, match="ack_deadline_seconds must be between 10 and 600 seconds"):
            subscriber.create_subscription(request={"name": name, "topic": topic_path, "ack_deadline_seconds": seconds})
    for seconds in (10, 600):
        name = subscriber.subscription_path(project, f"limits-{RUN}-{seconds}")
        subscriber.create_subscription(request={"name": name, "topic": topic_path, "ack_deadline_seconds": seconds})
        subscriber.delete_subscription(subscription=name)


def test_a_pull_returns_at_most_1000_messages(topic):
    """Pub/Sub accepts a pull for more than 1,000 messages and returns at most 1,000; the
    client sends such a pull asking for 1,000 (tests/test_service_limits.py shows the
    request; the emulator itself returns at most 100 a pull)."""
    publisher, subscriber, topic_path, subscription = topic
    futures = [publisher.publish(topic_path, str(i).encode()) for i in range(1100)]
    for future in futures:
        future.result(timeout=60)
    received = set()
    deadline = time.monotonic() + 60
    while len(received) < 1100 and time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": subscription, "max_messages": 5000}, timeout=30)
        assert len(response.received_messages) <= 1000
        received |= {m.message.data for m in response.received_messages}
        if response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
    assert len(received) == 1100
    with pytest.raises(InvalidArgument) as refused:
        subscriber.pull(request={"subscription": subscription, "max_messages": 0}, timeout=30)
    assert refused.value.message == 'A required argument is missing in the request: (argument="max_messages").'


# --- MongoDB: telemetry.common.mongo's database ------------------------------------------------


@pytest.fixture()
def collection():
    db = mongo.database(os.environ["MONGODB_URI"], os.environ["MONGODB_DB"])
    coll = db[f"limits_{RUN}"]
    yield coll
    coll.drop()
    db.client.close()


def _nested(depth: int) -> dict:
    """A document of `depth` levels as MongoDB counts them."""
    document: dict = {"leaf": 1}
    for _ in range(depth - 1):
        document = {"n": document}
    assert service_limits.mongo_nesting_depth(document) == depth
    return document


def test_a_document_over_16_mib_is_refused_on_insert_and_when_an_update_grows_it(collection):
    with pytest.raises(WriteError) as refused:
        collection.insert_one({"_id": "big", "s": "x" * MONGODB_MAX_DOCUMENT_BYTES})
    assert refused.value.code == 10334
    assert refused.value.details["errmsg"].startswith("object to insert too large. size in bytes: ")
    collection.insert_one({"_id": "grows", "s": "x" * (MONGODB_MAX_DOCUMENT_BYTES - 100)})  # just under
    with pytest.raises(WriteError) as refused:
        collection.update_one({"_id": "grows"}, {"$set": {"t": "y" * 200}})
    assert refused.value.code == 10334
    assert "Resulting document after update is larger than 16777216" in refused.value.details["errmsg"]
    assert "t" not in collection.find_one({"_id": "grows"}, {"s": 0})


def test_a_document_nested_past_100_levels_is_refused(collection):
    with pytest.raises(WriteError) as refused:
        collection.insert_one(_nested(MONGODB_MAX_NESTING_DEPTH + 1))
    assert refused.value.code == 15
    assert refused.value.details["errmsg"] == "cannot insert document because it exceeds 100 levels of nesting"
    collection.insert_one({"_id": "deep", **_nested(MONGODB_MAX_NESTING_DEPTH)})  # just under: stored

    collection.insert_one({"_id": "flat"})
    with pytest.raises(WriteError, match="Document exceeds maximum nesting depth of 100"):
        collection.update_one({"_id": "flat"}, {"$set": {"n": _nested(MONGODB_MAX_NESTING_DEPTH)}})
    collection.update_one({"_id": "flat"}, {"$set": {"n": _nested(MONGODB_MAX_NESTING_DEPTH - 1)}})

    # In a batch, as the server does: unordered, every other write is applied.
    with pytest.raises(BulkWriteError) as refused:
        collection.bulk_write(
            [
                InsertOne({"_id": "before"}),
                UpdateOne({"_id": "flat"}, {"$set": {"m.o": _nested(MONGODB_MAX_NESTING_DEPTH - 1)}}),
                InsertOne({"_id": "after"}),
            ],
            ordered=False,
        )
    details = refused.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(1, 15)]
    assert details["nInserted"] == 2
    assert collection.count_documents({"_id": {"$in": ["before", "after"]}}) == 2


def test_without_the_stack_mongo_hands_out_pymongos_own_database(monkeypatch):
    """Production (no MONGODB_EMULATOR): the library's own client, untouched."""
    monkeypatch.delenv("MONGODB_EMULATOR")
    db = mongo.database(os.environ["MONGODB_URI"], "x")
    assert type(db).__module__ == "pymongo.synchronous.database"
    db.client.close()
