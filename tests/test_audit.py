"""The audit's pure parts: its window, the balance of one hour folder, the reprocessing
plan, and the Dataflow launch's handling of the API's answers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from telemetry.audit import job as audit
from telemetry.audit.reprocess import DataflowLaunches, HourRange, LaunchError, LaunchSpec
from telemetry.common import stored_ping, wire
from telemetry.pipelines import options, routes

H = datetime(2026, 11, 23, 10, tzinfo=UTC)


def hour(n: int) -> datetime:
    return H + timedelta(hours=n)


def test_route_tables_pipelines_and_hour_format_are_the_pipelines_own():
    assert audit.HISTORY_TABLE == {name: route.history.name for name, route in routes.ROUTE_BY_NAME.items()}
    assert audit.PIPELINE == {r.name: p.name for p in routes.PIPELINES.values() for r in p.routes}
    assert set(audit.HISTORY_TABLE) == set(wire.ROUTES)
    assert audit.REJECTED_TABLE == "rejected"

    assert audit.MAX_HOURS == options.MAX_HOURS


def test_window_ends_settle_hours_before_now_and_reaches_back_whole_days():
    now = datetime(2026, 11, 23, 10, 42, tzinfo=UTC)
    hours = audit.window(now, days=2, settle_hours=3)
    assert hours[0] == datetime(2026, 11, 21, 10, tzinfo=UTC)
    # 07:00-08:00 ended 2 h 42 min ago: too recent; 06:00-07:00 ended 3 h 42 min ago.
    assert hours[-1] == datetime(2026, 11, 23, 6, tzinfo=UTC)
    assert len(hours) == 2 * 24 - 3
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(hours))
    assert audit.window(now, days=1, settle_hours=0)[-1] == datetime(2026, 11, 23, 9, tzinfo=UTC)


def test_explicit_hours_are_bounded_and_ordered():
    assert audit.explicit_hours("2026-11-23T22", "2026-11-24T01") == [
        datetime(2026, 11, 23, 22, tzinfo=UTC) + timedelta(hours=n) for n in range(4)
    ]
    assert audit.explicit_hours("2026-11-23T22") == [datetime(2026, 11, 23, 22, tzinfo=UTC)]
    with pytest.raises(ValueError, match="before"):
        audit.explicit_hours("2026-11-23T22", "2026-11-23T21")
    with pytest.raises(ValueError, match="at most"):
        audit.explicit_hours("2026-01-01T00", "2026-03-01T00")
    with pytest.raises(ValueError, match="YYYY-MM-DDTHH"):
        audit.explicit_hours("2026-11-23 22")


def test_an_hour_balances_when_every_object_has_a_row_or_a_rejection():
    names = [stored_ping.object_name(wire.TRACK, H, ping_id) for ping_id in ("a", "b", "c", "d")]
    names.append(f"{stored_ping.hour_prefix(wire.TRACK, H)}notes.txt")  # not a stored ping: not counted
    history = {"a", "b", "elsewhere"}  # the day's ids
    rejected = {names[2]}
    result = audit.balance(wire.TRACK, H, names, history, {"a", "b", "gone"}, rejected)
    assert (result.objects, result.rows, result.rejected) == (4, 2, 1)
    assert result.missing == [names[3]]
    assert result.without_object == 1  # "gone": a history row of the hour whose object is not there
    assert not result.balanced
    assert result.as_log() == {
        "route": "track",
        "hour": "2026-11-23T10",
        "objects": 4,
        "rows": 2,
        "rejected": 1,
        "missing": 1,
        "without_object": 1,
    }
    assert audit.balance(wire.TRACK, H, names[:3], history, set(), rejected).balanced
    # `sites` also holds the rows of the hour's deactivate pings: not rows without an object.
    assert audit.balance(wire.TRACK, H, names, history, {"a", "gone"}, rejected, {"gone"}).without_object == 0


def test_ping_id_of_reads_the_name_of_its_own_route_and_hour_only():
    name = stored_ping.object_name(wire.DEACTIVATE, H, "c1d8f816")
    assert audit.ping_id_of(name, wire.DEACTIVATE, H) == "c1d8f816"
    assert audit.ping_id_of(name, wire.TRACK, H) is None
    assert audit.ping_id_of(name, wire.DEACTIVATE, hour(1)) is None
    assert audit.ping_id_of(f"{stored_ping.hour_prefix(wire.TRACK, H)}x/y.json", wire.TRACK, H) is None


def unbalanced(route: str, n: int) -> audit.HourBalance:
    return audit.HourBalance(route, hour(n), objects=1, missing=["x"])


def test_plan_runs_each_pipelines_contiguous_hours_once_oldest_first_within_the_cap():
    found = [
        unbalanced(wire.TRACK, 0),
        unbalanced(wire.TRACKING_SKIPPED, 1),  # same pipeline, next hour: one range
        unbalanced(wire.TRACK, 1),
        unbalanced(wire.TRACK, 5),
        unbalanced(wire.DEACTIVATE, 1),
    ]
    runs, deferred = audit.plan(found, max_runs=10)
    assert runs == [
        HourRange("tracking", hour(0), hour(1)),
        HourRange("deactivation", hour(1), hour(1)),
        HourRange("tracking", hour(5), hour(5)),
    ]
    assert deferred == []
    runs, deferred = audit.plan(found, max_runs=2)
    assert [r.first for r in runs] == [hour(0), hour(1)] and deferred == [HourRange("tracking", hour(5), hour(5))]
    assert audit.plan([], max_runs=3) == ([], [])


def test_report_says_whether_every_unbalanced_hour_was_repaired():
    bad, good = unbalanced(wire.TRACK, 0), audit.HourBalance(wire.TRACK, hour(0), objects=1, rows=1)
    assert audit.AuditReport([H], [good], [], [], None, 0).repaired is True
    assert audit.AuditReport([H], [bad], [], [], None, 0).repaired is None  # launched elsewhere
    assert audit.AuditReport([H], [bad], [], [], [good], 0).repaired is True
    assert audit.AuditReport([H], [bad], [], [], [bad], 0).repaired is False
    deferred = [HourRange("tracking", hour(5), hour(5))]
    assert audit.AuditReport([H], [bad], [], deferred, [good], 0).repaired is False


# --- The Dataflow launch ------------------------------------------------------------------
# The Dataflow API has no local stand-in: these tests give DataflowLaunches a session that
# answers as flexTemplates.launch documents (200 with the job, 409 for an active job of the
# same name, 403 without permission), and check what it sends and how it reads the answer.
# tests/terraform/test_audit.py checks the request body against the templates' metadata.


class Answer:
    def __init__(self, status: int, body: dict | None = None):
        self.status_code = status
        self._body = body or {}
        self.text = str(body)

    def json(self):
        return self._body


class Session:
    def __init__(self, answer: Answer):
        self.answer = answer
        self.calls: list[tuple[str, dict, float]] = []

    def post(self, url, json, timeout):
        self.calls.append((url, json, timeout))
        return self.answer


SPEC = LaunchSpec.parse(
    '{"project": "p", "region": "europe-west1", "templates": {"tracking": {"containerSpecGcsPath": '
    '"gs://t/templates/tracking.json", "parameters": {"bq_dataset": "telemetry"}, "environment": {"maxWorkers": 4}}}}'
)
RANGE = HourRange("tracking", hour(0), hour(2))


def test_launch_posts_the_templates_launch_with_the_hours():
    session = Session(Answer(200, {"job": {"id": "2026-11-23_03_40_00-123", "name": RANGE.job_name}}))
    outcome = DataflowLaunches(SPEC, session=session).reprocess(RANGE)
    assert outcome == {
        "pipeline": "tracking",
        "hour": "2026-11-23T10",
        "hour_to": "2026-11-23T12",
        "outcome": "launched",
        "job_name": "audit-tracking-2026112310-2026112312",
        "job_id": "2026-11-23_03_40_00-123",
    }
    ((url, body, _),) = session.calls
    assert url == "https://dataflow.googleapis.com/v1b3/projects/p/locations/europe-west1/flexTemplates:launch"
    assert body["launchParameter"]["parameters"] == {
        "bq_dataset": "telemetry",
        "hour": "2026-11-23T10",
        "hour_to": "2026-11-23T12",
    }
    assert body["launchParameter"]["environment"] == {"maxWorkers": 4}


def test_a_launch_of_the_same_hours_still_running_is_not_an_error_and_a_refusal_is():
    assert DataflowLaunches(SPEC, session=Session(Answer(409))).reprocess(RANGE)["outcome"] == "already_running"
    with pytest.raises(LaunchError, match="HTTP 403"):
        DataflowLaunches(SPEC, session=Session(Answer(403, {"error": "PERMISSION_DENIED"}))).reprocess(RANGE)
    with pytest.raises(ValueError, match="no template"):
        SPEC.request(HourRange("deactivation", hour(0), hour(0)))


def test_launch_spec_must_describe_every_template_fully():
    with pytest.raises(ValueError, match="AUDIT_LAUNCH"):
        LaunchSpec.parse("not json")
    with pytest.raises(ValueError, match="lacks"):
        LaunchSpec.parse('{"project": "p", "region": "r", "templates": {"tracking": {"parameters": {}}}}')


def test_the_deployed_audit_refuses_to_run_without_its_launches():
    environ = {"GCP_PROJECT": "p", "TRACKING_BUCKET": "b", "BQ_DATASET": "d"}
    with pytest.raises(ValueError, match="AUDIT_LAUNCH is not set"):
        audit.audit_from_env(environ, deployed=True)
