"""Google Cloud's request limits, in front of bqemulator's REST API and fake-gcs-server.

    python -m telemetry.local.limits --port PORT --backend-port PORT2 {bigquery|storage} -- EMULATOR...

starts the emulator command (listening on PORT2) as its child, in its own process
group, and serves PORT: every request is forwarded to the emulator unchanged,
except those the real service refuses, which get the real service's status and
JSON error body (telemetry.common.service_limits) without reaching the emulator:

- BigQuery: any API request over 10,485,760 bytes (400 badRequest); an insertAll of
  more than 50,000 rows (400); an insertAll row over 5,242,880 bytes (200 with
  `insertErrors`, the other rows `stopped` and not inserted, as BigQuery does; with
  skipInvalidRows the other rows are inserted); a query over 1,024K characters
  (jobs.insert, jobs.query); a load job of more than 10,000 source URIs.
- Cloud Storage: object names over 1,024 bytes of UTF-8, with CR or LF, `.`, `..`,
  or under `.well-known/acme-challenge/`, in uploads (media, multipart, resumable),
  reads, deletes, metadata calls, copies and rewrites.

The stack runs the emulator behind this proxy as ONE service (one process group):
stopping, killing or freezing the service stops, kills or freezes both, so fault
tests see exactly what they saw without the proxy. When the emulator exits, the
proxy exits with its code.

Why our own code: a general reverse proxy (mitmproxy, proxy.py) could forward, but
each limit needs the request parsed as the Google API defines it (the insertAll
rows, a job's configuration, the object name in a path, a query string or a
multipart metadata part) and answered in Google's error format; that logic is
this module whichever proxy carries it, and the standard library's threaded HTTP
server carries it with no dependency and no extra process. Bodies over 256 KiB are
streamed when nothing in them is checked (object uploads and downloads); only BigQuery
JSON requests and the metadata of multipart/resumable uploads are read whole,
and those are capped at the 10 MB the real API accepts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import select
import signal
import socket
import subprocess
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from telemetry.common import service_limits
from telemetry.common.service_limits import Refusal

HOST = "127.0.0.1"
CHUNK = 256 * 1024
# Headers that belong to one connection, not to the request (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",  # the proxy has already answered 100-continue to the client
    )
)
# Object names in Cloud Storage JSON API paths: /storage/v1/b/B/o/NAME[...] and /download/...,
# and the destination of copyTo / rewriteTo.
STORAGE_OBJECT_PREFIXES = ("/storage/v1/b/", "/download/storage/v1/b/")


# http.client's own bounds on a header block (_MAXLINE, _MAXHEADERS).
HEADER_LINE_MAX_BYTES = 65536
HEADER_FIELDS_MAX = 100


class BodyTooLarge(Exception):
    """A request body past what the proxy reads whole (the real API's own limit)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- what each service refuses ------------------------------------------------------------


def storage_object_names(path: str, query: dict[str, list[str]]) -> list[str]:
    """The object names a Cloud Storage JSON API request addresses (path and `name` parameter)."""
    names = [value for value in query.get("name", [])]
    for prefix in STORAGE_OBJECT_PREFIXES:
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :].split("/")
        # B / o / NAME [/ copyTo|rewriteTo / b / B2 / o / NAME2 | / compose | / acl ...]
        if len(rest) >= 3 and rest[1] == "o":
            names.append(unquote(rest[2]))
            for verb in ("copyTo", "rewriteTo"):
                if verb in rest and len(rest) >= rest.index(verb) + 5:
                    names.append(unquote(rest[rest.index(verb) + 4]))
    return names


def multipart_metadata(content_type: str, body: bytes) -> dict | None:
    """The JSON metadata part of a multipart/related upload (the first part), or None."""
    boundary = None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        return None
    parts = body.split(b"--" + boundary.encode())
    for part in parts[1:]:
        _head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        try:
            metadata = json.loads(content.rstrip(b"\r\n"))
        except ValueError:
            return None
        return metadata if isinstance(metadata, dict) else None
    return None


def storage_refusal(path: str, query: dict[str, list[str]], metadata: dict | None) -> Refusal | None:
    names = storage_object_names(path, query)
    if metadata is not None and isinstance(metadata.get("name"), str):
        names.append(metadata["name"])
    for name in names:
        refusal = service_limits.gcs_name_refusal(name)
        if refusal:
            return refusal
    return None


