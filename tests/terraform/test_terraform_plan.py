"""The real terraform binary validates and plans terraform/ with the schema-only stand-in providers.

The same code path as `make check-terraform` (scripts/terraform_standin/check.py), always
with the stand-ins so that the result does not depend on registry access. Skipped
without a terraform binary, or before `make check-terraform` has installed the stand-ins.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scripts.terraform_standin import check
from telemetry.analytics import job
from telemetry.common import tables, wire
from tests.terraform.hcl import TF_DIR

pytestmark = [
    pytest.mark.skipif(check.terraform_binary() is None, reason="no terraform binary on PATH"),
    pytest.mark.skipif(
        not (check.STANDIN_DIR / ".installed").exists() or not check.STANDIN_PYTHON.exists(),
        reason="stand-in providers not installed: run make check-terraform",
    ),
]

VERSIONS = """
terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}
"""


def _module(tmp_path: Path, body: str) -> Path:
    module = tmp_path / "module"
    module.mkdir()
    (module / "versions.tf").write_text(VERSIONS, encoding="utf-8")
    (module / "main.tf").write_text(body, encoding="utf-8")
    return module


def test_plan_holds_every_resource(tmp_path):
    result = check.validate_and_plan(TF_DIR, "terraform.tfvars.example", work=tmp_path / "work")
    assert result.ok, f"terraform {result.step} failed:\n{result.output}"
    planned = set(result.addresses)
    assert result.summary.startswith(f"Plan: {len(planned)} to add, 0 to change, 0 to destroy")
    expected = {
        "google_pubsub_topic.pings",
        "google_pubsub_topic_iam_member.gcs_publishes_pings",
        "google_storage_bucket.pings",
        "google_storage_bucket.function_source",
        "google_bigquery_dataset.telemetry",
        "google_service_account.ingest",
        "google_service_account.pipeline",
        "google_service_account.scheduler",
    }
    for route in wire.ROUTES:
        expected |= {
            f'google_cloudfunctions2_function.ingest["{route}"]',
            f'google_cloud_run_service_iam_member.public_invokes_ingest["{route}"]',
            f'google_storage_bucket_object.function_source["{route}"]',
            f'google_storage_notification.pings["{route}"]',
            f'google_pubsub_subscription.pings["{route}"]',
        }
    for template in ("tracking", "deactivation"):
        expected |= {
            f'google_storage_bucket_object.template_spec["{template}"]',
            f'google_cloud_scheduler_job.pipeline["{template}"]',
        }
    expected |= {
        "google_service_account.build",
        "google_storage_bucket.build",
        "google_artifact_registry_repository.functions",
        "google_compute_network.dataflow",
        "google_compute_subnetwork.dataflow",
        "google_compute_address.nat",
        "google_compute_router_nat.dataflow",
        "google_compute_firewall.dataflow_workers",
        "google_logging_metric.unreconciled_runs",
        # The example sets a billing account, so the budget and its API are planned.
        "google_billing_budget.project[0]",
        'google_project_service.enabled["billingbudgets.googleapis.com"]',
    }
    assert expected <= planned, f"not planned: {sorted(expected - planned)}"


@pytest.fixture(scope="module")
def example_plan(tmp_path_factory):
    result = check.validate_and_plan(TF_DIR, "terraform.tfvars.example", work=tmp_path_factory.mktemp("plan"))
    assert result.ok, f"terraform {result.step} failed:\n{result.output}"
    return result


def _filters(values: dict) -> list[str]:
    texts = []
    for condition in values.get("conditions") or []:
        for kind in ("condition_threshold", "condition_matched_log"):
            for body in condition.get(kind) or []:
                texts.append(body["filter"])
    return texts


def test_alert_filters_name_every_service_job_and_subscription(example_plan):
    planned = example_plan.planned
    policies = {a: v for a, v in planned.items() if a.startswith("google_monitoring_alert_policy.")}
    assert len(policies) == 10
    services = 'one_of("deactivate", "track", "tracking-skipped")'
    for name in ("ingest_5xx", "ingest_latency", "ingest_saturation"):
        (text,) = _filters(policies[f"google_monitoring_alert_policy.{name}"])
        assert f"resource.label.service_name = {services}" in text, name
    jobs = 'resource.label.job_name = one_of("deactivation-hourly", "tracking-hourly")'
    for name in ("pipeline_failed", "pipeline_overrun"):
        (text,) = _filters(policies[f"google_monitoring_alert_policy.{name}"])
        assert jobs in text, name
    # (The scheduler's body is unknown until apply; test_pipelines.py checks that it
    # names its job from the same local.pipeline_job_names.)
    (text,) = _filters(policies["google_monitoring_alert_policy.notifications_unacked"])
    subscriptions = ", ".join(f'"ping-objects-{route}"' for route in sorted(wire.ROUTES))
    assert f"resource.label.subscription_id = one_of({subscriptions})" in text
    (text,) = _filters(policies["google_monitoring_alert_policy.scheduler_failed"])
    for job_id in ("telemetry-tracking", "telemetry-deactivation", "telemetry-analytics", "telemetry-audit"):
        assert f'"{job_id}"' in text
    for values in policies.values():
        assert values["notification_channels"] == ["projects/my-telemetry-project/notificationChannels/1234567890"]
    metric = planned["google_logging_metric.unreconciled_runs"]
    assert 'jsonPayload.message:"run does not reconcile"' in metric["filter"]
    audit = planned["google_logging_metric.audit_unbalanced_hours"]
    assert 'jsonPayload.message="audit: hour does not balance"' in audit["filter"]
    assert 'resource.labels.service_name="telemetry-audit"' in audit["filter"]


def _planned_tables(plan) -> dict[str, dict]:
    return {a: v for a, v in plan.planned.items() if a.startswith("google_bigquery_table.")}


def test_every_manifest_is_planned_as_its_table(example_plan):
    """Terraform reads each table's manifest (telemetry/<unit>/tables/<table>/) as the code does."""
    planned = _planned_tables(example_plan)
    resource = {"pipelines": "history", "analytics": "analytics"}
    expected = {f'google_bigquery_table.{resource[t.unit]}["{t.name}"]': t for t in tables.all_layouts()}
    assert set(planned) == set(expected)
    for address, layout in expected.items():
        values = planned[address]
        assert values["table_id"] == layout.name
        assert values["dataset_id"] == "telemetry"  # the example's bq_dataset: BQ_DATASET's dataset
        assert values["description"] == layout.description
        assert json.loads(values["schema"]) == list(tables.schema_json(layout.schema_file))
        assert values.get("clustering") == (list(layout.clustering) or None)
        partitioning = []
        if layout.partition_field:
            partitioning = [{"type": layout.partition_type, "field": layout.partition_field}]
            if layout.expiration_days:
                partitioning[0]["expiration_ms"] = layout.expiration_days * 86400000
        assert [{k: v for k, v in p.items() if v is not None} for p in values["time_partitioning"]] == partitioning
        assert values["deletion_protection"] is True
    grant = "google_bigquery_table_iam_member.analytics_reads_history"
    reads = {a for a in example_plan.addresses if a.startswith(grant)}
    assert reads == {f'{grant}["{table}"]' for table in job.HISTORY_TABLES}


