"""Cloud Function `audit`: one audit of the raw pings against BigQuery per request.

Invoked daily by Cloud Scheduler with an OIDC token (terraform/audit.tf); nobody
else may invoke it. Deployed with the telemetry package's `common/` and `audit/`
folders beside this file. Hours that do not balance are processed again by
launching the pipelines' Flex Templates in hour mode (telemetry/audit/reprocess.py).
"""

import functions_framework

from telemetry.audit.job import handle


@functions_framework.http
def audit(request):
    return handle(request)
