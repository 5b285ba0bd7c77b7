# APIs the stack needs. A later change that adds BigQuery, Dataflow or Cloud
# Scheduler adds their APIs here.
locals {
  apis = [
    "artifactregistry.googleapis.com", # images built from the function sources
    "cloudbuild.googleapis.com",       # builds the function sources
    "cloudfunctions.googleapis.com",   # the ingest functions
    "iam.googleapis.com",              # the ingest service account
    "pubsub.googleapis.com",           # the pings topic and subscriptions
    "run.googleapis.com",              # gen2 functions run as Cloud Run services
    "storage.googleapis.com",          # the pings and source buckets
  ]
}

resource "google_project_service" "enabled" {
  for_each = toset(local.apis)

  project = var.project_id
  service = each.value

  # Other things in the project may use these APIs: never turn them off on destroy.
  disable_on_destroy = false
}
