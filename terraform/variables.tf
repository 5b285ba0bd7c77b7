# Inputs. Names that are also environment variables of the product
# (telemetry/config.py) keep the same meaning and, where one exists, the same default.

# --- Where things are -------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project id; passed to the functions as GCP_PROJECT."
  type        = string
}

variable "region" {
  description = "Region of the functions and of both buckets. The ingest base URL is https://<region>-<project_id>.cloudfunctions.net/."
  type        = string
  default     = "europe-west1"
}

variable "tracking_bucket" {
  description = <<-EOT
    Name of the bucket that receives one object per accepted ping; passed to the
    functions as TRACKING_BUCKET. Required: bucket names are global, so the local
    stack's default (wp-telemetry-pings) is almost surely taken on Google Cloud.
  EOT
  type        = string
}

variable "function_source_bucket" {
  description = "Name of the bucket that holds the functions' source zips. Default: <project_id>-telemetry-functions-source."
  type        = string
  default     = null
}

variable "pings_topic" {
  description = "Pub/Sub topic fed by the pings bucket's finalize notifications (PINGS_TOPIC); each route's pull subscription is named <topic>-<route>."
  type        = string
  default     = "ping-objects"
}

variable "labels" {
  description = "Labels put on every resource that takes labels (the provider's default_labels)."
  type        = map(string)
  default     = {}
}

# --- Pings bucket -------------------------------------------------------------

variable "raw_ping_retention_days" {
  description = "Raw ping objects (under the route prefixes) are deleted this many days after they were written."
  type        = number
  default     = 400

  validation {
    condition     = var.raw_ping_retention_days >= 1 && floor(var.raw_ping_retention_days) == var.raw_ping_retention_days
    error_message = "raw_ping_retention_days must be a whole number of days, at least 1."
  }
}

variable "soft_delete_retention_days" {
  description = "Days a deleted ping object can still be restored (Cloud Storage soft delete); 0 turns soft delete off. Google's default is 7."
  type        = number
  default     = 7

  validation {
    condition     = var.soft_delete_retention_days == 0 || (var.soft_delete_retention_days >= 7 && var.soft_delete_retention_days <= 90)
    error_message = "soft_delete_retention_days must be 0 or between 7 and 90 (Cloud Storage's limits)."
  }
}

# --- Ingest functions -----------------------------------------------------------

variable "function_max_instances" {
  description = "Most instances of each ingest function; caps cost under a flood."
  type        = number
  default     = 20
}

variable "function_min_instances" {
  description = "Instances of each ingest function kept warm (billed while idle)."
  type        = number
  default     = 0
}

variable "function_memory" {
  description = "Memory of one function instance (Cloud Run quantity, e.g. 256Mi, 512Mi, 1Gi)."
  type        = string
  default     = "256Mi"
}

variable "function_cpu" {
  description = "vCPUs of one function instance. Concurrency above 1 needs at least 1 vCPU."
  type        = string
  default     = "1"
}

variable "function_concurrency" {
  description = "Requests one instance serves at once. Ingest mostly waits on Cloud Storage, so several share one instance well."
  type        = number
  default     = 16
}

variable "function_timeout_seconds" {
  description = "Request timeout. Must exceed STORAGE_ATTEMPTS x STORAGE_TIMEOUT_SECONDS (3 x 10 s by default) plus backoff."
  type        = number
  default     = 60
}

variable "max_body_bytes" {
  description = "Largest accepted request body (MAX_BODY_BYTES); larger gets 413."
  type        = number
  default     = 262144
}

variable "log_level" {
  description = "Python log level of the functions' structured logs (LOG_LEVEL)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], var.log_level)
    error_message = "log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL."
  }
}

variable "build_service_account" {
  description = <<-EOT
    Email of the service account Cloud Build uses to build the functions. null uses
    the project's default build account. Set it where an organization policy keeps
    default accounts without roles; that account then needs to read the source
    bucket, write Artifact Registry and write logs.
  EOT
  type        = string
  default     = null
}

# --- BigQuery -------------------------------------------------------------------

variable "bq_dataset" {
  description = "BigQuery dataset of the history tables (BQ_DATASET); passed to the pipelines as bq_dataset."
  type        = string
  default     = "telemetry"

  validation {
    # Terraform's regex (RE2) refuses repeat counts over 1000, and can() turns that into false.
    condition     = length(var.bq_dataset) <= 1024 && can(regex("^[A-Za-z0-9_]+$", var.bq_dataset))
    error_message = "bq_dataset may hold only letters, digits and underscores."
  }
}

variable "bq_location" {
  description = "Location of the BigQuery dataset: a multi-region (EU, US) or a region. Keep it in the same geography as region."
  type        = string
  default     = "EU"
}

