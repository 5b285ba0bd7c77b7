"""The ingest functions against the local stack: real HTTP in, real objects and notifications out."""

from __future__ import annotations

import json
import random
import socket
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import requests

from telemetry.common import cloud, config, stored_ping
from telemetry.common.wire import ROUTES
from telemetry.local import gateway, samples, stack
from tests import fixtures, php
from tests.integration import loopback

FORM = "application/x-www-form-urlencoded; charset=UTF-8"
HASH = samples.project_hash("integration")


def post(url: str, body: str | bytes, content_type: str | None = FORM, **headers) -> requests.Response:
    if content_type:
        headers["Content-Type"] = content_type
    return requests.post(url, data=body if isinstance(body, bytes) else body.encode(), headers=headers, timeout=30)


def stored(bucket, route: str, ping_id: str, received: datetime) -> dict:
    blob = bucket.blob(stored_ping.object_name(route, received, ping_id))
    if not blob.exists():  # the hour may have turned between the request and now
        [blob] = [b for b in bucket.list_blobs(prefix=f"{route}/") if b.name.endswith(f"/{ping_id}.json")]
    assert blob.reload() is None and blob.content_type == stored_ping.CONTENT_TYPE
    return json.loads(blob.download_as_bytes())


def test_real_client_body_is_stored(ingest_url, bucket):
    body = fixtures.track_body_php()
    before = datetime.now(UTC)
    response = post(
        ingest_url + "track",
        body,
        **{"User-Agent": "Appsero/5d41402abc4b2a76b9719d911017c592;"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is True
    obj = stored(bucket, "track", answer["id"], before)
    assert obj["id"] == answer["id"]
    assert obj["route"] == "track"
    assert obj["payload"]["server"]["php_version"] == "8.2.10"
    assert obj["payload"]["extra"]["license_type"] == "pro"
    assert obj["payload"]["plugins"] == {
        "woocommerce": {"name": "WooCommerce", "version": "8.4.0"},
        "akismet": {"name": "Akismet Anti-spam", "version": "5.3"},
    }
    assert obj["raw"] == body
    assert obj["user_agent"] == "Appsero/5d41402abc4b2a76b9719d911017c592;"
    assert obj["client_ip"] == "127.0.0.1"  # the peer, which the gateway appends to X-Forwarded-For
    assert obj["content_type"] == FORM
    received = datetime.strptime(obj["received_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before <= received <= datetime.now(UTC)


def test_a_spoofed_forwarded_for_is_not_the_client_address(ingest_url, bucket):
    """The client writes X-Forwarded-For; the front end (here the gateway) appends the peer.
    The stored `client_ip` and the log line's truncated address are the peer's."""
    peer = "127.45.67.89"  # a loopback address of this test's own (tests/integration/loopback.py)
    spoofed = "198.51.100.4"
    log_file = stack.LOG_DIR / "ingest.log"
    log_start = log_file.stat().st_size
    before = datetime.now(UTC)
    with loopback.session_from(peer) as session:
        response = session.post(
            ingest_url + "track",
            data=fixtures.track_body_php().encode(),
            headers={"Content-Type": FORM, "X-Forwarded-For": f"{spoofed}, 10.0.0.1"},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    ping_id = response.json()["id"]
    assert stored(bucket, "track", ping_id, before)["client_ip"] == peer

    deadline = time.monotonic() + 10
    while True:  # gunicorn's workers write their lines as they go
        lines = [json.loads(x) for x in log_file.read_text()[log_start:].splitlines() if x.startswith("{")]
        [line] = [x for x in lines if x.get("ping_id") == ping_id] or [None]
        if line or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert line is not None, "no log line for the ping"
    assert line["httpRequest"]["remoteIp"] == "127.45.67.0"  # IP_PREFIX_V4's default /24 of the peer
    assert spoofed not in json.dumps(line)


def test_body_as_wordpress_sends_it_is_stored_untouched(ingest_url, bucket):
    body = fixtures.track_body_wordpress()
    before = datetime.now(UTC)
    response = post(ingest_url + "track", body)
    assert response.status_code == 200, response.text
    obj = stored(bucket, "track", response.json()["id"], before)
    assert obj["raw"] == body
    assert obj["payload"]["site"] == "Bakery &amp; Café &quot;Ñandú&quot;"  # decoded by the pipelines, not here
    assert obj["payload"]["url"] == "https://bakery.example.org/shop/?lang=de&#038;ref=wp"


def test_a_client_that_hangs_up_after_sending_is_still_stored(ingest_url, bucket):
    """PHP without cURL (fsockopen): `Connection: Close`, the body, and the socket closes at once."""
    marker = uuid.uuid4().hex
    body = f"hash={HASH}&url=https%3A%2F%2Fhangup-{marker}.example.org&client=2.0.4".encode()
    url = urlsplit(ingest_url)
    request = (
        f"POST {url.path}track HTTP/1.1\r\nHost: {url.netloc}\r\nUser-Agent: Appsero/{marker};\r\n"
        f"Accept: application/json\r\nContent-Type: {FORM}\r\nContent-Length: {len(body)}\r\n"
        "Connection: Close\r\n\r\n"
    ).encode()
    started = datetime.now(UTC)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(request + body)
    # closed without reading a byte of the answer
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for blob in bucket.list_blobs(prefix=stored_ping.hour_prefix("track", started)):
            if blob.time_created >= started.replace(microsecond=0) and marker.encode() in blob.download_as_bytes():
                obj = json.loads(blob.download_as_bytes())
                assert obj["user_agent"] == f"Appsero/{marker};"
                return
        time.sleep(0.5)
    pytest.fail("the ping of a client that hung up was not stored")


def test_headers_over_the_front_end_limit_get_431_and_store_nothing(ingest_url, bucket):
    before = _object_count(bucket)
    filler = {f"X-Filler-{i}": "x" * 8000 for i in range(9)}  # 72 KB of headers in all
    response = post(ingest_url + "track", f"hash={HASH}&url=https%3A%2F%2Fx.org", **filler)
    assert response.status_code == 431
    assert response.json()["error"] == "headers_too_large"
    assert _object_count(bucket) == before
    one_big = post(ingest_url + "track", f"hash={HASH}&url=https%3A%2F%2Fx.org", **{"X-Big": "y" * 70_000})
    assert one_big.status_code == 431
    within = {f"X-Filler-{i}": "x" * 6000 for i in range(9)}  # 54 KB: what the front end lets through
    assert post(ingest_url + "track", f"hash={HASH}&url=https%3A%2F%2Fx.org", **within).status_code == 200
    assert gateway.FRONT_END_MAX_HEADER_BYTES == 64 * 1024


def test_bodies_built_by_php_are_stored_as_php_reads_them(ingest_url, bucket):
    rng = random.Random(11)
    data = [samples.track_payload(rng, HASH, i) for i in range(3)]
    data.append(samples.deactivate_payload(rng, HASH, 3))
    data[0]["extra"] = {"notes": "Ünïcödé + spaces & ampersands = fine", "list": ["a", "b"]}
    bodies = php.http_build_query(data)
    php_views = php.parse_str(bodies)
    for body, php_view, route in zip(bodies, php_views, ["track"] * 3 + ["deactivate"], strict=True):
        before = datetime.now(UTC)
        response = post(ingest_url + route, body)
        assert response.status_code == 200, response.text
        assert stored(bucket, route, response.json()["id"], before)["payload"] == php_view


def test_json_bodies_and_all_routes(ingest_url, bucket):
    cases = {
        "track": {"hash": HASH, "url": "https://json.example.org", "users": {"total": 2}, "is_local": False},
        "deactivate": {"hash": HASH, "url": "https://json.example.org", "reason_id": "other", "reason_info": "x"},
        "tracking-skipped": {"hash": HASH, "previously_skipped": True},
    }
    for route, body in cases.items():
        before = datetime.now(UTC)
        response = post(ingest_url + route, json.dumps(body), "application/json")
        assert response.status_code == 200, response.text
        assert stored(bucket, route, response.json()["id"], before)["payload"] == body
    form = post(ingest_url + "tracking-skipped", f"hash={HASH}&previously_skipped=0&client=2.0.4")
    assert form.status_code == 200


@pytest.fixture
def fresh_subscription(stack_env):
    """A new subscription on the pings topic, so the test sees only what arrives from now on
    (the route subscriptions may hold a backlog for the pipelines, which a test must not consume)."""
    subscriber = cloud.pubsub_subscriber()
    project, topic = stack_env["GCP_PROJECT"], config.get("PINGS_TOPIC")
    path = subscriber.subscription_path(project, f"test-{uuid.uuid4().hex[:12]}")
    subscriber.create_subscription(request={"name": path, "topic": f"projects/{project}/topics/{topic}"})
    yield subscriber, path
    subscriber.delete_subscription(request={"subscription": path})
    subscriber.close()


def test_route_subscriptions_exist_with_prefix_filters(stack_env):
    subscriber = cloud.pubsub_subscriber()
    project, topic = stack_env["GCP_PROJECT"], config.get("PINGS_TOPIC")
    try:
        for route in ROUTES:
            path = subscriber.subscription_path(project, config.subscription_name(topic, route))
            subscription = subscriber.get_subscription(request={"subscription": path})
            assert subscription.topic == f"projects/{project}/topics/{topic}"
            assert subscription.filter == f'hasPrefix(attributes.objectId, "{route}/")'
    finally:
        subscriber.close()


def test_each_stored_ping_is_notified(ingest_url, stack_env, fresh_subscription):
    subscriber, path = fresh_subscription
    ids = {}
    for route, body in (
        ("track", f"hash={HASH}&url=https%3A%2F%2Fnotify.example.org"),
        ("deactivate", f"hash={HASH}&url=https%3A%2F%2Fnotify.example.org&reason_id=none"),
        ("tracking-skipped", f"hash={HASH}&previously_skipped=1"),
    ):
        response = post(ingest_url + route, body)
        assert response.status_code == 200
        ids[route] = response.json()["id"]

    for route, ping_id in ids.items():
        message = _pull_until(
            subscriber, path, lambda m, pid=ping_id: m.attributes["objectId"].endswith(f"/{pid}.json")
        )
        attributes = message.attributes
        assert attributes["eventType"] == "OBJECT_FINALIZE"
        assert attributes["payloadFormat"] == "JSON_API_V1"
        assert attributes["bucketId"] == stack_env["TRACKING_BUCKET"]
        assert attributes["objectId"].startswith(f"{route}/")
        assert json.loads(message.data)["name"] == attributes["objectId"]


def _pull_until(subscriber, path, wanted, timeout=30.0):
    """Pull until `wanted(message)`; acks that message, hands every other back (nack)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": path, "max_messages": 100}, timeout=10)
        found, others = None, []
        for received in response.received_messages:
            if found is None and wanted(received.message):
                found = received
            else:
                others.append(received.ack_id)
        if others:
            subscriber.modify_ack_deadline(request={"subscription": path, "ack_ids": others, "ack_deadline_seconds": 0})
        if found is not None:
            subscriber.acknowledge(request={"subscription": path, "ack_ids": [found.ack_id]})
            return found.message
        time.sleep(0.2)
    pytest.fail(f"no notification arrived on {path} within {timeout} s")


def _object_count(bucket) -> int:
    """Objects of every route under the current hour: where a wrongly accepted ping would land."""
    now = datetime.now(UTC)
    return sum(1 for route in ROUTES for _ in bucket.list_blobs(prefix=stored_ping.hour_prefix(route, now)))


BAD_REQUESTS = [
    # (route, body, content type, status, error code)
    ("track", "url=https%3A%2F%2Fx.org", FORM, 400, "missing_hash"),
    ("track", "hash=not+valid!&url=https%3A%2F%2Fx.org", FORM, 400, "invalid_hash"),
    ("track", f"hash={HASH}", FORM, 400, "missing_url"),
    ("deactivate", f"hash={HASH}&url=javascript%3Aalert(1)", FORM, 400, "invalid_url"),
    ("track", f"hash={HASH}&url=https%3A%2F%2F{'a' * 10_000}.org", FORM, 400, "invalid_url"),
    ("track", f"hash={HASH}&url=https%3A%2F%2Fx.org&extra[%24gt]=1", FORM, 400, "forbidden_key"),
    ("track", f"hash={HASH}&url=https%3A%2F%2Fx.org&a.b=1", FORM, 400, "forbidden_key"),
    ("track", '{"hash": "abc", "url": "https://x.org", "$where": "1"}', "application/json", 400, "forbidden_key"),
    ("track", f"hash={HASH}&url=https%3A%2F%2Fx.org&a[b][c][d][e][f][g]=1", FORM, 400, "too_deep"),
    ("track", b"hash=abc&url=https%3A%2F%2Fx.org&site=\xc3\x28", FORM, 400, "invalid_encoding"),
    ("track", "{not json", "application/json", 400, "invalid_json"),
    ("track", f"hash={HASH}&url=https%3A%2F%2Fx.org&v=" + "x" * 20_000, FORM, 400, "value_too_long"),
    ("track", "&".join(f"k{i}=1" for i in range(2001)), FORM, 400, "too_many_keys"),
    ("track", f"hash={HASH}&url=https%3A%2F%2Fx.org&k[=1", FORM, 400, "malformed_key"),
    ("track", f"hash={HASH}", "text/plain", 415, "unsupported_media_type"),
    ("track", f"hash={HASH}", None, 415, "unsupported_media_type"),
    ("track", "x=" + "y" * (256 * 1024), FORM, 413, "body_too_large"),
]


@pytest.mark.parametrize(
    ("route", "body", "content_type", "status", "code"),
    BAD_REQUESTS,
    ids=[case[4] + "-" + str(i) for i, case in enumerate(BAD_REQUESTS)],
)
def test_bad_input_gets_its_4xx_and_stores_nothing(ingest_url, bucket, route, body, content_type, status, code):
    before = _object_count(bucket)
    response = post(ingest_url + route, body, content_type)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    answer = response.json()
    assert answer == {"ok": False, "error": code, "message": answer["message"]}
    assert answer["message"]
    assert _object_count(bucket) == before


def test_methods(ingest_url, bucket):
    health = requests.get(ingest_url + "track", timeout=10)
    assert health.status_code == 200 and health.json() == {"ok": True, "route": "track"}
    before = _object_count(bucket)
    for method in ("PUT", "DELETE", "PATCH"):
        response = requests.request(method, ingest_url + "deactivate", data=f"hash={HASH}", timeout=10)
        assert response.status_code == 405
        assert response.headers["Allow"] == "GET, POST"
        assert response.json()["error"] == "method_not_allowed"
    assert _object_count(bucket) == before
    assert requests.post(ingest_url + "unknown", data="hash=x", timeout=10).status_code == 404
