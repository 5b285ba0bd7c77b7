# The pings bucket (one object per accepted ping) and the bucket of the
# functions' source zips.

resource "google_storage_bucket" "pings" {
  project  = var.project_id
  name     = var.tracking_bucket
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # Every ping object is written once under a fresh name and the ingest account
  # can only create objects (it cannot overwrite or delete), so there are no
  # older versions to keep; soft delete below covers a mistaken delete.
  versioning {
    enabled = false
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_retention_days * 86400
  }

  # Raw pings under the route prefixes (track/YYYY/MM/DD/HH/..., deactivate/...,
  # tracking-skipped/...) expire; anything else a later change stores in the
  # bucket is not touched by this rule.
  lifecycle_rule {
    condition {
      age            = var.raw_ping_retention_days
      matches_prefix = local.route_prefixes
    }
    action {
      type = "Delete"
    }
  }

  # Holds the raw data: `terraform destroy` fails while it has objects.
  force_destroy = false

  depends_on = [google_project_service.enabled]

  #checkov:skip=CKV_GCP_78:Objects are write-once under unique names and the writer cannot overwrite; soft delete covers deletes, versioning would keep nothing.
  #checkov:skip=CKV_GCP_62:Access logs of a bucket written by the ingest functions only; use Cloud Audit Logs (data access) if needed.
}

resource "google_storage_bucket" "function_source" {
  project  = var.project_id
  name     = coalesce(var.function_source_bucket, "${var.project_id}-telemetry-functions-source")
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # Each zip is stored under its own md5 (functions.tf); nothing is overwritten.
  versioning {
    enabled = false
  }

  # Only build inputs, rebuilt from the repository by `terraform apply`.
  force_destroy = true

  depends_on = [google_project_service.enabled]

  #checkov:skip=CKV_GCP_78:Zips are named after their md5 and never overwritten; the repository is their history.
  #checkov:skip=CKV_GCP_62:Build inputs only, written by Terraform; access logs add nothing.
}
