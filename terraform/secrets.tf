# The pipelines' secrets. Terraform declares the secrets only, never a version:
# a value put in Terraform would be stored in its state. Add each value with
#   printf '%s' "$VALUE" | gcloud secrets versions add <secret> --data-file=-
# The pipelines are given the version's name (projects/<project>/secrets/<secret>/versions/latest)
# as a template parameter and read the value on the worker (telemetry/pipelines/settings.py).

locals {
  # Secret id => what it holds.
  secrets = {
    "mongodb-uri"    = "MongoDB connection string of the pipelines (template parameter mongodb_uri)."
    "mail-api-token" = "Bearer token of the mail API (template parameter mail_api_token); needed only when mail_api_url is set."
  }
}

resource "google_secret_manager_secret" "pipeline" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = each.key

  annotations = {
    description = each.value
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}
