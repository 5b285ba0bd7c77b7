# The vendor's dashboard and API (telemetry/dashboard/): an HTTP Cloud Function
# (gen2) that reads MongoDB only: projects, sites, deactivations, the serving copy
# analytics, and api_keys. Anyone may invoke it; every route but
# /v1/openapi.json checks the caller's API key itself (a key per project,
# `telemetry-admin key create`).
#
# It runs as an account of its own, with one grant: reading its own secret, the
# connection string of a read-only MongoDB user. No grant on the pings bucket,
# on BigQuery, or on the pipelines' secrets (tests/terraform/test_dashboard.py).

locals {
  # The function's zip: its entry point and requirements, the package's common/
  # and dashboard/ folders (with the page's templates/ and static/), and the
  # two pure modules it reads from beside them: analytics/metrics.py (the
  # figures' names) and report/charts.py (the charts' one definition, shared
  # with the report; Altair, metrics and common/ only). The project's reason
  # labels and the site statuses are common/'s (projects.py, sites.py).
  dashboard_files = merge(
    {
      "main.py"                         = "${local.repo_root}/functions/dashboard/main.py"
      "requirements.txt"                = "${local.repo_root}/functions/dashboard/requirements.txt"
      "telemetry/__init__.py"           = "${local.repo_root}/telemetry/__init__.py"
      "telemetry/analytics/__init__.py" = "${local.repo_root}/telemetry/analytics/__init__.py"
      "telemetry/analytics/metrics.py"  = "${local.repo_root}/telemetry/analytics/metrics.py"
      "telemetry/report/__init__.py"    = "${local.repo_root}/telemetry/report/__init__.py"
      "telemetry/report/charts.py"      = "${local.repo_root}/telemetry/report/charts.py"
    },
    {
      for f in fileset("${local.repo_root}/telemetry/common", "*.py") :
      "telemetry/common/${f}" => "${local.repo_root}/telemetry/common/${f}"
    },
    {
      for f in fileset("${local.repo_root}/telemetry/dashboard", "**/*") :
      "telemetry/dashboard/${f}" => "${local.repo_root}/telemetry/dashboard/${f}"
      if !strcontains(f, "__pycache__")
    },
  )

  dashboard_environment = {
    GCP_PROJECT = var.project_id
    MONGODB_DB  = var.mongodb_db
    LOG_LEVEL   = var.log_level
    # As many functions-framework threads as requests Cloud Run sends it (functions.tf).
    THREADS = tostring(var.dashboard_concurrency)
  }
}

# --- Identity and its one grant ------------------------------------------------------------

resource "google_service_account" "dashboard" {
  project      = var.project_id
  account_id   = "telemetry-dashboard"
  display_name = "Telemetry dashboard"
  description  = "Runs the dashboard function: reads MongoDB through its own read-only credential, nothing else."

  depends_on = [google_project_service.enabled]
}

# The dashboard's MongoDB connection string, apart from the pipelines' mongodb-uri:
# the URI of a database user that may only read: a custom role of `find` on the
# collections the dashboard reads of MONGODB_DB (docs/dashboard.md, "Deploying").
# Add its value with
#   printf '%s' "$URI" | gcloud secrets versions add dashboard-mongodb-uri --data-file=-
# or scripts/deploy --dashboard-mongodb-uri-file FILE.
resource "google_secret_manager_secret" "dashboard_mongodb_uri" {
  project   = var.project_id
  secret_id = "dashboard-mongodb-uri"

  annotations = {
    description = "MongoDB connection string of the dashboard function: a read-only user whose one role is find on projects, sites, deactivations, analytics and api_keys of MONGODB_DB (never webhook_secrets)."
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "dashboard_reads_its_mongodb_uri" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.dashboard_mongodb_uri.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.dashboard.email}"
}

# The key that signs the dashboard page's sign-in cookies (HMAC-SHA256,
# telemetry/dashboard/sessions.py): at least 32 random characters. Add it with
#   openssl rand -base64 48 | tr -d '\n' | gcloud secrets versions add dashboard-session-secret --data-file=-
# or scripts/deploy --dashboard-session-secret-file FILE. A new version signs everyone out.
resource "google_secret_manager_secret" "dashboard_session_secret" {
  project   = var.project_id
  secret_id = "dashboard-session-secret"

  annotations = {
    description = "HMAC key of the dashboard page's sign-in cookies (DASHBOARD_SESSION_SECRET), 32+ random characters."
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "dashboard_reads_its_session_secret" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.dashboard_session_secret.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.dashboard.email}"
}

# Public: vendors' scripts and browsers call it from anywhere; the API key is the auth.
resource "google_cloud_run_service_iam_member" "public_invokes_dashboard" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.dashboard.service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"

  #checkov:skip=CKV_GCP_102:The dashboard is public by design: each request carries a project's API key, which the function checks.
}

# --- The function ----------------------------------------------------------------------------

data "archive_file" "dashboard_source" {
  type             = "zip"
  output_path      = "${path.module}/.build/dashboard.zip"
  output_file_mode = "0644"

  dynamic "source" {
    for_each = local.dashboard_files
    content {
      filename = source.key
      content  = file(source.value)
    }
  }
}

resource "google_storage_bucket_object" "dashboard_source" {
  bucket = google_storage_bucket.function_source.name
  name   = "dashboard-${data.archive_file.dashboard_source.output_md5}.zip"
  source = data.archive_file.dashboard_source.output_path
}

resource "google_cloudfunctions2_function" "dashboard" {
  project     = var.project_id
  location    = var.region
  name        = "telemetry-dashboard"
  description = "The vendor's API and dashboard: sites, deactivations, figures and CSV exports from MongoDB, per API key."

  build_config {
    runtime           = local.python_runtime
    entry_point       = "dashboard"
    service_account   = local.build_service_account
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.dashboard_source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.dashboard.email
    environment_variables = local.dashboard_environment

    secret_environment_variables {
      key        = "MONGODB_URI"
      project_id = var.project_id
      secret     = google_secret_manager_secret.dashboard_mongodb_uri.secret_id
      version    = "latest"
    }

    secret_environment_variables {
      key        = "DASHBOARD_SESSION_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.dashboard_session_secret.secret_id
      version    = "latest"
    }

    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true

    # Scales to zero when nobody looks; a CSV export of a large project streams
    # for a while, so the timeout is longer than a page needs.
    available_memory                 = var.dashboard_memory
    available_cpu                    = "1"
    max_instance_request_concurrency = var.dashboard_concurrency
    min_instance_count               = 0
    max_instance_count               = var.dashboard_max_instances
    timeout_seconds                  = var.dashboard_timeout_seconds
  }

  #checkov:skip=CKV_GCP_124:Vendors call the API from their own machines and browsers on the internet; each request carries an API key.

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_iam_member.dashboard_reads_its_mongodb_uri,
    google_secret_manager_secret_iam_member.dashboard_reads_its_session_secret,
    google_project_iam_member.build_writes_logs,
    google_storage_bucket_iam_member.build_reads_function_source,
    google_artifact_registry_repository_iam_member.build_pushes_function_images,
  ]
}

output "dashboard_url" {
  description = "Base URL of the dashboard function: the API is under /v1 (DASHBOARD_URL)."
  value       = google_cloudfunctions2_function.dashboard.service_config[0].uri
}

output "dashboard_secret" {
  description = "Secret Manager secret of the dashboard's read-only MongoDB connection string; add its version with gcloud."
  value       = google_secret_manager_secret.dashboard_mongodb_uri.id
}
