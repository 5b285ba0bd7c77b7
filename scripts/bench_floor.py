"""The ingest benchmark's one-write floor: an HTTP function that does less than ingest.

`make bench-ingest` serves it exactly as the ingest functions are served (same
gunicorn command, same functions-framework app, same gateway mounting, same wrk
load, same bodies) to measure what a request costs before ingest's own work:

- `store_only`: reads the body and writes it, as it came, as one object with
  ingest's own writer (a request that waits mid-way for Cloud Storage, as every
  ping does), then answers a constant tiny JSON body. It parses, validates and
  logs nothing: the least any function that stores a ping must do. Between this
  and the endpoint lies ingest's own work (parsing, validating, the stored
  object's JSON, the log line), which the CPU target bounds.
"""

import uuid

import flask
import functions_framework

from telemetry.ingest import handler

_BODY = b'{"ok":true}'


@functions_framework.http
def store_only(request):
    _settings, writer = handler.instance()
    writer.put(f"bench-store-only/{uuid.uuid4()}.json", request.get_data())
    return flask.Response(_BODY, status=200, mimetype="application/json")