def storage_reads_metadata(method: str, path: str, query: dict[str, list[str]]) -> bool:
    """Uploads whose object name is in the body (multipart metadata, resumable session start)."""
    upload_type = (query.get("uploadType") or [""])[0]
    return method == "POST" and path.startswith("/upload/storage/") and upload_type in ("multipart", "resumable")


def bigquery_is_json_api(path: str) -> bool:
    """The BigQuery JSON API, not its media upload endpoint (load_table_from_file)."""
    return path.startswith("/bigquery/")


def bigquery_refusal(method: str, path: str, body: bytes) -> tuple[Refusal | None, dict | None]:
    """(refusal, parsed body) for a BigQuery JSON API request whose body is within the size limit."""
    if method != "POST" or not body:
        return None, None
    try:
        document = json.loads(body)
    except ValueError:
        return None, None  # the emulator answers malformed JSON as it will
    if not isinstance(document, dict):
        return None, None
    if path.endswith("/insertAll"):
        rows = document.get("rows")
        if isinstance(rows, list):
            return service_limits.bq_too_many_rows(len(rows)), document
        return None, document
    if path.endswith("/jobs"):
        return service_limits.bq_job_refusal(document), document
    if path.endswith("/queries"):
        return service_limits.bq_query_too_long(document.get("query")), document
    return None, document


# --- the proxy ----------------------------------------------------------------------------------


def read_header_fields(stream) -> http.client.HTTPMessage:
    """A request's or response's header block, up to its empty line, as the HTTPMessage that
    http.client.parse_headers returns, with the same bounds (LineTooLong, HTTPException).

    Why not parse_headers: it runs the email package's parser over the block, and that
    took a third of the proxy's CPU (py-spy, under `make soak`-like load); the proxy only
    needs the fields. Each line is `Name: value` (the value stripped of surrounding blanks,
    RFC 9112 5); a continuation line (obsolete line folding) joins the field before it
    with a space, as RFC 9112 5.2 allows a recipient; a line without a colon is dropped,
    as the email parser drops it (a defect)."""
    fields: list[list[str]] = []
    while True:
        line = stream.readline(HEADER_LINE_MAX_BYTES + 1)
        if len(line) > HEADER_LINE_MAX_BYTES:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            break
        if len(fields) >= HEADER_FIELDS_MAX:
            raise http.client.HTTPException(f"got more than {HEADER_FIELDS_MAX} headers")
        text = line.decode("iso-8859-1")
        if text[0] in " \t":
            if fields:
                fields[-1][1] += " " + text.strip()
            continue
        name, colon, value = text.partition(":")
        if colon:
            fields.append([name, value.strip()])
    message = http.client.HTTPMessage()
    for name, value in fields:
        message[name] = value  # appends: a repeated field stays repeated
    return message


