"""The local stack's limits proxy (telemetry/local/limits.py) in front of a small stand-in
HTTP server of this test's own: what it forwards, what it refuses without forwarding,
and that it survives the emulator closing a kept-alive connection. The refusals through
the real emulators and client libraries are in tests/integration/test_limits.py."""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from telemetry.local import limits


class Backend(BaseHTTPRequestHandler):
    """Echoes what it got; `/idle-close` answers as if keeping the connection alive, then
    closes it (as bqemulator does with a connection idle for a few seconds)."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list] = []

    def log_message(self, *args):
        pass

    def _echo(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Backend.seen.append((self.command, self.path, body))
        if self.path.endswith("/insertAll"):
            answer = json.dumps({"kind": "bigquery#tableDataInsertAllResponse"}).encode()
        else:
            answer = json.dumps({"method": self.command, "path": self.path, "bytes": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (answer[:5], answer[5:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(answer)))
        if self.path == "/idle-close":
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_DELETE = _echo


@pytest.fixture(params=["bigquery", "storage"])
def proxy(request):
    Backend.seen = []
    backend = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    server = limits.LimitsServer(0, backend.server_port, request.param)
    for s in (backend, server):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    backend.shutdown()


def _request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


def test_forwards_what_it_does_not_refuse(proxy):
    status, body = _request(proxy.server_port, "POST", "/anything?x=1", b"payload")
    assert status == 200 and json.loads(body) == {"method": "POST", "path": "/anything?x=1", "bytes": 7}
    status, body = _request(proxy.server_port, "GET", "/chunked")
    assert status == 200 and json.loads(body)["path"] == "/chunked"


def test_a_closed_backend_connection_is_reopened_for_the_next_request(proxy):
    connection = http.client.HTTPConnection("127.0.0.1", proxy.server_port, timeout=10)
    for path in ("/idle-close", "/after", "/idle-close", "/again"):
        connection.request("POST", path, body=b"{}")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["path"] == path


def test_refusals_never_reach_the_backend(proxy):
    if proxy.service == "bigquery":
        path = "/bigquery/v2/projects/p/datasets/d/tables/t/insertAll"
        status, body = _request(proxy.server_port, "POST", path, b"x" * (10_485_760 + 1))
        assert status == 400 and json.loads(body)["error"]["errors"][0]["reason"] == "badRequest"
        big = {"rows": [{"json": {"s": "x" * 5_242_881}}, {"json": {"s": "ok"}}]}
        status, body = _request(proxy.server_port, "POST", path, json.dumps(big).encode())
        assert status == 200
        assert [e["errors"][0]["reason"] for e in json.loads(body)["insertErrors"]] == ["invalid", "stopped"]
        # skipInvalidRows: the valid row alone goes on, and only the invalid one is reported.
        status, body = _request(proxy.server_port, "POST", path, json.dumps(dict(big, skipInvalidRows=True)).encode())
        assert [e["index"] for e in json.loads(body)["insertErrors"]] == [0]
        assert [json.loads(b)["rows"] for _, _, b in Backend.seen] == [[{"json": {"s": "ok"}}]]
    else:
        name = "a" * 1025
        status, body = _request(
            proxy.server_port, "POST", f"/upload/storage/v1/b/b/o?uploadType=media&name={name}", b"{}"
        )
        assert status == 400 and json.loads(body)["error"]["message"].startswith("The maximum object length is 1024")
        status, _ = _request(proxy.server_port, "DELETE", "/storage/v1/b/b/o/a%0Ab")
        assert status == 400
        assert Backend.seen == []
        status, _ = _request(proxy.server_port, "GET", "/storage/v1/b/b/o/" + "a" * 1024)
        assert status == 200 and len(Backend.seen) == 1


def test_header_blocks_are_read_as_http_client_reads_them():
    """The proxy's own header reader (both directions) against http.client.parse_headers."""
    block = (
        b"Host: 127.0.0.1:9\r\nContent-Type: application/json; charset=UTF-8\r\n"
        b"X-Goog-Meta: a\r\nx-goog-meta:  b  \r\nContent-Length: 12\r\n\r\nbody follows"
    )
    ours, theirs = io.BytesIO(block), io.BytesIO(block)
    fields = limits.read_header_fields(ours)
    expected = http.client.parse_headers(theirs)
    assert [(k, v.strip()) for k, v in expected.items()] == fields.items()
    assert fields.get_all("x-goog-meta") == ["a", "b"] and fields["content-length"] == "12"
    assert ours.read() == theirs.read() == b"body follows"  # each stops at the empty line
    # Obsolete line folding: the continuation joins its field with a space (RFC 9112 5.2).
    assert limits.read_header_fields(io.BytesIO(b"A: one\r\n  two\r\nB: 2\r\n\r\n")).items() == [
        ("A", "one two"),
        ("B", "2"),
    ]
    with pytest.raises(http.client.HTTPException):
        limits.read_header_fields(io.BytesIO(b"X: 1\r\n" * 101 + b"\r\n"))
    with pytest.raises(http.client.LineTooLong):
        limits.read_header_fields(io.BytesIO(b"X: " + b"a" * 70_000 + b"\r\n\r\n"))


def test_malformed_requests_get_the_standard_answers(proxy):
    for request_line, status in ((b"GET /x HTTP/2.0", 505), (b"GET /x FOO/1.1", 400), (b"GET", 400)):
        with socket.create_connection(("127.0.0.1", proxy.server_port), timeout=10) as sock:
            sock.sendall(request_line + b"\r\nHost: x\r\n\r\n")
            assert sock.makefile("rb").readline().split()[1] == str(status).encode()
    with socket.create_connection(("127.0.0.1", proxy.server_port), timeout=10) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\n" + b"X: 1\r\n" * 101 + b"\r\n")
        assert sock.makefile("rb").readline().split()[1] == b"431"
    assert Backend.seen == []


def test_expect_100_continue_is_answered_before_the_body_is_sent(proxy):
    """The 100 leaves at once (the handler's writer is buffered): a client that waits for it
    before it sends the body must not wait for nothing."""
    with socket.create_connection(("127.0.0.1", proxy.server_port), timeout=5) as sock:
        sock.sendall(b"POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n")
        answers = sock.makefile("rb")
        assert answers.readline().startswith(b"HTTP/1.1 100")  # times out (5 s) if held back
        assert answers.readline() == b"\r\n"
        sock.sendall(b"payload")
        assert answers.readline().startswith(b"HTTP/1.1 200")
        headers = limits.read_header_fields(answers)
        body = answers.read(int(headers["Content-Length"]))
    assert json.loads(body) == {"method": "POST", "path": "/expect", "bytes": 7}
