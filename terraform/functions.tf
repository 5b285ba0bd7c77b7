# The three ingest functions (Cloud Functions gen2), named after their routes so
# that https://<region>-<project>.cloudfunctions.net/ serves all three.
#
# Each function's source zip holds:
#   main.py           functions/<source_dir>/main.py (the entry point)
#   telemetry/...     the deploy unit's folders of the telemetry package:
#                     common/ (wire format, stored ping, config, logs, the cloud
#                     seam) and ingest/ (the handler and the object writer);
#                     never pipelines/ or local/ (tests/terraform/test_function_source.py
#                     checks that the functions import nothing else)
#   requirements.txt  functions/requirements.txt
# It is built by `terraform plan/apply` itself (no separate build step) and
# uploaded under its md5, so any change to those files redeploys the function.

locals {
  repo_root = "${path.module}/.."

  # Every function's runtime (ingest, analytics, audit): the repository's one Python
  # version (.python-version, which the Makefile's venv and the template images also
  # read), as a runtime id: python and the version without its dot.
  python_runtime = "python${replace(trimspace(file("${local.repo_root}/.python-version")), ".", "")}"

  # The folders of the telemetry package that make up the functions' deploy unit.
  function_packages = ["common", "ingest"]

  telemetry_files = merge(
    { "telemetry/__init__.py" = "${local.repo_root}/telemetry/__init__.py" },
    [
      for package in local.function_packages : {
        for f in fileset("${local.repo_root}/telemetry/${package}", "*.py") :
        "telemetry/${package}/${f}" => "${local.repo_root}/telemetry/${package}/${f}"
      }
    ]...
  )

  # Zip entry name => file on disk, per route.
  function_files = {
    for name, route in local.routes : name => merge(
      {
        "main.py"          = "${local.repo_root}/functions/${route.source_dir}/main.py"
        "requirements.txt" = "${local.repo_root}/functions/requirements.txt"
      },
      local.telemetry_files,
    )
  }

  # The account Cloud Build runs the functions' builds as: the stack's own build
  # account (iam.tf) unless var.build_service_account names another.
  build_service_account = "projects/${var.project_id}/serviceAccounts/${coalesce(var.build_service_account, google_service_account.build.email)}"

  # The product's environment variables (telemetry/config.py), same names.
  ingest_environment = {
    GCP_PROJECT     = var.project_id
    TRACKING_BUCKET = google_storage_bucket.pings.name
    LOG_LEVEL       = var.log_level
    MAX_BODY_BYTES  = tostring(var.max_body_bytes)
    # Which X-Forwarded-For entry is the client's (docs/ingest.md, "Client address").
    TRUSTED_PROXY_HOPS = tostring(var.trusted_proxy_hops)
    # The log line's client address is truncated like ip_address.
    IP_PREFIX_V4 = tostring(var.ip_prefix_v4)
    IP_PREFIX_V6 = tostring(var.ip_prefix_v6)
    # functions-framework serves with THREADS threads, by default 4 per vCPU: fewer than the
    # concurrency, and the instance queues requests Cloud Run has already routed to it
    # (Google's concurrency page: set THREADS to the concurrency).
    THREADS = tostring(var.function_concurrency)
  }
}

data "archive_file" "function_source" {
  for_each = local.routes

  type             = "zip"
  output_path      = "${path.module}/.build/${each.key}.zip"
  output_file_mode = "0644"

  dynamic "source" {
    for_each = local.function_files[each.key]
    content {
      filename = source.key
      content  = file(source.value)
    }
  }
}

resource "google_storage_bucket_object" "function_source" {
  for_each = local.routes

  bucket = google_storage_bucket.function_source.name
  name   = "${each.key}-${data.archive_file.function_source[each.key].output_md5}.zip"
  source = data.archive_file.function_source[each.key].output_path
}

resource "google_cloudfunctions2_function" "ingest" {
  for_each = local.routes

  project     = var.project_id
  location    = var.region
  name        = each.key
  description = "Stores each ${each.key} ping as one object under ${each.value.prefix} in the pings bucket."

  build_config {
    runtime           = local.python_runtime
    entry_point       = each.value.entry_point
    service_account   = local.build_service_account
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.function_source[each.key].name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.ingest.email
    environment_variables = local.ingest_environment

    # Public: WordPress sites post from anywhere (see the invoker grant in iam.tf).
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true

    available_memory                 = var.function_memory
    available_cpu                    = var.function_cpu
    max_instance_request_concurrency = var.function_concurrency
    min_instance_count               = var.function_min_instances
    max_instance_count               = var.function_max_instances
    timeout_seconds                  = var.function_timeout_seconds
  }

  # The functions write pings from their first request on; the build needs its grants first.
  depends_on = [
    google_project_service.enabled,
    google_storage_bucket_iam_member.ingest_creates_pings,
    google_project_iam_member.build_writes_logs,
    google_storage_bucket_iam_member.build_reads_function_source,
    google_artifact_registry_repository_iam_member.build_pushes_function_images,
  ]

  #checkov:skip=CKV_GCP_124:Ingest must accept requests from any WordPress site on the internet.
}

# The functions' images (and their buildpacks cache), instead of the gcf-artifacts
# repository that Cloud Functions would create on the first deploy: declared here,
# the build account can be given writer on this one repository.
resource "google_artifact_registry_repository" "functions" {
  project       = var.project_id
  location      = var.region
  repository_id = var.functions_artifact_repository
  format        = "DOCKER"
  description   = "Images of the ingest and analytics functions, built by Cloud Functions."

  # Every deploy pushes a new image; a deployed revision names its image by
  # digest, so only recent versions are kept.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-older"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.enabled]

  #checkov:skip=CKV_GCP_84:Google-managed encryption; set kms_key_name here if policy requires CMEK.
}
