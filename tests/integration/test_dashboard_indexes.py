"""Every query of the dashboard is answered from an index: explain plans, on the local MongoDB.

The queries are the ones the routes run (telemetry/dashboard/queries.py builds
them for the API and for this test alike); the indexes are the ones
`site_state.ensure_indexes`, `serving.ensure_indexes` and `keys.ensure_indexes`
create. A plan passes when it holds an IXSCAN of the expected index and no
COLLSCAN. SecantusDB, the local stand-in, then sorts what the scan found in
memory (a SORT stage above the IXSCAN), where MongoDB walks the index in order
and stops at the limit: the index used is what this proves, not the sort.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from telemetry.analytics import metrics, serving
from telemetry.common.projects import PROJECTS
from telemetry.dashboard import keys, paging, queries
from telemetry.pipelines import site_state
from tests.integration.dashboard_seed import deactivation_doc, figure_docs, new_project, site_doc


def stages(plan: Any) -> list[dict[str, Any]]:
    """Every stage of an explain plan, at any depth (inputStage, inputStages, queryPlan...)."""
    found = []
    if isinstance(plan, dict):
        if "stage" in plan:
            found.append(plan)
        for value in plan.values():
            found += stages(value)
    elif isinstance(plan, list):
        for value in plan:
            found += stages(value)
    return found


def winning_plan(explain: dict[str, Any]) -> dict[str, Any]:
    return explain["queryPlanner"]["winningPlan"]


def assert_uses(explain: dict[str, Any], index: str) -> None:
    plan = stages(winning_plan(explain))
    names = {stage.get("stage") for stage in plan}
    assert "COLLSCAN" not in names, winning_plan(explain)
    scans = [stage for stage in plan if stage.get("stage") in ("IXSCAN", "EXPRESS_IXSCAN", "IDHACK", "EXPRESS_IDHACK")]
    assert scans, winning_plan(explain)
    assert index in {stage.get("indexName", "_id_") for stage in scans}, winning_plan(explain)


@pytest.fixture(scope="module")
def seeded(db):
    site_state.ensure_indexes(db)
    serving.ensure_indexes(db)
    keys.ensure_indexes(db)
    project_hash = new_project(db, "Explained")
    db[site_state.SITES].insert_many(
        [site_doc(project_hash, i, status="deactivated" if i % 4 == 0 else "active") for i in range(300)]
    )
    db[site_state.DEACTIVATIONS].insert_many([deactivation_doc(project_hash, i, "other") for i in range(50)])
    db[metrics.COLLECTION].insert_many(figure_docs(project_hash, ["2026-11-01", "2026-11-02"]))
    return project_hash


AFTER = paging.Position("sites", datetime(2026, 11, 1, 2, tzinfo=UTC), "https://site-000100.example.org")


@pytest.mark.parametrize(
    ("filters", "position", "index"),
    [
        (queries.SiteFilters(), None, "hash_last_seen_url"),
        (queries.SiteFilters(), AFTER, "hash_last_seen_url"),
        (queries.SiteFilters(q="site-0001"), AFTER, "hash_last_seen_url"),
        (queries.SiteFilters(status="active"), None, "hash_status_last_seen_url"),
        (queries.SiteFilters(status="active"), AFTER, "hash_status_last_seen_url"),
        (queries.SiteFilters(version="2.1.0"), AFTER, "hash_version_last_seen_url"),
    ],
)
def test_each_sites_page_uses_its_index(db, seeded, filters, position, index):
    cursor = queries.sites_page_cursor(db, seeded, filters, 50, position)
    assert_uses(cursor.explain(), index)


def test_deactivations_pages_use_their_indexes(db, seeded):
    after = paging.Position("deactivations", datetime(2026, 11, 1, 0, 20, tzinfo=UTC), "https://x.example")
    for reason, index in ((None, "hash_received_at_url"), ("other", "hash_reason_received_at_url")):
        for position in (None, after):
            cursor = queries.deactivations_page_cursor(db, seeded, reason, 50, position)
            assert_uses(cursor.explain(), index)


def test_exports_walk_the_unique_url_index(db, seeded):
    for filters in (queries.SiteFilters(), queries.SiteFilters(status="deactivated", q="site")):
        assert_uses(queries.sites_export(db, seeded, filters).explain(), "hash_url_unique")
    assert_uses(queries.deactivations_export(db, seeded, "other").explain(), "hash_url_unique")


def test_figures_use_the_serving_copy_s_index(db, seeded):
    for metric in (None, "active_sites"):
        cursor = queries.figures_cursor(db, seeded, metric, date(2026, 11, 1), date(2026, 11, 30))
        assert_uses(cursor.explain(), "hash_metric_day_unique")


def test_a_key_and_its_project_are_found_by_unique_index(db, seeded):
    assert_uses(db[keys.COLLECTION].find({"_id": "0123456789ab"}).explain(), "_id_")
    assert_uses(db[PROJECTS].find({"hash": seeded}).explain(), "hash_unique")
