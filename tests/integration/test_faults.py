"""Each real service of the local stack killed (SIGKILL) or frozen (SIGSTOP) at the worst moment.

- Cloud Storage during ingest: answers are 200 or 503, never a 200 without its
  complete object; a frozen server is a 503 within the configured bound.
- Pub/Sub and BigQuery during a pipeline run (MongoDB: test_pipelines.py): the
  run fails loudly; a re-run completes with nothing lost and nothing doubled.
- MongoDB, BigQuery and Pub/Sub frozen during a run: the run fails within the
  configured bounds instead of hanging.

The helpers (tests/integration/faults.py) signal the process group of the
service this checkout's stack started, and restart it with the stack's own
command; a frozen service is always continued.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import functions_framework
import pytest
import requests

from telemetry.common import cloud, config, stored_ping
from telemetry.common.projects import PROJECTS
from telemetry.common.stored_ping import StoredPing
from telemetry.ingest import handler
from telemetry.local import samples
from telemetry.pipelines import build, connectors, reconciliation, site_state, warehouse
from tests.integration import faults

ROOT = Path(__file__).resolve().parents[2]
STARTED = datetime.now(UTC)  # the hours this module's pings land in run from here
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# --- Cloud Storage during ingest ----------------------------------------------------


class _Poster(threading.Thread):
    """Posts track pings one after another, each with a hash of its own, and records every answer."""

    def __init__(self, url: str, tag: str, answers: list, lock: threading.Lock, stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.tag, self.answers, self.lock, self.stop = url, tag, answers, lock, stop

    def run(self):
        session = requests.Session()
        while not self.stop.is_set():
            ping_hash = f"{self.tag}{uuid.uuid4().hex[:16]}"
            body = f"hash={ping_hash}&url=https%3A%2F%2F{ping_hash}.example.org"
            sent = time.monotonic()
            try:
                response = session.post(self.url, data=body, headers=FORM, timeout=60)
                answer = (ping_hash, response.status_code, response.json(), time.monotonic() - sent)
            except requests.RequestException as e:  # the gateway itself never fails here
                answer = (ping_hash, None, repr(e), time.monotonic() - sent)
            with self.lock:
                self.answers.append(answer)


def _count(answers, lock, status) -> int:
    with lock:
        return sum(1 for a in answers if a[1] == status)


def _objects_since(bucket, since: datetime) -> list[StoredPing]:
    """Every track object created since `since` (the test's own: nothing else writes meanwhile),
    parsed as the pipelines parse it: a partial or broken object raises."""
    found = []
    hour = since.replace(minute=0, second=0, microsecond=0)
    while hour <= datetime.now(UTC):
        for blob in bucket.list_blobs(prefix=stored_ping.hour_prefix("track", hour)):
            if blob.time_created and blob.time_created >= since - timedelta(seconds=5):
                found.append(StoredPing.parse(blob.name, blob.download_as_bytes()))
        hour += timedelta(hours=1)
    return found


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_storage_killed_while_pings_stream_in_never_answers_200_without_the_object(ingest_url, bucket):
    tag = f"gcskill{uuid.uuid4().hex[:6]}"
    answers: list = []
    lock = threading.Lock()
    stop = threading.Event()
    started = datetime.now(UTC)
    posters = [_Poster(ingest_url + "track", tag, answers, lock, stop) for _ in range(6)]
    with faults.killed("gcs"):
        for poster in posters:
            poster.start()
        try:
            _wait_for(lambda: _count(answers, lock, 200) >= 60, 60, "60 pings stored")
            faults.kill("gcs")  # mid-stream: uploads are in flight on 6 connections
            killed_at = len(answers)
            _wait_for(lambda: _count(answers, lock, 503) >= 12, 60, "503s while storage is down")
            down = time.monotonic()
            restart_seconds = faults.restart("gcs")
            recovered_after = len(answers)
            _wait_for(lambda: sum(1 for a in answers[recovered_after:] if a[1] == 200) >= 30, 60, "200s again")
            recovery = time.monotonic() - down
        finally:
            stop.set()
            for poster in posters:
                poster.join(timeout=90)
    statuses = [a[1] for a in answers]
    assert set(statuses) <= {200, 503}, [a for a in answers if a[1] not in (200, 503)][:3]
    for _hash, status, body, _ in answers:
        if status == 503:
            assert body["error"] == "storage_unavailable"
    slowest_503 = max(a[3] for a in answers if a[1] == 503)
    assert slowest_503 < 10, slowest_503  # connection refused: 3 quick tries, not the 3 x 10 s timeout

    # Every object the stream left in the bucket, complete or not.
    by_hash = {a[0]: a for a in answers}
    mine = {p.payload["hash"]: p for p in _objects_since(bucket, started) if str(p.payload.get("hash")).startswith(tag)}
    answered_200 = {h for h, a in by_hash.items() if a[1] == 200}
    answered_503 = {h for h, a in by_hash.items() if a[1] == 503}
    assert answered_200 <= set(mine), f"{len(answered_200 - set(mine))} pings answered 200 have no object"
    for ping_hash in answered_200:
        assert mine[ping_hash].id == by_hash[ping_hash][2]["id"]
    stored_but_503 = answered_503 & set(mine)
    # A 503 whose object landed is possible (the write reached the server, its answer did
    # not, the retries found no server): the client sends it again, the pipelines then see
    # two pings. What never happens is the reverse. Report what this run saw.
    print(
        f"\nstorage killed after {killed_at} answers: {len(answered_200)} x 200, {len(answered_503)} x 503 "
        f"({len(stored_but_503)} of them stored), slowest 503 {slowest_503:.2f} s, "
        f"restart {restart_seconds:.1f} s, 200s again {recovery:.1f} s after the restart began"
    )


def _track_app():
    handler.reset_instance()
    app = functions_framework.create_app(target="track", source=str(ROOT / "functions" / "track" / "main.py"))
    return app.test_client()


def test_frozen_storage_is_a_503_within_attempts_times_timeout(monkeypatch, bucket):
    attempts, timeout = 2, 1
    monkeypatch.setenv("STORAGE_ATTEMPTS", str(attempts))
    monkeypatch.setenv("STORAGE_TIMEOUT_SECONDS", str(timeout))
    client = _track_app()
    started_at = datetime.now(UTC)
    ping_hash = f"gcsfrozen{uuid.uuid4().hex[:8]}"
    try:
        with faults.frozen("gcs"):
            started = time.monotonic()
            response = client.post(
                "/", data=f"hash={ping_hash}&url=https%3A%2F%2Fx.org", content_type=FORM["Content-Type"]
            )
            took = time.monotonic() - started
    finally:
        handler.reset_instance()
    assert response.status_code == 503
    assert response.get_json()["error"] == "storage_unavailable"
    # attempts x timeout, plus urllib3's backoff between tries (0.1 s and up to 0.1 s of jitter)
    assert attempts * timeout <= took < attempts * timeout + 1.5, took

    # Once the server runs again it reads the requests waiting in its sockets and may
    # store the ping it was sent: a 503 means "not known to be stored", never "not stored".
    def landed():
        return [p for p in _objects_since(bucket, started_at) if p.payload.get("hash") == ping_hash]

    _wait_for(lambda: landed(), 10, "the thawed server to store the ping")
    print(
        f"\nfrozen storage: 503 after {took:.2f} s (STORAGE_ATTEMPTS={attempts}, "
        f"STORAGE_TIMEOUT_SECONDS={timeout}); stored after SIGCONT anyway: {len(landed())} object"
    )
    assert len(landed()) == 1  # both tries reached it; ifGenerationMatch=0 stored one


# --- the pipelines: Pub/Sub and BigQuery killed, MongoDB, BigQuery and Pub/Sub frozen ----

BOUND = 2  # seconds: each service's call bound in the runs below (the *_TIMEOUT_SECONDS options)
BOUNDS = [f"--{name}_timeout_seconds={BOUND}" for name in ("mongodb", "bigquery", "pubsub")]


def _run(*args: str) -> dict:
    pipeline, result, waited = build.run(["tracking", "--runner", build.LOCAL_RUNNER, *BOUNDS, *args])
    assert waited
    report = reconciliation.report_from_metrics(pipeline, result)
    assert report["balanced"], report
    return report


def _failing_run(*args: str) -> tuple[BaseException, float]:
    """Runs the tracking pipeline, which must fail; returns its error and when it ended (monotonic)."""
    with pytest.raises(Exception) as failure:
        build.run(["tracking", "--runner", build.LOCAL_RUNNER, *BOUNDS, *args])
    return failure.value, time.monotonic()


class _Hour:
    """A private hour of pings put straight into the bucket (each put is announced on
    Pub/Sub as ingest's are): `good` track pings of a known project, `unknown` track pings
    of an unknown one (rejected), `skipped` tracking-skipped pings."""

    def __init__(self, bucket, db, hour: datetime, good: int = 20, unknown: int = 4, skipped: int = 3):
        self.hour = hour
        self.arg = f"{hour:%Y-%m-%dT%H}"
        for route in ("track", "tracking-skipped"):
            for blob in bucket.list_blobs(prefix=stored_ping.hour_prefix(route, hour)):
                blob.delete()
        self.project = uuid.uuid4().hex
        db[PROJECTS].insert_one(
            {"hash": self.project, "name": "faults", "type": "plugin", "custom_fields": [], "mail_integrations": {}}
        )
        self.unknown_project = uuid.uuid4().hex
        import random

        rng = random.Random(hour.hour)
        self.good = [self._put(bucket, "track", samples.track_payload(rng, self.project, i), i) for i in range(good)]
        self.rejected = [
            self._put(bucket, "track", samples.track_payload(rng, self.unknown_project, i), good + i)
            for i in range(unknown)
        ]
        self.skipped = [
            self._put(bucket, "tracking-skipped", {"hash": self.project, "previously_skipped": "false"}, 100 + i)
            for i in range(skipped)
        ]

    def _put(self, bucket, route: str, body: dict, second: int) -> StoredPing:
        ping = StoredPing(
            id=str(uuid.uuid4()), route=route, received_at=self.hour + timedelta(seconds=second), payload=body
        )
        bucket.blob(ping.object_name).upload_from_string(ping.to_json(), content_type=stored_ping.CONTENT_TYPE)
        return ping

    def assert_each_once(self, db, bq) -> None:
        """Every stored ping in exactly one place, once: its history row or its rejected row;
        one MongoDB document per site."""
        dataset = f"{bq.project}.{os.environ['BQ_DATASET']}"

        def column(sql: str) -> list[str]:
            return sorted(row[0] for row in bq.query(sql).result())

        sites = column(
            f"SELECT ping_id FROM `{dataset}.sites` WHERE hash IN ('{self.project}', '{self.unknown_project}')"
        )
        skipped = column(f"SELECT ping_id FROM `{dataset}.tracking_skipped` WHERE hash = '{self.project}'")
        rejected = column(
            f"SELECT source FROM `{dataset}.rejected` WHERE hash IN ('{self.project}', '{self.unknown_project}')"
        )
        assert sites == sorted(p.id for p in self.good)
        assert skipped == sorted(p.id for p in self.skipped)
        assert rejected == sorted(p.object_name for p in self.rejected)
        assert db[site_state.SITES].count_documents({"hash": self.project}) == len(self.good)
        assert db[site_state.SITES].count_documents({"hash": self.unknown_project}) == 0


def _pending(route: str) -> int:
    """How many notifications a pull gets now (handed straight back)."""
    subscriber = cloud.pubsub_subscriber()
    name = config.subscription_name(os.environ["PINGS_TOPIC"], route)
    subscription = f"projects/{os.environ['GCP_PROJECT']}/subscriptions/{name}"
    got = 0
    try:
        for _ in range(3):  # the emulator may answer a first immediate pull empty
            response = subscriber.pull(
                request={"subscription": subscription, "max_messages": 1000, "return_immediately": True}, timeout=30
            )
            if response.received_messages:
                got += len(response.received_messages)
                subscriber.modify_ack_deadline(
                    request={
                        "subscription": subscription,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                        "ack_deadline_seconds": 0,
                    }
                )
            time.sleep(0.2)
    finally:
        subscriber.close()
    return got


def test_pubsub_killed_before_the_ack_fails_the_run_and_a_rerun_doubles_nothing(bucket, db, bq, monkeypatch):
    """The worst moment for Pub/Sub: every sink has committed, nothing is acknowledged yet."""
    data = _Hour(bucket, db, datetime(2026, 3, 4, 5, tzinfo=UTC))
    ack = connectors.AckNotifications.process
    killed_at = []

    def kill_pubsub_then_ack(self, *args):
        faults.kill("pubsub")
        killed_at.append(time.monotonic())
        yield from ack(self, *args)

    monkeypatch.setattr(connectors.AckNotifications, "process", kill_pubsub_then_ack)
    with faults.killed("pubsub"):
        error, ended = _failing_run("--lease_seconds", "10")
        monkeypatch.undo()
        assert killed_at, f"the run failed before its ack step: {error!r}"
        took = ended - killed_at[0]
        # Sinks first, acks last: everything is written, nothing acknowledged.
        data.assert_each_once(db, bq)
    restart = faults.restart("pubsub")
    # The emulator keeps its messages in memory: the unacknowledged notifications died
    # with it (Pub/Sub itself would redeliver them). A new object is announced again.
    assert _pending("track") == 0
    late = data._put(bucket, "track", samples.track_payload(__import__("random").Random(1), data.project, 99), 99)
    data.good.append(late)
    _wait_for(lambda: _pending("track") >= 1, 10, "a notification through the restarted emulator")

    rerun = _run()  # the notification of the new object only
    assert rerun["routes"]["track"]["objects_read"] >= 1
    backfill = _run("--hour", data.arg)  # what the lost notifications announced: reprocessed, nothing doubled
    assert backfill["routes"]["track"] == {
        "objects_read": len(data.good) + len(data.rejected),
        "rows_written": 0,
        "rejected": 0,
        "duplicates_skipped": len(data.good) + len(data.rejected),
        "balanced": True,
    }
    data.assert_each_once(db, bq)
    # The kill lost every notification pending then, the other tests' too: their hours are
    # reprocessed the same way, as an operator would after such a loss.
    _run("--hour", f"{STARTED:%Y-%m-%dT%H}", "--hour_to", f"{datetime.now(UTC):%Y-%m-%dT%H}")
    print(
        f"\npubsub killed before the ack: run failed {took:.1f} s later ({error.__class__.__name__}); "
        f"restart {restart:.1f} s"
    )
    assert took < 4 * BOUND + 5


def test_bigquery_killed_between_merges_fails_the_run_and_a_rerun_completes_once(bucket, db, bq, monkeypatch):
    """The worst moment for BigQuery: one history table merged, the others not yet."""
    data = _Hour(bucket, db, datetime(2026, 3, 4, 6, tzinfo=UTC))
    merge = warehouse.HistoryWriter.merge
    merged, killed_at = [], []

    def kill_bigquery_at_the_second_merge(self, route=None):
        if len(merged) == 1 and not killed_at:
            faults.kill("bigquery")
            killed_at.append(time.monotonic())
        merged.append(self.table.name)
        return merge(self, route)

    monkeypatch.setattr(warehouse.HistoryWriter, "merge", kill_bigquery_at_the_second_merge)
    with faults.killed("bigquery"):
        error, ended = _failing_run("--lease_seconds", "10")
        monkeypatch.undo()
        assert killed_at, f"the run failed before its second MERGE: {error!r}"
        took = ended - killed_at[0]
        restart = faults.restart("bigquery")
    # bqemulator persists to its data dir: the MERGE that committed survived SIGKILL.
    dataset = f"{bq.project}.{os.environ['BQ_DATASET']}"
    sql = f"SELECT COUNT(*) FROM `{dataset}.sites` WHERE hash = '{data.project}'"
    [(committed,)] = [tuple(row) for row in bq.query(sql).result()]
    assert committed == len(data.good)
    assert merged[0] == "sites"

    rerun = _run("--lease_seconds", "10")  # not acknowledged, leases ended: the notifications come again
    assert rerun["routes"]["track"]["objects_read"] >= len(data.good) + len(data.rejected)
    assert rerun["routes"]["tracking-skipped"]["objects_read"] >= len(data.skipped)
    data.assert_each_once(db, bq)
    print(
        f"\nbigquery killed at the second MERGE ({merged[0]} committed): run failed {took:.1f} s later "
        f"({error.__class__.__name__}); restart {restart:.1f} s, committed rows kept"
    )
    assert took < 4 * BOUND + 5


def _frozen_run(service: str, cls, method: str, *args: str) -> tuple[BaseException, float]:
    """Freezes `service` as `cls.method` is first called, and runs the pipeline: it must
    fail. Returns the error and the seconds from the freeze to the failure."""
    original = getattr(cls, method)
    frozen_at: list[float] = []

    def freeze_first(self, *a, **kw):
        if not frozen_at:
            faults.freeze(service)
            frozen_at.append(time.monotonic())
        return original(self, *a, **kw)  # a DoFn's process returns its generator: same thing

    with faults.may_freeze(service), pytest.MonkeyPatch.context() as patch:
        patch.setattr(cls, method, freeze_first)
        error, ended = _failing_run(*args)
    assert frozen_at, f"the run failed before {service} was frozen: {error!r}"
    return error, ended - frozen_at[0]


def test_frozen_mongodb_fails_the_run_within_its_bound(bucket, db):
    data = _Hour(bucket, db, datetime(2026, 3, 4, 7, tzinfo=UTC), good=5, unknown=0, skipped=0)
    error, took = _frozen_run("mongodb", connectors.UpsertSites, "process", "--hour", data.arg)
    print(f"\nfrozen mongodb: run failed {took:.1f} s after the freeze: {str(error)[:200]}")
    assert "MongoDB failed during the sites upsert" in str(error)
    assert took < 3 * BOUND + 5


def test_frozen_bigquery_fails_the_run_within_its_bound(bucket, db):
    data = _Hour(bucket, db, datetime(2026, 3, 4, 8, tzinfo=UTC), good=5, unknown=0, skipped=0)
    error, took = _frozen_run("bigquery", warehouse.HistoryWriter, "merge", "--hour", data.arg)
    print(f"\nfrozen bigquery: run failed {took:.1f} s after the freeze: {str(error)[:200]}")
    assert took < 3 * BOUND + 5


def test_bigquery_frozen_at_the_load_job_fails_the_run_within_its_bound(bucket, db, bq):
    """The wait for the load job is bounded like every other call; nothing reached history."""
    data = _Hour(bucket, db, datetime(2026, 3, 4, 9, tzinfo=UTC), good=5, unknown=0, skipped=0)
    error, took = _frozen_run("bigquery", warehouse.HistoryWriter, "_wait", "--hour", data.arg)
    print(f"\nbigquery frozen at the load job: run failed {took:.1f} s after the freeze: {str(error)[:200]}")
    assert took < 3 * BOUND + 5
    sql = f"SELECT COUNT(*) FROM `{bq.project}.{os.environ['BQ_DATASET']}.sites` WHERE hash = '{data.project}'"
    assert [tuple(row) for row in bq.query(sql).result()] == [(0,)]
    _run("--hour", data.arg)
    data.assert_each_once(db, bq)


def test_frozen_pubsub_fails_the_run_within_its_bound():
    error, took = _frozen_run("pubsub", connectors.DrainSubscription, "setup", "--lease_seconds", "10")
    print(f"\nfrozen pubsub: run failed {took:.1f} s after the freeze: {str(error)[:200]}")
    assert took < 3 * BOUND + 5
