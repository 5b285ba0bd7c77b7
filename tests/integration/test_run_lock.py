"""The run lock (telemetry/pipelines/run_lock.py) against the local stack: the
Cloud Storage preconditions it stands on, its logic with a clock of the test's
own, its fence around BigQuery jobs, and pipeline runs that meet at the lock."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests
from google.api_core.exceptions import PreconditionFailed

from telemetry.common import cloud, stored_ping
from telemetry.common.projects import PROJECTS
from telemetry.common.stored_ping import StoredPing
from telemetry.local import samples
from telemetry.pipelines import build, reconciliation, run_lock, site_state


@pytest.fixture(scope="module")
def work_bucket(stack_env):
    return cloud.storage_client(stack_env["GCP_PROJECT"], 16).bucket(os.environ["WORK_BUCKET"])


def _lock_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def _create(bucket, name: str, expected: int) -> bool:
    try:
        bucket.blob(name).upload_from_string(b"", if_generation_match=expected)
        return True
    except PreconditionFailed:
        return False


# --- What fake-gcs-server honours ---------------------------------------------------------


def test_fake_gcs_server_applies_generation_preconditions_on_uploads_atomically(work_bucket):
    name = run_lock.LOCKS_PREFIX + _lock_name()
    with ThreadPoolExecutor(16) as pool:  # sixteen creators race: exactly one wins
        assert sum(pool.map(lambda _: _create(work_bucket, name, 0), range(16))) == 1
    with pytest.raises(PreconditionFailed):  # 412: it exists
        work_bucket.blob(name).upload_from_string(b"", if_generation_match=0)
    generation = work_bucket.get_blob(name).generation
    with pytest.raises(PreconditionFailed):  # 412: another generation
        work_bucket.blob(name).upload_from_string(b"", if_generation_match=generation + 1)
    for _ in range(5):  # sixteen writers race on one generation: exactly one wins, every time
        current = work_bucket.get_blob(name).generation
        with ThreadPoolExecutor(16) as pool:
            assert sum(pool.map(lambda _, g=current: _create(work_bucket, name, g), range(16))) == 1


def test_fake_gcs_server_ignores_preconditions_on_deletes_and_patches_so_the_lock_only_uploads(work_bucket):
    """Cloud Storage answers 412 to a delete or a metadata patch whose ifGenerationMatch or
    ifMetagenerationMatch fails; fake-gcs-server carries them out anyway (and a patch does not
    even bump the metageneration). The lock therefore changes its object only by conditional
    uploads, which both apply. If this test starts failing, the emulator has learnt them."""
    name = run_lock.LOCKS_PREFIX + _lock_name()
    work_bucket.blob(name).upload_from_string(b"", if_generation_match=0)
    blob = work_bucket.get_blob(name)
    blob.metadata = {"holder": "x"}
    blob.patch(if_metageneration_match=blob.metageneration + 1)  # Cloud Storage: 412
    blob.metadata = {"holder": "y"}
    blob.patch(if_generation_match=blob.generation + 1)  # Cloud Storage: 412
    assert work_bucket.get_blob(name).metadata == {"holder": "y"}
    work_bucket.blob(name).delete(if_generation_match=blob.generation + 1)  # Cloud Storage: 412
    assert work_bucket.get_blob(name) is None


# --- The lock's logic, on a clock of the test's own ---------------------------------------


class Clock:
    def __init__(self):
        self.now = time.time()
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _lock(bucket, pipeline: str, clock: Clock, run_id: str = "run", ttl: float = 60, wait: float = 30):
    return run_lock.RunLock(bucket, pipeline, run_id, ttl=ttl, wait=wait, clock=clock, sleep=clock.sleep)


def test_one_holder_at_a_time_and_a_waiter_fails_clearly_past_its_bound(work_bucket, caplog):
    pipeline, clock = _lock_name(), Clock()
    first = _lock(work_bucket, pipeline, clock, "first")
    assert first.acquire() == run_lock.Acquired(0.0, None)
    second = _lock(work_bucket, pipeline, clock, "second", wait=30)
    with (
        caplog.at_level(logging.WARNING, "telemetry.pipelines"),
        pytest.raises(run_lock.RunLockTimeout, match=r"held by first/\w+ .* waited 30 s, the bound: this run fails"),
    ):
        second.acquire()
    assert 30 <= sum(clock.slept) < 31 and len(clock.slept) >= 4  # polled with backoff, within its bound
    assert [r.getMessage() for r in caplog.records] == ["run lock held by another run: waiting"]
    current = first.read()
    assert current.holder == first.holder and current.generation == first.held.generation  # untouched

    first.release()
    assert first.read().released
    third = _lock(work_bucket, pipeline, clock, "third")
    assert third.acquire() == run_lock.Acquired(0.0, None)  # released: taken at once, not a takeover
    third.release()


def test_a_waiter_gets_the_lock_when_its_holder_releases_it(work_bucket):
    pipeline, clock = _lock_name(), Clock()
    holder = _lock(work_bucket, pipeline, clock, "holder")
    holder.acquire()
    waiter = _lock(work_bucket, pipeline, clock, "waiter", wait=30)

    def release_while_waiting(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now - start > 5 and holder.held:
            holder.release()

    waiter._sleep = release_while_waiting
    start = clock.now
    acquired = waiter.acquire()
    assert 5 < acquired.waited_seconds < 30 and acquired.took_over_from is None
    assert waiter.read().holder == waiter.holder
    waiter.release()


def test_an_expired_lock_is_taken_over_and_its_old_holder_cannot_renew_or_release_it(work_bucket, caplog):
    pipeline, clock = _lock_name(), Clock()
    dead = _lock(work_bucket, pipeline, clock, "dead", ttl=60)
    dead.acquire()
    clock.now += 61  # its holder stopped renewing: the lock has expired
    heir = _lock(work_bucket, pipeline, clock, "heir")
    with caplog.at_level(logging.WARNING, "telemetry.pipelines"):
        acquired = heir.acquire()
    assert acquired == run_lock.Acquired(0.0, dead.holder)
    assert "run lock taken over from an expired holder" in [r.getMessage() for r in caplog.records]
    with pytest.raises(run_lock.RunLockLost, match=rf"is now held by {heir.holder}"):
        dead.renew()  # the old holder wakes up: it stops before its next statement
    dead.release()  # a no-op: it no longer holds it
    assert heir.read().holder == heir.holder
    heir.renew()  # the heir renews on its own generation
    assert heir.read().generation == heir.held.generation
    heir.release()


def test_the_fenced_client_renews_before_each_job_and_bounds_it_on_the_server(work_bucket, bq):
    clock = Clock()
    lock = _lock(work_bucket, _lock_name(), clock)
    lock.acquire()
    fenced = run_lock.FencedBigQuery(bq, lock, job_timeout_seconds=45)
    before = lock.held
    clock.now += 20
    job = fenced.query("SELECT 1")
    assert [tuple(row) for row in job.result()] == [(1,)]
    # What the job was created with; bqemulator accepts the field but neither keeps nor
    # enforces it (jobs.get answers without it), so the server-side stop is BigQuery's alone.
    assert job.to_api_repr()["configuration"]["jobTimeoutMs"] == "45000"
    assert lock.held.generation != before.generation and lock.held.expires_at == before.expires_at + 20
    assert fenced.project == bq.project  # everything else is the wrapped client's

    other = _lock(work_bucket, lock.pipeline, clock, "other")
    clock.now += lock.ttl + 1
    other.acquire()  # ours expired: taken over
    with pytest.raises(run_lock.RunLockLost):
        fenced.query("SELECT 2")  # no job starts once the lock is another run's
    other.release()


# --- Pipeline runs that meet at the lock --------------------------------------------------


def _put(bucket, route: str, received_at: datetime, body: dict) -> str:
    ping = StoredPing(id=str(uuid.uuid4()), route=route, received_at=received_at, payload=body)
    bucket.blob(ping.object_name).upload_from_string(ping.to_json(), content_type=stored_ping.CONTENT_TYPE)
    return ping.id


def _new_project(db) -> str:
    project_hash = uuid.uuid4().hex
    db[PROJECTS].insert_one(
        {"hash": project_hash, "name": "test", "type": "plugin", "custom_fields": [], "mail_integrations": {}}
    )
    return project_hash


def _own_hour(bucket, start: datetime) -> datetime:
    """An hour nobody else writes to, emptied first."""
    hour = start + timedelta(hours=random.randint(0, 24 * 300))
    for route in ("track", "tracking-skipped"):
        for blob in bucket.list_blobs(prefix=stored_ping.hour_prefix(route, hour)):
            blob.delete()
    return hour


def _counters(result) -> dict[str, int]:
    totals: dict[str, int] = {}
    for counter in result.metrics().query()["counters"]:
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (counter.committed or 0)
    return totals


def _history_ids(bq, project: str) -> list[str]:
    sql = f"SELECT ping_id FROM `{bq.project}.{os.environ['BQ_DATASET']}.sites` WHERE hash = '{project}'"
    return sorted(row["ping_id"] for row in bq.query(sql).result())


def _set_lock(work_bucket, pipeline: str, holder: str, expires_at: datetime) -> None:
    """Write the pipeline's lock as another run would have left it, on its current generation."""
    name = run_lock.LOCKS_PREFIX + pipeline
    current = work_bucket.get_blob(name)
    blob = work_bucket.blob(name)
    blob.metadata = {"holder": holder, "expires_at": expires_at.isoformat(), "write": uuid.uuid4().hex}
    blob.upload_from_string(b"", if_generation_match=current.generation if current else 0)


