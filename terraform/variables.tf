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

variable "trusted_proxy_hops" {
  description = "Proxies in front of ingest that each append the address they saw to X-Forwarded-For (TRUSTED_PROXY_HOPS): 1, Google's front end alone; 2 behind a load balancer of your own. The client address is the entry this far from the end."
  type        = number
  default     = 1

  validation {
    condition     = var.trusted_proxy_hops >= 1 && floor(var.trusted_proxy_hops) == var.trusted_proxy_hops
    error_message = "trusted_proxy_hops must be a whole number of at least 1."
  }
}

# --- Personal data (docs/privacy.md) -------------------------------------------

variable "ip_prefix_v4" {
  description = "Bits of an IPv4 ip_address kept in MongoDB/BigQuery sites, and of the client address in ingest's log lines (IP_PREFIX_V4): 0 drops it, 32 keeps it whole."
  type        = number
  default     = 24

  validation {
    condition     = var.ip_prefix_v4 >= 0 && var.ip_prefix_v4 <= 32 && floor(var.ip_prefix_v4) == var.ip_prefix_v4
    error_message = "ip_prefix_v4 must be a whole number from 0 to 32."
  }
}

variable "ip_prefix_v6" {
  description = "Bits of an IPv6 ip_address kept, likewise (IP_PREFIX_V6): 0 drops it, 128 keeps it whole."
  type        = number
  default     = 48

  validation {
    condition     = var.ip_prefix_v6 >= 0 && var.ip_prefix_v6 <= 128 && floor(var.ip_prefix_v6) == var.ip_prefix_v6
    error_message = "ip_prefix_v6 must be a whole number from 0 to 128."
  }
}

variable "mail_contacts_per_project_hour" {
  description = "Most contacts the pipelines send to the mail API per project and UTC hour, retries included (MAIL_CONTACTS_PER_PROJECT_HOUR); the rest wait for a later hour."
  type        = number
  default     = 500

  validation {
    condition     = var.mail_contacts_per_project_hour >= 1 && var.mail_contacts_per_project_hour <= 9999999 && floor(var.mail_contacts_per_project_hour) == var.mail_contacts_per_project_hour
    error_message = "mail_contacts_per_project_hour must be a whole number from 1 to 9999999."
  }
}

variable "site_personal_fields" {
  description = "Which of admin_email, first_name, last_name MongoDB/BigQuery sites keep, comma-separated, or none (SITE_PERSONAL_FIELDS). The mail integration sends only what is kept."
  type        = string
  default     = "admin_email,first_name,last_name"

  validation {
    condition     = can(regex("^(none|(admin_email|first_name|last_name)(,(admin_email|first_name|last_name))*)$", var.site_personal_fields))
    error_message = "site_personal_fields is a comma-separated list of admin_email, first_name, last_name, or none."
  }
}

# --- Hosting country and network (docs/geo.md) ----------------------------------

variable "geo_databases" {
  description = <<-EOT
    MaxMind .mmdb files (GeoLite2/GeoIP2 Country, City, ASN, ISP, Enterprise) or a geoip2fast
    .dat.gz, comma-separated gs://bucket/object URIs, for the sites' hosting country and network
    (GEO_DATABASES). Empty: the data bundled in the pipelines' image. The pipelines' service
    account must be able to read the objects.
  EOT
  type        = string
  default     = ""

  validation {
    condition     = var.geo_databases == "" || can(regex("^[^,\\s]+\\.(mmdb|dat\\.gz)(,[^,\\s]+\\.(mmdb|dat\\.gz))*$", var.geo_databases))
    error_message = "geo_databases must be empty or comma-separated .mmdb / .dat.gz files."
  }
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
    Email of a service account for Cloud Build to build the functions as, instead
    of the stack's own build account (output build_service_account). null, the
    default, uses the stack's own, which has exactly the roles the builds need.
    Another account needs logging.logWriter, read on the function source bucket
    and write on the functions' Artifact Registry repository.
  EOT
  type        = string
  default     = null
}

variable "functions_artifact_repository" {
  description = "Artifact Registry Docker repository (in region) of the functions' images, in place of gcf-artifacts."
  type        = string
  default     = "telemetry-functions"
}

variable "build_bucket" {
  description = "Name of the bucket of the template images' builds (source tarballs, build logs). Default: <project_id>-telemetry-build."
  type        = string
  default     = null
}

