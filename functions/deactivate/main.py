"""Cloud Function `deactivate`: stores each accepted `deactivate` ping in Cloud Storage.

Deployed with the shared `telemetry` package beside this file (see
docs/deploying.md); locally `telemetry/local/gateway.py` serves it.
"""

import functions_framework

from telemetry.ingest.handler import handle


@functions_framework.http
def deactivate(request):
    return handle("deactivate", request)
