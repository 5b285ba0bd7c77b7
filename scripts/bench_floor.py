"""The benchmark's floor: an HTTP function that does nothing.

`make bench-ingest` serves it exactly as the ingest functions are served (same
gunicorn command, same functions-framework app, same gateway mounting, same
wrk load) to measure what one request costs before any of ingest's own work:
it reads no body (functions-framework still drains it), parses, stores and
logs nothing, and answers a constant tiny JSON body.
"""

import flask
import functions_framework

_BODY = b'{"ok":true}'


@functions_framework.http
def empty(request):
    return flask.Response(_BODY, status=200, mimetype="application/json")