# --- Pipelines (Dataflow Flex Templates) ------------------------------------------

variable "artifact_repository" {
  description = "Artifact Registry Docker repository (in region) that holds the two template images."
  type        = string
  default     = "telemetry-pipelines"
}

variable "template_image_tag" {
  description = <<-EOT
    Tag of the tracking and deactivation images to run, e.g. a release or commit id.
    Tags are immutable in the repository: build a new tag for new code, then set it
    here and apply, so that the template specs and the scheduler name the same build.
  EOT
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", var.template_image_tag))
    error_message = "template_image_tag must be a Docker tag: letters, digits, _ . -, at most 128 characters, not starting with . or -."
  }
}

variable "templates_bucket" {
  description = "Name of the bucket that holds the template specs (templates/<template>.json). Default: <project_id>-telemetry-templates."
  type        = string
  default     = null
}

variable "dataflow_temp_bucket" {
  description = "Name of the bucket of the Dataflow jobs' staging and temp files. Default: <project_id>-telemetry-dataflow-temp."
  type        = string
  default     = null
}

variable "dataflow_temp_retention_days" {
  description = "Staging and temp files of Dataflow jobs are deleted this many days after they were written."
  type        = number
  default     = 7

  validation {
    condition     = var.dataflow_temp_retention_days >= 1 && floor(var.dataflow_temp_retention_days) == var.dataflow_temp_retention_days
    error_message = "dataflow_temp_retention_days must be a whole number of days, at least 1."
  }
}

variable "mongodb_db" {
  description = "MongoDB database of projects, sites and deactivations (MONGODB_DB); passed to the pipelines as mongodb_db. The connection string is the mongodb-uri secret."
  type        = string
  default     = "telemetry"
}

variable "mail_api_url" {
  description = <<-EOT
    Dashboard API endpoint that subscribes new sites' contacts (MAIL_API_URL). Empty:
    no mail is sent, and neither mail_api_url nor mail_api_token is passed to the
    pipelines. Set: the mail-api-token secret must hold a version.
  EOT
  type        = string
  default     = ""

  validation {
    condition     = var.mail_api_url == "" || can(regex("^https?://[^\\s]+$", var.mail_api_url))
    error_message = "mail_api_url must be empty or an http(s) URL."
  }
}

variable "tracking_schedule" {
  description = "When the tracking pipeline runs (cron, UTC)."
  type        = string
  default     = "5 * * * *"
}

variable "deactivation_schedule" {
  description = "When the deactivation pipeline runs (cron, UTC)."
  type        = string
  default     = "10 * * * *"
}

variable "pipeline_max_workers" {
  description = "Most Dataflow workers of one pipeline run."
  type        = number
  default     = 3

  validation {
    condition     = var.pipeline_max_workers >= 1 && var.pipeline_max_workers <= 1000 && floor(var.pipeline_max_workers) == var.pipeline_max_workers
    error_message = "pipeline_max_workers must be a whole number from 1 to 1000."
  }
}

variable "pipeline_schedules_paused" {
  description = "Pause both hourly launches, e.g. on the first apply, before the images are built and the secrets hold versions."
  type        = bool
  default     = false
}

# --- Analytics ----------------------------------------------------------------------

variable "analytics_schedule" {
  description = "When the analytics job runs (cron, UTC): after the pipelines' runs of the hour."
  type        = string
  default     = "30 * * * *"
}

variable "active_window_days" {
  description = "ACTIVE_WINDOW_DAYS: a site is active if it pinged within this many days and was not deactivated since."
  type        = number
  default     = 14

  validation {
    condition     = var.active_window_days >= 1 && var.active_window_days <= 62 && floor(var.active_window_days) == var.active_window_days
    error_message = "active_window_days must be a whole number from 1 to 62 (the days the job keeps as bits)."
  }
}

variable "analytics_settle_hours" {
  description = "ANALYTICS_SETTLE_HOURS: hours after a UTC day ends during which runs still recompute it."
  type        = number
  default     = 6

  validation {
    condition     = var.analytics_settle_hours >= 0 && floor(var.analytics_settle_hours) == var.analytics_settle_hours
    error_message = "analytics_settle_hours must be a whole number, at least 0."
  }
}

variable "analytics_max_bytes_billed" {
  description = "ANALYTICS_MAX_BYTES_BILLED: each analytics query fails rather than bill more."
  type        = number
  default     = 10737418240
}

variable "analytics_timeout_seconds" {
  description = "Longest analytics run; a first run over a long history may need the maximum."
  type        = number
  default     = 1800

  validation {
    condition     = var.analytics_timeout_seconds >= 60 && var.analytics_timeout_seconds <= 3600
    error_message = "analytics_timeout_seconds must be from 60 to 3600 (an HTTP function's limit)."
  }
}
