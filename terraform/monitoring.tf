# Alerting: one policy per signal that something needs a person, each notifying
# var.alert_notification_channels. The policies exist even with no channel (an
# empty list): they then open incidents in the console's Alerting page and
# notify nobody, so adding a channel later changes no policy but its channel list.
#
# Signals:
#   ingest         5xx ratio, p99 latency, instances near function_max_instances
#   pipelines      a run that failed, a run that runs too long, a run that does
#                  not reconcile (log-based metric), notifications left unacked
#   schedules      a launch or analytics call that failed (Cloud Scheduler logs)
#   analytics      a run that failed (its "analytics run failed" log line)
#   audit          a run that failed, and the count of unbalanced hours (audit.tf)
# and, with var.billing_account set, a monthly budget on the project.
#
# Why one resource block per policy, not one `for_each` over a map of them: the
# policies share only their frame (project, combiner, notification channels and the
# documentation's mime type). The rest, most of each block, differs:
# threshold conditions beside log-match ones, a ratio (denominator_filter and its
# own aggregations) for the 5xx share only, aggregations with or without
# group_by_fields and a cross-series reducer, an alert_strategy with auto_close,
# with a notification rate limit, or none. One generic resource would need a
# dynamic block or a try() for each of those, and its map entries would still hold
# nearly every line below, so a policy would be read in two places instead of one.
# As blocks, each reads as the policy it creates, at an address of its own
# (google_monitoring_alert_policy.<name>, which the tests name). A new signal is a
# new block; a family of policies alike but for their values would suit for_each.

locals {
  ingest_services = sort([for fn in google_cloudfunctions2_function.ingest : fn.name])

  # `resource.label.service_name = one_of("track", ...)`: the three ingest functions' Cloud Run services.
  ingest_services_filter = "resource.label.service_name = one_of(${join(", ", [for name in local.ingest_services : "\"${name}\""])})"

  pipeline_jobs_filter = "resource.label.job_name = one_of(${join(", ", [for name in sort(values(local.pipeline_job_names)) : "\"${name}\""])})"

  route_subscriptions_filter = "resource.label.subscription_id = one_of(${join(", ", [for sub in google_pubsub_subscription.pings : "\"${sub.name}\""])})"

  # Every Cloud Scheduler job of the stack, by job id.
  scheduler_job_ids = concat(
    [for job in google_cloud_scheduler_job.pipeline : job.name],
    [google_cloud_scheduler_job.analytics.name, google_cloud_scheduler_job.audit.name],
  )

  # The pipelines' reconciliation (telemetry/pipelines/reconciliation.py,
  # log_reconciliation): a run that does not balance logs, at ERROR, exactly
  # this message (a balanced run logs "run reconciled" at INFO). The report,
  # with its `balanced` field, rides in the same record as an extra field, but
  # Beam's worker log handler forwards only the message text to Cloud Logging,
  # so the message is what to match: as jsonPayload.message when the worker's log
  # handler sends it, or inside the JSON line when its stdout is captured instead.
  unreconciled_message = "run does not reconcile"

  # The analytics function's failure line (telemetry/analytics/job.py, handle):
  # log.exception at ERROR; Cloud Run keeps the JSON line's message in jsonPayload.message.
  analytics_failure_message = "analytics run failed"
}

# --- Ingest ---------------------------------------------------------------------------

