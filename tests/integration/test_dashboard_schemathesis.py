"""The API against its own description: schemathesis (property-based) on the function the stack serves.

Every operation of /v1/openapi.json gets generated requests (positive data:
values the description allows) with a valid key for a seeded project, and
each answer is checked: no 5xx, a status code and a content type the
description lists, a body its schema accepts, and schemathesis's own checks
(a request without the key must be refused). Bounded: EXAMPLES per operation,
derandomised, so the run takes seconds and a red run reproduces.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from telemetry.analytics import metrics
from telemetry.pipelines import mongodb
from tests.integration.dashboard_seed import deactivation_doc, figure_docs, new_key, new_project, site_doc

EXAMPLES = 40


@pytest.fixture(scope="module")
def api_schema(db):
    base = os.environ["DASHBOARD_URL"].rstrip("/")
    project_hash = new_project(db, "Schemathesis", reasons={"too-expensive": "=too expensive"})
    db[mongodb.SITES].insert_many(
        [site_doc(project_hash, i, site="+cmd" if i == 3 else f"Site {i}") for i in range(30)]
    )
    db[mongodb.DEACTIVATIONS].insert_many([deactivation_doc(project_hash, i, "too-expensive") for i in range(5)])
    db[metrics.COLLECTION].insert_many(figure_docs(project_hash, ["2026-11-01", "2026-11-02"]))
    key = new_key(db, project_hash)
    config = schemathesis.Config()
    config.projects.default.update(
        base_url=base,
        headers={"Authorization": f"Bearer {key}"},
        parameters={"path.hash": project_hash},
        request_timeout=60,
    )
    return schemathesis.openapi.from_url(f"{base}/v1/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_every_answer_keeps_to_the_description(case):
    response = case.call_and_validate()
    assert response.status_code < 500
