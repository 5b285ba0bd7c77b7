# The BigQuery history: one dataset, and the tables of telemetry/<unit>/tables/.
#
# Each table has ONE manifest, the folder telemetry/<unit>/tables/<table>/: its
# columns (schema.json) and the rest of its layout (metadata.json: description,
# dataset, partitioning and expiry, clustering). The code reads the same files
# (telemetry/common/tables.py) for the pipelines' staging tables and the local
# stack, so Terraform and the code cannot disagree on a table; a new table is a
# new folder. The unit is the folder whose code writes the table: `pipelines`
# (the history, below) or `analytics` (analytics.tf).
#
# The pipelines also create short-lived staging tables `_staging_<table>_<runid>`
# in the staging dataset and drop them after their MERGE (they expire after a
# day if a run dies first); Terraform does not manage them.

locals {
  # Table name => its manifest (metadata.json), with its unit and its schema.json's text.
  table_manifests = {
    for path in fileset("${local.repo_root}/telemetry", "*/tables/*/metadata.json") :
    basename(dirname(path)) => merge(jsondecode(file("${local.repo_root}/telemetry/${path}")), {
      unit   = split("/", path)[0]
      schema = file("${local.repo_root}/telemetry/${dirname(path)}/schema.json")
    })
  }

  # The history tables: those the pipelines write (telemetry/pipelines/tables/).
  bq_tables = { for name, table in local.table_manifests : name => table if table.unit == "pipelines" }

  # A manifest's `dataset` names a setting (telemetry/common/config.py); here, its dataset.
  bq_datasets = {
    BQ_DATASET = google_bigquery_dataset.telemetry.dataset_id
  }

  # Days a table's partitions are kept: its manifest's expiration_days, unless an
  # operator sets another number for it (terraform.tfvars); null keeps every partition.
  partition_expiration_overrides = {
    rejected = var.rejected_retention_days
  }
  partition_expiration_days = {
    for name, table in local.table_manifests : name => (
      lookup(local.partition_expiration_overrides, name, null) != null
      ? local.partition_expiration_overrides[name]
      : try(table.time_partitioning.expiration_days, null)
    )
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
  dataset_id  = local.bq_datasets[each.value.dataset]
  table_id    = each.key
  description = each.value.description
  schema      = each.value.schema

  # Only `rejected` expires (its manifest): its partitions (days of received_at) are
  # dropped that many days after the day; the history tables keep everything.
  dynamic "time_partitioning" {
    for_each = each.value.time_partitioning == null ? [] : [each.value.time_partitioning]
    content {
      type          = time_partitioning.value.type
      field         = time_partitioning.value.field
      expiration_ms = local.partition_expiration_days[each.key] == null ? null : local.partition_expiration_days[each.key] * 86400000
    }
  }
  clustering = each.value.clustering

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
