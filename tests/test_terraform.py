"""Static checks of the Terraform under terraform/.

No Terraform binary or provider can be fetched here, so the configuration is
parsed with python-hcl2 and its resource graph is asserted: the names the
Python code relies on (functions, routes, subscriptions, environment
variables, BigQuery tables and their schema files, template parameters), the
wiring (notification after its publisher grant, the zip's contents, the
template specs and the scheduler's launch request) and the grants (least
privilege, exactly the roles each account needs, no basic roles).

Resources declared with `for_each = local.routes` are expanded here the way
Terraform would: `each.key` / `each.value.*` and `var.*` defaults are
substituted in the few strings under test, and anything else left unrendered
fails the test instead of passing silently.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[1]
TF_DIR = ROOT / "terraform"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from telemetry import config, payload, warehouse  # noqa: E402

TEMPLATES_DIR = ROOT / "dataflow_templates"
SCHEMAS_DIR = ROOT / "telemetry" / "schemas"

# One file per concern; a new concern gets a new file, not a longer one.
EXPECTED_FILES = {
    "versions.tf",
    "variables.tf",
    "routes.tf",
    "apis.tf",
    "storage.tf",
    "pubsub.tf",
    "functions.tf",
    "iam.tf",
    "outputs.tf",
    "bigquery.tf",
    "secrets.tf",
    "pipelines.tf",
}

# What the functions are given, by their telemetry.config names.
INGEST_ENVIRONMENT = {"GCP_PROJECT", "TRACKING_BUCKET", "LOG_LEVEL", "MAX_BODY_BYTES"}

# Values for the variables that have no default, to render names.
SAMPLE_VARS = {"project_id": "sample-project", "tracking_bucket": "sample-pings", "template_image_tag": "v1"}

BASIC_ROLES = re.compile(r"roles/(owner|editor|viewer)\b")

PARSE_OPTIONS = SerializationOptions(
    strip_string_quotes=True,  # "track" rather than '"track"'
    with_comments=False,
    explicit_blocks=False,
    preserve_heredocs=False,
)


# --- Parsing -------------------------------------------------------------------


def _parse(path: Path) -> dict[str, Any]:
    return hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=PARSE_OPTIONS)


def _merge_config() -> dict[str, Any]:
    """Every .tf file as one module: kind -> (type ->) name -> body; duplicates fail."""
    merged: dict[str, Any] = {
        "resource": {},
        "data": {},
        "variable": {},
        "locals": {},
        "output": {},
        "terraform": [],
        "provider": [],
        "check": {},
    }
    for path in sorted(TF_DIR.glob("*.tf")):
        parsed = _parse(path)
        unknown = set(parsed) - set(merged)
        assert not unknown, f"{path.name}: unexpected top-level blocks {unknown}"
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        table = merged[kind].setdefault(rtype, {})
                        assert name not in table, f"{kind} {rtype}.{name} declared twice"
                        table[name] = body
        for kind in ("variable", "output", "check"):
            for block in parsed.get(kind, []):
                for name, body in block.items():
                    assert name not in merged[kind], f"{kind} {name} declared twice"
                    merged[kind][name] = body
        for block in parsed.get("locals", []):
            for name, value in block.items():
                assert name not in merged["locals"], f"local {name} declared twice"
                merged["locals"][name] = value
        merged["terraform"].extend(parsed.get("terraform", []))
        merged["provider"].extend(parsed.get("provider", []))
    return merged


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    return _merge_config()


def _resource(tf: dict[str, Any], rtype: str, name: str) -> dict[str, Any]:
    assert name in tf["resource"].get(rtype, {}), f"resource {rtype}.{name} is not declared"
    return tf["resource"][rtype][name]


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` of a resource body."""
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {name} block, got {blocks!r}"
    return blocks[0]


def _expr(value: Any) -> str:
    """`${foo.bar}` -> `foo.bar`; anything else unchanged, as text."""
    text = str(value)
    match = re.fullmatch(r"\$\{(.*)\}", text, re.S)
    return match.group(1) if match else text


