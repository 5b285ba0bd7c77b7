"""Hostile requests against the running gateway ($INGEST_URL): each is refused and stores nothing.

The corpus is tests/fixtures/hostile/requests.jsonl (made by make_corpus.py beside
it): oversized bodies, deep nesting, key floods, MongoDB operator keys, bytes that
are not UTF-8, wrong methods and content types, URLs that are no site's, hashes
that are no project's. Header floods and slow or truncated bodies need a raw
socket, so they are tests of their own below. "Stores nothing" is checked on the
bucket: the objects under every route's current hour before and after.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from telemetry.common import stored_ping, wire
from tests.fixtures.hostile import make_corpus

CORPUS = Path(make_corpus.__file__).resolve().parent / "requests.jsonl"


def load_corpus() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines()]


def body_of(case: dict, marker: str) -> bytes:
    parts = []
    for segment in case["body"]:
        chunk = segment["t"].replace("MARKER", marker).encode() if "t" in segment else base64.b64decode(segment["b"])
        parts.append(chunk * segment["n"])
    return b"".join(parts)


def objects_now(bucket) -> set[str]:
    """Every object under each route's hour folders of the last and the current hour."""
    now = datetime.now(UTC)
    names = set()
    for route in wire.ROUTES:
        for hour in (now - timedelta(hours=1), now):
            names |= {blob.name for blob in bucket.list_blobs(prefix=stored_ping.hour_prefix(route, hour))}
    return names


@pytest.fixture
def stores_nothing(bucket):
    """Fails the test if any object appeared in the bucket while it ran."""
    before = objects_now(bucket)
    yield
    new = objects_now(bucket) - before
    assert not new, f"hostile requests stored {len(new)} objects: {sorted(new)[:5]}"


def _host_port(ingest_url: str) -> tuple[str, int]:
    parts = urlsplit(ingest_url)
    return parts.hostname, parts.port


def test_the_corpus_is_what_its_script_makes():
    assert [json.dumps(c, ensure_ascii=False) for c in make_corpus.cases()] == CORPUS.read_text().splitlines()
    assert len(load_corpus()) >= 200


def test_every_hostile_request_gets_a_json_4xx_and_stores_nothing(ingest_url, stores_nothing):
    marker = f"hostile-{uuid.uuid4().hex}"
    wrong = []
    with requests.Session() as session:
        for case in load_corpus():
            body = body_of(case, marker)
            headers = {"Content-Type": case["content_type"]} if case["content_type"] is not None else {}
            data = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if case["chunked"] else body
            response = session.request(
                case["method"], ingest_url + case["route"], data=data, headers=headers, timeout=30
            )
            answer = response.json() if response.headers.get("Content-Type") == "application/json" else None
            got = (response.status_code, answer and answer.get("error"))
            if got != (case["status"], case["error"]) or not answer or answer.get("ok") is not False:
                wrong.append(
                    f"{case['name']}: expected {case['status']} {case['error']}, got {got} {response.text[:200]}"
                )
    assert not wrong, "\n".join(wrong)


def test_get_is_a_health_check_that_stores_nothing(ingest_url, stores_nothing):
    for route in wire.ROUTES:
        response = requests.get(ingest_url + route, params={"hash": "abc", "url": "https://x.org"}, timeout=10)
        assert response.status_code == 200 and response.json() == {"ok": True, "route": route}


def _exchange(ingest_url: str, data: bytes, half_close: bool = False, wait: float = 10) -> tuple[bytes, bool]:
    """Send raw bytes; return what came back and whether the server closed the connection."""
    with socket.create_connection(_host_port(ingest_url), timeout=wait) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return received, True
                received += chunk
                head, _, rest = received.partition(b"\r\n\r\n")
                length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
                if length and len(rest) >= int(length[0].split(b":")[1]):
                    return received, False
        except TimeoutError:
            return received, False