def test_two_runs_of_one_hour_started_together_write_each_ping_once(bucket, work_bucket, db, bq, monkeypatch, caplog):
    project = _new_project(db)
    rng = random.Random(31)
    hour = _own_hour(bucket, datetime(2025, 1, 1, tzinfo=UTC))
    ids = [
        _put(bucket, "track", hour + timedelta(seconds=i), samples.track_payload(rng, project, i)) for i in range(20)
    ]

    # Fault injection: whichever run gets the lock first keeps it 15 s before its first
    # MERGE, so that the other one, which reads the same hour, reaches the lock meanwhile.
    acquire = run_lock.RunLock.acquire
    firsts: list[str] = []
    guard = threading.Lock()

    def acquire_then_linger(self):
        acquired = acquire(self)
        with guard:
            first = not firsts
            firsts.append(self.holder)
        if first:
            time.sleep(15)
        return acquired

    monkeypatch.setattr(run_lock.RunLock, "acquire", acquire_then_linger)
    argv = ["tracking", "--runner", build.LOCAL_RUNNER, "--hour", f"{hour:%Y-%m-%dT%H}"]
    with caplog.at_level(logging.INFO, "telemetry.pipelines"), ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: build.run(argv), range(2)))
    monkeypatch.undo()

    reports = [reconciliation.report_from_metrics(pipeline, result) for pipeline, result, _ in runs]
    counters = [_counters(result) for _, result, _ in runs]
    assert all(report["balanced"] for report in reports), reports
    assert sorted(c.get("run_lock_waits", 0) for c in counters) == [0, 1]  # the second provably waited
    first, second = sorted(range(2), key=lambda i: counters[i].get("run_lock_waits", 0))
    assert reports[first]["routes"]["track"] == {
        "objects_read": 20, "rows_written": 20, "rejected": 0, "duplicates_skipped": 0, "balanced": True
    }  # fmt: skip
    assert reports[second]["routes"]["track"] == {
        "objects_read": 20, "rows_written": 0, "rejected": 0, "duplicates_skipped": 20, "balanced": True
    }  # fmt: skip
    messages = [r.getMessage() for r in caplog.records]
    assert "run lock held by another run: waiting" in messages and "run lock acquired after waiting" in messages
    assert _history_ids(bq, project) == sorted(ids)  # each ping_id once
    assert db[site_state.SITES].count_documents({"hash": project}) == 20  # each site once
    assert work_bucket.get_blob(run_lock.LOCKS_PREFIX + "tracking").metadata["holder"] == ""  # released


