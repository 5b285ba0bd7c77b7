"""BigQuery tables, each declared by ONE manifest: a folder
`telemetry/<unit>/tables/<table>/` beside the code of the unit that writes it
(`pipelines`: the history; `analytics`: the analytics job's tables), holding

- `schema.json`: the columns, in the BigQuery API's format, which Terraform's
  `google_bigquery_table.schema` and `bq mk --schema` read as they are;
- `metadata.json`: everything else about the table (the layout of
  mozilla/bigquery-etl's `metadata.yaml`), every member present:

      description        the table's description
      dataset            the setting (config.VARIABLES) that names its dataset
      time_partitioning  null, or {"type": "DAY", "field": column,
                         "expiration_days": null or the days a partition is kept}
      clustering         null, or the clustering columns
      key                the column unique per row, on which the pipelines' MERGE
                         inserts each row once (history tables); else null
      reads              the other tables its statement reads (the analytics
                         job's sql/<table>.sql; tests keep the two in step)

The code (`layout`, `layouts`), the local stack (`telemetry.local.stack`) and
Terraform (terraform/bigquery.tf: `fileset` and `jsondecode`) all read these
files, so adding a table is one folder, plus the code that writes its rows.

`ensure_table` is for the local stack and tests (Terraform declares the tables
in production): it creates a missing table and adds columns that the schema
gained since, as BigQuery allows (NULLABLE, added in place). Tables the code
creates (these, and the pipelines' staging tables) get no partition expiry:
Terraform applies `expiration_days` to the production tables only.

Manifests are read when first asked for, not on import: the ingest functions'
zip carries common/ without any. google-cloud-bigquery is imported where it is
used, as in telemetry.common.cloud, for the same reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import bigquery

# The telemetry package: manifests are <unit>/tables/<table>/ under it.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
TABLES_FOLDER = "tables"
SCHEMA_FILE = "schema.json"
METADATA_FILE = "metadata.json"
METADATA_MEMBERS = frozenset({"description", "dataset", "time_partitioning", "clustering", "key", "reads"})
PARTITIONING_MEMBERS = frozenset({"type", "field", "expiration_days"})
PARTITION_TYPES = ("DAY",)  # the only one the tables use; another needs its support here first

# Schema-file types whose names differ in SQL DDL.
_SQL_TYPES = {"BOOLEAN": "BOOL", "INTEGER": "INT64", "FLOAT": "FLOAT64"}


class ManifestError(ValueError):
    """A table manifest that is missing, malformed or inconsistent; the message names its file."""


@dataclass(frozen=True)
class TableLayout:
    """One table as its manifest declares it (see the module docstring for each member)."""

    name: str
    unit: str  # the folder under telemetry/ whose code writes it
    folder: Path
    description: str
    dataset: str
    partition_field: str | None
    partition_type: str | None
    expiration_days: int | None
    clustering: tuple[str, ...]
    key: str | None
    reads: tuple[str, ...]

    @property
    def schema_file(self) -> Path:
        return self.folder / SCHEMA_FILE

    @property
    def metadata_file(self) -> Path:
        return self.folder / METADATA_FILE


def _fail(path: Path, message: str) -> ManifestError:
    return ManifestError(f"{path}: {message}")


def _names(path: Path, value: Any, member: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, f"{member} must be a list of column or table names, got {value!r}")
    if len(set(value)) != len(value):
        raise _fail(path, f"{member} repeats a name: {value!r}")
    return tuple(value)


@cache
def read_manifest(folder: Path) -> TableLayout:
    """The layout in `folder` (`<unit>/tables/<table>/`), checked against its own schema."""
    path = folder / METADATA_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(path, "missing: every table folder holds schema.json and metadata.json") from None
    except ValueError as e:
        raise _fail(path, f"not JSON: {e}") from e
    if not isinstance(meta, dict) or set(meta) != METADATA_MEMBERS:
        got = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise _fail(path, f"must hold exactly the members {sorted(METADATA_MEMBERS)}, got {got}")
    columns = {field["name"]: field for field in schema_json(folder / SCHEMA_FILE)}

    if not isinstance(meta["description"], str) or not meta["description"].strip():
        raise _fail(path, "description must be a non-empty string")
    if not isinstance(meta["dataset"], str) or not meta["dataset"]:
        raise _fail(path, "dataset must name the setting that names the dataset, e.g. BQ_DATASET")

    partitioning = meta["time_partitioning"]
    field = kind = expiration = None
    if partitioning is not None:
        if not isinstance(partitioning, dict) or set(partitioning) != PARTITIONING_MEMBERS:
            raise _fail(path, f"time_partitioning must be null or hold exactly {sorted(PARTITIONING_MEMBERS)}")
        field, kind, expiration = partitioning["field"], partitioning["type"], partitioning["expiration_days"]
        if kind not in PARTITION_TYPES:
            raise _fail(path, f"time_partitioning.type must be one of {PARTITION_TYPES}, got {kind!r}")
        if field not in columns or columns[field]["type"] not in ("DATE", "TIMESTAMP", "DATETIME"):
            raise _fail(path, f"time_partitioning.field {field!r} is not a DATE, TIMESTAMP or DATETIME column")
        if expiration is not None and (isinstance(expiration, bool) or not isinstance(expiration, int)):
            raise _fail(path, f"time_partitioning.expiration_days must be null or a whole number, got {expiration!r}")
        if expiration is not None and expiration < 1:
            raise _fail(path, f"time_partitioning.expiration_days must be at least 1, got {expiration}")

    clustering = () if meta["clustering"] is None else _names(path, meta["clustering"], "clustering")
    if meta["clustering"] is not None and not clustering:
        raise _fail(path, "clustering must be null (not clustered) or name at least one column")
    if unknown := [c for c in clustering if c not in columns]:
        raise _fail(path, f"clustering names columns the schema lacks: {unknown}")
    key = meta["key"]
    if key is not None and key not in columns:
        raise _fail(path, f"key {key!r} is not a column of the schema")

    return TableLayout(
        name=folder.name,
        unit=folder.parent.parent.name,
        folder=folder,
        description=meta["description"],
        dataset=meta["dataset"],
        partition_field=field,
        partition_type=kind,
        expiration_days=expiration,
        clustering=clustering,
        key=key,
        reads=_names(path, meta["reads"], "reads"),
    )


def _folders(unit: str) -> list[Path]:
    root = PACKAGE_DIR / unit / TABLES_FOLDER
    if not root.is_dir():
        raise ManifestError(f"{root}: no table manifests of {unit!r} here")
    return sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith(("_", ".")))


@cache
def layouts(unit: str) -> tuple[TableLayout, ...]:
    """Every table of `unit` (`pipelines`, `analytics`), by name."""
    return tuple(read_manifest(folder) for folder in _folders(unit))


def units() -> tuple[str, ...]:
    """The folders under telemetry/ that hold table manifests (here: not the functions' zips)."""
    return tuple(sorted(path.parent.name for path in PACKAGE_DIR.glob(f"*/{TABLES_FOLDER}") if path.is_dir()))


def all_layouts() -> tuple[TableLayout, ...]:
    """Every table of every unit present; a name is one table, whichever unit writes it."""
    found = [layout for unit in units() for layout in layouts(unit)]
    names = [layout.name for layout in found]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise ManifestError(f"tables declared by more than one unit: {repeated}")
    return tuple(found)


def layout(name: str, unit: str) -> TableLayout:
    """The table `name` of `unit`; ManifestError if it has no manifest there."""
    for found in layouts(unit):
        if found.name == name:
            return found
    raise ManifestError(f"{PACKAGE_DIR / unit / TABLES_FOLDER / name}: no manifest of table {name!r}")


@cache
def schema_json(schema_file: Path) -> tuple[dict[str, Any], ...]:
    try:
        fields = json.loads(schema_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(schema_file, "missing: every table folder holds schema.json and metadata.json") from None
    if not isinstance(fields, list) or not all(isinstance(f, dict) and "name" in f and "type" in f for f in fields):
        raise _fail(schema_file, "must be a list of fields, each with a name and a type")
    return tuple(fields)


def schema(schema_file: Path) -> list[bigquery.SchemaField]:
    from google.cloud import bigquery

    return [bigquery.SchemaField.from_api_repr(field) for field in schema_json(schema_file)]


def columns(schema_file: Path) -> list[str]:
    return [field["name"] for field in schema_json(schema_file)]


def definition(table_id: str, layout: TableLayout) -> bigquery.Table:
    """The table `table_id` with `layout`'s schema, partitioning and clustering (no expiry and no
    description: the tables the code creates are the local stack's and the runs' staging tables)."""
    from google.cloud import bigquery

    table = bigquery.Table(table_id, schema=schema(layout.schema_file))
    if layout.partition_field:
        table.time_partitioning = bigquery.TimePartitioning(type_=layout.partition_type, field=layout.partition_field)
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
