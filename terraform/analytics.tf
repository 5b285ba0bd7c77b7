# The hourly analytics job (telemetry/analytics/job.py): an HTTP Cloud Function
# (gen2) that Cloud Scheduler invokes with an OIDC token. It turns the BigQuery
# history into the daily figures of BigQuery `analytics_daily` and MongoDB
# `analytics`. Why a function and not a Cloud Run job: see docs/analytics.md
# ("Runtime"); in short, BigQuery does the work, a run takes seconds to
# minutes, and a function ships from the same source zip as ingest, with no
# image to build.
#
# Its tables are the manifests of telemetry/analytics/tables/ (schema.json and
# metadata.json of each), the files the job and the local stack read too.

locals {
  # The job's tables: those of telemetry/analytics/tables/ (bigquery.tf reads every manifest).
  analytics_tables = { for name, table in local.table_manifests : name => table if table.unit == "analytics" }

  # The history tables the job's statements read: what its tables' manifests name
  # in `reads` (each from its sql/<table>.sql), less the job's own tables.
  analytics_reads = setsubtract(
    flatten([for table in values(local.analytics_tables) : table.reads]),
    keys(local.analytics_tables),
  )

  # The analytics function's zip: its entry point and requirements, and the
  # package's common/ and analytics/ folders (SQL and schema files included).
  analytics_files = merge(
    {
      "main.py"               = "${local.repo_root}/functions/analytics/main.py"
      "requirements.txt"      = "${local.repo_root}/functions/analytics/requirements.txt"
      "telemetry/__init__.py" = "${local.repo_root}/telemetry/__init__.py"
    },
    {
      for f in fileset("${local.repo_root}/telemetry/common", "*.py") :
      "telemetry/common/${f}" => "${local.repo_root}/telemetry/common/${f}"
    },
    {
      for f in fileset("${local.repo_root}/telemetry/analytics", "**/*.{py,sql,json}") :
      "telemetry/analytics/${f}" => "${local.repo_root}/telemetry/analytics/${f}"
    },
  )

  analytics_environment = {
    GCP_PROJECT                = var.project_id
    BQ_DATASET                 = google_bigquery_dataset.telemetry.dataset_id
    MONGODB_DB                 = var.mongodb_db
    ACTIVE_WINDOW_DAYS         = tostring(var.active_window_days)
    ANALYTICS_SETTLE_HOURS     = tostring(var.analytics_settle_hours)
    ANALYTICS_MAX_BYTES_BILLED = tostring(var.analytics_max_bytes_billed)
    ANALYTICS_MAX_LABELS       = tostring(var.analytics_max_labels)
    LOG_LEVEL                  = var.log_level
  }
}

resource "google_bigquery_table" "analytics" {
  for_each = local.analytics_tables

  project     = var.project_id
  dataset_id  = local.bq_datasets[each.value.dataset]
  table_id    = each.key
  description = each.value.description
  schema      = each.value.schema

  dynamic "time_partitioning" {
    for_each = each.value.time_partitioning == null ? [] : [each.value.time_partitioning]
    content {
      type          = time_partitioning.value.type
      field         = time_partitioning.value.field
      expiration_ms = local.partition_expiration_days[each.key] == null ? null : local.partition_expiration_days[each.key] * 86400000
    }
  }
  clustering = each.value.clustering

  # Derived data that a full recompute can rebuild, but analytics_daily is the
  # dashboard's history: a schema change must not drop it silently.
  deletion_protection = true

  #checkov:skip=CKV_GCP_80:Google-managed encryption; add encryption_configuration here if policy requires CMEK.
}

# --- Identity ---------------------------------------------------------------------

# Runs the analytics function: reads the history tables, writes the rows of its
# own tables, reads the MongoDB URI. Nothing else.
resource "google_service_account" "analytics" {
  project      = var.project_id
  account_id   = "telemetry-analytics"
  display_name = "Telemetry analytics job"
  description  = "Runs the analytics function: reads the BigQuery history, writes the analytics tables and MongoDB analytics."

  depends_on = [google_project_service.enabled]
}

# Running query jobs is a project permission; the tables it may touch are the
# table-level grants below.
resource "google_project_iam_member" "analytics_bigquery_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.analytics.email}"
}

resource "google_bigquery_table_iam_member" "analytics_reads_history" {
  for_each = local.analytics_reads

  project    = var.project_id
  dataset_id = google_bigquery_dataset.telemetry.dataset_id
  table_id   = google_bigquery_table.history[each.key].table_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.analytics.email}"
}

