# Finalize notifications of the pings bucket, one per route prefix, into one
# topic; one pull subscription per route reads its own prefix back.

resource "google_pubsub_topic" "pings" {
  project = var.project_id
  name    = var.pings_topic

  depends_on = [google_project_service.enabled]

  #checkov:skip=CKV_GCP_83:Messages carry only object metadata (bucket, name, size); Google-managed encryption is enough. Add kms_key_name here if policy requires CMEK.
}

resource "google_storage_notification" "pings" {
  for_each = local.routes

  bucket             = google_storage_bucket.pings.name
  topic              = google_pubsub_topic.pings.id
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = each.value.prefix

  # Cloud Storage checks, when the notification is created, that its service
  # agent may publish to the topic.
  depends_on = [google_pubsub_topic_iam_member.gcs_publishes_pings]
}

# One subscription per route. The filter keeps each route's messages apart on
# Google Cloud; the Pub/Sub emulator ignores filters, so consumers check the
# objectId prefix too.
#
# No dead-letter topic or retry policy: the consumers are meant to count and ack
# a bad record rather than nack it, and Dataflow (a later consumer) does not
# support Pub/Sub dead-letter topics or backoff retry policies.
resource "google_pubsub_subscription" "pings" {
  for_each = local.routes

  project = var.project_id
  name    = "${var.pings_topic}-${each.key}"
  topic   = google_pubsub_topic.pings.id
  filter  = "hasPrefix(attributes.objectId, \"${each.value.prefix}\")"

  # A consumer may hold a message while it loads a batch.
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s" # 7 days, the most for unacked messages
  retain_acked_messages      = false

  # Never delete the subscription for lack of pulls: a paused consumer must not
  # lose its backlog.
  expiration_policy {
    ttl = ""
  }
}
