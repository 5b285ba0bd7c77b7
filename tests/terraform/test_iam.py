"""iam.tf: identities and grants (least privilege, exactly the roles each account needs, no basic roles)."""

from __future__ import annotations

import re

from telemetry.common import wire
from telemetry.pipelines import warehouse
from tests.terraform.hcl import TF_DIR, _block, _expr, _grants_to, _iam_grants, _members, _resource, _squash, _strings

BASIC_ROLES = re.compile(r"roles/(owner|editor|viewer)\b")
TABLE_WRITER = "${google_project_iam_custom_role.table_writer.id}"

# What a DML statement (the pipelines' MERGE, the analytics job's MERGE and
# DELETE) needs on its target table; bigquery.jobs.create comes with
# roles/bigquery.jobUser on the project.
DML_PERMISSIONS = {"bigquery.tables.get", "bigquery.tables.getData", "bigquery.tables.updateData"}


# --- Identities and grants ------------------------------------------------------------


def test_ingest_account_may_only_create_objects_in_pings_bucket(tf):
    ingest_ref = "google_service_account.ingest."
    grants = [(t, n, b) for t, n, b in _iam_grants(tf) if any(ingest_ref in m for m in _members(b))]
    assert [(t, n) for t, n, _ in grants] == [("google_storage_bucket_iam_member", "ingest_creates_pings")]
    (_, _, grant) = grants[0]
    assert grant["role"] == "roles/storage.objectCreator"
    assert _expr(grant["bucket"]) == "google_storage_bucket.pings.name"
    assert grant["member"] == "serviceAccount:${google_service_account.ingest.email}"


# The only project-level grants: roles that have no narrower scope.
PROJECT_GRANTS = {
    ("roles/dataflow.worker", "serviceAccount:${google_service_account.pipeline.email}"),
    ("roles/bigquery.jobUser", "serviceAccount:${google_service_account.pipeline.email}"),
    ("roles/dataflow.developer", "serviceAccount:${google_service_account.scheduler.email}"),
    ("roles/bigquery.jobUser", "serviceAccount:${google_service_account.analytics.email}"),
    ("roles/logging.logWriter", "serviceAccount:${google_service_account.build.email}"),
    ("roles/bigquery.jobUser", "serviceAccount:${google_service_account.audit.email}"),
    ("roles/dataflow.developer", "serviceAccount:${google_service_account.audit.email}"),
    ("roles/bigquery.jobUser", "serviceAccount:${google_service_account.notify.email}"),
}


PIPELINE_GRANTS = {
    ("google_project_iam_member", "roles/dataflow.worker", "var.project_id"),
    ("google_project_iam_member", "roles/bigquery.jobUser", "var.project_id"),
    # Rows of the history tables only; create and drop only in the scratch dataset.
    ("google_bigquery_table_iam_member", TABLE_WRITER, "google_bigquery_table.history[each.key].table_id"),
    ("google_bigquery_dataset_iam_member", "roles/bigquery.dataEditor", "google_bigquery_dataset.staging.dataset_id"),
    ("google_storage_bucket_iam_member", "roles/storage.objectViewer", "google_storage_bucket.pings.name"),
    ("google_storage_bucket_iam_member", "roles/storage.objectAdmin", "google_storage_bucket.dataflow_temp.name"),
    ("google_storage_bucket_iam_member", "roles/storage.objectViewer", "google_storage_bucket.templates.name"),
    (
        "google_pubsub_subscription_iam_member",
        "roles/pubsub.subscriber",
        "google_pubsub_subscription.pings[each.key].name",
    ),
    (
        "google_secret_manager_secret_iam_member",
        "roles/secretmanager.secretAccessor",
        "google_secret_manager_secret.pipeline[each.key].secret_id",
    ),
    (
        "google_artifact_registry_repository_iam_member",
        "roles/artifactregistry.reader",
        "google_artifact_registry_repository.pipelines.name",
    ),
}


SCHEDULER_GRANTS = {
    ("google_project_iam_member", "roles/dataflow.developer", "var.project_id"),
    ("google_service_account_iam_member", "roles/iam.serviceAccountUser", "google_service_account.pipeline.name"),
    ("google_storage_bucket_iam_member", "roles/storage.objectViewer", "google_storage_bucket.templates.name"),
    # flexTemplates.launch needs storage.buckets.get on the spec's and the temp bucket.
    ("google_storage_bucket_iam_member", "roles/storage.legacyBucketReader", "google_storage_bucket.templates.name"),
    ("google_storage_bucket_iam_member", "roles/storage.legacyBucketReader", "google_storage_bucket.dataflow_temp.name"),
}


