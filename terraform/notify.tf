# Vendor notifications (telemetry/notify/, docs/notify.md): the hourly `telemetry-notify`
# function, invoked by Cloud Scheduler with an OIDC token like the analytics job. It reads
# what the pipelines committed (BigQuery `deactivations`; MongoDB `sites` and `projects`),
# keeps its outbox in MongoDB, and sends alerts over SMTP and webhooks over HTTPS.
#
# Why a function of its own and not a step of the pipelines: a slow or dead receiver
# cannot stretch a pipeline run past its Dataflow bound or hold its run lock, retries
# over 24 hours outlive any pipeline run, and the pipelines' exactly-once sinks stay
# simple (docs/notify.md, "Where it runs").
#
# Egress: every connection leaves through a Serverless VPC Access connector in the
# workers' network (ALL_TRAFFIC) and Cloud NAT, so webhooks and mail come from the one
# reserved address (output nat_ip_address: vendors may allow it), and a firewall rule
# refuses the connector any private, shared or link-local destination: a second wall
# behind the function's own check of each webhook's resolved address
# (telemetry/notify/addresses.py). NOTIFY_ALLOW_PRIVATE_WEBHOOKS is never set here.

locals {
  # The notify function's zip: its entry point and requirements, and the package's
  # common/ and notify/ folders.
  notify_files = merge(
    {
      "main.py"               = "${local.repo_root}/functions/notify/main.py"
      "requirements.txt"      = "${local.repo_root}/functions/notify/requirements.txt"
      "telemetry/__init__.py" = "${local.repo_root}/telemetry/__init__.py"
    },
    {
      for f in fileset("${local.repo_root}/telemetry/common", "*.py") :
      "telemetry/common/${f}" => "${local.repo_root}/telemetry/common/${f}"
    },
    {
      for f in fileset("${local.repo_root}/telemetry/notify", "*.py") :
      "telemetry/notify/${f}" => "${local.repo_root}/telemetry/notify/${f}"
    },
    # The serving copy's contract and the analytics job's progress, which the digest,
    # figures.ready and the spike alert read (metrics.py, job.JOB_NAME; job.py reads its
    # tables' manifests at import).
    {
      for f in fileset("${local.repo_root}/telemetry/analytics", "**/*.{py,sql,json}") :
      "telemetry/analytics/${f}" => "${local.repo_root}/telemetry/analytics/${f}"
    },
  )

  # The only history table it reads (telemetry/notify/site_events.py); new sites come from MongoDB.
  notify_reads = ["deactivations"]
  # The analytics job's table it reads: its progress (telemetry/notify/figures_ready.py READS).
  notify_reads_analytics = ["analytics_progress"]

  notify_environment = {
    GCP_PROJECT               = var.project_id
    BQ_DATASET                = google_bigquery_dataset.telemetry.dataset_id
    MONGODB_DB                = var.mongodb_db
    NOTIFY_OVERLAP_HOURS      = tostring(var.notify_overlap_hours)
    NOTIFY_RETRY_HOURS        = tostring(var.notify_retry_hours)
    NOTIFY_RUN_BUDGET_SECONDS = tostring(var.notify_run_budget_seconds)
    # A flood of forged pings gets one summary a day past this (telemetry/notify/site_events.py).
    NOTIFY_MAX_SITE_EVENTS_PER_DAY = tostring(var.notify_max_site_events_per_day)
    SMTP_RELAY                     = var.smtp_relay
    SMTP_TLS                       = var.smtp_tls
    SMTP_USERNAME                  = var.smtp_username
    SMTP_FROM                      = var.smtp_from
    LOG_LEVEL                      = var.log_level
  }

  # Destinations the function may never reach, whatever a webhook URL resolves to.
  notify_refused_ranges = [
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", # private (RFC 1918)
    "100.64.0.0/10",                                 # shared address space (RFC 6598)
    "169.254.0.0/16",                                # link-local, the metadata server's
  ]
}

# The SMTP relay's password or API key. Declared only: add the value with
#   printf '%s' "$KEY" | gcloud secrets versions add smtp-password --data-file=-
resource "google_secret_manager_secret" "smtp_password" {
  project   = var.project_id
  secret_id = "smtp-password"

  annotations = {
    description = "SMTP AUTH password (or API key) of the relay that sends the vendors' alerts (SMTP_PASSWORD)."
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

# --- Identity ---------------------------------------------------------------------

# Runs the notify function: reads the deactivations history, the analytics job's progress,
# the MongoDB URI and the SMTP password. Nothing else (its MongoDB rights are the URI's user's).
resource "google_service_account" "notify" {
  project      = var.project_id
  account_id   = "telemetry-notify"
  display_name = "Telemetry notifications"
  description  = "Runs the notify function: reads BigQuery deactivations, MongoDB, and sends alerts and webhooks."

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "notify_bigquery_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.notify.email}"
}

resource "google_bigquery_table_iam_member" "notify_reads_history" {
  for_each = toset(local.notify_reads)

  project    = var.project_id
  dataset_id = google_bigquery_dataset.telemetry.dataset_id
  table_id   = google_bigquery_table.history[each.key].table_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.notify.email}"
}

# The analytics job's last final day (analytics_progress), after which digests,
# figures.ready and spike alerts are due (telemetry/notify/figures_ready.py).
resource "google_bigquery_table_iam_member" "notify_reads_analytics" {
  for_each = toset(local.notify_reads_analytics)

  project    = var.project_id
  dataset_id = google_bigquery_dataset.telemetry.dataset_id
  table_id   = google_bigquery_table.analytics[each.key].table_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.notify.email}"
}

