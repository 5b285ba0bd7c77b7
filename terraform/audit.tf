# The daily audit (telemetry/audit/job.py): an HTTP Cloud Function (gen2) that
# Cloud Scheduler invokes with an OIDC token, as the analytics function. It lists
# each route's hour folders of the last audit_days days in the pings bucket,
# compares the object names (each carries its ping_id) with the history tables
# and `rejected`, and has the hours that do not balance processed again: it
# launches the pipelines' Flex Templates in hour mode through the Dataflow API,
# with the parameters and environment of the hourly launches (pipelines.tf).
# A notification that was lost is found and repaired within a day.

locals {
  # The audit function's zip: its entry point and requirements, and the package's
  # common/ and audit/ folders (nothing of the pipelines: it launches them).
  audit_files = merge(
    {
      "main.py"               = "${local.repo_root}/functions/audit/main.py"
      "requirements.txt"      = "${local.repo_root}/functions/audit/requirements.txt"
      "telemetry/__init__.py" = "${local.repo_root}/telemetry/__init__.py"
    },
    {
      for f in fileset("${local.repo_root}/telemetry/common", "*.py") :
      "telemetry/common/${f}" => "${local.repo_root}/telemetry/common/${f}"
    },
    {
      for f in fileset("${local.repo_root}/telemetry/audit", "*.py") :
      "telemetry/audit/${f}" => "${local.repo_root}/telemetry/audit/${f}"
    },
  )

  # What the audit launches, per template: exactly the pieces of the hourly
  # launch body (google_cloud_scheduler_job.pipeline), without the job name
  # (the audit names each reprocess after its hours) and with hour/hour_to added
  # by the audit (telemetry/audit/reprocess.py, LaunchSpec.request).
  audit_launch = {
    project = var.project_id
    region  = var.region
    templates = {
      for name in keys(local.templates) : name => {
        containerSpecGcsPath = local.template_spec_paths[name]
        parameters           = local.launch_parameters
        environment          = merge(local.launch_environment, { sdkContainerImage = local.template_images[name] })
      }
    }
  }

  audit_environment = {
    GCP_PROJECT              = var.project_id
    TRACKING_BUCKET          = google_storage_bucket.pings.name
    BQ_DATASET               = google_bigquery_dataset.telemetry.dataset_id
    AUDIT_DAYS               = tostring(var.audit_days)
    AUDIT_SETTLE_HOURS       = tostring(var.audit_settle_hours)
    AUDIT_MAX_BYTES_BILLED   = tostring(var.audit_max_bytes_billed)
    AUDIT_MAX_REPROCESS_RUNS = tostring(var.audit_max_reprocess_runs)
    AUDIT_LAUNCH             = jsonencode(local.audit_launch)
    LOG_LEVEL                = var.log_level
  }

  # The audit's log line per hour that does not balance (telemetry/audit/job.py,
  # UNBALANCED_MESSAGE), and its failure line (FAILED_MESSAGE).
  audit_unbalanced_message = "audit: hour does not balance"
  audit_failure_message    = "audit run failed"
}

# --- Identity ---------------------------------------------------------------------

# Runs the audit function: lists the pings bucket's object names (no contents),
# reads the history tables, and launches the pipelines' templates as the
# pipeline account. It writes no data itself.
resource "google_service_account" "audit" {
  project      = var.project_id
  account_id   = "telemetry-audit"
  display_name = "Telemetry audit"
  description  = "Runs the daily audit: lists the pings, reads the history, launches hour-mode reprocessing on Dataflow."

  depends_on = [google_project_service.enabled]
}

# Query jobs are a project permission; the tables it may read are the grants below.
resource "google_project_iam_member" "audit_bigquery_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.audit.email}"
}

# ping_id of the history tables and source of `rejected`, read only.
resource "google_bigquery_table_iam_member" "audit_reads_history" {
  for_each = local.bq_tables

  project    = var.project_id
  dataset_id = google_bigquery_dataset.telemetry.dataset_id
  table_id   = google_bigquery_table.history[each.key].table_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.audit.email}"
}

# List the hour folders: object names only. roles/storage.legacyBucketReader is
# the smallest predefined role with storage.objects.list (and storage.buckets.get);
# it cannot read an object's contents, which the audit never needs.
resource "google_storage_bucket_iam_member" "audit_lists_pings" {
  bucket = google_storage_bucket.pings.name
  role   = "roles/storage.legacyBucketReader"
  member = "serviceAccount:${google_service_account.audit.email}"
}

# Launch the reprocessing jobs, as the scheduler account does (iam.tf): create
# Dataflow jobs (project level only), run them as the pipeline account, and read
# the template specs and get the spec's and the temp bucket.
resource "google_project_iam_member" "audit_launches_dataflow" {
  project = var.project_id
  role    = "roles/dataflow.developer"
  member  = "serviceAccount:${google_service_account.audit.email}"

  #checkov:skip=CKV_GCP_49:Dataflow jobs can only be created with a project-level role; which account a job may run as is limited by the actAs grant on the pipeline account alone (below).
}

resource "google_service_account_iam_member" "audit_acts_as_pipeline" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.audit.email}"
}

resource "google_storage_bucket_iam_member" "audit_reads_templates" {
  bucket = google_storage_bucket.templates.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.audit.email}"
}

