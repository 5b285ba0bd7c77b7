"""pipelines.tf: the Flex Template specs, images, Dataflow buckets and the hourly scheduler launches."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from telemetry.common import config
from tests.terraform.hcl import (
    SAMPLE_VARS,
    TEMPLATES_DIR,
    TF_DIR,
    _block,
    _call_argument,
    _expr,
    _metadata,
    _render,
    _resource,
    _squash,
)

# --- Pipelines: templates, specs, images ----------------------------------------------


def test_template_folders_are_the_templates(templates):
    folders = {p.parent.name for p in TEMPLATES_DIR.glob("*/metadata.json")}
    assert set(templates) == folders == {"tracking", "deactivation"}
    for file in ("Dockerfile", "requirements.txt", "cloudbuild.yaml"):  # one for both templates
        assert (TEMPLATES_DIR / file).is_file(), f"dataflow_templates/{file} is missing"
    for name in templates:
        for file in ("metadata.json", "main.py"):
            assert (TEMPLATES_DIR / name / file).is_file(), f"dataflow_templates/{name}/{file} is missing"
        metadata = _metadata(name)
        assert metadata["name"] and metadata["parameters"]


@pytest.mark.parametrize("template", ["tracking", "deactivation"])
def test_template_spec_is_what_flex_template_build_writes(tf, templates, template):
    spec = _resource(tf, "google_storage_bucket_object", "template_spec")
    assert _expr(spec["for_each"]) == "local.templates"
    assert _expr(spec["bucket"]) == "google_storage_bucket.templates.name"
    assert _render(spec["name"], tf, template, templates[template]) == f"templates/{template}.json"

    content = _call_argument(spec["content"], "jsonencode")
    assert set(content) == {"image", "sdkInfo", "metadata"}
    assert _expr(content["image"]) == "local.template_images[each.key]"
    assert content["sdkInfo"] == {"language": "PYTHON"}
    # The metadata is the template folder's own metadata.json, read at plan time.
    assert _expr(content["metadata"]) == (
        'jsondecode(file("${path.module}/../dataflow_templates/${each.key}/metadata.json"))'
    )
    path = (TF_DIR / ".." / "dataflow_templates" / template / "metadata.json").resolve()
    assert path.is_file()
    json.loads(path.read_text(encoding="utf-8"))

    paths = _squash(tf["locals"]["template_spec_paths"])
    assert paths == _squash(
        '{for name, spec in google_storage_bucket_object.template_spec : name => "gs://${spec.bucket}/${spec.name}"}'
    )


def test_images_live_in_the_pipelines_repository(tf):
    repo = _resource(tf, "google_artifact_registry_repository", "pipelines")
    assert repo["format"] == "DOCKER"
    assert _expr(repo["location"]) == "var.region"
    assert _expr(repo["repository_id"]) == "var.artifact_repository"
    assert _block(repo, "docker_config")["immutable_tags"] is True

    images = _squash(tf["locals"]["template_images"])
    assert images == _squash(
        "{for name in keys(local.templates) : name => "
        '"${var.region}-docker.pkg.dev/${var.project_id}/'
        '${google_artifact_registry_repository.pipelines.repository_id}/${name}:${var.template_image_tag}"}'
    )
    assert "default" not in tf["variable"]["template_image_tag"], "the image tag is chosen at each release"


def test_dataflow_buckets_are_private_and_temp_files_expire(tf):
    for name in ("templates", "dataflow_temp"):
        bucket = _resource(tf, "google_storage_bucket", name)
        assert bucket["uniform_bucket_level_access"] is True
        assert bucket["public_access_prevention"] == "enforced"
        assert _expr(bucket["location"]) == "var.region"
    temp = _resource(tf, "google_storage_bucket", "dataflow_temp")
    rules = {}
    for rule in temp["lifecycle_rule"]:
        assert _block(rule, "action")["type"] == "Delete"
        condition = _block(rule, "condition")
        for prefix in condition["matches_prefix"]:
            rules[prefix] = _expr(condition["age"])
    # Dataflow's temp files after the retention; staging/ (Dataflow's staged files) and
    # loads/ (the pipelines' load-job files) after a day; nothing under locks/ or elsewhere.
    assert rules == {"tmp/": "var.dataflow_temp_retention_days", "staging/": "1", "loads/": "1"}


# --- Pipelines: the hourly launches ---------------------------------------------------


def test_scheduler_launches_each_template_hourly(tf, templates):
    job = _resource(tf, "google_cloud_scheduler_job", "pipeline")
    assert _expr(job["for_each"]) == "local.templates"
    assert {name: _render(spec["schedule"], tf) for name, spec in templates.items()} == {
        "tracking": "5 * * * *",
        "deactivation": "10 * * * *",
    }
    assert _expr(job["schedule"]) == "each.value.schedule"
    assert job["time_zone"] == "Etc/UTC"
    assert _expr(job["region"]) == "var.region"
    assert _expr(job["paused"]) == "var.pipeline_schedules_paused"
    # Paused until the deploy script resumes them: a first apply launches nothing.
    assert tf["variable"]["pipeline_schedules_paused"]["default"] is True

    retry = _block(job, "retry_config")
    assert 1 <= retry["retry_count"] <= 5

    target = _block(job, "http_target")
    assert target["http_method"] == "POST"
    assert (
        _render(target["uri"], tf)
        == "https://dataflow.googleapis.com/v1b3/projects/sample-project/locations/europe-west1/flexTemplates:launch"
    )
    assert target["headers"] == {"Content-Type": "application/json"}
    oauth = _block(target, "oauth_token")
    assert oauth["service_account_email"] == "${google_service_account.scheduler.email}"
    assert oauth["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert "oidc_token" not in target

    request = _call_argument(target["body"], "base64encode", "jsonencode")
    assert set(request) == {"launchParameter"}
    launch = request["launchParameter"]
    assert set(launch) == {"jobName", "containerSpecGcsPath", "parameters", "environment"}
    # Fixed per template (never per run), so Dataflow never runs two of a template at once.
    assert _expr(launch["jobName"]) == "local.pipeline_job_names[each.key]"
    assert _squash(tf["locals"]["pipeline_job_names"]) == _squash(
        '{for name in keys(local.templates) : name => "${name}-hourly"}'
    )
    assert _expr(launch["containerSpecGcsPath"]) == "local.template_spec_paths[each.key]"
    assert _expr(launch["parameters"]) == "local.launch_parameters"
    # The workers run the template's own image.
    assert _squash(launch["environment"]) == (
        "merge(local.launch_environment,{sdkContainerImage=local.template_images[each.key]})"
    )

    environment = tf["locals"]["launch_environment"]
    # FlexTemplateRuntimeEnvironment's field names.
    assert set(environment) == {
        "serviceAccountEmail",
        "tempLocation",
        "stagingLocation",
        "maxWorkers",
        "network",
        "subnetwork",
        "ipConfiguration",
        "additionalExperiments",
    }
    assert environment["serviceAccountEmail"] == "${google_service_account.pipeline.email}"
    assert environment["tempLocation"] == "gs://${google_storage_bucket.dataflow_temp.name}/tmp"
    assert environment["stagingLocation"] == "gs://${google_storage_bucket.dataflow_temp.name}/staging"
    assert _expr(environment["maxWorkers"]) == "var.pipeline_max_workers"


def test_runs_use_the_private_subnetwork_and_are_bounded_in_time(tf):
    environment = tf["locals"]["launch_environment"]
    # No external addresses on the launcher VM or the workers, in the stack's own subnetwork.
    assert environment["ipConfiguration"] == "WORKER_IP_PRIVATE"
    assert _expr(environment["network"]) == "google_compute_network.dataflow.name"
    assert _expr(environment["subnetwork"]) == "google_compute_subnetwork.dataflow.self_link"
    # Dataflow cancels a run before the next hour's launch of the same job name.
    assert environment["additionalExperiments"] == [
        "max_workflow_runtime_walltime_seconds=${var.pipeline_max_runtime_seconds}"
    ]
    bound = tf["variable"]["pipeline_max_runtime_seconds"]
    assert 600 <= bound["default"] < 3600
    assert "< 3600" in bound["validation"][0]["condition"]
    # Every hourly schedule leaves at least that long between two launches of a template.
    for name in ("tracking_schedule", "deactivation_schedule"):
        minute, *rest = tf["variable"][name]["default"].split()
        assert minute.isdigit() and rest == ["*", "*", "*", "*"], name
    # The launches wait for the network they run in.
    depends = {_expr(d) for d in _resource(tf, "google_cloud_scheduler_job", "pipeline")["depends_on"]}
    assert {"google_compute_router_nat.dataflow", "google_compute_firewall.dataflow_workers"} <= depends
    assert {
        "google_storage_bucket_iam_member.scheduler_gets_templates_bucket",
        "google_storage_bucket_iam_member.scheduler_gets_dataflow_temp_bucket",
    } <= depends


def test_subnetwork_has_private_google_access_and_no_default_network(tf):
    network = _resource(tf, "google_compute_network", "dataflow")
    assert network["auto_create_subnetworks"] is False
    subnet = _resource(tf, "google_compute_subnetwork", "dataflow")
    assert subnet["private_ip_google_access"] is True
    assert _expr(subnet["region"]) == "var.region"
    assert _expr(subnet["network"]) == "google_compute_network.dataflow.id"
    # Nothing refers to a network called default.
    for rtype, named in tf["resource"].items():
        for name, body in named.items():
            assert "default" not in {str(body.get(k)) for k in ("network", "subnetwork")}, f"{rtype}.{name}"


def test_workers_leave_through_nat_with_one_reserved_address(tf):
    address = _resource(tf, "google_compute_address", "nat")
    assert address["address_type"] == "EXTERNAL"
    assert _expr(address["region"]) == "var.region"
    nat = _resource(tf, "google_compute_router_nat", "dataflow")
    assert nat["nat_ip_allocate_option"] == "MANUAL_ONLY"
    assert [_expr(ip) for ip in nat["nat_ips"]] == ["google_compute_address.nat.self_link"]
    assert nat["source_subnetwork_ip_ranges_to_nat"] == "LIST_OF_SUBNETWORKS"
    # The workers' subnetwork, and the notify function's connector (test_notify.py): one address for both.
    assert [_expr(s["name"]) for s in nat["subnetwork"]] == [
        "google_compute_subnetwork.dataflow.id",
        "google_compute_subnetwork.notify_connector.id",
    ]
    assert all(s["source_ip_ranges_to_nat"] == ["ALL_IP_RANGES"] for s in nat["subnetwork"])
    assert _expr(nat["router"]) == "google_compute_router.dataflow.name"
    router = _resource(tf, "google_compute_router", "dataflow")
    assert _expr(router["network"]) == "google_compute_network.dataflow.id"
    # The address Atlas must allow is an output.
    assert _expr(tf["output"]["nat_ip_address"]["value"]) == "google_compute_address.nat.address"


def test_the_only_rule_that_lets_traffic_in_is_worker_to_worker(tf):
    rules = tf["resource"]["google_compute_firewall"]
    # The other rule only denies: the notify connector's private destinations (test_notify.py).
    assert sorted(rules) == ["dataflow_workers", "notify_refuses_private_destinations"]
    assert "allow" not in rules["notify_refuses_private_destinations"]
    rule = rules["dataflow_workers"]
    assert _expr(rule["network"]) == "google_compute_network.dataflow.name"
    assert rule["direction"] == "INGRESS"
    # Between VMs tagged dataflow only: no source range at all.
    assert rule["source_tags"] == ["dataflow"]
    assert rule["target_tags"] == ["dataflow"]
    assert "source_ranges" not in rule
    assert rule["allow"] == [{"protocol": "tcp", "ports": ["12345-12346"]}]
    assert "deny" not in rule


def _sample_refs(tf: dict[str, Any]) -> dict[str, str]:
    """Sample values of the resource attributes the launch parameters use."""
    variables = tf["variable"]
    refs = {
        "google_storage_bucket.pings.name": SAMPLE_VARS["tracking_bucket"],
        "google_pubsub_topic.pings.name": variables["pings_topic"]["default"],
        "google_bigquery_dataset.telemetry.dataset_id": variables["bq_dataset"]["default"],
        "google_bigquery_dataset.staging.dataset_id": variables["bq_staging_dataset"]["default"],
        "google_storage_bucket.dataflow_temp.name": "sample-project-telemetry-dataflow-temp",
    }
    # ... each of which is what it claims to be.
    assert _expr(_resource(tf, "google_storage_bucket", "pings")["name"]) == "var.tracking_bucket"
    assert _expr(_resource(tf, "google_pubsub_topic", "pings")["name"]) == "var.pings_topic"
    assert _expr(_resource(tf, "google_bigquery_dataset", "telemetry")["dataset_id"]) == "var.bq_dataset"
    assert _expr(_resource(tf, "google_bigquery_dataset", "staging")["dataset_id"]) == "var.bq_staging_dataset"
    for secret in tf["locals"]["secrets"]:
        refs[f'google_secret_manager_secret.pipeline["{secret}"].id'] = f"projects/sample-project/secrets/{secret}"
    return refs


@pytest.mark.parametrize("template", ["tracking", "deactivation"])
def test_scheduler_passes_exactly_what_the_template_declares(tf, template):
    always = tf["locals"]["pipeline_parameters"]
    with_mail = tf["locals"]["mail_parameters"]
    with_geo = tf["locals"]["geo_parameters"]
    # What a run gets: the parameters above, plus the mail ones only when mail_api_url is set,
    # and the geo databases only when set.
    assert _squash(tf["locals"]["launch_parameters"]) == _squash(
        "merge(local.pipeline_parameters,"
        ' {for name, value in local.mail_parameters : name => value if var.mail_api_url != ""},'
        ' {for name, value in local.geo_parameters : name => value if var.geo_databases != ""})'
    )
    assert not set(always) & set(with_mail) and not set(always) & set(with_geo)
    assert _expr(with_geo["geo_databases"]) == "var.geo_databases"

    declared = {p["name"]: p for p in _metadata(template)["parameters"]}
    required = {name for name, p in declared.items() if not p.get("isOptional", False)}
    passed = set(always) | set(with_mail) | set(with_geo)
    assert passed - set(declared) == set(), f"{template} does not declare {passed - set(declared)}"
    assert required - set(always) == set(), f"{template} needs {required - set(always)} on every run"
    assert all(declared[name].get("isOptional") for name in with_mail), "the mail parameters are not always passed"
    assert all(declared[name].get("isOptional") for name in with_geo), "the geo databases are not always passed"
    assert {"hour", "hour_to"} <= set(declared) - passed, "hour mode is for hand-launched runs only"

    # Every value the scheduler passes satisfies the template's own checks.
    refs = _sample_refs(tf)
    rendered = {name: _render(value, tf, refs=refs) for name, value in always.items()}
    rendered["mail_api_token"] = _render(with_mail["mail_api_token"], tf, refs=refs)
    for name, value in rendered.items():
        for pattern in declared[name].get("regexes", []):
            assert re.search(pattern, value), f"{template}: {name}={value!r} does not match {pattern!r}"
    assert rendered["mongodb_uri"] == "projects/sample-project/secrets/mongodb-uri/versions/latest"
    assert rendered["mail_api_token"] == "projects/sample-project/secrets/mail-api-token/versions/latest"
    assert _expr(with_mail["mail_api_url"]) == "var.mail_api_url"

    variables = tf["variable"]
    assert variables["mongodb_db"]["default"] == config.VARIABLES["MONGODB_DB"].default
    assert variables["mail_api_url"]["default"] == "", "no mail unless asked for"
    # A run's bound on what it drains: the same default here and locally, and one the template accepts.
    assert _expr(always["max_messages_per_run"]) == "var.pipeline_max_messages_per_run"
    bound = variables["pipeline_max_messages_per_run"]
    assert str(bound["default"]) == config.VARIABLES["MAX_MESSAGES_PER_RUN"].default
    assert "floor(var.pipeline_max_messages_per_run)" in bound["validation"][0]["condition"]
