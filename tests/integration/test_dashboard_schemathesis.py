"""The API against its own description: schemathesis (property-based) on the function the stack serves.

Every operation of /v1/openapi.json gets generated requests (positive data:
values the description allows) with a valid key for a seeded project, and
each answer is checked: no 5xx, a status code and a content type the
description lists, a body its schema accepts, and schemathesis's own checks
(a request without the key must be refused) but one: `positive_data_acceptance`
(every schema-valid request answered 2xx). The API has rules a JSON Schema
cannot state: a cursor is valid only if the API returned it, and `from` must
not be after `to` nor more than 366 days before it; the description lists the
400 those get, and tests/integration/test_dashboard_api.py checks them one by
one. Bounded: EXAMPLES per operation,
derandomised, so the run takes seconds and a red run reproduces.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from telemetry.analytics import metrics
from telemetry.common.projects import PROJECTS
from telemetry.dashboard import keys
from telemetry.dashboard.openapi import SPEC
from telemetry.pipelines import site_state
from tests.integration.dashboard_seed import deactivation_doc, figure_docs, site_doc

EXAMPLES = 30


# The project and key the generated requests use: fixed when the module loads, since the
# description's overrides are given to schemathesis then; the fixture stores them.
PROJECT = f"schemathesis-{uuid.uuid4().hex[:16]}"
KEY_ID, KEY = keys.make_key()


@pytest.fixture(scope="module")
def seeded(db) -> str:
    """The project with sites, deactivations and figures, and its key; the function's base URL."""
    db[PROJECTS].insert_one(
        {"hash": PROJECT, "name": "Schemathesis", "type": "plugin", "deactivation_reasons": {"x": "=too expensive"}}
    )
    db[site_state.SITES].insert_many([site_doc(PROJECT, i, site="+cmd" if i == 3 else f"Site {i}") for i in range(30)])
    db[site_state.DEACTIVATIONS].insert_many([deactivation_doc(PROJECT, i, "x") for i in range(5)])
    db[metrics.COLLECTION].insert_many(figure_docs(PROJECT, ["2026-11-01", "2026-11-02"]))
    db[keys.COLLECTION].insert_one(
        {
            "_id": KEY_ID,
            "project": PROJECT,
            "sha256": keys.digest(KEY),
            "created_at": datetime.now(UTC),
            "revoked_at": None,
        }
    )
    return os.environ["DASHBOARD_URL"].rstrip("/")


def test_the_function_serves_this_description(seeded):
    served = requests.get(f"{seeded}/v1/openapi.json", timeout=60)
    assert served.status_code == 200 and served.json() == json.loads(json.dumps(SPEC))


# The description the function serves (the test above), loaded from its one home. (Loading it
# from the running function through schemathesis.pytest.from_fixture fails under pytest 9:
# schemathesis 4.32 sets a node attribute pytest 9 no longer has.) Both modes: requests the
# description allows, and requests it forbids (each must get a 4xx).
config = schemathesis.Config.from_dict({"generation": {"mode": "all"}})
config.projects.default.update(parameters={"path.hash": PROJECT}, headers={"Authorization": f"Bearer {KEY}"})
schema = schemathesis.openapi.from_dict(SPEC, config=config)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_every_answer_keeps_to_the_description(case, seeded):
    response = case.call_and_validate(base_url=seeded, excluded_checks=[positive_data_acceptance])
    assert response.status_code < 500
