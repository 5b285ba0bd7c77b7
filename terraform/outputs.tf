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
