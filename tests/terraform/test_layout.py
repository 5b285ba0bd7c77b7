"""The Terraform's layout and versions (versions.tf, apis.tf), its variables and outputs."""

from __future__ import annotations

import re

from tests.terraform.hcl import TF_DIR, _expr, _render, _resource, _strings

# One file per concern; a new concern gets a new file, not a longer one.
EXPECTED_FILES = {
    "versions.tf",
    "variables.tf",
    "routes.tf",
    "apis.tf",
    "storage.tf",
    "pubsub.tf",
    "functions.tf",
    "iam.tf",
    "outputs.tf",
    "bigquery.tf",
    "secrets.tf",
    "pipelines.tf",
    "network.tf",
    "monitoring.tf",
}


# --- Layout and versions --------------------------------------------------------------


def test_files_split_by_concern():
    # That they parse, and every reference resolves, is terraform validate's (test_terraform_plan.py).
    present = {p.name for p in TF_DIR.glob("*.tf")}
    assert EXPECTED_FILES <= present, f"missing {EXPECTED_FILES - present}"


def test_providers_are_pinned(tf):
    (terraform,) = tf["terraform"]
    assert terraform["required_version"].startswith(">=")
    (providers,) = terraform["required_providers"]
    assert providers["google"]["source"] == "hashicorp/google"
    assert re.fullmatch(r"~> 6\.\d+", providers["google"]["version"]), providers["google"]["version"]
    assert providers["archive"]["source"] == "hashicorp/archive"
    assert re.fullmatch(r"~> 2\.\d+", providers["archive"]["version"]), providers["archive"]["version"]


def test_needed_apis_enabled_and_never_disabled(tf):
    service = _resource(tf, "google_project_service", "enabled")
    assert _expr(service["for_each"]) == "toset(concat(local.apis, local.budget_apis))"
    assert service["disable_on_destroy"] is False
    # The budget's API only with a budget.
    assert _expr(tf["locals"]["budget_apis"]) == 'var.billing_account == "" ? [] : ["billingbudgets.googleapis.com"]'
    assert {
        "compute.googleapis.com",
        "logging.googleapis.com",
        "monitoring.googleapis.com",
        "cloudresourcemanager.googleapis.com",
        "iam.googleapis.com",
        "cloudfunctions.googleapis.com",
        "run.googleapis.com",
        "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com",
        "storage.googleapis.com",
        "pubsub.googleapis.com",
        "bigquery.googleapis.com",
        "dataflow.googleapis.com",
        "cloudscheduler.googleapis.com",
        "secretmanager.googleapis.com",
    } <= set(tf["locals"]["apis"])
    assert "eventarc.googleapis.com" not in tf["locals"]["apis"]


# --- References and outputs -----------------------------------------------------------


def test_every_declared_variable_is_used_and_described(tf):
    # A reference to an undeclared variable, local or resource fails terraform validate;
    # a variable nothing uses does not.
    referenced = {m for text in _strings(tf) for m in re.findall(r"\bvar\.([A-Za-z_][\w-]*)", text)}
    declared = set(tf["variable"])
    assert declared - referenced == set(), f"unused: {declared - referenced}"
    for name, body in tf["variable"].items():
        assert body.get("description"), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"


def test_outputs(tf):
    outputs = tf["output"]
    assert {"ingest_base_url", "pings_bucket", "pings_topic", "subscriptions"} <= set(outputs)
    base = _render(tf["locals"]["ingest_base_url"], tf)
    assert base == "https://europe-west1-sample-project.cloudfunctions.net/"
    assert _expr(outputs["ingest_base_url"]["value"]) == "local.ingest_base_url"
    assert _expr(outputs["pings_bucket"]["value"]) == "google_storage_bucket.pings.name"
    assert _expr(outputs["pings_topic"]["value"]) == "google_pubsub_topic.pings.name"
    assert "google_pubsub_subscription.pings" in outputs["subscriptions"]["value"]
    assert {
        "bq_dataset",
        "bq_tables",
        "template_specs",
        "template_images",
        "pipeline_service_account",
        "scheduler_service_account",
        "pipeline_secrets",
    } <= set(outputs)
    assert _expr(outputs["template_specs"]["value"]) == "local.template_spec_paths"
    assert _expr(outputs["template_images"]["value"]) == "local.template_images"
    assert _expr(outputs["pipeline_service_account"]["value"]) == "google_service_account.pipeline.email"
    assert _expr(outputs["scheduler_service_account"]["value"]) == "google_service_account.scheduler.email"
    for output in outputs.values():
        assert "sensitive" not in output, "no output holds a secret"