def test_a_dead_holders_expired_lock_is_taken_over(bucket, work_bucket, db, bq):
    project = _new_project(db)
    rng = random.Random(37)
    hour = _own_hour(bucket, datetime(2024, 1, 1, tzinfo=UTC))
    ids = [_put(bucket, "track", hour + timedelta(seconds=i), samples.track_payload(rng, project, i)) for i in range(3)]
    _set_lock(work_bucket, "tracking", "dead-run/0000", datetime.now(UTC) - timedelta(seconds=1))

    pipeline, result, _ = build.run(["tracking", "--runner", build.LOCAL_RUNNER, "--hour", f"{hour:%Y-%m-%dT%H}"])
    assert reconciliation.report_from_metrics(pipeline, result)["balanced"]
    counters = _counters(result)
    assert counters.get("run_lock_takeovers") == 1 and counters.get("run_lock_waits", 0) == 0
    assert _history_ids(bq, project) == sorted(ids)
    assert work_bucket.get_blob(run_lock.LOCKS_PREFIX + "tracking").metadata["holder"] == ""


def test_a_run_that_cannot_get_the_lock_fails_clearly_and_its_notifications_come_back(ingest_url, db, bq, work_bucket):
    build.run(["tracking", "--runner", build.LOCAL_RUNNER])  # drain what earlier tests left
    project = _new_project(db)
    rng = random.Random(41)
    ids = []
    for i in range(4):
        body = samples.http_build_query(samples.track_payload(rng, project, i))
        response = requests.post(
            ingest_url + "track",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
            timeout=30,
        )
        ids.append(response.json()["id"])
    # A live holder's lock, for the next ten minutes.
    _set_lock(work_bucket, "tracking", "other-run/live", datetime.now(UTC) + timedelta(minutes=10))
    timeout = 2  # --bigquery_timeout_seconds: TTL 8 s, so the run waits 28 s
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match=r"the run lock gs://\S+/locks/tracking is held by other-run/live"):
            build.run(["tracking", "--runner", build.LOCAL_RUNNER, "--bigquery_timeout_seconds", str(timeout)])
        waited = time.monotonic() - started
        assert waited >= run_lock.wait_seconds(run_lock.ttl_seconds(timeout))
    finally:
        _set_lock(work_bucket, "tracking", "", datetime.now(UTC))  # the other run releases it
    assert _history_ids(bq, project) == []  # nothing merged
    # Nothing was acknowledged: the next run gets the notifications again and writes each ping once.
    pipeline, result, _ = build.run(["tracking", "--runner", build.LOCAL_RUNNER])
    report = reconciliation.report_from_metrics(pipeline, result)
    assert report["routes"]["track"]["objects_read"] == 4 and report["routes"]["track"]["rows_written"] == 4
    assert _history_ids(bq, project) == sorted(ids)
