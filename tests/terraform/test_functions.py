"""functions.tf: the three gen2 ingest functions, their entry points, environment and source object."""

from __future__ import annotations

import ast

import pytest

from telemetry.common import config, wire
from tests.terraform.hcl import ROOT, _block, _expr, _render, _resource

# What the functions are given, by their telemetry.config names.
INGEST_ENVIRONMENT = {
    "GCP_PROJECT",
    "TRACKING_BUCKET",
    "LOG_LEVEL",
    "MAX_BODY_BYTES",
    "TRUSTED_PROXY_HOPS",
    "IP_PREFIX_V4",
    "IP_PREFIX_V6",
}


# functions-framework's threads per instance (its gunicorn reads THREADS; default 4 per vCPU).
SERVER_THREADS = "THREADS"


# --- Functions ------------------------------------------------------------------------


def _environment(tf, service: dict) -> dict:
    """A service_config's environment_variables, through the local they name."""
    expression = _expr(service.get("environment_variables", "{}"))
    if expression.startswith("local."):
        return tf["locals"][expression.removeprefix("local.")]
    return service.get("environment_variables") or {}


def test_every_function_serving_requests_concurrently_has_a_thread_for_each(tf):
    """Cloud Run routes up to max_instance_request_concurrency requests to one instance at
    once; functions-framework serves them with THREADS threads (default 4 per vCPU), and
    queues the rest inside the instance, where no autoscaler sees them. Google's concurrency
    page: set THREADS to the concurrency."""
    concurrent = 0
    for name, fn in tf["resource"]["google_cloudfunctions2_function"].items():
        service = _block(fn, "service_config")
        concurrency = _expr(service.get("max_instance_request_concurrency", 1))
        if concurrency == "1":
            continue
        concurrent += 1
        threads = _environment(tf, service).get(SERVER_THREADS)
        assert threads is not None and _expr(threads) == f"tostring({concurrency})", (
            f"{name}: {concurrency} requests at once, THREADS {threads!r}"
        )
    assert concurrent == 2  # ingest and the dashboard; the others take one request at a time


def test_three_gen2_functions_named_after_routes(tf, routes):
    fn = _resource(tf, "google_cloudfunctions2_function", "ingest")
    assert _expr(fn["for_each"]) == "local.routes"
    assert _expr(fn["location"]) == "var.region"
    build = _block(fn, "build_config")
    service = _block(fn, "service_config")
    rendered = {
        route: (_render(fn["name"], tf, route, spec), _render(build["entry_point"], tf, route, spec))
        for route, spec in routes.items()
    }
    assert rendered == {
        "track": ("track", "track"),
        "deactivate": ("deactivate", "deactivate"),
        "tracking-skipped": ("tracking-skipped", "tracking_skipped"),
    }
    assert _expr(build["runtime"]) == "local.python_runtime"
    storage = _block(_block(build, "source"), "storage_source")
    assert _expr(storage["bucket"]) == "google_storage_bucket.function_source.name"
    assert _expr(storage["object"]) == "google_storage_bucket_object.function_source[each.key].name"

    assert service["ingress_settings"] == "ALLOW_ALL"
    assert _expr(service["max_instance_count"]) == "var.function_max_instances"
    assert _expr(service["timeout_seconds"]) == "var.function_timeout_seconds"
    assert _expr(service["available_memory"]) == "var.function_memory"
    assert _expr(service["service_account_email"]) == "google_service_account.ingest.email"
    assert _expr(service["environment_variables"]) == "local.ingest_environment"


@pytest.mark.parametrize("route", wire.ROUTES)
def test_entry_point_file_defines_the_function(tf, route):
    spec = tf["locals"]["routes"][route]
    main = ROOT / "functions" / spec["source_dir"] / "main.py"
    assert main.is_file(), f"{main} is missing"
    tree = ast.parse(main.read_text(encoding="utf-8"), filename=str(main))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert spec["entry_point"] in defined, f"{main} defines {sorted(defined)}, not {spec['entry_point']}"


def test_function_environment_uses_config_names_and_defaults(tf):
    env = dict(tf["locals"]["ingest_environment"])
    assert _expr(env.pop(SERVER_THREADS)) == "tostring(var.function_concurrency)"  # functions-framework's own
    assert set(env) == INGEST_ENVIRONMENT
    assert set(env) <= set(config.VARIABLES)
    assert _expr(env["GCP_PROJECT"]) == "var.project_id"
    assert _expr(env["TRACKING_BUCKET"]) == "google_storage_bucket.pings.name"
    assert _expr(env["LOG_LEVEL"]) == "var.log_level"
    assert _expr(env["MAX_BODY_BYTES"]) == "tostring(var.max_body_bytes)"
    assert _expr(env["TRUSTED_PROXY_HOPS"]) == "tostring(var.trusted_proxy_hops)"
    assert _expr(env["IP_PREFIX_V4"]) == "tostring(var.ip_prefix_v4)"
    assert _expr(env["IP_PREFIX_V6"]) == "tostring(var.ip_prefix_v6)"

    variables = tf["variable"]
    assert variables["log_level"]["default"] == config.VARIABLES["LOG_LEVEL"].default
    assert str(variables["max_body_bytes"]["default"]) == config.VARIABLES["MAX_BODY_BYTES"].default
    for name in ("TRUSTED_PROXY_HOPS", "IP_PREFIX_V4", "IP_PREFIX_V6", "SITE_PERSONAL_FIELDS"):
        assert str(variables[name.lower()]["default"]) == config.VARIABLES[name].default
    assert variables["pings_topic"]["default"] == config.VARIABLES["PINGS_TOPIC"].default
    assert variables["region"]["default"] == "europe-west1"
    # Bucket names are global: the production bucket has no default on purpose.
    assert "default" not in variables["tracking_bucket"]
    assert "default" not in variables["project_id"]


def test_source_object_named_after_zip_md5(tf):
    obj = _resource(tf, "google_storage_bucket_object", "function_source")
    assert "data.archive_file.function_source[each.key].output_md5" in obj["name"]
    assert _expr(obj["source"]) == "data.archive_file.function_source[each.key].output_path"
    assert _expr(obj["bucket"]) == "google_storage_bucket.function_source.name"
