# The two Dataflow Flex Templates (dataflow_templates/<template>/) and their
# hourly launches.
#
# Each template is one image, built by you with Cloud Build into the repository
# below and tagged var.template_image_tag; it is both the Flex Template launcher
# and the workers' SDK container. Terraform writes the template spec next to it
# (what `gcloud dataflow flex-template build` would write) and a Cloud Scheduler
# job that launches it every hour.

locals {
  # Template name (its folder under dataflow_templates/) => when it runs.
  templates = {
    tracking = {
      schedule    = var.tracking_schedule
      description = "track/ and tracking-skipped/ pings to MongoDB and BigQuery"
    }
    deactivation = {
      schedule    = var.deactivation_schedule
      description = "deactivate/ pings to MongoDB and BigQuery"
    }
  }

  # The Dataflow job name of each template's hourly run (one per template, see
  # the scheduler job's body); the alert policies (monitoring.tf) filter on them.
  pipeline_job_names = { for name in keys(local.templates) : name => "${name}-hourly" }

  template_images = {
    for name in keys(local.templates) :
    name => "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.pipelines.repository_id}/${name}:${var.template_image_tag}"
  }

  template_spec_paths = {
    for name, spec in google_storage_bucket_object.template_spec :
    name => "gs://${spec.bucket}/${spec.name}"
  }

  # Parameters of every hourly run, the same for both templates (their
  # metadata.json declare the same ones). Secrets are passed by version name and
  # read on the worker, so no secret value is in Terraform state or in the job.
  pipeline_parameters = {
    tracking_bucket    = google_storage_bucket.pings.name
    pings_topic        = google_pubsub_topic.pings.name
    bq_dataset         = google_bigquery_dataset.telemetry.dataset_id
    bq_staging_dataset = google_bigquery_dataset.staging.dataset_id
    work_bucket        = google_storage_bucket.dataflow_temp.name
    mongodb_uri        = "${google_secret_manager_secret.pipeline["mongodb-uri"].id}/versions/latest"
    mongodb_db         = var.mongodb_db

    # The bound on what forged pings can subscribe (docs/privacy.md).
    mail_contacts_per_project_hour = "${var.mail_contacts_per_project_hour}"

    # How much one run takes on (docs/reliability.md, "Catching up after an outage").
    max_messages_per_run = "${var.pipeline_max_messages_per_run}"

    # The personal-data policy (docs/privacy.md).
    ip_prefix_v4         = "${var.ip_prefix_v4}"
    ip_prefix_v6         = "${var.ip_prefix_v6}"
    site_personal_fields = var.site_personal_fields
  }

  # Passed only when mail_api_url is set: no URL, no mail, and no token to read.
  mail_parameters = {
    mail_api_url   = var.mail_api_url
    mail_api_token = "${google_secret_manager_secret.pipeline["mail-api-token"].id}/versions/latest"
  }

  # Passed only when set: the vendor's own geo databases (docs/geo.md); else the bundled data.
  geo_parameters = {
    geo_databases = var.geo_databases
  }

  launch_parameters = merge(
    local.pipeline_parameters,
    { for name, value in local.mail_parameters : name => value if var.mail_api_url != "" },
    { for name, value in local.geo_parameters : name => value if var.geo_databases != "" },
  )

  # The runtime environment of every hourly run (FlexTemplateRuntimeEnvironment);
  # sdkContainerImage is per template.
  launch_environment = {
    serviceAccountEmail = google_service_account.pipeline.email
    tempLocation        = "gs://${google_storage_bucket.dataflow_temp.name}/tmp"
    stagingLocation     = "gs://${google_storage_bucket.dataflow_temp.name}/staging"
    maxWorkers          = var.pipeline_max_workers

    # The launcher VM and the workers run in the stack's own subnetwork
    # (network.tf) without external addresses; Google APIs through Private Google
    # Access, MongoDB and the mail API through Cloud NAT's one address.
    network         = google_compute_network.dataflow.name
    subnetwork      = google_compute_subnetwork.dataflow.self_link
    ipConfiguration = "WORKER_IP_PRIVATE"

    # Dataflow cancels the run after this long, so that a stuck run cannot hold
    # the job name (and with it every later hour's launch: see jobName below).
    # The flexTemplates.launch environment has no field for Dataflow service
    # options; the service reads this one from the job's experiments too, where
    # additionalExperiments puts it.
    additionalExperiments = ["max_workflow_runtime_walltime_seconds=${var.pipeline_max_runtime_seconds}"]
  }
}

