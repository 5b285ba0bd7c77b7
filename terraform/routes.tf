# The three ingest routes, declared once. The key is the route's name: the
# function's name (so one base URL serves all three), the object prefix the
# function writes under, and the suffix of its pull subscription
# (telemetry.common.config.subscription_name: "<topic>-<route>").
locals {
  routes = {
    "track" = {
      prefix      = "track/"
      source_dir  = "track"
      entry_point = "track"
    }
    "deactivate" = {
      prefix      = "deactivate/"
      source_dir  = "deactivate"
      entry_point = "deactivate"
    }
    "tracking-skipped" = {
      prefix      = "tracking-skipped/"
      source_dir  = "tracking_skipped"
      entry_point = "tracking_skipped"
    }
  }

  route_prefixes = [for route in local.routes : route.prefix]
}