# Cloud Build's account: logs, the function sources, its own build bucket, and the
# two image repositories; nothing on the data (pings, BigQuery, secrets).
BUILD_GRANTS = {
    ("google_project_iam_member", "roles/logging.logWriter", "var.project_id"),
    ("google_storage_bucket_iam_member", "roles/storage.objectViewer", "google_storage_bucket.function_source.name"),
    ("google_storage_bucket_iam_member", "roles/storage.objectAdmin", "google_storage_bucket.build.name"),
    (
        "google_artifact_registry_repository_iam_member",
        "roles/artifactregistry.writer",
        "google_artifact_registry_repository.functions.name",
    ),
    (
        "google_artifact_registry_repository_iam_member",
        "roles/artifactregistry.writer",
        "google_artifact_registry_repository.pipelines.name",
    ),
}


def test_pipeline_account_has_exactly_its_roles(tf):
    assert _grants_to(tf, "pipeline") == PIPELINE_GRANTS


def test_scheduler_account_has_exactly_its_roles(tf):
    assert _grants_to(tf, "scheduler") == SCHEDULER_GRANTS
    # Nobody else may act as (launch jobs as) any account, but the audit (its reprocessing).
    acting = [
        (n, b["role"], _members(b), _expr(b["service_account_id"]))
        for t, n, b in _iam_grants(tf)
        if t.startswith("google_service_account_iam")
    ]
    assert sorted(acting) == [
        (
            "audit_acts_as_pipeline",
            "roles/iam.serviceAccountUser",
            ["serviceAccount:${google_service_account.audit.email}"],
            "google_service_account.pipeline.name",
        ),
        (
            "scheduler_acts_as_pipeline",
            "roles/iam.serviceAccountUser",
            ["serviceAccount:${google_service_account.scheduler.email}"],
            "google_service_account.pipeline.name",
        ),
    ]


def test_build_account_has_exactly_its_roles(tf):
    assert _grants_to(tf, "build") == BUILD_GRANTS
    account = _resource(tf, "google_service_account", "build")
    assert account["account_id"] == "telemetry-build"


def test_every_function_builds_as_the_build_account_into_the_functions_repository(tf):
    # The stack's own account unless build_service_account names another.
    assert tf["variable"]["build_service_account"].get("default") is None
    assert _squash(tf["locals"]["build_service_account"]) == (
        "projects/${var.project_id}/serviceAccounts/"
        "${coalesce(var.build_service_account,google_service_account.build.email)}"
    )
    functions = [("ingest", _resource(tf, "google_cloudfunctions2_function", "ingest"))]
    functions.append(("analytics", _resource(tf, "google_cloudfunctions2_function", "analytics")))
    functions.append(("dashboard", _resource(tf, "google_cloudfunctions2_function", "dashboard")))
    for name, fn in functions:
        build = _block(fn, "build_config")
        assert _expr(build["service_account"]) == "local.build_service_account", name
        assert _expr(build["docker_repository"]) == "google_artifact_registry_repository.functions.id", name
        # The build's grants exist before the first build.
        depends = {_expr(d) for d in fn["depends_on"]}
        assert {
            "google_project_iam_member.build_writes_logs",
            "google_storage_bucket_iam_member.build_reads_function_source",
            "google_artifact_registry_repository_iam_member.build_pushes_function_images",
        } <= depends, name
    # The deploy script passes these to `gcloud builds submit` for the template images.
    outputs = tf["output"]
    assert _expr(outputs["build_service_account_id"]["value"]) == "google_service_account.build.id"
    assert _expr(outputs["build_service_account"]["value"]) == "google_service_account.build.email"
    assert _expr(outputs["build_bucket"]["value"]) == "google_storage_bucket.build.name"


def test_every_subscription_lets_the_pipeline_pull(tf, routes):
    subscriptions = tf["resource"]["google_pubsub_subscription"]
    grants = [
        body
        for body in tf["resource"].get("google_pubsub_subscription_iam_member", {}).values()
        if body["role"] == "roles/pubsub.subscriber"
        and body["member"] == "serviceAccount:${google_service_account.pipeline.email}"
    ]
    for name, sub in subscriptions.items():
        # Same for_each as the subscriptions, one grant on each of them.
        refs = {f"google_pubsub_subscription.{name}[each.key].{attr}" for attr in ("name", "id")}
        covering = [
            g for g in grants if _expr(g["subscription"]) in refs and _expr(g.get("for_each")) == _expr(sub["for_each"])
        ]
        assert covering, f"no roles/pubsub.subscriber for the pipeline on every google_pubsub_subscription.{name}"
    assert _expr(subscriptions["pings"]["for_each"]) == "local.routes"
    assert set(routes) == set(wire.ROUTES)


