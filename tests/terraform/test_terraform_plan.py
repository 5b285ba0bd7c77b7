"""The real terraform binary validates and plans terraform/ with the schema-only stand-in providers.

The same code path as `make check-terraform` (scripts/terraform_standin/check.py), always
with the stand-ins so that the result does not depend on registry access. Skipped
without a terraform binary, or before `make check-terraform` has installed the stand-ins.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.terraform_standin import check
from telemetry.common import wire
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
    assert expected <= planned, f"not planned: {sorted(expected - planned)}"


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
