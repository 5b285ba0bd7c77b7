"""audit.tf: the daily audit function, its identities, its schedule, and the reprocessing
launches it makes (the same as the hourly launches, with hour and hour_to)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from telemetry.audit import job as audit
from telemetry.audit.reprocess import HourRange, LaunchSpec
from telemetry.pipelines import warehouse
from tests.terraform.hcl import _expr, _grants_to, _iam_grants, _members, _metadata, _render, _resource, _squash
from tests.terraform.test_pipelines import _sample_refs

# Dataflow's job names: lowercase letters, digits and hyphens, starting with a letter.
HISTORY_TABLES = "google_bigquery_table.history[each.key].table_id"
TEMPLATES_BUCKET = "google_storage_bucket.templates.name"
DATAFLOW_JOB_NAME = re.compile(r"[a-z]([-a-z0-9]{0,1022}[a-z0-9])?")


def test_audit_account_has_exactly_its_roles(tf):
    assert _grants_to(tf, "audit") == {
        ("google_project_iam_member", "roles/bigquery.jobUser", "var.project_id"),
        # Read only, per table: ping_id of the history, source of rejected.
        (
            "google_bigquery_table_iam_member",
            "roles/bigquery.dataViewer",
            "google_bigquery_table.history[each.key].table_id",
        ),
        # Object names of the pings bucket, never their contents.
        ("google_storage_bucket_iam_member", "roles/storage.legacyBucketReader", "google_storage_bucket.pings.name"),
        # The reprocessing launches, as the scheduler account has them.
        ("google_project_iam_member", "roles/dataflow.developer", "var.project_id"),
        ("google_service_account_iam_member", "roles/iam.serviceAccountUser", "google_service_account.pipeline.name"),
        ("google_storage_bucket_iam_member", "roles/storage.objectViewer", "google_storage_bucket.templates.name"),
        (
            "google_storage_bucket_iam_member",
            "roles/storage.legacyBucketReader",
            "google_storage_bucket.templates.name",
        ),
        (
            "google_storage_bucket_iam_member",
            "roles/storage.legacyBucketReader",
            "google_storage_bucket.dataflow_temp.name",
        ),
    }
    reads = _resource(tf, "google_bigquery_table_iam_member", "audit_reads_history")
    assert _expr(reads["for_each"]) == "local.bq_tables"
    # local.bq_tables: the manifests of telemetry/pipelines/tables/ (test_bigquery.py).
    assert {t.name for t in warehouse.TABLES} == {*audit.HISTORY_TABLE.values(), audit.REJECTED_TABLE}


def test_only_the_invoker_account_may_invoke_the_audit_daily(tf):
    invokers = [
        (name, _members(body))
        for rtype, name, body in _iam_grants(tf)
        if rtype == "google_cloud_run_service_iam_member"
        and "google_cloudfunctions2_function.audit" in _expr(body["service"])
    ]
    assert invokers == [("audit_invoker_invokes", ["serviceAccount:${google_service_account.audit_invoker.email}"])]
    assert _grants_to(tf, "audit_invoker") == {
        (
            "google_cloud_run_service_iam_member",
            "roles/run.invoker",
            "google_cloudfunctions2_function.audit.service_config[0].service",
        )
    }
    scheduler = _resource(tf, "google_cloud_scheduler_job", "audit")
    (target,) = scheduler["http_target"]
    uri = "google_cloudfunctions2_function.audit.service_config[0].uri"
    assert _expr(target["uri"]) == uri
    (token,) = target["oidc_token"]
    assert _expr(token["audience"]) == uri
    assert _expr(token["service_account_email"]) == "google_service_account.audit_invoker.email"
    assert _expr(scheduler["paused"]) == "var.pipeline_schedules_paused"
    # Once a day: minute and hour fixed, every day.
    minute, hour, *rest = tf["variable"]["audit_schedule"]["default"].split()
    assert minute.isdigit() and hour.isdigit() and rest == ["*", "*", "*"]
    assert "google_cloud_scheduler_job.audit.name" in _squash(tf["locals"]["scheduler_job_ids"])


def test_the_function_zips_common_and_audit_and_runs_one_audit_at_a_time(tf):
    files = _squash(tf["locals"]["audit_files"])
    assert '"main.py"="${local.repo_root}/functions/audit/main.py"' in files
    assert '"requirements.txt"="${local.repo_root}/functions/audit/requirements.txt"' in files
    assert 'fileset("${local.repo_root}/telemetry/common","*.py")' in files
    assert 'fileset("${local.repo_root}/telemetry/audit","*.py")' in files
    assert "telemetry/pipelines" not in files
    function = _resource(tf, "google_cloudfunctions2_function", "audit")
    (build,) = function["build_config"]
    assert build["entry_point"] == "audit"
    (service,) = function["service_config"]
    assert service["max_instance_count"] == 1 and service["max_instance_request_concurrency"] == 1
    assert _expr(service["service_account_email"]) == "google_service_account.audit.email"
    assert "secret_environment_variables" not in service  # it reads no secret


def test_environment_sets_every_audit_setting_and_the_launches(tf):
    environment = tf["locals"]["audit_environment"]
    assert {name for name in audit.AuditSettings.__dataclass_fields__} <= {
        "project",
        "bucket",
        "dataset",
        "bigquery_timeout_seconds",  # its default
        *(name.removeprefix("AUDIT_").lower() for name in environment),
        "window_days",
    }
    assert {"GCP_PROJECT", "TRACKING_BUCKET", "BQ_DATASET", "AUDIT_LAUNCH"} <= set(environment)
    assert _expr(environment["AUDIT_DAYS"]) == "tostring(var.audit_days)"
    assert _expr(environment["AUDIT_LAUNCH"]) == "jsonencode(local.audit_launch)"


def test_the_window_must_stay_inside_the_raw_retention(tf):
    function = _resource(tf, "google_cloudfunctions2_function", "audit")
    (lifecycle,) = function["lifecycle"]
    (precondition,) = lifecycle["precondition"]
    assert _squash(precondition["condition"]) == "var.audit_days<var.raw_ping_retention_days"


def test_the_audit_launches_what_the_hourly_launches_pass(tf):
    """Each template's launch in AUDIT_LAUNCH is the scheduler body's pieces (pipelines.tf), by the same locals."""
    launch = tf["locals"]["audit_launch"]
    assert _expr(launch["project"]) == "var.project_id" and _expr(launch["region"]) == "var.region"
    assert _squash(launch["templates"]) == _squash(
        "{for name in keys(local.templates) : name => {"
        "containerSpecGcsPath = local.template_spec_paths[name],"
        "parameters = local.launch_parameters,"
        "environment = merge(local.launch_environment, { sdkContainerImage = local.template_images[name] })}}"
    )


@pytest.mark.parametrize("template", ["tracking", "deactivation"])
def test_the_reprocess_request_is_what_the_template_declares(tf, template):
    """The deployed path's request body, built by the audit's own code from the parameters the
    scheduler passes, against the template's metadata.json. The Dataflow API has no local
    stand-in, so this is as far as a test here goes: the body's shape and every value against
    the template's declared names and regexes (what flexTemplates.launch validates first)."""
    refs = _sample_refs(tf)
    parameters = {name: _render(value, tf, refs=refs) for name, value in tf["locals"]["pipeline_parameters"].items()}
    launches = {
        "project": "sample-project",
        "region": "europe-west1",
        "templates": {
            template: {
                "containerSpecGcsPath": f"gs://sample-project-telemetry-templates/templates/{template}.json",
                "parameters": parameters,
                "environment": {"serviceAccountEmail": "telemetry-pipeline@sample-project.iam.gserviceaccount.com"},
            }
        },
    }
    spec = LaunchSpec.parse(json.dumps(launches))
    hours = HourRange(template, datetime(2026, 11, 23, 22, tzinfo=UTC), datetime(2026, 11, 24, 1, tzinfo=UTC))
    request = spec.request(hours)
    assert set(request) == {"launchParameter"}
    launch = request["launchParameter"]
    # The same fields as the scheduler's body (test_pipelines), its job name the hours'.
    assert set(launch) == {"jobName", "containerSpecGcsPath", "parameters", "environment"}
    assert DATAFLOW_JOB_NAME.fullmatch(launch["jobName"]), launch["jobName"]
    assert launch["jobName"] == f"audit-{template}-2026112322-2026112401"
    assert spec.url == (
        "https://dataflow.googleapis.com/v1b3/projects/sample-project/locations/europe-west1/flexTemplates:launch"
    )

    declared = {p["name"]: p for p in _metadata(template)["parameters"]}
    passed = launch["parameters"]
    assert set(passed) - set(declared) == set(), f"{template} does not declare {set(passed) - set(declared)}"
    required = {name for name, p in declared.items() if not p.get("isOptional", False)}
    assert required <= set(passed)
    assert (passed["hour"], passed["hour_to"]) == ("2026-11-23T22", "2026-11-24T01")
    for name, value in passed.items():
        for pattern in declared[name].get("regexes", []):
            assert re.search(pattern, value), f"{template}: {name}={value!r} does not match {pattern!r}"


def test_the_metric_and_the_alert_match_the_audits_log_lines(tf):
    assert tf["locals"]["audit_unbalanced_message"] == audit.UNBALANCED_MESSAGE
    assert tf["locals"]["audit_failure_message"] == audit.FAILED_MESSAGE
    metric = _resource(tf, "google_logging_metric", "audit_unbalanced_hours")
    assert "${local.audit_unbalanced_message}" in metric["filter"]
    assert "google_cloudfunctions2_function.audit.name" in metric["filter"]
    policy = _resource(tf, "google_monitoring_alert_policy", "audit_failed")
    (condition,) = policy["conditions"]
    (matched,) = condition["condition_matched_log"]
    assert "${local.audit_failure_message}" in matched["filter"]
    assert "severity>=ERROR" in matched["filter"]
