# The network of the Dataflow launcher VMs and workers. A new project may have no
# `default` network (organizations can skip creating it), and where it exists its
# default firewall rules admit SSH and RDP from anywhere. So the stack has its own:
# one subnetwork in var.region, workers without external addresses, Private Google
# Access for Google APIs (Cloud Storage, Pub/Sub, BigQuery, Secret Manager,
# Artifact Registry) and Cloud NAT, through one reserved address, for everything
# else (MongoDB Atlas, the mail API). That address is the one to allow in Atlas
# (output nat_ip_address).
#
# The pipeline account needs no grant on the subnetwork: Dataflow's service agent
# creates the VMs in its own project's network (compute.networkUser is only for
# a Shared VPC host project).

resource "google_compute_network" "dataflow" {
  project                 = var.project_id
  name                    = var.network_name
  description             = "Network of the telemetry Dataflow jobs."
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"

  depends_on = [google_project_service.enabled]
}

resource "google_compute_subnetwork" "dataflow" {
  project       = var.project_id
  name          = "${var.network_name}-${var.region}"
  region        = var.region
  network       = google_compute_network.dataflow.id
  ip_cidr_range = var.subnet_cidr

  # Workers without external addresses reach Google APIs through this.
  private_ip_google_access = true

  #checkov:skip=CKV_GCP_26:VPC flow logs are billed per sampled flow; the only traffic is the hourly jobs' own. Add a log_config block to turn them on.
  #checkov:skip=CKV_GCP_76:The subnetwork is IPv4 only; Private Google Access for IPv6 does not apply.
}

# The address every worker's outbound connection leaves from.
resource "google_compute_address" "nat" {
  project      = var.project_id
  name         = "${var.network_name}-nat-${var.region}"
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"
  description  = "Cloud NAT address of the Dataflow workers: allow it in MongoDB Atlas."

  depends_on = [google_project_service.enabled]
}

resource "google_compute_router" "dataflow" {
  project = var.project_id
  name    = "${var.network_name}-${var.region}"
  region  = var.region
  network = google_compute_network.dataflow.id
}

resource "google_compute_router_nat" "dataflow" {
  project = var.project_id
  name    = "${var.network_name}-nat-${var.region}"
  region  = var.region
  router  = google_compute_router.dataflow.name

  # Only the reserved address, never one Google picks: Atlas allows exactly it.
  nat_ip_allocate_option = "MANUAL_ONLY"
  nat_ips                = [google_compute_address.nat.self_link]

  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"
  subnetwork {
    name                    = google_compute_subnetwork.dataflow.id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }
  # The notify function's connector (notify.tf): its webhooks and mail leave from the same address.
  subnetwork {
    name                    = google_compute_subnetwork.notify_connector.id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# Dataflow workers exchange shuffle and other data on TCP 12345 (batch) and
# 12346 (streaming), and only with each other: Dataflow tags every worker VM
# `dataflow`. Nothing else is let in; the network's implied rules deny all other
# ingress and allow egress.
resource "google_compute_firewall" "dataflow_workers" {
  project     = var.project_id
  name        = "${var.network_name}-dataflow-workers"
  network     = google_compute_network.dataflow.name
  description = "Dataflow worker-to-worker traffic (TCP 12345-12346) between VMs tagged dataflow."
  direction   = "INGRESS"
  priority    = 1000

  source_tags = ["dataflow"]
  target_tags = ["dataflow"]

  allow {
    protocol = "tcp"
    ports    = ["12345-12346"]
  }
}
