"""analytics.tf: the analytics function, its identities, tables and schedule."""

from __future__ import annotations

import re
from pathlib import Path

from telemetry.analytics import job
from telemetry.pipelines import warehouse
from tests.terraform.hcl import ROOT, _expr, _grants_to, _iam_grants, _members, _resource, _squash


def test_analytics_account_has_exactly_its_roles(tf):
    history = "google_bigquery_table.history[each.key].table_id"
    own = "google_bigquery_table.analytics[each.key].table_id"
    assert _grants_to(tf, "analytics") == {
        ("google_project_iam_member", "roles/bigquery.jobUser", "var.project_id"),
        ("google_bigquery_table_iam_member", "roles/bigquery.dataViewer", history),
        # Rows only: the job's statements are all DML, and it cannot drop analytics_daily.
        ("google_bigquery_table_iam_member", "${google_project_iam_custom_role.table_writer.id}", own),
        (
            "google_secret_manager_secret_iam_member",
            "roles/secretmanager.secretAccessor",
            'google_secret_manager_secret.pipeline["mongodb-uri"].secret_id',
        ),
    }
    # The history tables its statements read: its manifests' `reads`, less its own tables
    # (the planned grants: test_terraform_plan.py).
    reads = _resource(tf, "google_bigquery_table_iam_member", "analytics_reads_history")
    assert _expr(reads["for_each"]) == "local.analytics_reads"
    assert _squash(tf["locals"]["analytics_reads"]) == (
        "setsubtract(flatten([fortableinvalues(local.analytics_tables):table.reads]),keys(local.analytics_tables))"
    )


def test_only_the_invoker_account_may_invoke_the_function(tf):
    invokers = [
        (name, _members(body))
        for rtype, name, body in _iam_grants(tf)
        if rtype == "google_cloud_run_service_iam_member"
        and "google_cloudfunctions2_function.analytics" in _expr(body["service"])
    ]
    assert invokers == [
        ("analytics_invoker_invokes", ["serviceAccount:${google_service_account.analytics_invoker.email}"])
    ]
    assert _grants_to(tf, "analytics_invoker") == {
        (
            "google_cloud_run_service_iam_member",
            "roles/run.invoker",
            "google_cloudfunctions2_function.analytics.service_config[0].service",
        )
    }


def test_the_schedule_calls_the_function_with_an_oidc_token_for_its_url(tf):
    scheduler = _resource(tf, "google_cloud_scheduler_job", "analytics")
    (target,) = scheduler["http_target"]
    uri = "google_cloudfunctions2_function.analytics.service_config[0].uri"
    assert _expr(target["uri"]) == uri
    (token,) = target["oidc_token"]
    assert _expr(token["audience"]) == uri
    assert _expr(token["service_account_email"]) == "google_service_account.analytics_invoker.email"
    # Paused with the pipelines' schedules (paused by default) until the deploy script resumes it.
    assert _expr(scheduler["paused"]) == "var.pipeline_schedules_paused"


def test_tables_are_the_jobs_tables_from_their_manifests(tf):
    assert {layout.name for layout in job.TABLES} == {
        "site_days",
        "site_first_seen",
        "analytics_daily",
        "analytics_progress",
    }
    assert {layout.name: layout.partition_field for layout in job.TABLES} == {
        "site_days": "day",
        "site_first_seen": None,
        "analytics_daily": "day",
        "analytics_progress": None,
    }
    table = _resource(tf, "google_bigquery_table", "analytics")
    assert _expr(table["for_each"]) == "local.analytics_tables"
    assert _expr(table["schema"]) == "each.value.schema"
    # The function's zip carries the manifests the job reads (job.TABLES, at import).
    files = _expr(tf["locals"]["analytics_files"])
    assert 'fileset("${local.repo_root}/telemetry/analytics", "**/*.{py,sql,json}")' in files
    for layout in job.TABLES:
        assert layout.folder.is_relative_to(ROOT / "telemetry" / "analytics")


def test_each_tables_reads_are_what_its_statement_reads():
    """A manifest's `reads` (Terraform grants the job read on those of the history) is what
    its sql/<table>.sql reads, besides the table itself."""
    for layout in job.TABLES:
        path = job.SQL_DIR / f"{layout.name}.sql"
        code = path.read_text() if path.is_file() else ""
        read = set(re.findall(r"`\{dataset\}\.(\w+)`", code)) - {layout.name}
        assert set(layout.reads) == read, (
            f"{layout.metadata_file}: reads {sorted(layout.reads)}, its SQL {sorted(read)}"
        )
    assert {path.stem for path in job.SQL_DIR.glob("*.sql")} <= {layout.name for layout in job.TABLES}
    assert set(job.HISTORY_TABLES) == {"sites", "deactivations", "tracking_skipped"}
    assert set(job.HISTORY_TABLES) <= {layout.name for layout in warehouse.TABLES}


def test_the_function_runs_one_request_at_a_time_with_its_settings(tf):
    function = _resource(tf, "google_cloudfunctions2_function", "analytics")
    (service,) = function["service_config"]
    assert service["max_instance_count"] == 1
    assert service["max_instance_request_concurrency"] == 1
    environment = _expr(tf["locals"]["analytics_environment"])
    for name in ("GCP_PROJECT", "BQ_DATASET", "MONGODB_DB", "ACTIVE_WINDOW_DAYS", "ANALYTICS_SETTLE_HOURS"):
        assert name in environment
    (secret,) = service["secret_environment_variables"]
    assert secret["key"] == "MONGODB_URI"
    assert (ROOT / "functions" / "analytics" / "main.py").is_file()


def test_the_jobs_statements_are_all_dml_so_its_rows_only_grant_suffices():
    """The analytics account holds the table writer role (no tables.create, .update or
    .delete) on its tables: none of its statements may create, alter or drop a table."""
    ddl = re.compile(r"\b(CREATE|DROP|ALTER|TRUNCATE|REPLACE\s+TABLE)\b", re.IGNORECASE)
    for path in sorted(job.SQL_DIR.glob("*.sql")):
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
        assert not ddl.search(code), path.name
    source = Path(job.__file__).read_text()
    statements = re.findall(r'f?"((?:MERGE|DELETE|SELECT|INSERT|UPDATE|CREATE|DROP|ALTER|TRUNCATE)[^"]*)"', source)
    assert statements and not [s for s in statements if ddl.search(s)]
