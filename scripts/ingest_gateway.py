"""The three ingest functions behind one base URL, for the local stack.

Deployed, Cloud Functions serves `track`, `deactivate` and `tracking-skipped`
as `https://REGION-PROJECT.cloudfunctions.net/<name>`. Here each function's own
functions-framework app (the code that wraps it in the cloud) is mounted at
`/<name>`, so `$INGEST_URL/<name>` answers the same way. Served by gunicorn:
`gunicorn --pythonpath .,scripts ingest_gateway:app`.
"""

from __future__ import annotations

import json
from pathlib import Path

import functions_framework
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

ROOT = Path(__file__).resolve().parents[1]

# route -> (deploy folder under functions/, entry point)
FUNCTIONS = {
    "track": ("track", "track"),
    "deactivate": ("deactivate", "deactivate"),
    "tracking-skipped": ("tracking_skipped", "tracking_skipped"),
}


def _not_found(environ, start_response):
    body = json.dumps({"ok": False, "error": "not_found", "message": "no function at this path"})
    return Response(body, status=404, mimetype="application/json")(environ, start_response)


def _served_at_root(app):
    """Cloud Functions hands `/<name>` to the function as path `/`; do the same
    (werkzeug would otherwise answer the empty path with a redirect)."""

    def wrapped(environ, start_response):
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        return app(environ, start_response)

    return wrapped


def create_gateway() -> DispatcherMiddleware:
    mounts = {
        f"/{route}": _served_at_root(
            functions_framework.create_app(target=entry, source=str(ROOT / "functions" / folder / "main.py"))
        )
        for route, (folder, entry) in FUNCTIONS.items()
    }
    return DispatcherMiddleware(_not_found, mounts)


app = create_gateway()