def _answer(received: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _request(route: str, headers: list[bytes], body: bytes = b"", length: int | None = None) -> bytes:
    fields = [b"Host: test", b"Content-Type: " + wire.FORM.encode(), *headers]
    if length is not None:
        fields.append(b"Content-Length: %d" % length)
    return b"POST /" + route.encode() + b" HTTP/1.1\r\n" + b"\r\n".join(fields) + b"\r\n\r\n" + body


BODY = b"hash=abc&url=https%3A%2F%2Fx.org&extra%5Bm%5D=hostile"


@pytest.mark.parametrize(
    ("name", "headers", "json_answer"),
    [
        # gunicorn (like Google's front end, deployed) answers these itself, before any
        # function: an HTML 431, and it closes the connection.
        ("150 header fields", [b"X-F%d: v" % i for i in range(150)], False),
        ("one 70 KiB header field", [b"X-Big: " + b"a" * 70_000], False),
        # Within gunicorn's per-field limit, over the front end's 64 KiB in all: the gateway's JSON 431.
        ("four 20 KiB header fields", [b"X-B%d: " % i + b"a" * 20_000 for i in range(4)], True),
    ],
)
def test_header_floods_get_431_and_store_nothing(ingest_url, stores_nothing, name, headers, json_answer):
    received, _closed = _exchange(ingest_url, _request("track", headers, BODY, len(BODY)))
    status, answer_headers, body = _answer(received)
    assert status == 431, received[:300]
    if json_answer:
        assert answer_headers["content-type"] == "application/json"
        assert json.loads(body)["error"] == "headers_too_large"
    else:
        assert answer_headers["connection"] == "close"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("Content-Length 100, 52 bytes sent, then the client half-closes", _request("track", [], BODY, 100)),
        (
            "chunked, a chunk cut short, then the client half-closes",
            _request("track", [b"Transfer-Encoding: chunked"]) + b"40\r\n" + BODY[:20],
        ),
        (
            "chunked, a chunk size that is no number",
            _request("track", [b"Transfer-Encoding: chunked"]) + b"zz\r\n" + BODY + b"\r\n0\r\n\r\n",
        ),
    ],
)
def test_truncated_bodies_get_incomplete_body_and_store_nothing(ingest_url, stores_nothing, name, data):
    """A truncated form can still parse as a valid ping (this one does): it must not be stored."""
    received, _closed = _exchange(ingest_url, data, half_close=True)
    status, headers, body = _answer(received)
    assert (status, headers["content-type"], json.loads(body)["error"]) == (400, "application/json", "incomplete_body")


def test_a_body_that_never_ends_holds_its_connection_and_stores_nothing(ingest_url, stores_nothing):
    """Content-Length 100, 52 bytes, then silence: the server waits for the rest (no answer
    while the client keeps the connection open), and stores nothing when the client gives up."""
    with socket.create_connection(_host_port(ingest_url), timeout=2) as sock:
        sock.sendall(_request("track", [], BODY, 100))
        with pytest.raises(TimeoutError):
            sock.recv(1)
    time.sleep(0.5)  # the server reads the end of the connection and refuses the body
    assert requests.get(ingest_url + "track", timeout=5).status_code == 200  # and still serves others


def test_a_slow_body_is_read_to_its_end_and_judged_like_any_other(ingest_url, stores_nothing):
    """A body dripped a few bytes at a time over a second is read whole, then refused for what it is."""
    body = b"url=https%3A%2F%2Fx.org&extra%5Bm%5D=slow"  # no hash
    with socket.create_connection(_host_port(ingest_url), timeout=10) as sock:
        sock.sendall(_request("track", [], b"", len(body)))
        for i in range(0, len(body), 4):
            sock.sendall(body[i : i + 4])
            time.sleep(0.1)
        received = b""
        while b"}" not in received:
            received += sock.recv(65536)
    status, _, answer = _answer(received)
    assert (status, json.loads(answer)["error"]) == (400, "missing_hash")
