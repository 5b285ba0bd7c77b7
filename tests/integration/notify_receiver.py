"""A webhook receiver for the notify tests: it verifies each request's Standard Webhooks
signature with the `standardwebhooks` library, records what it got, and can be told
to fail (answer 500) or to be slow (wait before answering)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Received:
    webhook_id: str
    type: str
    data: dict
    at: float  # time.monotonic() when the request arrived


@dataclass
class Receiver:
    port: int
    secret: str = ""
    status: int = 204
    delay_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)
    unverified: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                arrived = time.monotonic()
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers))
                except WebhookVerificationError:
                    receiver.unverified += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.received.append(
                    Received(self.headers["webhook-id"], payload["type"], payload["data"], arrived)
                )
                time.sleep(receiver.delay_seconds)
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"receiver says no" if receiver.status >= 300 else b"")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