variable "build_bucket_retention_days" {
  description = "Build sources and logs in the build bucket are deleted this many days after they were written."
  type        = number
  default     = 30

  validation {
    condition     = var.build_bucket_retention_days >= 1 && floor(var.build_bucket_retention_days) == var.build_bucket_retention_days
    error_message = "build_bucket_retention_days must be a whole number of days, at least 1."
  }
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

variable "bq_staging_dataset" {
  description = "BigQuery scratch dataset of the pipelines' per-run staging tables (BQ_STAGING_DATASET); passed to the pipelines as bq_staging_dataset."
  type        = string
  default     = "telemetry_staging"

  validation {
    condition     = length(var.bq_staging_dataset) <= 1024 && can(regex("^[A-Za-z0-9_]+$", var.bq_staging_dataset))
    error_message = "bq_staging_dataset may hold only letters, digits and underscores."
  }
}

variable "rejected_retention_days" {
  description = "Partitions (days of received_at) of the rejected table are deleted this many days after their day. null: what its manifest says (expiration_days of telemetry/pipelines/tables/rejected/metadata.json: 90). The history tables never expire."
  type        = number
  default     = null

  validation {
    # Only the branch taken is evaluated: null never reaches the comparison.
    condition     = var.rejected_retention_days == null ? true : var.rejected_retention_days >= 1 && floor(var.rejected_retention_days) == var.rejected_retention_days
    error_message = "rejected_retention_days must be a whole number of days, at least 1 (or null: the manifest's)."
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
  description = "Temp files of Dataflow jobs (tmp/ in the Dataflow temp bucket) are deleted this many days after they were written; staging/ and loads/ after one day."
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
  description = <<-EOT
    Pause the hourly schedules: both pipeline launches and the analytics run.
    true by default, so a first apply launches nothing before the images are built
    and the secrets hold versions; the deploy script resumes the jobs
    (`gcloud scheduler jobs resume`) once they are. Keep it true in terraform.tfvars
    after that only if you want a later apply to pause them again; set it false
    to have Terraform keep them running.
  EOT
  type        = bool
  default     = true
}

variable "pipeline_max_runtime_seconds" {
  description = <<-EOT
    Dataflow cancels a pipeline run still going after this many seconds (service
    option max_workflow_runtime_walltime_seconds). Below an hour, so a stuck run
    is gone before the next hour's launch under the same job name.
  EOT
  type        = number
  default     = 3000

  validation {
    condition     = var.pipeline_max_runtime_seconds >= 600 && var.pipeline_max_runtime_seconds < 3600 && floor(var.pipeline_max_runtime_seconds) == var.pipeline_max_runtime_seconds
    error_message = "pipeline_max_runtime_seconds must be a whole number from 600 to 3599: a run must end before the next hour's launch."
  }
}

variable "pipeline_max_messages_per_run" {
  description = <<-EOT
    Most notifications one hourly run pulls from each of its subscriptions
    (MAX_MESSAGES_PER_RUN); the rest stays for the next run, so a backlog after
    an outage drains over hourly runs that each end within
    pipeline_max_runtime_seconds, instead of every run being cancelled with
    nothing acknowledged. docs/reliability.md, "Catching up after an outage",
    derives the default from the measured pipeline rate; raise it with the
    workers, after measuring, if the hourly ingest comes near it.
  EOT
  type        = number
  default     = 30000

  validation {
    condition     = var.pipeline_max_messages_per_run >= 1 && var.pipeline_max_messages_per_run <= 999999999 && floor(var.pipeline_max_messages_per_run) == var.pipeline_max_messages_per_run
    error_message = "pipeline_max_messages_per_run must be a whole number from 1 to 999999999."
  }
}

# --- Network of the Dataflow workers ---------------------------------------------------

variable "network_name" {
  description = "VPC network of the Dataflow launcher VMs and workers (created here; no default network is assumed)."
  type        = string
  default     = "telemetry"
}

variable "subnet_cidr" {
  description = "Primary range of the workers' subnetwork in region. /24 gives room for about 250 VMs."
  type        = string
  default     = "10.10.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be an IPv4 CIDR range, e.g. 10.10.0.0/24."
  }
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

variable "analytics_max_labels" {
  description = "ANALYTICS_MAX_LABELS: labels kept per distribution and day; the rest are summed under `other`."
  type        = number
  default     = 50

  validation {
    condition     = var.analytics_max_labels >= 1 && floor(var.analytics_max_labels) == var.analytics_max_labels
    error_message = "analytics_max_labels must be a whole number, at least 1."
  }
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

# --- Notifications (notify.tf) -----------------------------------------------------------

variable "notify_schedule" {
  description = "When the notify run starts (cron, UTC): after the pipelines' (:05, :10) and the analytics job's (:30) runs of the hour."
  type        = string
  default     = "45 * * * *"
}

variable "notify_timeout_seconds" {
  description = "Longest notify run; above notify_run_budget_seconds plus one try's bound."
  type        = number
  default     = 540

  validation {
    condition     = var.notify_timeout_seconds >= 60 && var.notify_timeout_seconds <= 1800
    error_message = "notify_timeout_seconds must be from 60 to 1800 (Cloud Scheduler's longest attempt deadline)."
  }
}

variable "notify_run_budget_seconds" {
  description = "A notify run starts no delivery after this many seconds (NOTIFY_RUN_BUDGET_SECONDS)."
  type        = number
  default     = 240

  validation {
    condition     = var.notify_run_budget_seconds >= 10 && var.notify_run_budget_seconds + 120 <= var.notify_timeout_seconds
    error_message = "notify_run_budget_seconds must be at least 10 and leave 120 s of notify_timeout_seconds for the last tries."
  }
}

variable "notify_overlap_hours" {
  description = "Hours each notify run reads back past the previous one, for pipeline runs that commit late (NOTIFY_OVERLAP_HOURS)."
  type        = number
  default     = 24
}

variable "notify_max_site_events_per_day" {
  description = "Most site.deactivated, and most site.activated, events mailed and posted one by one per project and UTC day; past it, one summary (NOTIFY_MAX_SITE_EVENTS_PER_DAY)."
  type        = number
  default     = 100

  validation {
    condition     = var.notify_max_site_events_per_day >= 1 && floor(var.notify_max_site_events_per_day) == var.notify_max_site_events_per_day
    error_message = "notify_max_site_events_per_day must be a whole number of at least 1."
  }
}

variable "notify_retry_hours" {
  description = "How long a failed delivery is retried before it is set aside (NOTIFY_RETRY_HOURS)."
  type        = number
  default     = 24
}

variable "notify_connector_cidr" {
  description = "The notify function's VPC connector range: a /28 in the workers' network, apart from subnet_cidr."
  type        = string
  default     = "10.10.1.0/28"

  validation {
    condition     = can(cidrhost(var.notify_connector_cidr, 0)) && endswith(var.notify_connector_cidr, "/28")
    error_message = "notify_connector_cidr must be an IPv4 /28, e.g. 10.10.1.0/28."
  }
}

variable "smtp_relay" {
  description = "host:port of the SMTP relay that sends the alerts (SMTP_RELAY), e.g. smtp.sendgrid.net:587; its password is the smtp-password secret."
  type        = string
  default     = ""
}

variable "smtp_tls" {
  description = "starttls (port 587) or implicit (port 465) (SMTP_TLS)."
  type        = string
  default     = "starttls"

  validation {
    condition     = contains(["starttls", "implicit"], var.smtp_tls)
    error_message = "smtp_tls must be starttls or implicit."
  }
}

variable "smtp_username" {
  description = "SMTP AUTH user name at the relay (SMTP_USERNAME), e.g. apikey for SendGrid."
  type        = string
  default     = ""
}

variable "smtp_from" {
  description = "The alerts' From: address (SMTP_FROM); the relay must allow it (a verified sender or domain)."
  type        = string
  default     = "notify@localhost"
}

# --- Monitoring and budget ------------------------------------------------------------

variable "alert_notification_channels" {
  description = <<-EOT
    Cloud Monitoring notification channels (projects/<project>/notificationChannels/<id>)
    that every alert policy and the budget notify. Empty: the policies are still
    created and open incidents in the console, but notify nobody.
  EOT
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.alert_notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "Each alert_notification_channels entry must be projects/<project>/notificationChannels/<id>."
  }

  validation {
    condition     = length(var.alert_notification_channels) <= 5
    error_message = "At most 5 alert_notification_channels: a budget notifies at most 5 channels."
  }
}

variable "alert_ingest_5xx_ratio" {
  description = "Alert when more than this fraction of an ingest function's requests answer 5xx over 5 minutes."
  type        = number
  default     = 0.05
}

variable "alert_ingest_latency_ms" {
  description = "Alert when an ingest function's 99th percentile latency stays above this many milliseconds for 5 minutes."
  type        = number
  default     = 5000
}

variable "alert_instance_saturation" {
  description = "Alert when an ingest function runs more than this fraction of function_max_instances for 5 minutes."
  type        = number
  default     = 0.8
}

variable "alert_pipeline_elapsed_seconds" {
  description = "Alert when a pipeline run has been running longer than this (it will be cancelled at pipeline_max_runtime_seconds)."
  type        = number
  default     = 2400
}

variable "alert_oldest_unacked_seconds" {
  description = "Alert when a route's oldest unacknowledged notification is older than this: the hourly runs have not drained it."
  type        = number
  default     = 10800
}

variable "billing_account" {
  description = <<-EOT
    Billing account id (XXXXXX-XXXXXX-XXXXXX) of the project. Set: a budget on this
    project is created there (you need billing.budgets.create on the account, e.g.
    Billing Account Costs Manager). Empty: no budget.
  EOT
  type        = string
  default     = ""

  validation {
    condition     = var.billing_account == "" || can(regex("^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$", var.billing_account))
    error_message = "billing_account must be empty or a billing account id like 012345-6789AB-CDEF01."
  }
}

variable "budget_amount" {
  description = "Monthly budget of the project, in the billing account's currency; alerts at 50, 90 and 100 %."
  type        = number
  default     = 100

  validation {
    condition     = var.budget_amount > 0 && floor(var.budget_amount) == var.budget_amount
    error_message = "budget_amount must be a whole, positive amount."
  }
}

# --- The audit ------------------------------------------------------------------------

variable "audit_schedule" {
  description = "When the daily audit runs (cron, UTC)."
  type        = string
  default     = "40 3 * * *"
}

variable "audit_days" {
  description = "AUDIT_DAYS: days of hour folders each audit checks; less than raw_ping_retention_days."
  type        = number
  default     = 7

  validation {
    condition     = var.audit_days >= 1 && floor(var.audit_days) == var.audit_days
    error_message = "audit_days must be a whole number of days, at least 1."
  }
}

variable "audit_settle_hours" {
  description = "AUDIT_SETTLE_HOURS: the audit leaves alone the hours that ended less than this long ago."
  type        = number
  default     = 3
}

variable "audit_max_bytes_billed" {
  description = "AUDIT_MAX_BYTES_BILLED: each audit query fails rather than bill more."
  type        = number
  default     = 10737418240
}

variable "audit_max_reprocess_runs" {
  description = "AUDIT_MAX_REPROCESS_RUNS: reprocessing jobs one audit launches at most (each a contiguous range of hours of one pipeline)."
  type        = number
  default     = 12
}

variable "audit_timeout_seconds" {
  description = "Longest audit run."
  type        = number
  default     = 1800

  validation {
    condition     = var.audit_timeout_seconds >= 60 && var.audit_timeout_seconds <= 3600
    error_message = "audit_timeout_seconds must be from 60 to 3600 (an HTTP function's limit)."
  }
}

# --- Dashboard function (terraform/dashboard.tf) -----------------------------------

variable "dashboard_memory" {
  description = "Memory of one dashboard function instance (Cloud Run quantity). A CSV export streams, so its size does not grow with the export."
  type        = string
  default     = "512Mi"
}

variable "dashboard_concurrency" {
  description = "Requests one dashboard instance serves at once."
  type        = number
  default     = 8
}

variable "dashboard_max_instances" {
  description = "Most dashboard instances; caps cost and the connections to MongoDB (each instance keeps a small pool)."
  type        = number
  default     = 5
}

variable "dashboard_timeout_seconds" {
  description = "Longest dashboard request: bounds a CSV export of a large project (see README, Dashboard)."
  type        = number
  default     = 600

  validation {
    condition     = var.dashboard_timeout_seconds >= 10 && var.dashboard_timeout_seconds <= 3600
    error_message = "dashboard_timeout_seconds must be from 10 to 3600 (an HTTP function's limit)."
  }
}