def test_the_pipeline_reads_every_secret_and_the_analytics_job_the_mongodb_uri_only(tf):
    grants = tf["resource"]["google_secret_manager_secret_iam_member"]
    assert sorted(grants) == [
        "analytics_reads_mongodb_uri",
        "dashboard_reads_its_mongodb_uri",  # its own secret (test_dashboard.py)
        "dashboard_reads_its_session_secret",  # its own secret (test_dashboard.py)
        "notify_reads_mongodb_uri",  # test_notify.py
        "notify_reads_smtp_password",  # its own secret (test_notify.py)
        "pipeline_reads_secrets",
    ]
    analytics = grants["analytics_reads_mongodb_uri"]
    assert _expr(analytics["secret_id"]) == 'google_secret_manager_secret.pipeline["mongodb-uri"].secret_id'
    assert analytics["role"] == "roles/secretmanager.secretAccessor"
    grant = grants["pipeline_reads_secrets"]
    assert _expr(grant["for_each"]) == "local.secrets"
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert grant["member"] == "serviceAccount:${google_service_account.pipeline.email}"


def test_project_level_grants_only_where_no_narrower_scope_and_none_authoritative(tf):
    project_grants = set()
    for rtype, name, body in _iam_grants(tf):
        assert not rtype.startswith(("google_organization_iam", "google_folder_iam")), f"{rtype}.{name}"
        assert not rtype.endswith(("_iam_policy", "_iam_binding")), f"{rtype}.{name} is authoritative"
        if rtype.startswith("google_project_iam"):
            assert _expr(body["project"]) == "var.project_id", f"{rtype}.{name} grants on another project"
            assert "condition" not in body, f"{rtype}.{name}"
            project_grants.add((body["role"], body["member"]))
    assert project_grants == PROJECT_GRANTS


def test_no_basic_roles_anywhere(tf):
    for text in _strings(tf):
        assert not BASIC_ROLES.search(text), f"basic role in {text!r}"
    for path in TF_DIR.glob("*.tf"):
        assert not BASIC_ROLES.search(path.read_text(encoding="utf-8")), path.name


def test_anyone_may_invoke_the_ingest_functions_through_cloud_run(tf):
    invoker = _resource(tf, "google_cloud_run_service_iam_member", "public_invokes_ingest")
    assert _expr(invoker["for_each"]) == "local.routes"
    assert invoker["role"] == "roles/run.invoker"
    assert invoker["member"] == "allUsers"
    assert _expr(invoker["service"]) == "google_cloudfunctions2_function.ingest[each.key].service_config[0].service"
    # roles/cloudfunctions.invoker on a gen2 function does not let HTTP requests in.
    assert not any(t.startswith("google_cloudfunctions2_function_iam") for t in tf["resource"])
    # allUsers nowhere else.
    public = [
        (t, n) for t, n, b in _iam_grants(tf) if any(m in ("allUsers", "allAuthenticatedUsers") for m in _members(b))
    ]
    assert sorted(public) == [
        ("google_cloud_run_service_iam_member", "public_invokes_dashboard"),  # the API checks keys itself
        ("google_cloud_run_service_iam_member", "public_invokes_ingest"),
    ]


# --- Nobody but Terraform can drop a table of the history dataset ----------------------


def test_the_table_writer_role_writes_rows_and_cannot_create_alter_or_drop_a_table(tf):
    role = _resource(tf, "google_project_iam_custom_role", "table_writer")
    assert _expr(role["project"]) == "var.project_id"
    assert set(role["permissions"]) == DML_PERMISSIONS
    assert len(role["permissions"]) == len(DML_PERMISSIONS)
    assert not {"bigquery.tables.delete", "bigquery.tables.create", "bigquery.tables.update"} & set(
        role["permissions"]
    )
    assert list(tf["resource"]["google_project_iam_custom_role"]) == ["table_writer"]


def test_no_account_holds_a_role_on_the_history_dataset_that_can_drop_its_tables(tf):
    """deletion_protection is Terraform's only: on the dataset of the history and the
    analytics tables, no grant is dataset-wide and every table grant is the table
    writer or a viewer (roles/bigquery.dataViewer has no tables.delete)."""
    for rtype, name, body in _iam_grants(tf):
        if rtype == "google_bigquery_dataset_iam_member":
            assert _expr(body["dataset_id"]) != "google_bigquery_dataset.telemetry.dataset_id", name
        if rtype == "google_bigquery_table_iam_member":
            assert _expr(body["dataset_id"]) == "google_bigquery_dataset.telemetry.dataset_id", name
            assert body["role"] in (TABLE_WRITER, "roles/bigquery.dataViewer"), name
    assert not [t for t in tf["resource"] if t.startswith("google_bigquery_dataset_iam_") and t.endswith("_binding")]
    grant = _resource(tf, "google_bigquery_table_iam_member", "pipeline_writes_history")
    assert _expr(grant["for_each"]) == "local.bq_tables"
    # local.bq_tables: the manifests of telemetry/pipelines/tables/ (test_bigquery.py).
    assert {t.name for t in warehouse.TABLES} == {"sites", "deactivations", "tracking_skipped", "rejected"}
