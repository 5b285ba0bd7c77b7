# Identities and grants, each on the narrowest resource Google lets it be granted
# on. No basic role is granted anywhere. Project-level roles are granted only
# where no narrower scope exists: running Dataflow workers and BigQuery jobs
# (pipeline account), launching Dataflow jobs (scheduler account; the audit's
# account, audit.tf, also runs BigQuery jobs), writing build logs (build
# account), and BigQuery jobs of the analytics account (analytics.tf). Predefined
# roles carry more than each holder uses; where that matters it is said at the
# grant (roles/dataflow.worker below). Where a predefined role would let an
# account drop a table Terraform protects, a custom role stands in (table_writer).

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

# --- Pipelines ------------------------------------------------------------------

# Runs the Dataflow jobs of both templates: the Flex Template launcher VM and the
# workers. It reads pings and notifications and writes BigQuery. No grant below
# lets it write the pings bucket, the topic or the template specs, but the
# project-level roles/dataflow.worker does carry storage.objects.create (and
# .get, storage.buckets.get) on every bucket of the project: see that grant.
resource "google_service_account" "pipeline" {
  project      = var.project_id
  account_id   = "telemetry-pipeline"
  display_name = "Telemetry pipelines (Dataflow workers)"
  description  = "Runs the tracking and deactivation Dataflow jobs."

  depends_on = [google_project_service.enabled]
}

# Dataflow workers lease work, report progress and write logs through this role;
# it exists only at project level. It is broader than this account needs: its
# storage.objects.create and storage.objects.get apply to every bucket of the
# project, the pings bucket included, so the pipeline account could add (never
# overwrite or delete: no storage.objects.delete) objects there. This is not
# narrowed: a custom role copied from Google's permission list would drift from
# it, and an IAM condition on resource.name would also have to hold for the
# non-storage permissions. The account already holds the MongoDB URI and writes
# the history, so the added reach is small. See docs/deploying.md, "Least privilege, honestly".
resource "google_project_iam_member" "pipeline_dataflow_worker" {
  project = var.project_id
  role    = "roles/dataflow.worker"
  member  = "serviceAccount:${google_service_account.pipeline.email}"
}

# Running query jobs (the MERGE of each staging table) is a project permission;
# the data it may touch is limited by the dataset grant below.
resource "google_project_iam_member" "pipeline_bigquery_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.pipeline.email}"
}

# --- Writing a table without being able to drop it -------------------------------

# roles/bigquery.dataEditor on a table or dataset carries bigquery.tables.delete,
# and BigQuery's deletion_protection is a Terraform-side setting only: any
# holder of that role could drop the history with one API call. This role is
# what a DML statement (MERGE, UPDATE, DELETE) on a table needs, and nothing
# else: bigquery.tables.get (the statement's target is resolved by its
# metadata), bigquery.tables.getData (MERGE and DELETE read the rows they test)
# and bigquery.tables.updateData (write rows). The job itself needs
# bigquery.jobs.create on the project (roles/bigquery.jobUser), and a MERGE's
# source table getData where it lives (the staging dataset). No
# bigquery.tables.create, .update (schema, expiry, options) or .delete: the
# tables it is granted on are Terraform's, and only Terraform changes them.
resource "google_project_iam_custom_role" "table_writer" {
  project     = var.project_id
  role_id     = "telemetryTableWriter"
  title       = "Telemetry table writer"
  description = "Read and write the rows of a BigQuery table with DML; cannot create, alter or drop it."
  permissions = [
    "bigquery.tables.get",
    "bigquery.tables.getData",
    "bigquery.tables.updateData",
  ]
}

# MERGE each run's staging tables into the history tables (and into `rejected`).
# Per table, not on the dataset: the analytics tables in the same dataset are
# not the pipelines' to write.
resource "google_bigquery_table_iam_member" "pipeline_writes_history" {
  for_each = local.bq_tables

  project    = var.project_id
  dataset_id = google_bigquery_dataset.telemetry.dataset_id
  table_id   = google_bigquery_table.history[each.key].table_id
  role       = google_project_iam_custom_role.table_writer.id
  member     = "serviceAccount:${google_service_account.pipeline.email}"
}

# Create, load, read and drop the runs' staging tables in the scratch dataset
# (the only dataset where this account may create or delete a table).
resource "google_bigquery_dataset_iam_member" "pipeline_edits_staging" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.staging.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.pipeline.email}"
}

