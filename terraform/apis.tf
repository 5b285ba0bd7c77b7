# APIs the stack needs. Enabling Dataflow also enables what it depends on
# (Compute Engine for the workers, Cloud Logging).
locals {
  apis = [
    "artifactregistry.googleapis.com", # function images; the pipelines' template images
    "bigquery.googleapis.com",         # the history dataset and tables
    "cloudbuild.googleapis.com",       # builds the function sources and the template images
    "cloudfunctions.googleapis.com",   # the ingest functions
    "cloudscheduler.googleapis.com",   # the hourly pipeline launches
    "dataflow.googleapis.com",         # the tracking and deactivation pipelines
    "iam.googleapis.com",              # the service accounts
    "pubsub.googleapis.com",           # the pings topic and subscriptions
    "run.googleapis.com",              # gen2 functions run as Cloud Run services
    "secretmanager.googleapis.com",    # the pipelines' MongoDB URI and mail API token
    "storage.googleapis.com",          # the pings, source, templates and Dataflow temp buckets
  ]
}

resource "google_project_service" "enabled" {
  for_each = toset(local.apis)

  project = var.project_id
  service = each.value

  # Other things in the project may use these APIs: never turn them off on destroy.
  disable_on_destroy = false
}
