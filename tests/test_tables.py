"""The table manifests (telemetry/<unit>/tables/<table>/, read by telemetry/common/tables.py):
every one is well-formed, every table the code names is one, each has its writer, and a
malformed one is refused with its file named. (That Terraform plans each manifest as its
table: tests/terraform/test_terraform_plan.py; that no .tf file names a table:
tests/terraform/test_bigquery.py.)"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from telemetry.admin import erase
from telemetry.analytics import job
from telemetry.common import config, privacy, tables
from telemetry.pipelines import routes, warehouse

ROOT = Path(__file__).resolve().parents[1]

SCHEMA = [
    {"name": "hash", "type": "STRING", "mode": "REQUIRED"},
    {"name": "received_at", "type": "TIMESTAMP", "mode": "REQUIRED"},
    {"name": "ping_id", "type": "STRING", "mode": "REQUIRED"},
]
METADATA = {
    "description": "A table.",
    "dataset": "BQ_DATASET",
    "time_partitioning": {"type": "DAY", "field": "received_at", "expiration_days": None},
    "clustering": ["hash"],
    "key": "ping_id",
    "reads": [],
}


def _manifest(tmp_path: Path, schema=None, **metadata) -> Path:
    folder = tmp_path / "unit" / "tables" / "things"
    folder.mkdir(parents=True)
    (folder / "schema.json").write_text(json.dumps(SCHEMA if schema is None else schema))
    (folder / "metadata.json").write_text(json.dumps({**METADATA, **metadata}))
    return folder


def test_every_manifest_reads_and_names_a_known_dataset_setting():
    layouts = tables.all_layouts()
    assert {layout.unit for layout in layouts} == {"pipelines", "analytics"}
    for layout in layouts:
        assert layout.dataset in config.VARIABLES, layout.metadata_file
        assert layout.folder == ROOT / "telemetry" / layout.unit / "tables" / layout.name
        # Every folder holds exactly the two files (no stray schema left from a rename).
        assert {path.name for path in layout.folder.iterdir()} == {"schema.json", "metadata.json"}
        assert all(name in {t.name for t in layouts} for name in layout.reads), layout.metadata_file


def test_the_codes_tables_are_the_manifests():
    assert warehouse.TABLES == tables.layouts("pipelines")
    assert job.TABLES == tables.layouts("analytics")
    assert {warehouse.SITES, warehouse.DEACTIVATIONS, warehouse.TRACKING_SKIPPED, warehouse.REJECTED} == set(
        warehouse.TABLES
    )
    assert warehouse.layout("sites") is warehouse.SITES  # one object per table, however it is asked for
    # Each history table has its key, the column its MERGE inserts once.
    assert {t.name: t.key for t in warehouse.TABLES} == {
        "sites": "ping_id",
        "deactivations": "ping_id",
        "tracking_skipped": "ping_id",
        "rejected": "source",
    }


def test_every_history_table_has_its_writer():
    """A history manifest without a route that writes it (or `rejected`, which every route
    writes) would be a table nothing fills: adding a table is its folder plus its writer."""
    written = {route.history for route in routes.ROUTE_BY_NAME.values()} | {warehouse.REJECTED}
    assert written == set(warehouse.TABLES)
    merged = {table for pipeline in routes.PIPELINES.values() for table, _ in routes.merges(pipeline)}
    assert merged == set(warehouse.TABLES)


def test_no_table_keeps_a_personal_column_erase_leaves():
    """Every personal column of every manifest's schema is one `erase` nulls in that table
    (or, in `rejected`, deletes the row of): a new table or column with personal data fails here."""
    personal = {*privacy.PERSONAL_FIELDS, *(field for fields in erase.NULLED.values() for field in fields)}
    nulled = {**erase.NULLED, **erase.ANALYTICS_NULLED}
    for layout in tables.all_layouts():
        held = set(tables.columns(layout.schema_file)) & personal
        assert held <= set(nulled.get(layout.name, ())), f"{layout.name}: {sorted(held)} not erased"
    assert erase.ANALYTICS_NULLED == {"site_days": ("custom_fields",)}
    assert set(erase.NULLED) | {erase.TRACKING_SKIPPED.name} == {t.name for t in warehouse.TABLES}
    assert set(erase.PING_TABLES) | {erase.REJECTED} == set(warehouse.TABLES)


def test_erase_names_no_table_but_through_the_manifests():
    """Table names and key columns come from the layouts: no string literal in erase.py is a
    table's name or a history table's key."""
    tree = ast.parse(Path(erase.__file__).read_text())
    literals = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    docstrings = {
        node.body[0].value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    names = {t.name for t in tables.all_layouts()} | {t.key for t in warehouse.TABLES}
    assert not names & (literals - docstrings)


def test_the_stack_names_no_table():
    tree = ast.parse((ROOT / "telemetry" / "local" / "stack.py").read_text())
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not {t.name for t in tables.all_layouts()} & literals


def test_each_step_of_the_analytics_job_fills_one_of_its_tables():
    """DAY_STEPS is the order of the job's statements, each sql/<table>.sql of a table of its own."""
    own = {layout.name for layout in job.TABLES}
    assert set(job.DAY_STEPS) <= own
    assert {path.stem for path in job.SQL_DIR.glob("*.sql")} == set(job.DAY_STEPS)
    # A step runs after the steps whose tables it reads.
    for position, step in enumerate(job.DAY_STEPS):
        reads = set(tables.layout(step, job.UNIT).reads) & set(job.DAY_STEPS)
        assert reads <= set(job.DAY_STEPS[:position]), step