def _render(
    text: str,
    tf: dict[str, Any],
    key: str | None = None,
    value: dict[str, Any] | None = None,
    refs: dict[str, str] | None = None,
) -> str:
    """Substitute each.key, each.value.<attr>, var.<name> and the given resource references as Terraform would."""

    def substitute(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if refs and expr in refs:
            return refs[expr]
        if expr == "each.key" and key is not None:
            return key
        if expr.startswith("each.value.") and value is not None:
            return str(value[expr.removeprefix("each.value.")])
        if expr.startswith("var."):
            name = expr.removeprefix("var.")
            default = tf["variable"][name].get("default")
            return str(default if default is not None else SAMPLE_VARS[name])
        raise AssertionError(f"cannot render ${{{expr}}} in {text!r}")

    return re.sub(r"\$\{([^${}]+)\}", substitute, text)


def _strings(node: Any):
    """Every string anywhere in a parsed structure (keys included)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _iam_grants(tf: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every IAM grant resource."""
    return [
        (rtype, name, body)
        for rtype, named in tf["resource"].items()
        if re.search(r"_iam_(member|binding|policy)$", rtype)
        for name, body in named.items()
    ]


def _members(body: dict[str, Any]) -> list[str]:
    if "member" in body:
        return [str(body["member"])]
    return [str(m) for m in body.get("members", [])]


def _call_argument(value: Any, *functions: str) -> Any:
    """`${f(g(<arg>))}` -> <arg>, parsed as HCL: the object literal inside nested calls."""
    text = _expr(value)
    for function in functions:
        assert text.startswith(f"{function}(") and text.endswith(")"), f"expected {function}(...), got {text!r}"
        text = text[len(function) + 1 : -1]
    return hcl2.loads(f"argument = {text}", serialization_options=PARSE_OPTIONS)["argument"]


def _squash(text: Any) -> str:
    """An expression without whitespace, to compare its text."""
    return re.sub(r"\s+", "", _expr(text))


# The scope each IAM member resource grants on, by resource type.
GRANT_TARGET = {
    "google_project_iam_member": "project",
    "google_storage_bucket_iam_member": "bucket",
    "google_bigquery_dataset_iam_member": "dataset_id",
    "google_pubsub_subscription_iam_member": "subscription",
    "google_pubsub_topic_iam_member": "topic",
    "google_secret_manager_secret_iam_member": "secret_id",
    "google_artifact_registry_repository_iam_member": "repository",
    "google_service_account_iam_member": "service_account_id",
    "google_cloud_run_service_iam_member": "service",
}


def _grants_to(tf: dict[str, Any], account: str) -> set[tuple[str, str, str]]:
    """(type, role, scope) of every grant to google_service_account.<account>."""
    member = f"serviceAccount:${{google_service_account.{account}.email}}"
    grants = set()
    for rtype, name, body in _iam_grants(tf):
        members = _members(body)
        for m in members:
            if f"google_service_account.{account}." in m:
                assert m == member, f"{rtype}.{name}: member {m!r} is not {member!r}"
        if member in members:
            assert rtype in GRANT_TARGET, f"{rtype}.{name}: unexpected kind of grant"
            grants.add((rtype, body["role"], _expr(body[GRANT_TARGET[rtype]])))
    return grants


def _metadata(template: str) -> dict[str, Any]:
    return json.loads((TEMPLATES_DIR / template / "metadata.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def routes(tf: dict[str, Any]) -> dict[str, dict[str, str]]:
    return tf["locals"]["routes"]


@pytest.fixture(scope="module")
def templates(tf: dict[str, Any]) -> dict[str, dict[str, str]]:
    return tf["locals"]["templates"]


# --- Layout and versions ----------------------------------------------------------


def test_files_split_by_concern_and_all_parse():
    present = {p.name for p in TF_DIR.glob("*.tf")}
    assert EXPECTED_FILES <= present, f"missing {EXPECTED_FILES - present}"
    for path in TF_DIR.glob("*.tf"):
        assert _parse(path), f"{path.name} parsed to nothing"


def test_providers_are_pinned(tf):
    (terraform,) = tf["terraform"]
    assert terraform["required_version"].startswith(">=")
    (providers,) = terraform["required_providers"]
    assert providers["google"]["source"] == "hashicorp/google"
    assert re.fullmatch(r"~> 6\.\d+", providers["google"]["version"]), providers["google"]["version"]
    assert providers["archive"]["source"] == "hashicorp/archive"
    assert re.fullmatch(r"~> 2\.\d+", providers["archive"]["version"]), providers["archive"]["version"]


def test_needed_apis_enabled_and_never_disabled(tf):
    service = _resource(tf, "google_project_service", "enabled")
    assert _expr(service["for_each"]) == "toset(local.apis)"
    assert service["disable_on_destroy"] is False
    assert {
        "cloudfunctions.googleapis.com",
        "run.googleapis.com",
        "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com",
        "storage.googleapis.com",
        "pubsub.googleapis.com",
        "bigquery.googleapis.com",
        "dataflow.googleapis.com",
        "cloudscheduler.googleapis.com",
        "secretmanager.googleapis.com",
    } <= set(tf["locals"]["apis"])
    assert "eventarc.googleapis.com" not in tf["locals"]["apis"]


# --- Routes: Terraform and Python agree -------------------------------------------------


def test_routes_are_the_python_routes(routes):
    assert set(routes) == set(payload.ROUTES)
    for route, spec in routes.items():
        assert spec["prefix"] == f"{route}/"
        assert spec["source_dir"] == route.replace("-", "_")
        assert spec["entry_point"] == route.replace("-", "_")


def test_notification_prefixes_cover_where_ingest_writes(routes):
    from telemetry.ingest import object_name

    when = datetime(2026, 11, 23, 11, 47, tzinfo=UTC)
    for route, spec in routes.items():
        name = object_name(route, when, "abc")
        assert name.startswith(spec["prefix"]), (name, spec["prefix"])
        # ... and no other route's prefix catches it.
        others = [s["prefix"] for r, s in routes.items() if r != route]
        assert not any(name.startswith(p) for p in others), name


def test_route_prefixes_local(tf):
    assert _expr(tf["locals"]["route_prefixes"]) == "[for route in local.routes : route.prefix]"


# --- Functions --------------------------------------------------------------------


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
    assert build["runtime"] == "python312"
    storage = _block(_block(build, "source"), "storage_source")
    assert _expr(storage["bucket"]) == "google_storage_bucket.function_source.name"
    assert _expr(storage["object"]) == "google_storage_bucket_object.function_source[each.key].name"

    assert service["ingress_settings"] == "ALLOW_ALL"
    assert _expr(service["max_instance_count"]) == "var.function_max_instances"
    assert _expr(service["timeout_seconds"]) == "var.function_timeout_seconds"
    assert _expr(service["available_memory"]) == "var.function_memory"
    assert _expr(service["service_account_email"]) == "google_service_account.ingest.email"
    assert _expr(service["environment_variables"]) == "local.ingest_environment"


@pytest.mark.parametrize("route", payload.ROUTES)
def test_entry_point_file_defines_the_function(tf, route):
    spec = tf["locals"]["routes"][route]
    main = ROOT / "functions" / spec["source_dir"] / "main.py"
    assert main.is_file(), f"{main} is missing"
    tree = ast.parse(main.read_text(encoding="utf-8"), filename=str(main))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert spec["entry_point"] in defined, f"{main} defines {sorted(defined)}, not {spec['entry_point']}"


def test_function_environment_uses_config_names_and_defaults(tf):
    env = tf["locals"]["ingest_environment"]
    assert set(env) == INGEST_ENVIRONMENT
    assert set(env) <= set(config.VARIABLES)
    assert _expr(env["GCP_PROJECT"]) == "var.project_id"
    assert _expr(env["TRACKING_BUCKET"]) == "google_storage_bucket.pings.name"
    assert _expr(env["LOG_LEVEL"]) == "var.log_level"
    assert _expr(env["MAX_BODY_BYTES"]) == "tostring(var.max_body_bytes)"

    variables = tf["variable"]
    assert variables["log_level"]["default"] == config.VARIABLES["LOG_LEVEL"].default
    assert str(variables["max_body_bytes"]["default"]) == config.VARIABLES["MAX_BODY_BYTES"].default
    assert variables["pings_topic"]["default"] == config.VARIABLES["PINGS_TOPIC"].default
    assert variables["region"]["default"] == "europe-west1"
    # Bucket names are global: the production bucket has no default on purpose.
    assert "default" not in variables["tracking_bucket"]
    assert "default" not in variables["project_id"]


def test_archive_holds_main_requirements_and_telemetry_package(tf):
    archive = tf["data"]["archive_file"]["function_source"]
    assert archive["type"] == "zip"
    assert _expr(archive["for_each"]) == "local.routes"
    (dynamic,) = archive["dynamic"]
    source = dynamic["source"]
    assert _expr(source["for_each"]) == "local.function_files[each.key]"
    (content,) = source["content"]
    assert _expr(content["filename"]) == "source.key"
    assert _expr(content["content"]) == "file(source.value)"

    function_files = _expr(tf["locals"]["function_files"])
    assert '"main.py" = "${local.repo_root}/functions/${route.source_dir}/main.py"' in function_files
    assert '"requirements.txt" = "${local.repo_root}/functions/requirements.txt"' in function_files
    assert "local.telemetry_files" in function_files
    telemetry_files = _expr(tf["locals"]["telemetry_files"])
    assert "for f in local.function_modules" in telemetry_files
    assert '"telemetry/${f}" => "${local.repo_root}/telemetry/${f}"' in telemetry_files
    assert tf["locals"]["repo_root"] == "${path.module}/.."
    assert (ROOT / "functions" / "requirements.txt").is_file()


def _telemetry_imports(path: Path) -> set[str]:
    """The telemetry modules a source file imports, as file names relative to telemetry/."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "telemetry":
            parts = node.module.split(".")[1:]
            for alias in node.names:  # `from telemetry import config` or `from telemetry.config import X`
                module = parts or [alias.name]
                if (ROOT / "telemetry" / Path(*module)).with_suffix(".py").is_file():
                    found.add(Path(*module).with_suffix(".py").as_posix())
        elif isinstance(node, ast.Import):
            found |= {
                Path(*a.name.split(".")[1:]).with_suffix(".py").as_posix()
                for a in node.names
                if a.name.startswith("telemetry.")
            }
    return found


def test_function_zips_hold_exactly_the_modules_ingest_imports(tf):
    """Every module the functions import, transitively, and nothing else (no pipelines, MongoDB, BigQuery)."""
    needed, todo = (
        {"__init__.py"},
        [ROOT / "functions" / route / "main.py" for route in ("track", "deactivate", "tracking_skipped")],
    )
    while todo:
        for module in _telemetry_imports(todo.pop()) - needed:
            needed.add(module)
            todo.append(ROOT / "telemetry" / module)
    assert set(tf["locals"]["function_modules"]) == needed
    assert not any(module.startswith("pipelines/") for module in needed)


def test_source_object_named_after_zip_md5(tf):
    obj = _resource(tf, "google_storage_bucket_object", "function_source")
    assert "data.archive_file.function_source[each.key].output_md5" in obj["name"]
    assert _expr(obj["source"]) == "data.archive_file.function_source[each.key].output_path"
    assert _expr(obj["bucket"]) == "google_storage_bucket.function_source.name"


# --- Bucket, topic, notifications, subscriptions ---------------------------------------


def test_pings_bucket_is_private_and_expires_raw_pings(tf):
    bucket = _resource(tf, "google_storage_bucket", "pings")
    assert _expr(bucket["name"]) == "var.tracking_bucket"
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["force_destroy"] is False
    rule = _block(bucket, "lifecycle_rule")
    assert _block(rule, "action")["type"] == "Delete"
    condition = _block(rule, "condition")
    assert _expr(condition["age"]) == "var.raw_ping_retention_days"
    assert _expr(condition["matches_prefix"]) == "local.route_prefixes"
    assert tf["variable"]["raw_ping_retention_days"]["default"] == 400

    source = _resource(tf, "google_storage_bucket", "function_source")
    assert source["uniform_bucket_level_access"] is True
    assert source["public_access_prevention"] == "enforced"


def test_notifications_per_prefix_after_publisher_grant(tf, routes):
    note = _resource(tf, "google_storage_notification", "pings")
    assert _expr(note["for_each"]) == "local.routes"
    assert _expr(note["bucket"]) == "google_storage_bucket.pings.name"
    assert _expr(note["topic"]) == "google_pubsub_topic.pings.id"
    assert note["payload_format"] == "JSON_API_V1"
    assert note["event_types"] == ["OBJECT_FINALIZE"]
    assert {_render(note["object_name_prefix"], tf, r, s) for r, s in routes.items()} == {
        f"{r}/" for r in payload.ROUTES
    }

    for name, body in tf["resource"]["google_storage_notification"].items():
        deps = [_expr(d) for d in body.get("depends_on", [])]
        grants = [d for d in deps if d.startswith("google_pubsub_topic_iam_member.")]
        assert grants, f"notification {name} does not depend on the publisher grant"
        for dep in grants:
            grant = _resource(tf, *dep.split("."))
            assert grant["role"] == "roles/pubsub.publisher"
            assert _expr(grant["topic"]) == "google_pubsub_topic.pings.name"
            assert "data.google_storage_project_service_account." in grant["member"]

    topic = _resource(tf, "google_pubsub_topic", "pings")
    assert _expr(topic["name"]) == "var.pings_topic"


def test_subscriptions_named_and_filtered_per_route(tf, routes):
    sub = _resource(tf, "google_pubsub_subscription", "pings")
    assert _expr(sub["for_each"]) == "local.routes"
    assert _expr(sub["topic"]) == "google_pubsub_topic.pings.id"
    topic = tf["variable"]["pings_topic"]["default"]
    for route, spec in routes.items():
        assert _render(sub["name"], tf, route, spec) == config.subscription_name(topic, route)
        assert _render(sub["filter"], tf, route, spec) == f'hasPrefix(attributes.objectId, "{route}/")'
    assert sub["ack_deadline_seconds"] == 600
    assert sub["message_retention_duration"] == "604800s"
    assert _block(sub, "expiration_policy")["ttl"] == ""
    assert "push_config" not in sub


# --- BigQuery ------------------------------------------------------------------------


def test_dataset_named_like_the_product_setting(tf):
    dataset = _resource(tf, "google_bigquery_dataset", "telemetry")
    assert _expr(dataset["dataset_id"]) == "var.bq_dataset"
    assert _expr(dataset["location"]) == "var.bq_location"
    assert dataset["delete_contents_on_destroy"] is False
    assert "access" not in dataset, "dataset access is granted by google_bigquery_dataset_iam_member only"
    variables = tf["variable"]
    assert variables["bq_dataset"]["default"] == config.VARIABLES["BQ_DATASET"].default
    assert variables["bq_location"]["default"] == "EU"


def test_tables_are_the_warehouse_tables_and_their_schema_files(tf):
    tables = tf["locals"]["bq_tables"]
    assert set(tables) == {table.name for table in warehouse.TABLES}
    # Every schema file has its table, and no table lacks its file.
    assert set(tables) == {path.stem for path in SCHEMAS_DIR.glob("*.json")}


@pytest.mark.parametrize("table", [t.name for t in warehouse.TABLES])
def test_table_uses_its_schema_file_partitioned_and_clustered(tf, table):
    body = _resource(tf, "google_bigquery_table", "history")
    assert _expr(body["for_each"]) == "local.bq_tables"
    assert table in tf["locals"]["bq_tables"]
    assert _expr(body["dataset_id"]) == "google_bigquery_dataset.telemetry.dataset_id"
    assert _render(body["table_id"], tf, table) == table

    # schema = file() of telemetry/schemas/<table>.json, the file warehouse.py reads.
    assert _expr(body["schema"]) == 'file("${path.module}/../telemetry/schemas/${each.key}.json")'
    path = (TF_DIR / ".." / "telemetry" / "schemas" / f"{table}.json").resolve()
    assert path == (warehouse.SCHEMA_DIR / f"{table}.json").resolve()
    assert path.is_file(), f"{path} is missing"
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(schema, list) and all("name" in field and "type" in field for field in schema)
    columns = {field["name"]: field for field in schema}
    assert len(columns) == len(schema), f"{path.name} repeats a column"
    assert columns["received_at"]["type"] == "TIMESTAMP"
    assert "hash" in columns

    partitioning = _block(body, "time_partitioning")
    assert partitioning["type"] == "DAY"
    assert partitioning["field"] == "received_at"
    assert body["clustering"] == ["hash"]
    assert body["deletion_protection"] is True


# --- Secrets -------------------------------------------------------------------------


def test_secrets_declared_without_any_value(tf):
    secrets = tf["locals"]["secrets"]
    assert set(secrets) == {"mongodb-uri", "mail-api-token"}
    secret = _resource(tf, "google_secret_manager_secret", "pipeline")
    assert _expr(secret["for_each"]) == "local.secrets"
    assert _render(secret["secret_id"], tf, "mongodb-uri") == "mongodb-uri"
    assert _block(_block(secret, "replication"), "auto") == {}

    # A version declared in Terraform (or read by a data source) puts the value in its state.
    for kind in ("resource", "data"):
        versions = [t for t in tf[kind] if t.startswith("google_secret_manager_secret_version")]
        assert versions == [], f"{kind} {versions}: secret values must not be in Terraform"
    for path in TF_DIR.glob("*.tf"):
        text = path.read_text(encoding="utf-8")
        assert "secret_data" not in text, path.name
        assert not re.search(r"^\s*ephemeral\s", text, re.M), path.name


# --- Pipelines: templates, specs, images ---------------------------------------------------


def test_template_folders_are_the_templates(templates):
    folders = {p.parent.name for p in TEMPLATES_DIR.glob("*/metadata.json")}
    assert set(templates) == folders == {"tracking", "deactivation"}
    for name in templates:
        for file in ("Dockerfile", "metadata.json", "setup.py", "requirements.txt", "main.py"):
            assert (TEMPLATES_DIR / name / file).is_file(), f"dataflow_templates/{name}/{file} is missing"
        metadata = _metadata(name)
        assert metadata["name"] and metadata["parameters"]


@pytest.mark.parametrize("template", ["tracking", "deactivation"])
def test_template_spec_is_what_flex_template_build_writes(tf, templates, template):
    spec = _resource(tf, "google_storage_bucket_object", "template_spec")
    assert _expr(spec["for_each"]) == "local.templates"
    assert _expr(spec["bucket"]) == "google_storage_bucket.templates.name"
    assert _render(spec["name"], tf, template, templates[template]) == f"templates/{template}.json"

    content = _call_argument(spec["content"], "jsonencode")
    assert set(content) == {"image", "sdkInfo", "metadata"}
    assert _expr(content["image"]) == "local.template_images[each.key]"
    assert content["sdkInfo"] == {"language": "PYTHON"}
    # The metadata is the template folder's own metadata.json, read at plan time.
    assert _expr(content["metadata"]) == (
        'jsondecode(file("${path.module}/../dataflow_templates/${each.key}/metadata.json"))'
    )
    path = (TF_DIR / ".." / "dataflow_templates" / template / "metadata.json").resolve()
    assert path.is_file()
    json.loads(path.read_text(encoding="utf-8"))

    paths = _squash(tf["locals"]["template_spec_paths"])
    assert paths == _squash(
        '{for name, spec in google_storage_bucket_object.template_spec : name => "gs://${spec.bucket}/${spec.name}"}'
    )


def test_images_live_in_the_pipelines_repository(tf):
    repo = _resource(tf, "google_artifact_registry_repository", "pipelines")
    assert repo["format"] == "DOCKER"
    assert _expr(repo["location"]) == "var.region"
    assert _expr(repo["repository_id"]) == "var.artifact_repository"
    assert _block(repo, "docker_config")["immutable_tags"] is True

    images = _squash(tf["locals"]["template_images"])
    assert images == _squash(
        "{for name in keys(local.templates) : name => "
        '"${var.region}-docker.pkg.dev/${var.project_id}/'
        '${google_artifact_registry_repository.pipelines.repository_id}/${name}:${var.template_image_tag}"}'
    )
    assert "default" not in tf["variable"]["template_image_tag"], "the image tag is chosen at each release"


def test_dataflow_buckets_are_private_and_temp_files_expire(tf):
    for name in ("templates", "dataflow_temp"):
        bucket = _resource(tf, "google_storage_bucket", name)
        assert bucket["uniform_bucket_level_access"] is True
        assert bucket["public_access_prevention"] == "enforced"
        assert _expr(bucket["location"]) == "var.region"
    temp = _resource(tf, "google_storage_bucket", "dataflow_temp")
    rule = _block(temp, "lifecycle_rule")
    assert _block(rule, "action")["type"] == "Delete"
    assert _expr(_block(rule, "condition")["age"]) == "var.dataflow_temp_retention_days"


# --- Pipelines: the hourly launches --------------------------------------------------------


def test_scheduler_launches_each_template_hourly(tf, templates):
    job = _resource(tf, "google_cloud_scheduler_job", "pipeline")
    assert _expr(job["for_each"]) == "local.templates"
    assert {name: _render(spec["schedule"], tf) for name, spec in templates.items()} == {
        "tracking": "5 * * * *",
        "deactivation": "10 * * * *",
    }
    assert _expr(job["schedule"]) == "each.value.schedule"
    assert job["time_zone"] == "Etc/UTC"
    assert _expr(job["region"]) == "var.region"
    assert _expr(job["paused"]) == "var.pipeline_schedules_paused"
    assert tf["variable"]["pipeline_schedules_paused"]["default"] is False

    retry = _block(job, "retry_config")
    assert 1 <= retry["retry_count"] <= 5

    target = _block(job, "http_target")
    assert target["http_method"] == "POST"
    assert (
        _render(target["uri"], tf)
        == "https://dataflow.googleapis.com/v1b3/projects/sample-project/locations/europe-west1/flexTemplates:launch"
    )
    assert target["headers"] == {"Content-Type": "application/json"}
    oauth = _block(target, "oauth_token")
    assert oauth["service_account_email"] == "${google_service_account.scheduler.email}"
    assert oauth["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert "oidc_token" not in target

    request = _call_argument(target["body"], "base64encode", "jsonencode")
    assert set(request) == {"launchParameter"}
    launch = request["launchParameter"]
    assert set(launch) == {"jobName", "containerSpecGcsPath", "parameters", "environment"}
    # Fixed per template (never per run), so Dataflow refuses an overlapping run.
    assert launch["jobName"] == "${each.key}-hourly"
    assert _expr(launch["containerSpecGcsPath"]) == "local.template_spec_paths[each.key]"
    assert _expr(launch["parameters"]) == "local.launch_parameters"
    # The workers run the template's own image.
    assert _squash(launch["environment"]) == (
        "merge(local.launch_environment,{sdkContainerImage=local.template_images[each.key]})"
    )

    environment = tf["locals"]["launch_environment"]
    assert set(environment) == {"serviceAccountEmail", "tempLocation", "stagingLocation", "maxWorkers"}
    assert environment["serviceAccountEmail"] == "${google_service_account.pipeline.email}"
    assert environment["tempLocation"] == "gs://${google_storage_bucket.dataflow_temp.name}/tmp"
    assert environment["stagingLocation"] == "gs://${google_storage_bucket.dataflow_temp.name}/staging"
    assert _expr(environment["maxWorkers"]) == "var.pipeline_max_workers"


def _sample_refs(tf: dict[str, Any]) -> dict[str, str]:
    """Sample values of the resource attributes the launch parameters use."""
    variables = tf["variable"]
    refs = {
        "google_storage_bucket.pings.name": SAMPLE_VARS["tracking_bucket"],
        "google_pubsub_topic.pings.name": variables["pings_topic"]["default"],
        "google_bigquery_dataset.telemetry.dataset_id": variables["bq_dataset"]["default"],
    }
    # ... each of which is what it claims to be.
    assert _expr(_resource(tf, "google_storage_bucket", "pings")["name"]) == "var.tracking_bucket"
    assert _expr(_resource(tf, "google_pubsub_topic", "pings")["name"]) == "var.pings_topic"
    assert _expr(_resource(tf, "google_bigquery_dataset", "telemetry")["dataset_id"]) == "var.bq_dataset"
    for secret in tf["locals"]["secrets"]:
        refs[f'google_secret_manager_secret.pipeline["{secret}"].id'] = f"projects/sample-project/secrets/{secret}"
    return refs


@pytest.mark.parametrize("template", ["tracking", "deactivation"])
def test_scheduler_passes_exactly_what_the_template_declares(tf, template):
    always = tf["locals"]["pipeline_parameters"]
    with_mail = tf["locals"]["mail_parameters"]
    # What a run gets: the parameters above, plus the mail ones only when mail_api_url is set.
    assert _squash(tf["locals"]["launch_parameters"]) == _squash(
        "merge(local.pipeline_parameters,"
        ' {for name, value in local.mail_parameters : name => value if var.mail_api_url != ""})'
    )
    assert not set(always) & set(with_mail)

    declared = {p["name"]: p for p in _metadata(template)["parameters"]}
    required = {name for name, p in declared.items() if not p.get("isOptional", False)}
    passed = set(always) | set(with_mail)
    assert passed - set(declared) == set(), f"{template} does not declare {passed - set(declared)}"
    assert required - set(always) == set(), f"{template} needs {required - set(always)} on every run"
    assert all(declared[name].get("isOptional") for name in with_mail), "the mail parameters are not always passed"
    assert {"hour", "hour_to"} <= set(declared) - passed, "hour mode is for hand-launched runs only"

    # Every value the scheduler passes satisfies the template's own checks.
    refs = _sample_refs(tf)
    rendered = {name: _render(value, tf, refs=refs) for name, value in always.items()}
    rendered["mail_api_token"] = _render(with_mail["mail_api_token"], tf, refs=refs)
    for name, value in rendered.items():
        for pattern in declared[name].get("regexes", []):
            assert re.search(pattern, value), f"{template}: {name}={value!r} does not match {pattern!r}"
    assert rendered["mongodb_uri"] == "projects/sample-project/secrets/mongodb-uri/versions/latest"
    assert rendered["mail_api_token"] == "projects/sample-project/secrets/mail-api-token/versions/latest"
    assert _expr(with_mail["mail_api_url"]) == "var.mail_api_url"

    variables = tf["variable"]
    assert variables["mongodb_db"]["default"] == config.VARIABLES["MONGODB_DB"].default
    assert variables["mail_api_url"]["default"] == "", "no mail unless asked for"


# --- Identities and grants ----------------------------------------------------------


def test_ingest_account_may_only_create_objects_in_pings_bucket(tf):
    ingest_ref = "google_service_account.ingest."
    grants = [(t, n, b) for t, n, b in _iam_grants(tf) if any(ingest_ref in m for m in _members(b))]
    assert [(t, n) for t, n, _ in grants] == [("google_storage_bucket_iam_member", "ingest_creates_pings")]
    (_, _, grant) = grants[0]
    assert grant["role"] == "roles/storage.objectCreator"
    assert _expr(grant["bucket"]) == "google_storage_bucket.pings.name"
    assert grant["member"] == "serviceAccount:${google_service_account.ingest.email}"


# The only project-level grants: roles that have no narrower scope.
PROJECT_GRANTS = {
    ("roles/dataflow.worker", "serviceAccount:${google_service_account.pipeline.email}"),
    ("roles/bigquery.jobUser", "serviceAccount:${google_service_account.pipeline.email}"),
    ("roles/dataflow.developer", "serviceAccount:${google_service_account.scheduler.email}"),
}


PIPELINE_GRANTS = {
    ("google_project_iam_member", "roles/dataflow.worker", "var.project_id"),
    ("google_project_iam_member", "roles/bigquery.jobUser", "var.project_id"),
    ("google_bigquery_dataset_iam_member", "roles/bigquery.dataEditor", "google_bigquery_dataset.telemetry.dataset_id"),
    ("google_storage_bucket_iam_member", "roles/storage.objectViewer", "google_storage_bucket.pings.name"),
    ("google_storage_bucket_iam_member", "roles/storage.objectAdmin", "google_storage_bucket.dataflow_temp.name"),
    ("google_storage_bucket_iam_member", "roles/storage.objectViewer", "google_storage_bucket.templates.name"),
    (
        "google_pubsub_subscription_iam_member",
        "roles/pubsub.subscriber",
        "google_pubsub_subscription.pings[each.key].name",
    ),
    (
        "google_secret_manager_secret_iam_member",
        "roles/secretmanager.secretAccessor",
        "google_secret_manager_secret.pipeline[each.key].secret_id",
    ),
    (
        "google_artifact_registry_repository_iam_member",
        "roles/artifactregistry.reader",
        "google_artifact_registry_repository.pipelines.name",
    ),
}

SCHEDULER_GRANTS = {
    ("google_project_iam_member", "roles/dataflow.developer", "var.project_id"),
    ("google_service_account_iam_member", "roles/iam.serviceAccountUser", "google_service_account.pipeline.name"),
    ("google_storage_bucket_iam_member", "roles/storage.objectViewer", "google_storage_bucket.templates.name"),
}


def test_pipeline_account_has_exactly_its_roles(tf):
    assert _grants_to(tf, "pipeline") == PIPELINE_GRANTS


def test_scheduler_account_has_exactly_its_roles(tf):
    assert _grants_to(tf, "scheduler") == SCHEDULER_GRANTS
    # Nobody else may act as (launch jobs as) any account.
    acting = [(n, b["role"], _members(b)) for t, n, b in _iam_grants(tf) if t.startswith("google_service_account_iam")]
    assert acting == [
        (
            "scheduler_acts_as_pipeline",
            "roles/iam.serviceAccountUser",
            ["serviceAccount:${google_service_account.scheduler.email}"],
        )
    ]


def test_every_subscription_lets_the_pipeline_pull(tf, routes):
    subscriptions = tf["resource"]["google_pubsub_subscription"]
    grants = [
        body
        for body in tf["resource"].get("google_pubsub_subscription_iam_member", {}).values()
        if body["role"] == "roles/pubsub.subscriber"
        and body["member"] == "serviceAccount:${google_service_account.pipeline.email}"
    ]
    for name, sub in subscriptions.items():
        # Same for_each as the subscriptions, one grant on each of them.
        refs = {f"google_pubsub_subscription.{name}[each.key].{attr}" for attr in ("name", "id")}
        covering = [
            g for g in grants if _expr(g["subscription"]) in refs and _expr(g.get("for_each")) == _expr(sub["for_each"])
        ]
        assert covering, f"no roles/pubsub.subscriber for the pipeline on every google_pubsub_subscription.{name}"
    assert _expr(subscriptions["pings"]["for_each"]) == "local.routes"
    assert set(routes) == set(payload.ROUTES)


def test_every_secret_is_readable_by_the_pipeline_only(tf):
    grants = tf["resource"]["google_secret_manager_secret_iam_member"]
    assert list(grants) == ["pipeline_reads_secrets"]
    grant = grants["pipeline_reads_secrets"]
    assert _expr(grant["for_each"]) == "local.secrets"
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert grant["member"] == "serviceAccount:${google_service_account.pipeline.email}"


def test_project_level_grants_only_where_no_narrower_scope_and_none_authoritative(tf):
    project_grants = set()
    for rtype, name, body in _iam_grants(tf):
        assert not rtype.startswith(("google_organization_iam", "google_folder_iam")), f"{rtype}.{name}"
        assert not rtype.endswith(("_iam_policy", "_iam_binding")), f"{rtype}.{name} is authoritative"
        if rtype.startswith("google_project_iam"):
            assert _expr(body["project"]) == "var.project_id", f"{rtype}.{name} grants on another project"
            assert "condition" not in body, f"{rtype}.{name}"
            project_grants.add((body["role"], body["member"]))
    assert project_grants == PROJECT_GRANTS


def test_no_basic_roles_anywhere(tf):
    for text in _strings(tf):
        assert not BASIC_ROLES.search(text), f"basic role in {text!r}"
    for path in TF_DIR.glob("*.tf"):
        assert not BASIC_ROLES.search(path.read_text(encoding="utf-8")), path.name


def test_anyone_may_invoke_the_ingest_functions_through_cloud_run(tf):
    invoker = _resource(tf, "google_cloud_run_service_iam_member", "public_invokes_ingest")
    assert _expr(invoker["for_each"]) == "local.routes"
    assert invoker["role"] == "roles/run.invoker"
    assert invoker["member"] == "allUsers"
    assert _expr(invoker["service"]) == "google_cloudfunctions2_function.ingest[each.key].service_config[0].service"
    # roles/cloudfunctions.invoker on a gen2 function does not let HTTP requests in.
    assert not any(t.startswith("google_cloudfunctions2_function_iam") for t in tf["resource"])
    # allUsers nowhere else.
    public = [
        (t, n) for t, n, b in _iam_grants(tf) if any(m in ("allUsers", "allAuthenticatedUsers") for m in _members(b))
    ]
    assert public == [("google_cloud_run_service_iam_member", "public_invokes_ingest")]


# --- References and outputs ------------------------------------------------------------


def test_every_variable_referenced_is_declared_and_every_declared_is_used(tf):
    referenced = {m for text in _strings(tf) for m in re.findall(r"\bvar\.([A-Za-z_][\w-]*)", text)}
    declared = set(tf["variable"])
    assert referenced - declared == set(), f"undeclared: {referenced - declared}"
    assert declared - referenced == set(), f"unused: {declared - referenced}"
    for name, body in tf["variable"].items():
        assert body.get("description"), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"


def test_every_local_and_resource_referenced_is_declared(tf):
    texts = list(_strings({k: v for k, v in tf.items() if k != "variable"}))
    locals_used = {m for t in texts for m in re.findall(r"\blocal\.(\w+)", t)}
    assert locals_used - set(tf["locals"]) == set(), f"undeclared locals: {locals_used - set(tf['locals'])}"

    declared = {(t, n) for t, named in tf["resource"].items() for n in named}
    data_declared = {(t, n) for t, named in tf["data"].items() for n in named}
    for text in texts:
        if "${" not in text:
            continue
        for kind, rtype, name in re.findall(r"(?<![\w.])(data\.)?(google_[a-z0-9_]+|archive_file)\.([a-z0-9_]+)", text):
            table = data_declared if kind else declared
            assert (rtype, name) in table, f"{kind}{rtype}.{name} is referenced but not declared ({text!r})"


def test_outputs(tf):
    outputs = tf["output"]
    assert {"ingest_base_url", "pings_bucket", "pings_topic", "subscriptions"} <= set(outputs)
    base = _render(tf["locals"]["ingest_base_url"], tf)
    assert base == "https://europe-west1-sample-project.cloudfunctions.net/"
    assert _expr(outputs["ingest_base_url"]["value"]) == "local.ingest_base_url"
    assert _expr(outputs["pings_bucket"]["value"]) == "google_storage_bucket.pings.name"
    assert _expr(outputs["pings_topic"]["value"]) == "google_pubsub_topic.pings.name"
    assert "google_pubsub_subscription.pings" in outputs["subscriptions"]["value"]
    assert {
        "bq_dataset",
        "bq_tables",
        "template_specs",
        "template_images",
        "pipeline_service_account",
        "scheduler_service_account",
        "pipeline_secrets",
    } <= set(outputs)
    assert _expr(outputs["template_specs"]["value"]) == "local.template_spec_paths"
    assert _expr(outputs["template_images"]["value"]) == "local.template_images"
    assert _expr(outputs["pipeline_service_account"]["value"]) == "google_service_account.pipeline.email"
    assert _expr(outputs["scheduler_service_account"]["value"]) == "google_service_account.scheduler.email"
    for output in outputs.values():
        assert "sensitive" not in output, "no output holds a secret"