class BackendResponse(http.client.HTTPResponse):
    """http.client's response with its header block read by `read_header_fields`.

    `begin` is http.client.HTTPResponse.begin of the Python the project pins
    (.python-version) with that one call changed; it keeps the standard framing rules (chunked,
    Content-Length, a body that ends when the connection closes, no body for HEAD,
    1xx, 204 and 304)."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != HTTPStatus.CONTINUE:
                break
            read_header_fields(self.fp)  # the 100 response's own (empty) header block
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = read_header_fields(self.fp)
        transfer_encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(transfer_encoding) and transfer_encoding.lower() == "chunked"
        self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class BackendConnection(http.client.HTTPConnection):
    """A connection to the emulator that sends each write at once: headers and body go
    out in separate writes, and Nagle's algorithm would hold the second back for the
    peer's delayed ACK (~40 ms a request)."""

    response_class = BackendResponse

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class LimitsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A buffered writer: an answer's status line, headers and (small) body leave in one
    # send when the handler flushes after each request, not in a send per write.
    wbufsize = CHUNK
    server: LimitsServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as BackendConnection

    def log_message(self, format: str, *args) -> None:
        pass  # the emulator logs requests; a line per request here would double them

    def parse_request(self) -> bool:
        """BaseHTTPRequestHandler.parse_request with the header block read by `read_header_fields`:
        the same checks of the request line (400; 505 for HTTP/2 and later) and of the header
        block (431). Its error answers carry a status line (the standard handler writes
        those of a request line it cannot read as HTTP/0.9 answers: the body alone)."""
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if not words:
            return False  # an empty line: the connection closes, as with the standard handler
        self.request_version = "HTTP/1.0"  # the form of an error answer below
        if len(words) != 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path, version = words
        major, dot, minor = version[5:].partition(".")
        if not (
            version.startswith("HTTP/") and dot and major.isdigit() and minor.isdigit() and len(major + minor) <= 20
        ):
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
            return False
        if int(major) >= 2:
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version[5:]})")
            return False
        self.request_version = version
        at_least_1_1 = (int(major), int(minor)) >= (1, 1)
        self.close_connection = not at_least_1_1
        self.command = command
        # As the standard parser (gh-87389): a path starting with `//` is reduced to one `/`.
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        try:
            self.headers = read_header_fields(self.rfile)
        except http.client.LineTooLong as e:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(e))
            return False
        except http.client.HTTPException as e:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(e))
            return False
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if self.headers.get("Expect", "").lower() == "100-continue" and at_least_1_1:
            return self.handle_expect_100()
        return True

    def handle_expect_100(self) -> bool:
        """`100 Continue`, sent at once: the client waits for it before it sends the body."""
        super().handle_expect_100()
        self.wfile.flush()
        return True

    def _backend(self) -> http.client.HTTPConnection:
        """One keep-alive connection to the emulator per client connection. An idle one that
        has become readable has been closed by the emulator (it sends nothing unasked): it is
        replaced before a request is written to it, as urllib3 does with its pooled ones."""
        connection = getattr(self, "_connection", None)
        if connection is not None and connection.sock is not None:
            readable, _, _ = select.select([connection.sock], [], [], 0)
            if readable:
                connection.close()
                connection = self._connection = None
        if connection is None:
            connection = BackendConnection(HOST, self.server.backend_port, timeout=None)
            self._connection = connection
        return connection

    def finish(self) -> None:
        super().finish()
        connection = getattr(self, "_connection", None)
        if connection is not None:
            connection.close()

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    def _chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _read_body(self, limit: int) -> bytes:
        """The whole request body; past `limit` bytes it is drained and BodyTooLarge raised."""
        if self._chunked():
            parts, size = [], 0
            while True:
                length = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunk = self.rfile.read(length)
                self.rfile.readline()
                size += len(chunk)
                if size <= limit:
                    parts.append(chunk)
            if size > limit:
                raise BodyTooLarge(size)
            return b"".join(parts)
        length = self._content_length() or 0
        if length > limit:
            self._drain(length)
            raise BodyTooLarge(length)
        return self.rfile.read(length) if length else b""

    def _drain(self, length: int) -> None:
        while length > 0:
            read = self.rfile.read(min(CHUNK, length))
            if not read:
                break
            length -= len(read)

    def _refuse(self, refusal: Refusal) -> None:
        self._answer(refusal.status, refusal.json_body())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        service = self.server.service
        body: bytes | None = None  # None: stream the request body through
        try:
            if service == "bigquery" and bigquery_is_json_api(url.path):
                try:
                    body = self._read_body(service_limits.BQ_MAX_REQUEST_BYTES)
                except BodyTooLarge as e:
                    self._refuse(service_limits.bq_request_too_large(e.args[0]))
                    return
                refusal, document = bigquery_refusal(self.command, url.path, body)
                if refusal:
                    self._refuse(refusal)
                    return
                if (
                    url.path.endswith("/insertAll")
                    and document is not None
                    and len(body) > service_limits.BQ_MAX_ROW_BYTES
                ):
                    self._insert_all(document, body)  # (a smaller request cannot hold a row over the limit)
                    return
            elif service == "storage":
                metadata = None
                if storage_reads_metadata(self.command, url.path, query):
                    body = self._read_body(sys.maxsize)  # metadata, or a multipart upload (small objects)
                    content_type = self.headers.get("Content-Type", "")
                    if content_type.startswith("multipart/"):
                        metadata = multipart_metadata(content_type, body)
                    elif body:
                        try:
                            metadata = json.loads(body)
                        except ValueError:
                            metadata = None
                if not isinstance(metadata, dict):
                    metadata = None
                refusal = storage_refusal(url.path, query, metadata)
                if refusal:
                    if body is None:
                        self._discard_body()
                    self._refuse(refusal)
                    return
            length = self._content_length()
            if body is None and not self._chunked() and length and length <= CHUNK:
                # A small body is held, so that a request written to a kept-alive connection
                # the emulator closes at that moment can be sent again (see _send).
                body = self._read_body(CHUNK)
            self._forward(body)
        except (ConnectionError, http.client.HTTPException, OSError):
            # The emulator went away mid-request (killed, restarted): drop the client's
            # connection as the emulator's own death would have.
            self.close_connection = True
            connection = getattr(self, "_connection", None)
            if connection is not None:
                connection.close()
                self._connection = None

    def _discard_body(self) -> None:
        if self._chunked():
            try:
                self._read_body(0)
            except BodyTooLarge:
                pass
        else:
            self._drain(self._content_length() or 0)

    def _insert_all(self, document: dict, body: bytes) -> None:
        """tabledata.insertAll: rows over the row limit are answered as BigQuery does; the rest
        go to the emulator only when BigQuery would insert them (skipInvalidRows)."""
        rows = document.get("rows") or []
        errors, kept = service_limits.bq_insert_errors(rows, bool(document.get("skipInvalidRows")))
        if not errors:
            self._forward(body)
            return
        if kept:
            forwarded = dict(document, rows=[rows[i] for i in kept])
            status, answer = self._call(json.dumps(forwarded).encode())
            if status != 200:
                self._answer(status, answer)
                return
            for entry in json.loads(answer or b"{}").get("insertErrors", []):
                errors.append(dict(entry, index=kept[entry["index"]]))
            errors.sort(key=lambda entry: entry["index"])
        self._answer(200, json.dumps({"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": errors}).encode())

    def _request_headers(self, body: bytes | None) -> dict[str, str]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        return headers

    def _send(self, body: bytes | None) -> http.client.HTTPResponse:
        """Send the request to the emulator. A kept-alive connection the emulator closes while
        the request is on its way (bqemulator closes idle ones after a few seconds) fails
        before any answer; the request is then sent once more on a new connection, when the
        proxy still holds all of it (a buffered body, or none)."""
        replayable = body is not None or not (self._chunked() or self._content_length())
        reused = getattr(self, "_connection", None) is not None
        try:
            return self._send_once(body)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if not (reused and replayable):
                raise
            self._connection.close()
            self._connection = None
            return self._send_once(body)

    def _send_once(self, body: bytes | None) -> http.client.HTTPResponse:
        connection = self._backend()
        connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        headers = self._request_headers(body)
        streamed = body is None and (self._chunked() or self._content_length())
        if body is None and self._chunked():
            headers["Transfer-Encoding"] = "chunked"
            headers.pop("Content-Length", None)
        for key, value in headers.items():
            connection.putheader(key, value)
        if body:
            connection.endheaders(body)  # headers and a held body in one send
            return connection.getresponse()
        connection.endheaders()
        if streamed:
            self._stream_request_body(connection)
        return connection.getresponse()

    def _stream_request_body(self, connection: http.client.HTTPConnection) -> None:
        if self._chunked():
            while True:
                line = self.rfile.readline()
                connection.send(line)
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while True:
                        trailer = self.rfile.readline()
                        connection.send(trailer)
                        if trailer in (b"\r\n", b"\n", b""):
                            return
                connection.send(self.rfile.read(length) + self.rfile.readline())
        remaining = self._content_length() or 0
        while remaining > 0:
            chunk = self.rfile.read(min(CHUNK, remaining))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            connection.send(chunk)
            remaining -= len(chunk)

    def _call(self, body: bytes) -> tuple[int, bytes]:
        """Send to the emulator and read its whole answer (for answers the proxy rewrites)."""
        response = self._send(body)
        return response.status, response.read()

    def _forward(self, body: bytes | None) -> None:
        response = self._send(body)
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        chunked = length is None and not no_body
        for key, value in response.getheaders():
            lower = key.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower == "location":
                value = value.replace(f"{HOST}:{self.server.backend_port}", f"{HOST}:{self.server.server_port}")
            self.send_header(key, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        if response.will_close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if no_body:
            response.read()
        else:
            while True:
                chunk = response.read1(CHUNK) if chunked else response.read(CHUNK)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        if response.will_close:
            self._connection.close()
            self._connection = None


class LimitsServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, backend_port: int, service: str):
        self.backend_port = backend_port
        self.service = service
        super().__init__((HOST, port), LimitsHandler)


# --- the service: proxy and emulator together ---------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m telemetry.local.limits", description=__doc__.split("\n\n")[0])
    parser.add_argument("service", choices=("bigquery", "storage"))
    parser.add_argument("--port", type=int, required=True, help="port the clients use")
    parser.add_argument("--backend-port", type=int, required=True, help="port the emulator listens on")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the emulator's command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("the emulator's command is missing (after --)")

    server = LimitsServer(args.port, args.backend_port, args.service)
    emulator = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def stop(signum, _frame):
        emulator.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=server.serve_forever, name="limits-proxy", daemon=True).start()
    code = emulator.wait()
    server.shutdown()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
