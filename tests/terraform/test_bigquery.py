"""bigquery.tf: the dataset and the warehouse tables, each from its schema file."""

from __future__ import annotations

import json

import pytest

from telemetry.common import config
from telemetry.pipelines import warehouse
from tests.terraform.hcl import SCHEMAS_DIR, TF_DIR, _block, _expr, _render, _resource

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

    # schema = file() of telemetry/pipelines/schemas/<table>.json, the file warehouse.py reads.
    assert _expr(body["schema"]) == 'file("${path.module}/../telemetry/pipelines/schemas/${each.key}.json")'
    path = (TF_DIR / ".." / "telemetry" / "pipelines" / "schemas" / f"{table}.json").resolve()
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
    # Terraform refuses to plan the table's destroy or replacement.
    assert body["lifecycle"] == [{"prevent_destroy": True}]


def test_only_rejected_expires(tf):
    partitioning = _block(_resource(tf, "google_bigquery_table", "history"), "time_partitioning")
    assert _expr(partitioning["expiration_ms"]) == (
        'each.key == "rejected" ? var.rejected_retention_days * 86400000 : null'
    )
    assert tf["variable"]["rejected_retention_days"]["default"] == 90


def test_dataset_cannot_be_destroyed_by_a_plan(tf):
    dataset = _resource(tf, "google_bigquery_dataset", "telemetry")
    assert dataset["lifecycle"] == [{"prevent_destroy": True}]
