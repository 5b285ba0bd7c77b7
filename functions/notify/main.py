"""Cloud Function `notify`: one notify run per request (telemetry/notify/run.py).

Invoked hourly by Cloud Scheduler with an OIDC token (terraform/notify.tf); nobody
else may invoke it. Deployed with the telemetry package's `common/` and `notify/`
folders beside this file.
"""

import functions_framework

from telemetry.notify.run import handle


@functions_framework.http
def notify(request):
    return handle(request)
