"""notify.tf: the notify function, its identities, secret, egress and schedule."""

from __future__ import annotations

from telemetry.common import config
from telemetry.notify import figures_ready, site_events
from tests.terraform.hcl import _expr, _grants_to, _iam_grants, _members, _resource


def test_notify_account_has_exactly_its_roles(tf):
    assert _grants_to(tf, "notify") == {
        ("google_project_iam_member", "roles/bigquery.jobUser", "var.project_id"),
        # The history tables it reads, and only those (site_events.READS).
        (
            "google_bigquery_table_iam_member",
            "roles/bigquery.dataViewer",
            "google_bigquery_table.history[each.key].table_id",
        ),
        # The analytics job's progress: when digests, figures.ready and spike alerts are due.
        (
            "google_bigquery_table_iam_member",
            "roles/bigquery.dataViewer",
            "google_bigquery_table.analytics[each.key].table_id",
        ),
        (
            "google_secret_manager_secret_iam_member",
            "roles/secretmanager.secretAccessor",
            'google_secret_manager_secret.pipeline["mongodb-uri"].secret_id',
        ),
        (
            "google_secret_manager_secret_iam_member",
            "roles/secretmanager.secretAccessor",
            "google_secret_manager_secret.smtp_password.secret_id",
        ),
    }
    reads = _resource(tf, "google_bigquery_table_iam_member", "notify_reads_history")
    assert _expr(reads["for_each"]) == "toset(local.notify_reads)"
    assert tuple(tf["locals"]["notify_reads"]) == site_events.READS
    reads = _resource(tf, "google_bigquery_table_iam_member", "notify_reads_analytics")
    assert _expr(reads["for_each"]) == "toset(local.notify_reads_analytics)"
    assert tuple(tf["locals"]["notify_reads_analytics"]) == figures_ready.READS


def test_only_the_invoker_account_may_invoke_the_function_and_the_schedule_uses_oidc(tf):
    invokers = [
        (name, _members(body))
        for rtype, name, body in _iam_grants(tf)
        if rtype == "google_cloud_run_service_iam_member"
        and "google_cloudfunctions2_function.notify" in _expr(body["service"])
    ]
    assert invokers == [("notify_invoker_invokes", ["serviceAccount:${google_service_account.notify_invoker.email}"])]
    scheduler = _resource(tf, "google_cloud_scheduler_job", "notify")
    (target,) = scheduler["http_target"]
    uri = "google_cloudfunctions2_function.notify.service_config[0].uri"
    assert _expr(target["uri"]) == uri
    (token,) = target["oidc_token"]
    assert _expr(token["audience"]) == uri
    assert _expr(token["service_account_email"]) == "google_service_account.notify_invoker.email"
    assert _expr(scheduler["paused"]) == "var.pipeline_schedules_paused"


def test_the_function_egresses_through_the_connector_and_never_to_private_ranges(tf):
    function = _resource(tf, "google_cloudfunctions2_function", "notify")
    (service,) = function["service_config"]
    assert _expr(service["vpc_connector"]) == "google_vpc_access_connector.notify.id"
    assert service["vpc_connector_egress_settings"] == "ALL_TRAFFIC"
    rule = _resource(tf, "google_compute_firewall", "notify_refuses_private_destinations")
    assert rule["direction"] == "EGRESS" and rule["deny"] == [{"protocol": "all"}]
    assert set(tf["locals"]["notify_refused_ranges"]) >= {
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    }  # fmt: skip
    assert rule["target_tags"] == ["vpc-connector-${var.region}-${google_vpc_access_connector.notify.name}"]


def test_the_environment_names_config_variables_and_never_allows_private_webhooks(tf):
    environment = tf["locals"]["notify_environment"]
    assert set(environment) <= set(config.VARIABLES)
    assert "NOTIFY_ALLOW_PRIVATE_WEBHOOKS" not in environment
    # The daily cap of site events is the vendor's to tune, from the product's own default.
    cap = "NOTIFY_MAX_SITE_EVENTS_PER_DAY"
    assert _expr(environment[cap]) == "tostring(var.notify_max_site_events_per_day)"
    assert str(tf["variable"]["notify_max_site_events_per_day"]["default"]) == config.VARIABLES[cap].default
    function = _resource(tf, "google_cloudfunctions2_function", "notify")
    (service,) = function["service_config"]
    secrets = {s["key"]: _expr(s["secret"]) for s in service["secret_environment_variables"]}
    assert secrets == {
        "MONGODB_URI": 'google_secret_manager_secret.pipeline["mongodb-uri"].secret_id',
        "SMTP_PASSWORD": "google_secret_manager_secret.smtp_password.secret_id",
    }
    assert set(secrets) <= set(config.VARIABLES)


def test_the_zip_holds_the_notify_and_common_folders(tf):
    files = _expr(tf["locals"]["notify_files"])
    assert '"main.py" = "${local.repo_root}/functions/notify/main.py"' in files
    assert '"requirements.txt" = "${local.repo_root}/functions/notify/requirements.txt"' in files
    for package in ("common", "notify"):
        assert f'fileset("${{local.repo_root}}/telemetry/{package}", "*.py")' in files
    # The analytics job's contract and progress (figures_ready, digest, spike), with the manifests job.py reads.
    assert 'fileset("${local.repo_root}/telemetry/analytics", "**/*.{py,sql,json}")' in files
