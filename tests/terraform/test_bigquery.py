"""bigquery.tf: the dataset, and the tables: one per manifest (telemetry/<unit>/tables/<table>/)."""

from __future__ import annotations

import pytest

from telemetry.analytics import job
from telemetry.common import config, tables
from telemetry.pipelines import warehouse
from tests.terraform.hcl import ROOT, _expr, _resource, _squash

# --- BigQuery -------------------------------------------------------------------------


def test_dataset_named_like_the_product_setting(tf):
    dataset = _resource(tf, "google_bigquery_dataset", "telemetry")
    assert _expr(dataset["dataset_id"]) == "var.bq_dataset"
    assert _expr(dataset["location"]) == "var.bq_location"
    assert dataset["delete_contents_on_destroy"] is False
    assert "access" not in dataset, "dataset access is granted by google_bigquery_dataset_iam_member only"
    variables = tf["variable"]
    assert variables["bq_dataset"]["default"] == config.VARIABLES["BQ_DATASET"].default
    assert variables["bq_location"]["default"] == "EU"


def test_tables_are_the_manifests_of_each_unit(tf):
    # Every table folder's metadata.json, under its folder's name, with its unit and schema.json.
    manifests = _squash(tf["locals"]["table_manifests"])
    assert 'forpathinfileset("${local.repo_root}/telemetry","*/tables/*/metadata.json")' in manifests
    assert 'basename(dirname(path))=>merge(jsondecode(file("${local.repo_root}/telemetry/${path}"))' in manifests
    assert 'unit=split("/",path)[0]' in manifests
    assert 'schema=file("${local.repo_root}/telemetry/${dirname(path)}/schema.json")' in manifests
    assert "repo_root" in tf["locals"] and _expr(tf["locals"]["repo_root"]) == "${path.module}/.."
    for local, unit in (("bq_tables", warehouse.UNIT), ("analytics_tables", job.UNIT)):
        assert (
            _squash(tf["locals"][local])
            == f'{{forname,tableinlocal.table_manifests:name=>tableiftable.unit=="{unit}"}}'
        )
    # The folders Terraform's fileset reads are those the code reads.
    folders = {path.parent for path in (ROOT / "telemetry").glob("*/tables/*/metadata.json")}
    assert folders == {layout.folder for layout in tables.all_layouts()}
    assert {layout.name for layout in warehouse.TABLES} == {"sites", "deactivations", "tracking_skipped", "rejected"}


@pytest.mark.parametrize("resource", ["history", "analytics"])
def test_each_table_takes_every_member_of_its_manifest(tf, resource):
    body = _resource(tf, "google_bigquery_table", resource)
    assert _expr(body["for_each"]) == {"history": "local.bq_tables", "analytics": "local.analytics_tables"}[resource]
    assert _expr(body["dataset_id"]) == "local.bq_datasets[each.value.dataset]"
    assert _expr(body["table_id"]) == "each.key"
    assert _expr(body["description"]) == "each.value.description"
    assert _expr(body["schema"]) == "each.value.schema"
    assert _expr(body["clustering"]) == "each.value.clustering"
    (dynamic,) = body["dynamic"]
    partitioning = dynamic["time_partitioning"]
    assert _squash(partitioning["for_each"]) == ("each.value.time_partitioning==null?[]:[each.value.time_partitioning]")
    (content,) = partitioning["content"]
    assert _expr(content["type"]) == "time_partitioning.value.type"
    assert _expr(content["field"]) == "time_partitioning.value.field"
    assert _squash(content["expiration_ms"]) == (
        "local.partition_expiration_days[each.key]==null?null:local.partition_expiration_days[each.key]*86400000"
    )
    assert body["deletion_protection"] is True
    # Every dataset a manifest names has its dataset here.
    assert {layout.dataset for layout in tables.all_layouts()} <= set(tf["locals"]["bq_datasets"])
    assert _expr(tf["locals"]["bq_datasets"]["BQ_DATASET"]) == "google_bigquery_dataset.telemetry.dataset_id"


