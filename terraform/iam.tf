# Identities and grants, each the least its holder needs. No project-level role
# is granted anywhere, and no basic role (owner/editor/viewer).

# --- Ingest -------------------------------------------------------------------

# Runs the three ingest functions. Its only grant: create objects in the pings
# bucket (it can neither read, list, overwrite nor delete them).
resource "google_service_account" "ingest" {
  project      = var.project_id
  account_id   = "telemetry-ingest"
  display_name = "Telemetry ingest functions"
  description  = "Runs the track, deactivate and tracking-skipped functions; may only create objects in the pings bucket."

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket_iam_member" "ingest_creates_pings" {
  bucket = google_storage_bucket.pings.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.ingest.email}"
}

# WordPress sites post pings anonymously, so anyone may invoke the ingest
# functions. A gen2 function serves HTTP through its Cloud Run service, and only
# roles/run.invoker on that service lets a request in: roles/cloudfunctions.invoker
# on the function does not.
resource "google_cloud_run_service_iam_member" "public_invokes_ingest" {
  for_each = local.routes

  # service: projects/<project>/locations/<region>/services/<name> of the function's service.
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.ingest[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"

  #checkov:skip=CKV_GCP_102:The ingest endpoints are public by design: WordPress sites post pings without credentials.
}

# --- Bucket notifications ------------------------------------------------------

# Cloud Storage's service agent publishes the pings bucket's notifications.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

resource "google_pubsub_topic_iam_member" "gcs_publishes_pings" {
  project = var.project_id
  topic   = google_pubsub_topic.pings.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}
