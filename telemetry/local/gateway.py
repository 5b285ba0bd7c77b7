"""The three ingest functions behind one base URL, as Cloud Functions serves them.

Deployed, Cloud Functions serves `track`, `deactivate` and `tracking-skipped`
as `https://REGION-PROJECT.cloudfunctions.net/<name>`. Here each function's own
functions-framework app (the code that wraps it in the cloud) is mounted at
`/<name>`, so `$INGEST_URL/<name>` answers the same way. Served by gunicorn
(`telemetry.local.stack.ingest_command`): `gunicorn telemetry.local.gateway:app`.

Google's front end refuses oversized request headers before a function sees
them; the gateway does the same, so the local server accepts exactly what the
deployed one does (docs/ingest.md). It also appends the peer address to
`X-Forwarded-For`, as the front end appends the client's, so that ingest reads
the client address locally by the same rule (`TRUSTED_PROXY_HOPS`).
"""

from __future__ import annotations

import json
from pathlib import Path

import functions_framework
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

ROOT = Path(__file__).resolve().parents[2]

# route -> (deploy folder under functions/, entry point)
FUNCTIONS = {
    "track": ("track", "track"),
    "deactivate": ("deactivate", "deactivate"),
    "tracking-skipped": ("tracking_skipped", "tracking_skipped"),
}

# Request line and headers together, as Google's front end (HTTP(S) load balancing,
# which serves Cloud Functions gen2) limits them: 64 KiB. Past it: 431.
FRONT_END_MAX_HEADER_BYTES = 64 * 1024
# Header fields per request: gunicorn's default, far above the 6 a WordPress site sends.
FRONT_END_MAX_HEADER_FIELDS = 100


def _json(status: int, code: str, message: str):
    body = json.dumps({"ok": False, "error": code, "message": message})
    return Response(body, status=status, mimetype="application/json")


def _not_found(environ, start_response):
    return _json(404, "not_found", "no function at this path")(environ, start_response)


def header_bytes(environ) -> int:
    """The size of the request line and headers as sent (`Name: value` CRLF each)."""
    line = len(environ.get("REQUEST_METHOD", "")) + len(environ.get("RAW_URI") or environ.get("PATH_INFO", ""))
    line += len(environ.get("SERVER_PROTOCOL", "")) + 4
    fields = 0
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            fields += len(key) - 5 + len(value) + 4
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            fields += len(key) + len(value) + 4
    return line + fields + 2


def append_forwarded_for(environ) -> None:
    """Append the peer address to X-Forwarded-For, keeping what the client wrote before it,
    as Google's front end does (`<what the client sent>,<client address>`)."""
    peer = environ.get("REMOTE_ADDR")
    if not peer:
        return
    sent = environ.get("HTTP_X_FORWARDED_FOR")
    environ["HTTP_X_FORWARDED_FOR"] = f"{sent},{peer}" if sent else peer


def _front_end(app):
    """What Google's front end does before a function sees a request: the header limit
    (checked on the headers as the client sent them), then X-Forwarded-For."""

    def front_end(environ, start_response):
        if header_bytes(environ) > FRONT_END_MAX_HEADER_BYTES:
            response = _json(
                431,
                "headers_too_large",
                f"request line and headers are larger than {FRONT_END_MAX_HEADER_BYTES} bytes",
            )
            return response(environ, start_response)
        append_forwarded_for(environ)
        return app(environ, start_response)

    return front_end


def _served_at_root(app):
    """Cloud Functions hands `/<name>` to the function as path `/`; do the same
    (werkzeug would otherwise answer the empty path with a redirect)."""

    def wrapped(environ, start_response):
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        return app(environ, start_response)

    return wrapped


def create_gateway(functions: dict[str, tuple[str, str]] = FUNCTIONS, root: Path = ROOT / "functions"):
    """`functions`: route -> (folder under `root` holding main.py, or "" when `root` is the
    source file itself; entry point)."""
    mounts = {
        f"/{route}": _served_at_root(
            functions_framework.create_app(target=entry, source=str(root / folder / "main.py" if folder else root))
        )
        for route, (folder, entry) in functions.items()
    }
    return _front_end(DispatcherMiddleware(_not_found, mounts))


def floor_gateway(entry: str = "store_only"):
    """The ingest benchmark's floor: a function of scripts/bench_floor.py mounted at every route
    exactly as the real ones are (`gunicorn 'telemetry.local.gateway:floor_gateway()'`)."""
    return create_gateway({route: ("", entry) for route in FUNCTIONS}, root=ROOT / "scripts" / "bench_floor.py")


app = create_gateway()