# Read (and, in hour mode, list) the raw pings.
resource "google_storage_bucket_iam_member" "pipeline_reads_pings" {
  bucket = google_storage_bucket.pings.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

# Dataflow staging and temp files.
resource "google_storage_bucket_iam_member" "pipeline_uses_dataflow_temp" {
  bucket = google_storage_bucket.dataflow_temp.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

resource "google_storage_bucket_iam_member" "pipeline_reads_templates" {
  bucket = google_storage_bucket.templates.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

# Pull and acknowledge each route's notifications.
resource "google_pubsub_subscription_iam_member" "pipeline_pulls_pings" {
  for_each = local.routes

  project      = var.project_id
  subscription = google_pubsub_subscription.pings[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.pipeline.email}"
}

# Read the MongoDB URI and the mail API token on the worker.
resource "google_secret_manager_secret_iam_member" "pipeline_reads_secrets" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = google_secret_manager_secret.pipeline[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.pipeline.email}"
}

# The launcher VM and the workers pull the template image.
resource "google_artifact_registry_repository_iam_member" "pipeline_pulls_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.pipelines.location
  repository = google_artifact_registry_repository.pipelines.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.pipeline.email}"
}

# --- Scheduler ------------------------------------------------------------------

# Cloud Scheduler calls flexTemplates:launch with this account's token. It can
# launch jobs that run as the pipeline account, and read the specs; it cannot
# read any data. (Whoever applies this needs iam.serviceAccounts.actAs on it.)
resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "telemetry-scheduler"
  display_name = "Telemetry pipelines scheduler"
  description  = "Launches the hourly tracking and deactivation Dataflow jobs."

  depends_on = [google_project_service.enabled]
}

# Create Dataflow jobs; this role has no project-narrower form.
resource "google_project_iam_member" "scheduler_launches_dataflow" {
  project = var.project_id
  role    = "roles/dataflow.developer"
  member  = "serviceAccount:${google_service_account.scheduler.email}"

  #checkov:skip=CKV_GCP_49:Dataflow jobs can only be created with a project-level role; which account a job may run as is limited by the actAs grant on the pipeline account alone (below).
}

# Launch jobs whose workers run as the pipeline account (iam.serviceAccounts.actAs),
# on that one account only.
resource "google_service_account_iam_member" "scheduler_acts_as_pipeline" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.scheduler.email}"
}

# Dataflow reads the template spec with the launching caller's credentials.
resource "google_storage_bucket_iam_member" "scheduler_reads_templates" {
  bucket = google_storage_bucket.templates.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.scheduler.email}"
}

# flexTemplates.launch also checks storage.buckets.get on the spec's bucket and on
# the staging/temp bucket, which roles/storage.objectViewer does not carry. The
# legacy bucket reader is the smallest predefined role with it: storage.buckets.get
# and storage.objects.list (object names only, no contents).
resource "google_storage_bucket_iam_member" "scheduler_gets_templates_bucket" {
  bucket = google_storage_bucket.templates.name
  role   = "roles/storage.legacyBucketReader"
  member = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_storage_bucket_iam_member" "scheduler_gets_dataflow_temp_bucket" {
  bucket = google_storage_bucket.dataflow_temp.name
  role   = "roles/storage.legacyBucketReader"
  member = "serviceAccount:${google_service_account.scheduler.email}"
}

# --- Builds -------------------------------------------------------------------------

# Runs every Cloud Build build of this stack: the functions' builds
# (build_config.service_account, functions.tf and analytics.tf) and the template
# images' `gcloud builds submit --service-account` (output build_service_account).
# New organizations give the default build account no roles, so the stack brings
# its own, with only what a build uses: write its logs, read its sources, push
# its images. Whoever deploys needs iam.serviceAccounts.actAs on it (a project
# owner has it; anyone else needs roles/iam.serviceAccountUser on this account).
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "telemetry-build"
  display_name = "Telemetry builds (Cloud Build)"
  description  = "Builds the functions and the Flex Template images; reads their sources, pushes their images, writes build logs."

  depends_on = [google_project_service.enabled]
}

# Build logs go to Cloud Logging; writing log entries has no narrower scope.
resource "google_project_iam_member" "build_writes_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

# The functions' source zips.
resource "google_storage_bucket_iam_member" "build_reads_function_source" {
  bucket = google_storage_bucket.function_source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

# `gcloud builds submit` stages the source tarball under gs://<bucket>/source and
# the build writes its log under gs://<bucket>/logs (rewritten as it grows).
resource "google_storage_bucket_iam_member" "build_uses_build_bucket" {
  bucket = google_storage_bucket.build.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.build.email}"
}

# Push the functions' images (and their build cache)...
resource "google_artifact_registry_repository_iam_member" "build_pushes_function_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

# ...and the template images.
resource "google_artifact_registry_repository_iam_member" "build_pushes_template_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.pipelines.location
  repository = google_artifact_registry_repository.pipelines.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}
