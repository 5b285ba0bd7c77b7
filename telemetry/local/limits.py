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


class BackendConnection(http.client.HTTPConnection):
    """A connection to the emulator that sends each write at once: headers and body go
    out in separate writes, and Nagle's algorithm would hold the second back for the
    peer's delayed ACK (~40 ms a request)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class LimitsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LimitsServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as BackendConnection

    def log_message(self, format: str, *args) -> None:
        pass  # the emulator logs requests; a line per request here would double them

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
        connection.endheaders()
        if body:
            connection.send(body)
        elif streamed:
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