@pytest.mark.parametrize("table", [t.name for t in warehouse.TABLES])
def test_history_table_is_partitioned_by_day_of_received_at_and_clustered_by_hash(table):
    """What warehouse.py's MERGE (its received_at bounds) and the analytics SQL rely on."""
    layout = warehouse.layout(table)
    schema = tables.schema_json(layout.schema_file)
    assert all("name" in field and "type" in field for field in schema)
    columns = {field["name"]: field for field in schema}
    assert len(columns) == len(schema), f"{layout.schema_file} repeats a column"
    assert columns["received_at"]["type"] == "TIMESTAMP"
    assert "hash" in columns
    assert (layout.partition_type, layout.partition_field) == ("DAY", "received_at")
    assert layout.clustering == ("hash",)
    assert layout.key in columns and layout.dataset == "BQ_DATASET"


def test_history_tables_cannot_be_destroyed_by_a_plan(tf):
    # A schema change that BigQuery cannot apply in place would replace the table: refused.
    assert _resource(tf, "google_bigquery_table", "history")["lifecycle"] == [{"prevent_destroy": True}]


def _named(node, path=()):
    """(path, string) of every key and string value of a parsed structure."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield (*path, str(key)), str(key)
            yield from _named(value, (*path, str(key)))
    elif isinstance(node, list):
        for item in node:
            yield from _named(item, path)


# Where a table's name may stand in the Terraform: the table whose retention an operator
# may set, and the tracking-skipped function's source folder (functions/tracking_skipped/).
NAMED_HERE = {
    ("locals", "partition_expiration_overrides", "rejected"),
    ("locals", "routes", "tracking-skipped", "source_dir"),
    ("locals", "routes", "tracking-skipped", "entry_point"),
    # The history table the notify function reads, kept equal to site_events.READS (test_notify.py).
    ("locals", "notify_reads"),
    # The analytics table it reads (its progress), kept equal to figures_ready.READS (test_notify.py).
    ("locals", "notify_reads_analytics"),
}


def test_no_table_is_named_in_the_terraform_but_the_retention_override(tf):
    """A table's facts are in its manifest only: no key, value or expression of terraform/*.tf
    names a table (prose in descriptions aside), but where NAMED_HERE says why; the table whose
    retention an operator may set (var.rejected_retention_days) has one in its manifest to override."""
    names = {layout.name for layout in tables.all_layouts()}
    overrides = tf["locals"]["partition_expiration_overrides"]
    assert {name: _expr(value) for name, value in overrides.items()} == {"rejected": "var.rejected_retention_days"}
    for name in overrides:
        assert tables.layout(name, warehouse.UNIT).expiration_days is not None
    named = {
        (path, text)
        for path, text in _named(tf)
        for name in names
        if (text == name or f'"{name}"' in text or f"/{name}" in text)
        and path not in NAMED_HERE
        and path[-1] != "description"
    }
    assert named == set(), f"table names written in terraform/*.tf: {sorted(named)}"
    assert {path[:3] for path, _ in _named(tf)} >= {path[:3] for path in NAMED_HERE}, "NAMED_HERE is stale"


def test_only_rejected_expires_after_its_manifests_days(tf):
    expiring = {layout.name: layout.expiration_days for layout in tables.all_layouts() if layout.expiration_days}
    assert expiring == {"rejected": 90}
    # The variable overrides the manifest only when set.
    assert tf["variable"]["rejected_retention_days"]["default"] is None
    assert _squash(tf["locals"]["partition_expiration_days"]) == (
        "{forname,tableinlocal.table_manifests:name=>(lookup(local.partition_expiration_overrides,name,null)!=null"
        "?local.partition_expiration_overrides[name]:try(table.time_partitioning.expiration_days,null))}"
    )


def test_dataset_cannot_be_destroyed_by_a_plan(tf):
    dataset = _resource(tf, "google_bigquery_dataset", "telemetry")
    assert dataset["lifecycle"] == [{"prevent_destroy": True}]
