"""Operators' tools, run by hand against a deployment: the `telemetry-admin` command line (API keys,
projects) and erasing one site's or project's personal data."""