# Its own tables, rows only (the custom role of iam.tf: no create, alter or
# drop). Every statement of the job is DML (MERGE and DELETE, sql/ and job.py);
# the tables themselves are Terraform's, above (ensure_tables creates them on
# the local stack only), so the account needs no bigquery.tables.create: with
# this role it cannot drop analytics_daily, and with dataViewer on the history
# tables it cannot write, let alone drop, those.
resource "google_bigquery_table_iam_member" "analytics_writes_its_tables" {
  for_each = local.analytics_tables

  project    = var.project_id
  dataset_id = google_bigquery_dataset.telemetry.dataset_id
  table_id   = google_bigquery_table.analytics[each.key].table_id
  role       = google_project_iam_custom_role.table_writer.id
  member     = "serviceAccount:${google_service_account.analytics.email}"
}

resource "google_secret_manager_secret_iam_member" "analytics_reads_mongodb_uri" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.pipeline["mongodb-uri"].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.analytics.email}"
}

# The scheduler's identity for this job: it may invoke the analytics function, and nothing else.
resource "google_service_account" "analytics_invoker" {
  project      = var.project_id
  account_id   = "telemetry-analytics-invoker"
  display_name = "Telemetry analytics scheduler"
  description  = "Cloud Scheduler invokes the analytics function as this account (OIDC)."

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_service_iam_member" "analytics_invoker_invokes" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.analytics.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.analytics_invoker.email}"
}

# --- The function -------------------------------------------------------------------

data "archive_file" "analytics_source" {
  type             = "zip"
  output_path      = "${path.module}/.build/analytics.zip"
  output_file_mode = "0644"

  dynamic "source" {
    for_each = local.analytics_files
    content {
      filename = source.key
      content  = file(source.value)
    }
  }
}

resource "google_storage_bucket_object" "analytics_source" {
  bucket = google_storage_bucket.function_source.name
  name   = "analytics-${data.archive_file.analytics_source.output_md5}.zip"
  source = data.archive_file.analytics_source.output_path
}

resource "google_cloudfunctions2_function" "analytics" {
  project     = var.project_id
  location    = var.region
  name        = "telemetry-analytics"
  description = "Hourly: the BigQuery history into the dashboard's daily figures (BigQuery analytics_daily, MongoDB analytics)."

  build_config {
    runtime           = local.python_runtime
    entry_point       = "analytics"
    service_account   = local.build_service_account
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.analytics_source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.analytics.email
    environment_variables = local.analytics_environment

    secret_environment_variables {
      key        = "MONGODB_URI"
      project_id = var.project_id
      secret     = google_secret_manager_secret.pipeline["mongodb-uri"].secret_id
      version    = "latest"
    }

    # Only the scheduler's account may invoke it (no public invoker grant); the
    # request still comes in over the internet, from Cloud Scheduler.
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true

    # One run at a time: two would compute the same days and race on the MERGEs.
    max_instance_count               = 1
    max_instance_request_concurrency = 1
    available_memory                 = "512M"
    timeout_seconds                  = var.analytics_timeout_seconds
  }

  #checkov:skip=CKV_GCP_124:Cloud Scheduler calls from outside any VPC, so internal-only ingress would refuse it; only the invoker account may call (no public grant).

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_iam_member.analytics_reads_mongodb_uri,
    google_project_iam_member.build_writes_logs,
    google_storage_bucket_iam_member.build_reads_function_source,
    google_artifact_registry_repository_iam_member.build_pushes_function_images,
  ]
}

resource "google_cloud_scheduler_job" "analytics" {
  project     = var.project_id
  region      = var.region
  name        = "telemetry-analytics"
  description = "Hourly analytics run, after the pipelines' runs of the hour."
  schedule    = var.analytics_schedule
  time_zone   = "Etc/UTC"
  paused      = var.pipeline_schedules_paused

  # The request lasts as long as the run (the longest deadline Cloud Scheduler allows).
  attempt_deadline = "1800s"

  # A failed run (a 500) is tried again; whatever is still open waits for the next hour.
  retry_config {
    retry_count          = 2
    min_backoff_duration = "300s"
    max_doublings        = 1
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.analytics.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.analytics_invoker.email
      audience              = google_cloudfunctions2_function.analytics.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.analytics_invoker_invokes]
}