def test_an_operators_retention_overrides_the_manifests(tmp_path):
    tfvars = tmp_path / "retention.tfvars"
    text = (TF_DIR / "terraform.tfvars.example").read_text(encoding="utf-8")
    tfvars.write_text(text + "\nrejected_retention_days = 30\n", encoding="utf-8")
    result = check.validate_and_plan(TF_DIR, str(tfvars), work=tmp_path / "work")
    assert result.ok, f"terraform {result.step} failed:\n{result.output}"
    expiring = {
        address: p["expiration_ms"]
        for address, values in _planned_tables(result).items()
        for p in values["time_partitioning"]
        if p.get("expiration_ms")
    }
    assert expiring == {'google_bigquery_table.history["rejected"]': 30 * 86400000}


def test_budget_is_planned_only_with_a_billing_account(example_plan, tmp_path):
    budget = example_plan.planned["google_billing_budget.project[0]"]
    assert budget["billing_account"] == "000000-000000-000000"
    assert [rule["threshold_percent"] for rule in budget["threshold_rules"]] == [0.5, 0.9, 1]

    without = tmp_path / "without-billing.tfvars"
    text = (TF_DIR / "terraform.tfvars.example").read_text(encoding="utf-8")
    without.write_text(re.sub(r'(?m)^billing_account\s*=.*$', 'billing_account = ""', text), encoding="utf-8")
    result = check.validate_and_plan(TF_DIR, str(without), work=tmp_path / "work")
    assert result.ok, f"terraform {result.step} failed:\n{result.output}"
    assert not [a for a in result.addresses if "billing_budget" in a or "billingbudgets" in a]
    assert len(result.addresses) == len(example_plan.addresses) - 2


RE2_MODULE = """
variable "dataset" {
  type    = string
  default = "telemetry"

  validation {
    condition     = %s
    error_message = "letters, digits and underscores only."
  }
}

resource "google_bigquery_dataset" "this" {
  project    = "p"
  dataset_id = var.dataset
}
"""


@pytest.mark.parametrize(
    ("condition", "ok"),
    [
        # RE2 refuses a repeat count over 1000; can() turns the error into false.
        ('can(regex("^[A-Za-z0-9_]{1,1024}$", var.dataset))', False),
        ('length(var.dataset) <= 1024 && can(regex("^[A-Za-z0-9_]+$", var.dataset))', True),
    ],
)
def test_re2_repeat_count_over_1000_is_caught(tmp_path, condition, ok):
    result = check.validate_and_plan(_module(tmp_path, RE2_MODULE % condition), work=tmp_path / "work")
    assert result.ok is ok, result.output
    if ok:
        assert result.addresses == ["google_bigquery_dataset.this"]
    else:
        assert "Invalid value for variable" in result.output


def test_block_written_as_an_attribute_fails_validate(tmp_path):
    body = """
resource "google_storage_bucket" "b" {
  name       = "b"
  location   = "EU"
  versioning = { enabled = true }
}
"""
    result = check.validate_and_plan(_module(tmp_path, body), work=tmp_path / "work")
    assert not result.ok
    assert result.step == "validate"
    assert 'An argument named "versioning" is not expected here' in result.output
