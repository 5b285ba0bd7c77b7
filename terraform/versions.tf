# Terraform and provider versions. A Terraform run here is `terraform init`, then
# `plan`/`apply` with a tfvars file (see terraform.tfvars.example); commit the
# `.terraform.lock.hcl` that the first `terraform init` writes.

terraform {
  # 1.5: `check` blocks (outputs.tf).
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7"
    }
  }
}

provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = var.labels
}
