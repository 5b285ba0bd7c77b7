"""The ingest benchmark's floors: HTTP functions that do less than ingest.

`make bench-ingest` serves each exactly as the ingest functions are served
(same gunicorn command, same functions-framework app, same gateway mounting,
same wrk load) to measure what a request costs before ingest's own work:

- `empty`: reads no body (functions-framework still drains it), parses, stores
  and logs nothing, and answers a constant tiny JSON body. The floor of the
  framework, which the CPU target is set against.
- `store_only`: `empty` plus what no ping can do without: one object written
  with ingest's own writer, which means a request that waits mid-way for
  Cloud Storage. Between this and the endpoint lies ingest's own work
  (parsing, validating, the stored object's JSON, the log line).
"""

import uuid

import flask
import functions_framework

from telemetry.ingest import handler

_BODY = b'{"ok":true}'
_OBJECT = b'{"bench":"store_only"}'


@functions_framework.http
def empty(request):
    return flask.Response(_BODY, status=200, mimetype="application/json")


@functions_framework.http
def store_only(request):
    _settings, writer = handler.instance()
    writer.put(f"bench-store-only/{uuid.uuid4()}.json", _OBJECT)
    return flask.Response(_BODY, status=200, mimetype="application/json")
