"""dashboard.tf: the dashboard function, its own account with one grant, its own secret, its zip."""

from __future__ import annotations

import sys

from tests.terraform.hcl import ROOT, _block, _expr, _grants_to, _resource
from tests.terraform.test_function_source import imports, telemetry_packages_imported

TELEMETRY = ROOT / "telemetry"


def test_the_dashboard_account_reads_its_own_secrets_and_nothing_else(tf):
    assert _grants_to(tf, "dashboard") == {
        (
            "google_secret_manager_secret_iam_member",
            "roles/secretmanager.secretAccessor",
            f"google_secret_manager_secret.dashboard_{name}.secret_id",
        )
        for name in ("mongodb_uri", "session_secret")
    }
    # So: nothing on the pings bucket, on BigQuery, or on the pipelines' secrets.
    secret = _resource(tf, "google_secret_manager_secret", "dashboard_mongodb_uri")
    assert secret["secret_id"] == "dashboard-mongodb-uri"
    assert "read-only" in secret["annotations"]["description"]
    assert _resource(tf, "google_service_account", "dashboard")["account_id"] == "telemetry-dashboard"


def test_the_function_runs_as_that_account_with_that_secret_and_is_public(tf):
    fn = _resource(tf, "google_cloudfunctions2_function", "dashboard")
    build = _block(fn, "build_config")
    assert build["entry_point"] == "dashboard"
    assert _expr(build["service_account"]) == "local.build_service_account"
    service = _block(fn, "service_config")
    assert _expr(service["service_account_email"]) == "google_service_account.dashboard.email"
    secrets = {block["key"]: _expr(block["secret"]) for block in service["secret_environment_variables"]}
    assert secrets == {
        "MONGODB_URI": "google_secret_manager_secret.dashboard_mongodb_uri.secret_id",
        "DASHBOARD_SESSION_SECRET": "google_secret_manager_secret.dashboard_session_secret.secret_id",
    }
    assert set(tf["locals"]["dashboard_environment"]) == {"GCP_PROJECT", "MONGODB_DB", "LOG_LEVEL", "THREADS"}
    invoker = _resource(tf, "google_cloud_run_service_iam_member", "public_invokes_dashboard")
    assert invoker["member"] == "allUsers" and invoker["role"] == "roles/run.invoker"
    assert _expr(invoker["service"]) == "google_cloudfunctions2_function.dashboard.service_config[0].service"
    assert _expr(tf["output"]["dashboard_url"]["value"]) == "google_cloudfunctions2_function.dashboard.service_config[0].uri"


# The zip: common/ and dashboard/, with the two pure modules it reads beside them.
DASHBOARD_MODULES = {"telemetry.analytics.metrics", "telemetry.report.charts"}


def test_the_dashboard_code_imports_only_what_its_zip_holds_and_its_requirements_install():
    files = [*sorted((TELEMETRY / "dashboard").glob("*.py")), ROOT / "functions" / "dashboard" / "main.py"]
    files += [TELEMETRY / "analytics" / "metrics.py"]
    files += [TELEMETRY / "report" / "charts.py"]
    installed = {"functions_framework", "flask", "werkzeug", "itsdangerous", "pymongo", "bson", "pythonjsonlogger"}
    installed |= {"altair", "telemetry"}
    requirements = (ROOT / "functions" / "dashboard" / "requirements.txt").read_text()
    for package in ("functions-framework", "pymongo", "python-json-logger", "orjson", "altair"):
        assert f"{package}==" in requirements
    for path in files:
        outside = telemetry_packages_imported(path) - {"common", "dashboard"}
        for package in outside:
            used = {name for name in imports(path) if name.startswith(f"telemetry.{package}.")}
            modules = {name for name in used if (TELEMETRY / package / f"{name.split('.')[2]}.py").is_file()}
            assert {".".join(name.split(".")[:3]) for name in modules} <= DASHBOARD_MODULES, (path, used)
        third_party = {name.split(".")[0] for name in imports(path)} - set(sys.stdlib_module_names) - {"__future__"}
        assert third_party <= installed, (path, third_party - installed)


def test_the_zip_names_exactly_those_files(tf):
    files = tf["locals"]["dashboard_files"]
    text = str(files)
    for path in (
        "functions/dashboard/main.py",
        "telemetry/analytics/metrics.py",
        "telemetry/report/charts.py",
    ):
        assert path in text
    assert "telemetry/pipelines" not in text  # no pipeline code in the dashboard's zip
    assert "telemetry/dashboard" in text and "telemetry/common" in text
