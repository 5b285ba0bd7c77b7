"""Cloud Function `telemetry-dashboard`: the vendor's API (and dashboard), telemetry/dashboard/.

Public (no invoker grant needed): every route but /v1/openapi.json checks the
caller's API key itself. Deployed with the telemetry package's `common/` and
`dashboard/` folders beside this file (terraform/dashboard.tf).
"""

import functions_framework

from telemetry.dashboard.app import create_app, serve

app = create_app()


@functions_framework.http
def dashboard(request):
    return serve(app, request)
