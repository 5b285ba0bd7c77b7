"""Cloud Function `analytics`: one run of the hourly analytics job per request.

Invoked by Cloud Scheduler with an OIDC token (terraform/analytics.tf); nobody
else may invoke it. Deployed with the telemetry package's `common/` and
`analytics/` folders beside this file.
"""

import functions_framework

from telemetry.analytics.job import handle


@functions_framework.http
def analytics(request):
    return handle(request)