resource "google_secret_manager_secret_iam_member" "notify_reads_mongodb_uri" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.pipeline["mongodb-uri"].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.notify.email}"
}

resource "google_secret_manager_secret_iam_member" "notify_reads_smtp_password" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.smtp_password.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.notify.email}"
}

# The scheduler's identity for this job: it may invoke the notify function, and nothing else.
resource "google_service_account" "notify_invoker" {
  project      = var.project_id
  account_id   = "telemetry-notify-invoker"
  display_name = "Telemetry notify scheduler"
  description  = "Cloud Scheduler invokes the notify function as this account (OIDC)."

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_service_iam_member" "notify_invoker_invokes" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.notify.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.notify_invoker.email}"
}

# --- Egress -----------------------------------------------------------------------

resource "google_compute_subnetwork" "notify_connector" {
  project       = var.project_id
  name          = "${var.network_name}-notify-${var.region}"
  region        = var.region
  network       = google_compute_network.dataflow.id
  ip_cidr_range = var.notify_connector_cidr

  # BigQuery and Secret Manager through Google's private access, not the NAT.
  private_ip_google_access = true

  #checkov:skip=CKV_GCP_26:VPC flow logs are billed per sampled flow; the only traffic is the hourly notify run's. Add a log_config block to turn them on.
  #checkov:skip=CKV_GCP_76:The subnetwork is IPv4 only; Private Google Access for IPv6 does not apply.
}

resource "google_vpc_access_connector" "notify" {
  project = var.project_id
  name    = "telemetry-notify"
  region  = var.region

  subnet {
    name = google_compute_subnetwork.notify_connector.name
  }
  machine_type  = "e2-micro"
  min_instances = 2
  max_instances = 3

  depends_on = [google_project_service.enabled]
}

# Connector instances carry the tag vpc-connector-<region>-<name>.
resource "google_compute_firewall" "notify_refuses_private_destinations" {
  project     = var.project_id
  name        = "${var.network_name}-notify-no-private-egress"
  network     = google_compute_network.dataflow.name
  description = "The notify function's connector may not reach private, shared or link-local addresses (SSRF)."
  direction   = "EGRESS"
  priority    = 900

  target_tags        = ["vpc-connector-${var.region}-${google_vpc_access_connector.notify.name}"]
  destination_ranges = local.notify_refused_ranges

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# --- The function -------------------------------------------------------------------

data "archive_file" "notify_source" {
  type             = "zip"
  output_path      = "${path.module}/.build/notify.zip"
  output_file_mode = "0644"

  dynamic "source" {
    for_each = local.notify_files
    content {
      filename = source.key
      content  = file(source.value)
    }
  }
}

resource "google_storage_bucket_object" "notify_source" {
  bucket = google_storage_bucket.function_source.name
  name   = "notify-${data.archive_file.notify_source.output_md5}.zip"
  source = data.archive_file.notify_source.output_path
}

resource "google_cloudfunctions2_function" "notify" {
  project     = var.project_id
  location    = var.region
  name        = "telemetry-notify"
  description = "Hourly: deactivation alerts by email and webhooks from what the pipelines committed, with retries."

  build_config {
    runtime           = local.python_runtime
    entry_point       = "notify"
    service_account   = local.build_service_account
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.notify_source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.notify.email
    environment_variables = local.notify_environment

    secret_environment_variables {
      key        = "MONGODB_URI"
      project_id = var.project_id
      secret     = google_secret_manager_secret.pipeline["mongodb-uri"].secret_id
      version    = "latest"
    }

    secret_environment_variables {
      key        = "SMTP_PASSWORD"
      project_id = var.project_id
      secret     = google_secret_manager_secret.smtp_password.secret_id
      version    = "latest"
    }

    # Every connection through the connector and the NAT (see the top of this file).
    vpc_connector                 = google_vpc_access_connector.notify.id
    vpc_connector_egress_settings = "ALL_TRAFFIC"

    # Only the scheduler's account may invoke it (no public invoker grant); the
    # request still comes in over the internet, from Cloud Scheduler.
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true

    # One run at a time: the outbox's claims make two safe, but one is enough.
    max_instance_count               = 1
    max_instance_request_concurrency = 1
    available_memory                 = "512M"
    timeout_seconds                  = var.notify_timeout_seconds
  }

  #checkov:skip=CKV_GCP_124:Cloud Scheduler calls from outside any VPC, so internal-only ingress would refuse it; only the invoker account may call (no public grant).

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_iam_member.notify_reads_mongodb_uri,
    google_secret_manager_secret_iam_member.notify_reads_smtp_password,
    google_project_iam_member.build_writes_logs,
    google_storage_bucket_iam_member.build_reads_function_source,
    google_artifact_registry_repository_iam_member.build_pushes_function_images,
  ]
}

resource "google_cloud_scheduler_job" "notify" {
  project     = var.project_id
  region      = var.region
  name        = "telemetry-notify"
  description = "Hourly notify run, after the pipelines' runs of the hour."
  schedule    = var.notify_schedule
  time_zone   = "Etc/UTC"
  paused      = var.pipeline_schedules_paused

  attempt_deadline = "${var.notify_timeout_seconds}s"

  # A failed run (a 500) is tried again; what it left is due at the next run anyway.
  retry_config {
    retry_count          = 1
    min_backoff_duration = "300s"
    max_doublings        = 1
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.notify.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.notify_invoker.email
      audience              = google_cloudfunctions2_function.notify.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.notify_invoker_invokes]
}