resource "google_monitoring_alert_policy" "ingest_5xx" {
  project      = var.project_id
  display_name = "Telemetry ingest: 5xx answers"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "5xx share of an ingest function's requests above ${var.alert_ingest_5xx_ratio * 100} %"
    condition_threshold {
      filter             = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.label.response_code_class = \"5xx\" AND ${local.ingest_services_filter}"
      denominator_filter = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND ${local.ingest_services_filter}"
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_ingest_5xx_ratio
      duration           = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "An ingest function answers 5xx: pings are being lost (WordPress sites do not retry). Look at the function's logs: a 503 is Cloud Storage refusing writes, a 500 an unexpected error."
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "ingest_latency" {
  project      = var.project_id
  display_name = "Telemetry ingest: latency"
  combiner     = "OR"
  severity     = "WARNING"

  conditions {
    display_name = "p99 latency of an ingest function above ${var.alert_ingest_latency_ms} ms"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_latencies\" AND ${local.ingest_services_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_ingest_latency_ms
      duration        = "300s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_99"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "Ingest requests are slow: Cloud Storage writes are retrying or instances are saturated (see the saturation policy)."
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "ingest_saturation" {
  project      = var.project_id
  display_name = "Telemetry ingest: instances near the maximum"
  combiner     = "OR"
  severity     = "WARNING"

  conditions {
    display_name = "Active instances of an ingest function above ${var.alert_instance_saturation * 100} % of ${var.function_max_instances}"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/container/instance_count\" AND metric.label.state = \"active\" AND ${local.ingest_services_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.function_max_instances * var.alert_instance_saturation
      duration        = "300s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "An ingest function runs close to function_max_instances; past it, requests queue and then fail with 429/5xx. Raise function_max_instances or function_concurrency if the traffic is real."
  }

  depends_on = [google_project_service.enabled]
}

# --- Pipelines ------------------------------------------------------------------------

resource "google_monitoring_alert_policy" "pipeline_failed" {
  project      = var.project_id
  display_name = "Telemetry pipelines: run failed"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "An hourly Dataflow run failed"
    condition_threshold {
      filter          = "resource.type = \"dataflow_job\" AND metric.type = \"dataflow.googleapis.com/job/is_failed\" AND ${local.pipeline_jobs_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_COUNT_TRUE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.job_name"]
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "A pipeline run failed. Its notifications stay unacked and the next hour's run picks them up; look at the job's logs in the Dataflow console."
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "pipeline_overrun" {
  project      = var.project_id
  display_name = "Telemetry pipelines: run too long"
  combiner     = "OR"
  severity     = "WARNING"

  conditions {
    display_name = "An hourly Dataflow run running longer than ${var.alert_pipeline_elapsed_seconds} s"
    condition_threshold {
      filter          = "resource.type = \"dataflow_job\" AND metric.type = \"dataflow.googleapis.com/job/elapsed_time\" AND ${local.pipeline_jobs_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_pipeline_elapsed_seconds
      duration        = "0s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_MAX"
        group_by_fields      = ["resource.label.job_name"]
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "A pipeline run is still going after alert_pipeline_elapsed_seconds; Dataflow cancels it at pipeline_max_runtime_seconds. While it holds its job name, the next hour's launch of that template starts nothing."
  }

  depends_on = [google_project_service.enabled]
}

# Counts the reconciliation lines of runs that do not balance.
resource "google_logging_metric" "unreconciled_runs" {
  project     = var.project_id
  name        = "telemetry-unreconciled-runs"
  description = "Pipeline runs whose objects read != rows written + rejected + duplicates skipped (telemetry/pipelines/reconciliation.py)."
  filter      = "resource.type=\"dataflow_step\" AND severity>=ERROR AND (jsonPayload.message:\"${local.unreconciled_message}\" OR textPayload:\"${local.unreconciled_message}\")"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "pipeline_unreconciled" {
  project      = var.project_id
  display_name = "Telemetry pipelines: run does not reconcile"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "A pipeline run's counts do not balance"
    condition_threshold {
      filter          = "resource.type = \"dataflow_step\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.unreconciled_runs.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "A run's objects read differ from rows written + rejected + duplicates skipped. The log line \"run does not reconcile\" (Dataflow job logs) has the counts per route."
  }
}

resource "google_monitoring_alert_policy" "notifications_unacked" {
  project      = var.project_id
  display_name = "Telemetry pipelines: notifications not drained"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "Oldest unacked notification of a route older than ${var.alert_oldest_unacked_seconds} s"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND ${local.route_subscriptions_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_oldest_unacked_seconds
      duration        = "600s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "The hourly runs are not draining a route's subscription (schedules paused, launches failing, runs failing). Pub/Sub keeps unacked notifications 7 days; after that pings are only in the bucket."
  }

  depends_on = [google_project_service.enabled]
}

# --- Schedules and analytics --------------------------------------------------------------

resource "google_monitoring_alert_policy" "scheduler_failed" {
  project      = var.project_id
  display_name = "Telemetry schedules: attempt failed"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "A pipeline launch or analytics call failed"
    condition_matched_log {
      filter = "resource.type=\"cloud_scheduler_job\" AND resource.labels.job_id=(${join(" OR ", [for id in local.scheduler_job_ids : "\"${id}\""])}) AND severity>=ERROR"
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "3600s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "Cloud Scheduler's call failed: for a pipeline, flexTemplates:launch refused (a 409 means the previous run of that template is still active; a 403 a missing grant); for analytics, the function answered an error."
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "analytics_failed" {
  project      = var.project_id
  display_name = "Telemetry analytics: run failed"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "The analytics function logged a failed run"
    condition_matched_log {
      filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloudfunctions2_function.analytics.name}\" AND severity>=ERROR AND jsonPayload.message=\"${local.analytics_failure_message}\""
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "3600s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "An analytics run failed; the log entry has the traceback. The next hour's run recomputes every day still open."
  }

  depends_on = [google_project_service.enabled]
}

# --- Budget ---------------------------------------------------------------------------------

data "google_project" "this" {
  project_id = var.project_id
}

# A monthly budget on this project alone, with alerts at 50, 90 and 100 % of
# var.budget_amount (actual spend) to the billing account's admins and the same
# channels as the policies. A budget only alerts: it never stops spending.
resource "google_billing_budget" "project" {
  count = var.billing_account == "" ? 0 : 1

  billing_account = var.billing_account
  display_name    = "telemetry ${var.project_id}"

  budget_filter {
    projects        = ["projects/${data.google_project.this.number}"]
    calendar_period = "MONTH"
  }

  # In the billing account's own currency (no currency_code).
  amount {
    specified_amount {
      units = tostring(var.budget_amount)
    }
  }

  dynamic "threshold_rules" {
    for_each = [0.5, 0.9, 1.0]
    content {
      threshold_percent = threshold_rules.value
      spend_basis       = "CURRENT_SPEND"
    }
  }

  all_updates_rule {
    monitoring_notification_channels = var.alert_notification_channels
    disable_default_iam_recipients   = false
  }

  depends_on = [google_project_service.enabled]
}
