# The BigQuery history: one dataset, four tables. Each table's schema is the
# JSON file telemetry/pipelines/schemas/<table>.json, the one source of truth that
# telemetry/pipelines/warehouse.py also reads (for the pipelines' staging tables and the
# local stack), so Terraform and the pipelines cannot disagree on a column.
#
# The pipelines also create short-lived staging tables `_staging_<table>_<runid>`
# in this dataset and drop them after their MERGE (they expire after a day if a
# run dies first); Terraform does not manage them.

locals {
  # Table name => description. The names are telemetry.pipelines.warehouse.TABLES.
  bq_tables = {
    sites            = "One row per track ping, and per deactivate ping with status deactivated."
    deactivations    = "One row per deactivate ping."
    tracking_skipped = "One row per tracking-skipped ping."
    rejected         = "Records the pipelines set aside, with the reason; without ip_address and admin_email."
  }
}

resource "google_bigquery_dataset" "telemetry" {
  project     = var.project_id
  dataset_id  = var.bq_dataset
  location    = var.bq_location
  description = "History of the WordPress telemetry pings, appended hourly by the Dataflow pipelines."

  # Holds the history: `terraform destroy` fails while it has tables, and
  # Terraform refuses any plan that would destroy or replace the dataset.
  delete_contents_on_destroy = false

  lifecycle {
    prevent_destroy = true
  }

  depends_on = [google_project_service.enabled]

  #checkov:skip=CKV_GCP_81:Google-managed encryption; add default_encryption_configuration here if policy requires CMEK.
}

resource "google_bigquery_table" "history" {
  for_each = local.bq_tables

  project     = var.project_id
  dataset_id  = google_bigquery_dataset.telemetry.dataset_id
  table_id    = each.key
  description = each.value

  schema = file("${path.module}/../telemetry/pipelines/schemas/${each.key}.json")

  # Same layout as telemetry.pipelines.warehouse creates for the staging tables.
  # Only `rejected` expires: its partitions (days of received_at) are dropped
  # var.rejected_retention_days after that day; the history tables keep everything.
  time_partitioning {
    type          = "DAY"
    field         = "received_at"
    expiration_ms = each.key == "rejected" ? var.rejected_retention_days * 86400000 : null
  }
  clustering = ["hash"]

  # A schema change that BigQuery cannot apply in place (a new REQUIRED column, a
  # type change) would make Terraform replace the table: refuse instead, twice:
  # the provider refuses to delete (deletion_protection) and Terraform refuses to
  # plan the destroy (prevent_destroy), so a replacement never gets as far as apply.
  deletion_protection = true

  lifecycle {
    prevent_destroy = true
  }

  #checkov:skip=CKV_GCP_80:Google-managed encryption; add encryption_configuration here if policy requires CMEK.
}

# The pipelines' per-run staging tables `_staging_<table>_<runid>`: created by a
# load job, MERGEd into the history, then dropped; a day's expiry removes those of
# runs that died first. A dataset of their own, so that the pipeline account can
# create and delete tables here and not in the history dataset.
resource "google_bigquery_dataset" "staging" {
  project     = var.project_id
  dataset_id  = var.bq_staging_dataset
  location    = var.bq_location
  description = "Scratch: the telemetry pipelines' per-run staging tables."

  default_table_expiration_ms = 86400000
  delete_contents_on_destroy  = true

  depends_on = [google_project_service.enabled]

  #checkov:skip=CKV_GCP_81:Google-managed encryption; add default_encryption_configuration here if policy requires CMEK.
}
