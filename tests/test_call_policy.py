"""One call policy per Google service (telemetry.common.cloud), used by every caller.

The bounds' values are checked here; that no other module writes its own BigQuery or
Cloud Storage retry or job bound is checked over the source, so a second home fails.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY
from google.cloud.storage.retry import DEFAULT_RETRY as STORAGE_RETRY

from telemetry.common import cloud, config

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / "telemetry" / "common" / "cloud.py"
# What only the call policy may name: the libraries' retry objects and a retry's deadline
# (a query job's server-side bound: FencedBigQuery, checked below).
POLICY_NAMES = re.compile(r"\b(DEFAULT_RETRY|DEFAULT_JOB_RETRY|with_timeout|with_deadline)\b")


def test_a_bigquery_call_is_bounded_by_the_setting_in_all():
    bounds = cloud.bigquery_call_bounds(42)
    assert set(bounds) == {"retry", "timeout"}
    assert bounds["timeout"] == 42
    assert bounds["retry"].timeout == 42
    assert bounds["retry"]._predicate is bigquery.DEFAULT_RETRY._predicate  # what the library retries


def test_a_query_job_is_started_again_only_within_the_bound():
    bounds = cloud.bigquery_query_bounds(42)
    assert set(bounds) == {"retry", "timeout", "job_retry"}
    assert bounds["job_retry"].timeout == 42
    assert bounds["job_retry"]._predicate is DEFAULT_JOB_RETRY._predicate
    assert cloud.bigquery_job_timeout_ms(42) == 42_000
    assert cloud.bigquery_job_timeout_ms(0.5) == 500


def test_a_storage_call_is_bounded_likewise():
    bounds = cloud.storage_call_bounds(7)
    assert bounds["timeout"] == 7 and bounds["retry"].timeout == 7
    assert bounds["retry"]._predicate is STORAGE_RETRY._predicate


def test_every_caller_takes_its_bounds_from_the_policy():
    from telemetry.pipelines import run_lock, warehouse

    # No call is made: the writer is only built, with a stand-in for the client's project.
    writer = warehouse.HistoryWriter(SimpleNamespace(project="p"), None, "d", "s", warehouse.SITES, "run", 9)
    assert writer._bounds["timeout"] == writer._job_bounds["timeout"] == writer._storage_bounds["timeout"] == 9
    assert writer._job_bounds["job_retry"].timeout == 9
    fenced = run_lock.FencedBigQuery(None, None, 9)
    assert fenced._job_timeout_ms == cloud.bigquery_job_timeout_ms(9)
    default = warehouse.HistoryWriter.__init__.__defaults__[-1]
    assert default == int(config.VARIABLES["BIGQUERY_TIMEOUT_SECONDS"].default)


def test_no_module_but_the_policy_writes_a_retry_or_a_job_bound():
    offenders = []
    for path in [*(ROOT / "telemetry").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")]:
        if path == HOME:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if POLICY_NAMES.search(code):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_variable_list_imports_no_domain_code():
    """config.py is the bottom of the import graph: each deploy unit builds its own
    settings from its variables, never the other way round."""
    tree = ast.parse((ROOT / "telemetry" / "common" / "config.py").read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert [name for name in imported if name and name.startswith("telemetry")] == []