def test_a_manifest_is_read_into_its_layout(tmp_path):
    folder = _manifest(tmp_path, time_partitioning={"type": "DAY", "field": "received_at", "expiration_days": 7})
    layout = tables.read_manifest(folder)
    assert (layout.name, layout.unit, layout.dataset, layout.key) == ("things", "unit", "BQ_DATASET", "ping_id")
    assert (layout.partition_type, layout.partition_field, layout.expiration_days) == ("DAY", "received_at", 7)
    assert layout.clustering == ("hash",) and layout.reads == ()
    assert layout.schema_file == folder / "schema.json"
    unpartitioned = tables.read_manifest(_manifest(tmp_path / "b", time_partitioning=None, clustering=None, key=None))
    assert (unpartitioned.partition_field, unpartitioned.clustering, unpartitioned.key) == (None, (), None)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"description": ""}, "description"),
        ({"extra": 1}, "exactly the members"),
        ({"time_partitioning": {"type": "DAY", "field": "hash", "expiration_days": None}}, "not a DATE, TIMESTAMP"),
        ({"time_partitioning": {"type": "HOUR", "field": "received_at", "expiration_days": None}}, "type must be"),
        ({"time_partitioning": {"type": "DAY", "field": "received_at"}}, "time_partitioning must be null"),
        ({"time_partitioning": {"type": "DAY", "field": "received_at", "expiration_days": 0}}, "at least 1"),
        ({"time_partitioning": {"type": "DAY", "field": "received_at", "expiration_days": 1.5}}, "whole number"),
        ({"clustering": ["nope"]}, "clustering names columns the schema lacks"),
        ({"clustering": []}, "clustering must be null"),
        ({"clustering": ["hash", "hash"]}, "repeats"),
        ({"key": "nope"}, "key 'nope' is not a column"),
        ({"reads": "sites"}, "reads must be a list"),
    ],
)
def test_a_malformed_manifest_is_refused_naming_its_file(tmp_path, metadata, message):
    folder = _manifest(tmp_path, **metadata)
    with pytest.raises(tables.ManifestError, match=message) as refused:
        tables.read_manifest(folder)
    assert str(folder / "metadata.json") in str(refused.value)


def test_a_folder_without_its_files_is_refused(tmp_path):
    folder = tmp_path / "unit" / "tables" / "things"
    folder.mkdir(parents=True)
    with pytest.raises(tables.ManifestError, match=r"metadata\.json: missing"):
        tables.read_manifest(folder)
    (folder / "metadata.json").write_text(json.dumps(METADATA))
    with pytest.raises(tables.ManifestError, match=r"schema\.json: missing"):
        tables.read_manifest(folder)
    with pytest.raises(tables.ManifestError, match="no manifest of table 'nope'"):
        tables.layout("nope", "pipelines")
