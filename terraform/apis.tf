# APIs the stack needs. Each is named even where another API would enable it as a
# dependency (Dataflow enables Compute Engine and Cloud Logging), so that nothing
# rests on how Google happens to chain them today.
locals {
  apis = [
    "artifactregistry.googleapis.com",     # function images; the pipelines' template images
    "bigquery.googleapis.com",             # the history dataset and tables
    "cloudbuild.googleapis.com",           # builds the function sources and the template images
    "cloudfunctions.googleapis.com",       # the ingest functions
    "cloudresourcemanager.googleapis.com", # project IAM grants; the project lookup of the budget
    "cloudscheduler.googleapis.com",       # the hourly pipeline launches
    "compute.googleapis.com",              # the workers' network, subnetwork, NAT and firewall
    "dataflow.googleapis.com",             # the tracking and deactivation pipelines
    "iam.googleapis.com",                  # the service accounts
    "logging.googleapis.com",              # the log-based metric; build and worker logs
    "monitoring.googleapis.com",           # the alert policies
    "pubsub.googleapis.com",               # the pings topic and subscriptions
    "run.googleapis.com",                  # gen2 functions run as Cloud Run services
    "secretmanager.googleapis.com",        # the pipelines' MongoDB URI and mail API token
    "storage.googleapis.com",              # the pings, source, templates, Dataflow temp and build buckets
    "vpcaccess.googleapis.com",            # the notify function's connector (its egress through the NAT)
  ]

  # The budget's API (monitoring.tf), only when there is a budget.
  budget_apis = var.billing_account == "" ? [] : ["billingbudgets.googleapis.com"]
}

resource "google_project_service" "enabled" {
  for_each = toset(concat(local.apis, local.budget_apis))

  project = var.project_id
  service = each.value

  # Other things in the project may use these APIs: never turn them off on destroy.
  disable_on_destroy = false
}
