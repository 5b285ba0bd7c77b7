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
    tracking_bucket = google_storage_bucket.pings.name
    pings_topic     = google_pubsub_topic.pings.name
    bq_dataset      = google_bigquery_dataset.telemetry.dataset_id
    mongodb_uri     = "${google_secret_manager_secret.pipeline["mongodb-uri"].id}/versions/latest"
    mongodb_db      = var.mongodb_db
  }

  # Passed only when mail_api_url is set: no URL, no mail, and no token to read.
  mail_parameters = {
    mail_api_url   = var.mail_api_url
    mail_api_token = "${google_secret_manager_secret.pipeline["mail-api-token"].id}/versions/latest"
  }

  launch_parameters = merge(
    local.pipeline_parameters,
    { for name, value in local.mail_parameters : name => value if var.mail_api_url != "" },
  )

  # The runtime environment of every hourly run; sdkContainerImage is per template.
  launch_environment = {
    serviceAccountEmail = google_service_account.pipeline.email
    tempLocation        = "gs://${google_storage_bucket.dataflow_temp.name}/tmp"
    stagingLocation     = "gs://${google_storage_bucket.dataflow_temp.name}/staging"
    maxWorkers          = var.pipeline_max_workers
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

  # A launch refused (the previous hour's job still running, a transient API
  # error) is tried again a few minutes later; whatever is left waits for the
  # next hour, whose run drains the subscriptions from where this one stopped.
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

    # jobName is fixed per template, never made unique per run: Dataflow refuses
    # to start a job while another job of the same name is running in the region,
    # so an hour's run can never overlap the previous one (two runs draining the
    # same subscriptions at once).
    body = base64encode(jsonencode({
      launchParameter = {
        jobName              = "${each.key}-hourly"
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
    google_project_iam_member.pipeline_dataflow_worker,
    google_project_iam_member.pipeline_bigquery_jobs,
    google_bigquery_dataset_iam_member.pipeline_edits_telemetry,
    google_storage_bucket_iam_member.pipeline_reads_pings,
    google_storage_bucket_iam_member.pipeline_uses_dataflow_temp,
    google_storage_bucket_iam_member.pipeline_reads_templates,
    google_pubsub_subscription_iam_member.pipeline_pulls_pings,
    google_secret_manager_secret_iam_member.pipeline_reads_secrets,
    google_artifact_registry_repository_iam_member.pipeline_pulls_images,
  ]
}