resource "google_storage_bucket_iam_member" "audit_gets_templates_bucket" {
  bucket = google_storage_bucket.templates.name
  role   = "roles/storage.legacyBucketReader"
  member = "serviceAccount:${google_service_account.audit.email}"
}

resource "google_storage_bucket_iam_member" "audit_gets_dataflow_temp_bucket" {
  bucket = google_storage_bucket.dataflow_temp.name
  role   = "roles/storage.legacyBucketReader"
  member = "serviceAccount:${google_service_account.audit.email}"
}

# The scheduler's identity for the audit: it may invoke the audit function, and nothing else.
resource "google_service_account" "audit_invoker" {
  project      = var.project_id
  account_id   = "telemetry-audit-invoker"
  display_name = "Telemetry audit scheduler"
  description  = "Cloud Scheduler invokes the audit function as this account (OIDC)."

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_service_iam_member" "audit_invoker_invokes" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.audit.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.audit_invoker.email}"
}

# --- The function -------------------------------------------------------------------

data "archive_file" "audit_source" {
  type             = "zip"
  output_path      = "${path.module}/.build/audit.zip"
  output_file_mode = "0644"

  dynamic "source" {
    for_each = local.audit_files
    content {
      filename = source.key
      content  = file(source.value)
    }
  }
}

resource "google_storage_bucket_object" "audit_source" {
  bucket = google_storage_bucket.function_source.name
  name   = "audit-${data.archive_file.audit_source.output_md5}.zip"
  source = data.archive_file.audit_source.output_path
}

resource "google_cloudfunctions2_function" "audit" {
  project     = var.project_id
  location    = var.region
  name        = "telemetry-audit"
  description = "Daily: each hour folder of the raw pings against the BigQuery history; reprocesses the hours that do not balance."

  build_config {
    runtime           = local.python_runtime
    entry_point       = "audit"
    service_account   = local.build_service_account
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.audit_source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.audit.email
    environment_variables = local.audit_environment

    # Only the scheduler's account may invoke it (no public invoker grant).
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true

    # One audit at a time: two would launch the same reprocessing (the job names
    # would keep the second from starting a job, but not from trying).
    max_instance_count               = 1
    max_instance_request_concurrency = 1
    # A day of one route's ping_ids is held at once (telemetry/audit/job.py).
    available_memory = "1Gi"
    timeout_seconds  = var.audit_timeout_seconds
  }

  lifecycle {
    # An object past the raw retention is gone: its hour could never balance,
    # and would be reprocessed for nothing every day.
    precondition {
      condition     = var.audit_days < var.raw_ping_retention_days
      error_message = "audit_days must be less than raw_ping_retention_days: the audit can only check hours whose objects are still kept."
    }
  }

  #checkov:skip=CKV_GCP_124:Cloud Scheduler calls from outside any VPC, so internal-only ingress would refuse it; only the invoker account may call (no public grant).

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.build_writes_logs,
    google_storage_bucket_iam_member.build_reads_function_source,
    google_artifact_registry_repository_iam_member.build_pushes_function_images,
  ]
}

resource "google_cloud_scheduler_job" "audit" {
  project     = var.project_id
  region      = var.region
  name        = "telemetry-audit"
  description = "Daily audit of the raw pings against the BigQuery history; reprocesses the hours that do not balance."
  schedule    = var.audit_schedule
  time_zone   = "Etc/UTC"
  paused      = var.pipeline_schedules_paused

  attempt_deadline = "1800s"

  # A failed audit (a 500) is tried again; a reprocess already launched for the
  # same hours is not launched twice (its job name is the hours').
  retry_config {
    retry_count          = 2
    min_backoff_duration = "300s"
    max_doublings        = 1
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.audit.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.audit_invoker.email
      audience              = google_cloudfunctions2_function.audit.service_config[0].uri
    }
  }

  depends_on = [
    google_cloud_run_service_iam_member.audit_invoker_invokes,
    google_project_iam_member.audit_bigquery_jobs,
    google_bigquery_table_iam_member.audit_reads_history,
    google_storage_bucket_iam_member.audit_lists_pings,
    google_project_iam_member.audit_launches_dataflow,
    google_service_account_iam_member.audit_acts_as_pipeline,
    google_storage_bucket_iam_member.audit_reads_templates,
    google_storage_bucket_iam_member.audit_gets_templates_bucket,
    google_storage_bucket_iam_member.audit_gets_dataflow_temp_bucket,
  ]
}

# --- Monitoring ------------------------------------------------------------------------

# One count per route and hour folder that does not balance (each is then
# reprocessed): lost notifications, found and repaired.
resource "google_logging_metric" "audit_unbalanced_hours" {
  project     = var.project_id
  name        = "telemetry-audit-unbalanced-hours"
  description = "Hour folders whose objects lack a history or rejected row, found by the daily audit (telemetry/audit/job.py)."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloudfunctions2_function.audit.name}\" AND jsonPayload.message=\"${local.audit_unbalanced_message}\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "audit_failed" {
  project      = var.project_id
  display_name = "Telemetry audit: run failed"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "The audit function logged a failed run"
    condition_matched_log {
      filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloudfunctions2_function.audit.name}\" AND severity>=ERROR AND jsonPayload.message=\"${local.audit_failure_message}\""
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "86400s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "The daily audit failed; the log entry has the traceback. Lost notifications stay unrepaired until an audit succeeds (run `make audit` locally against production, or invoke the function)."
  }

  depends_on = [google_project_service.enabled]
}
