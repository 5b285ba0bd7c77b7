"""Cloud Function `track`: stores each accepted `track` ping in Cloud Storage.

Deployed with the shared `telemetry` package beside this file (see
docs/deploying.md); locally `telemetry/local/gateway.py` serves it.
"""

import functions_framework

from telemetry.ingest.handler import handle


@functions_framework.http
def track(request):
    return handle("track", request)
