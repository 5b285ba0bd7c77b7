output "ingest_base_url" {
  description = "Base URL (ending in /) serving track, deactivate and tracking-skipped: the INGEST_URL setting."
  value       = local.ingest_base_url
}

output "ingest_urls" {
  description = "URL of each ingest function, by route."
  value       = { for name, fn in google_cloudfunctions2_function.ingest : name => fn.url }
}

output "pings_bucket" {
  description = "Bucket of the raw pings: the TRACKING_BUCKET setting."
  value       = google_storage_bucket.pings.name
}

output "pings_topic" {
  description = "Topic of the pings bucket's finalize notifications: the PINGS_TOPIC setting."
  value       = google_pubsub_topic.pings.name
}

output "subscriptions" {
  description = "Pull subscription of each route's notifications, by route."
  value       = { for name, sub in google_pubsub_subscription.pings : name => sub.name }
}

output "ingest_service_account" {
  description = "Service account the ingest functions run as."
  value       = google_service_account.ingest.email
}

output "function_source_bucket" {
  description = "Bucket of the functions' source zips."
  value       = google_storage_bucket.function_source.name
}

output "bq_dataset" {
  description = "BigQuery dataset of the history tables: the BQ_DATASET setting."
  value       = google_bigquery_dataset.telemetry.dataset_id
}

output "bq_tables" {
  description = "Each history table as project.dataset.table, by table name."
  value       = { for name, table in google_bigquery_table.history : name => "${table.project}.${table.dataset_id}.${table.table_id}" }
}

output "template_specs" {
  description = "gs:// path of each Flex Template spec, by template: --template-file-gcs-location of `gcloud dataflow flex-template run`."
  value       = local.template_spec_paths
}

output "template_images" {
  description = "Image each template runs (launcher and workers), by template: build and push exactly these."
  value       = local.template_images
}

output "pipeline_service_account" {
  description = "Service account the Dataflow jobs run as: --service-account-email of a hand-launched run."
  value       = google_service_account.pipeline.email
}

output "scheduler_service_account" {
  description = "Service account that launches the hourly jobs."
  value       = google_service_account.scheduler.email
}

output "pipeline_secrets" {
  description = "Secret Manager secrets of the pipelines (projects/<project>/secrets/<id>), by secret id; add their versions with gcloud."
  value       = { for id, secret in google_secret_manager_secret.pipeline : id => secret.id }
}

output "dataflow_temp_bucket" {
  description = "Bucket of the Dataflow jobs' staging (gs://<bucket>/staging) and temp (gs://<bucket>/tmp) files."
  value       = google_storage_bucket.dataflow_temp.name
}

output "launch_parameters" {
  description = "Template parameters of the hourly runs (secrets by version name only); a hand-launched run passes the same plus hour."
  value       = local.launch_parameters
}

output "build_service_account" {
  description = "Email of the account every build runs as (the functions' builds use it already)."
  value       = google_service_account.build.email
}

output "build_service_account_id" {
  description = "The build account as `gcloud builds submit --service-account` takes it: projects/<project>/serviceAccounts/<email>."
  value       = google_service_account.build.id
}

output "build_bucket" {
  description = "Bucket of the template images' builds: `gcloud builds submit --gcs-source-staging-dir=gs://<bucket>/source --gcs-log-dir=gs://<bucket>/logs`."
  value       = google_storage_bucket.build.name
}

output "scheduler_jobs" {
  description = "Cloud Scheduler jobs (in region); paused while pipeline_schedules_paused is true (scripts/deploy's last apply sets it to false)."
  value       = concat([for job in google_cloud_scheduler_job.pipeline : job.name], [google_cloud_scheduler_job.analytics.name, google_cloud_scheduler_job.audit.name])
}

output "nat_ip_address" {
  description = "The one external address the Dataflow workers' connections leave from: allow it (alone) in MongoDB Atlas's IP access list."
  value       = google_compute_address.nat.address
}

output "dataflow_subnetwork" {
  description = "Subnetwork of the Dataflow jobs: --subnetwork of a hand-launched run (with --disable-public-ips)."
  value       = google_compute_subnetwork.dataflow.self_link
}

locals {
  ingest_base_url = "https://${var.region}-${var.project_id}.cloudfunctions.net/"
}

# The clients are given one base URL; warn if Google serves a function elsewhere.
check "one_base_url" {
  assert {
    condition = alltrue([
      for name, fn in google_cloudfunctions2_function.ingest : fn.url == "${local.ingest_base_url}${name}"
    ])
    error_message = "A function's URL is not ${local.ingest_base_url}<name>; INGEST_URL cannot serve all three routes."
  }
}