resource "google_artifact_registry_repository" "pipelines" {
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_repository
  format        = "DOCKER"
  description   = "Images of the tracking and deactivation Flex Templates (launcher and workers)."

  # A tag names one build for good: the specs and the scheduler jobs name images
  # by tag, so a rebuild under the same tag could change what runs unseen.
  docker_config {
    immutable_tags = true
  }

  # Tagged images stay (any of them may be the one deployed); layers of failed
  # or superseded pushes that no tag names go after 30 days.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.enabled]

  #checkov:skip=CKV_GCP_84:Google-managed encryption; set kms_key_name here if policy requires CMEK.
}

# The template spec: exactly what `gcloud dataflow flex-template build
# gs://<bucket>/templates/<template>.json --image <image> --sdk-language PYTHON
# --metadata-file dataflow_templates/<template>/metadata.json` writes.
resource "google_storage_bucket_object" "template_spec" {
  for_each = local.templates

  bucket       = google_storage_bucket.templates.name
  name         = "templates/${each.key}.json"
  content_type = "application/json"
  content = jsonencode({
    image    = local.template_images[each.key]
    sdkInfo  = { language = "PYTHON" }
    metadata = jsondecode(file("${path.module}/../dataflow_templates/${each.key}/metadata.json"))
  })
}

# Every hour, launch each template through the Dataflow API as the scheduler
# account; the job itself runs as the pipeline account.
resource "google_cloud_scheduler_job" "pipeline" {
  for_each = local.templates

  project     = var.project_id
  region      = var.region
  name        = "telemetry-${each.key}"
  description = "Hourly ${each.key} pipeline: ${each.value.description}."
  schedule    = each.value.schedule
  time_zone   = "Etc/UTC"
  paused      = var.pipeline_schedules_paused

  # The launch call answers once the job is created, long before it ends.
  attempt_deadline = "180s"

  # A launch that fails (an error status: a transient API error, a 409
  # ALREADY_EXISTS for the job name) is tried again a few minutes later. A launch
  # that Dataflow answers with the still-active job of the same name (see jobName
  # below) is a success to Cloud Scheduler and is not retried. Either way
  # whatever is left waits for the next hour, whose run drains the subscriptions
  # from where the last one stopped.
  retry_config {
    retry_count          = 2
    min_backoff_duration = "300s"
    max_doublings        = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://dataflow.googleapis.com/v1b3/projects/${var.project_id}/locations/${var.region}/flexTemplates:launch"
    headers = {
      "Content-Type" = "application/json"
    }

    # jobName is fixed per template, never made unique per run: only one active
    # job of a name may exist in a region, so an hour's run never overlaps the
    # previous one (two runs draining the same subscriptions at once). A launch
    # under the name of an active job does not start a second job, but it is not
    # reliably an error either: the Job resource's documentation says such a
    # create "returns the existing job" (HTTP 200, no retry), while
    # flexTemplates:launch has also been seen to answer 409 ALREADY_EXISTS ("There
    # is already an active job named ..."). So a stuck job would hold the name,
    # and swallow every later hour's launch, until it ends: the runtime bound in
    # launch_environment ends it within the hour, and monitoring.tf alerts on
    # runs that overrun or fail and on launches that fail.
    body = base64encode(jsonencode({
      launchParameter = {
        jobName              = local.pipeline_job_names[each.key]
        containerSpecGcsPath = local.template_spec_paths[each.key]
        parameters           = local.launch_parameters
        environment          = merge(local.launch_environment, { sdkContainerImage = local.template_images[each.key] })
      }
    }))

    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  # Every grant a launch and its job use exists before the first launch.
  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.scheduler_launches_dataflow,
    google_service_account_iam_member.scheduler_acts_as_pipeline,
    google_storage_bucket_iam_member.scheduler_reads_templates,
    google_storage_bucket_iam_member.scheduler_gets_templates_bucket,
    google_storage_bucket_iam_member.scheduler_gets_dataflow_temp_bucket,
    google_project_iam_member.pipeline_dataflow_worker,
    google_project_iam_member.pipeline_bigquery_jobs,
    google_bigquery_table_iam_member.pipeline_writes_history,
    google_bigquery_dataset_iam_member.pipeline_edits_staging,
    google_storage_bucket_iam_member.pipeline_reads_pings,
    google_storage_bucket_iam_member.pipeline_uses_dataflow_temp,
    google_storage_bucket_iam_member.pipeline_reads_templates,
    google_pubsub_subscription_iam_member.pipeline_pulls_pings,
    google_secret_manager_secret_iam_member.pipeline_reads_secrets,
    google_artifact_registry_repository_iam_member.pipeline_pulls_images,
    google_compute_router_nat.dataflow,
    google_compute_firewall.dataflow_workers,
  ]
}
