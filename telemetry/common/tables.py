"""BigQuery tables declared by JSON schema files, the format Terraform's
`google_bigquery_table.schema` reads, so Terraform and the code share one file
per table.

`ensure_table` is for the local stack and tests (Terraform declares the
tables in production): it creates a missing table and adds columns that the
schema file gained since, as BigQuery allows (NULLABLE, added in place).

google-cloud-bigquery is imported where it is used, as in telemetry.common.cloud:
the ingest functions' zip carries common/ without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import bigquery

# Schema-file types whose names differ in SQL DDL.
_SQL_TYPES = {"BOOLEAN": "BOOL", "INTEGER": "INT64", "FLOAT": "FLOAT64"}


@dataclass(frozen=True)
class TableLayout:
    """Where a table's schema file is, and how it is partitioned (by day) and clustered."""

    name: str
    schema_dir: Path
    partition_field: str | None
    clustering: tuple[str, ...] = ("hash",)

    @property
    def schema_file(self) -> Path:
        return self.schema_dir / f"{self.name}.json"


@cache
def schema_json(schema_file: Path) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(schema_file.read_text()))


def schema(schema_file: Path) -> list[bigquery.SchemaField]:
    from google.cloud import bigquery

    return [bigquery.SchemaField.from_api_repr(field) for field in schema_json(schema_file)]


def columns(schema_file: Path) -> list[str]:
    return [field["name"] for field in schema_json(schema_file)]


def definition(table_id: str, layout: TableLayout) -> bigquery.Table:
    from google.cloud import bigquery

    table = bigquery.Table(table_id, schema=schema(layout.schema_file))
    if layout.partition_field:
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=layout.partition_field
        )
    if layout.clustering:
        table.clustering_fields = list(layout.clustering)
    return table


def ensure_table(client: bigquery.Client, dataset: str, layout: TableLayout) -> None:
    table_id = f"{client.project}.{dataset}.{layout.name}"
    existing = client.create_table(definition(table_id, layout), exists_ok=True)
    present = {field.name for field in existing.schema}
    for field in schema(layout.schema_file):
        if field.name not in present:
            # bqemulator ignores update_table's schema for storage; DDL works on both.
            sql_type = _SQL_TYPES.get(field.field_type, field.field_type)
            ddl = f"ALTER TABLE `{table_id}` ADD COLUMN IF NOT EXISTS {field.name} {sql_type}"
            client.query(ddl).result()
