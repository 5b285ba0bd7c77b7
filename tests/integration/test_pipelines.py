"""The hourly pipelines on the local runner against the local stack.

Pings go in through $INGEST_URL (or, where a test needs exact receipt times or
a broken object, straight into the bucket); the pipelines run in-process; the
checks read MongoDB and BigQuery. Each test uses project hashes of its own.
The dashboard's mail API has no local stand-in, so a small HTTP receiver in
the test process plays it (the only stand-in written for the tests).
"""

from __future__ import annotations

import http.server
import json
import os
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import functions_framework
import pymongo
import pytest
import requests

from telemetry.common import cloud, stored_ping
from telemetry.common.projects import PROJECTS
from telemetry.common.stored_ping import StoredPing
from telemetry.ingest import handler
from telemetry.local import samples, stack
from telemetry.pipelines import build, connectors, reconciliation, records, site_state
from telemetry.pipelines.counters import NAMESPACE
from tests import fixtures

ROOT = Path(__file__).resolve().parents[2]

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}


def new_project(db, **fields) -> str:
    project_hash = uuid.uuid4().hex
    db[PROJECTS].insert_one(
        {"hash": project_hash, "name": "test", "type": "plugin", "custom_fields": [], "mail_integrations": {}, **fields}
    )
    return project_hash


def post(ingest_url: str, route: str, body: dict) -> str:
    response = requests.post(ingest_url + route, data=samples.http_build_query(body), headers=FORM, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def run(name: str, *args: str) -> dict:
    pipeline, result, waited = build.run([name, "--runner", build.LOCAL_RUNNER, *args])
    assert waited
    report = reconciliation.report_from_metrics(pipeline, result)
    assert report["balanced"], report
    return report


def run_both(*args: str) -> dict[str, dict]:
    return {name: run(name, *args) for name in ("tracking", "deactivation")}


def bq_rows(bq, table: str, where: str) -> list[dict]:
    sql = f"SELECT * FROM `{bq.project}.{os.environ['BQ_DATASET']}.{table}` WHERE {where} ORDER BY received_at"
    return [dict(row) for row in bq.query(sql).result()]


def snapshot(db, bq, hashes: list[str]) -> dict:
    quoted = ", ".join(f"'{h}'" for h in hashes)
    return {
        "sites": sorted(map(repr, db[site_state.SITES].find({"hash": {"$in": hashes}}, {"_id": 0}).sort("url"))),
        "deactivations": sorted(map(repr, db[site_state.DEACTIVATIONS].find({"hash": {"$in": hashes}}, {"_id": 0}))),
        **{
            t: len(bq_rows(bq, t, f"hash IN ({quoted})"))
            for t in ("sites", "deactivations", "tracking_skipped", "rejected")
        },
    }


def put_ping(bucket, route: str, received_at: datetime, body: dict) -> str:
    """Store a ping as ingest would (the stored ping's own writer), at a receipt time of the test's choosing."""
    ping = StoredPing(id=str(uuid.uuid4()), route=route, received_at=received_at, payload=body)
    bucket.blob(ping.object_name).upload_from_string(ping.to_json(), content_type=stored_ping.CONTENT_TYPE)
    return ping.object_name


def put_bytes(bucket, route: str, received_at: datetime, data: bytes) -> str:
    """An object under a route's hour that is not a stored ping."""
    name = stored_ping.object_name(route, received_at, str(uuid.uuid4()))
    bucket.blob(name).upload_from_string(data, content_type=stored_ping.CONTENT_TYPE)
    return name


def test_contracts_end_to_end_and_reruns_change_nothing(ingest_url, bucket, db, bq):
    rng = random.Random(5)
    project = new_project(db, custom_fields=["license_type"], deactivation_reasons={"too-expensive": "Too dear"})
    stranger = uuid.uuid4().hex  # no project has it
    hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")

    for site in range(3):
        post(
            ingest_url,
            "track",
            samples.track_payload(rng, project, site, extra={"license_type": "pro", "secret": "s3"}),
        )
    newest = samples.track_payload(rng, project, 0, extra={"license_type": "agency"})
    newest["wp"]["version"] = "6.7.1"
    post(ingest_url, "track", newest)  # site 0 again: the latest ping wins
    post(ingest_url, "track", samples.track_payload(rng, stranger, 9))
    deactivation = samples.deactivate_payload(rng, project, 1)
    deactivation["reason_id"] = "too-expensive"  # one of the project's own reasons
    post(ingest_url, "deactivate", deactivation)
    bad_reason = samples.deactivate_payload(rng, project, 2)
    bad_reason["reason_id"] = "because reasons!"  # not a slug
    post(ingest_url, "deactivate", bad_reason)
    for _ in range(2):
        post(ingest_url, "tracking-skipped", samples.tracking_skipped_payload(rng, project))
    broken = put_bytes(bucket, "track", datetime.now(UTC), b"this is not JSON")

    reports = run_both()
    assert reports["tracking"]["routes"]["track"]["objects_read"] >= 6

    sites = {doc["url"]: doc for doc in db[site_state.SITES].find({"hash": project}, {"_id": 0})}
    assert sorted(sites) == [samples.site_url(i) for i in range(3)]
    site0 = sites[samples.site_url(0)]
    assert site0["wp_version"] == "6.7.1" and site0["custom_fields"] == {"license_type": "agency"}
    assert site0["status"] == "active" and site0["first_seen"] < site0["last_seen"]
    assert isinstance(site0["users_total"], int) and isinstance(site0["multisite"], bool)
    assert sites[samples.site_url(1)]["status"] == "deactivated"
    assert "secret" not in json.dumps([doc["custom_fields"] for doc in sites.values()])
    [deactivated] = db[site_state.DEACTIVATIONS].find({"hash": project})
    assert deactivated["reason_id"] == "too-expensive" and deactivated["url"] == samples.site_url(1)

    assert len(bq_rows(bq, "sites", f"hash = '{project}'")) == 5  # 4 track + the deactivated site's ping
    assert [r["reason_id"] for r in bq_rows(bq, "deactivations", f"hash = '{project}'")] == ["too-expensive"]
    assert len(bq_rows(bq, "tracking_skipped", f"hash = '{project}'")) == 2
    rejected = {r["reason"]: r for r in bq_rows(bq, "rejected", f"hash IN ('{project}', '{stranger}')")}
    assert set(rejected) == {"unknown_project", "invalid_reason"}
    assert "admin_email" not in rejected["unknown_project"]["payload"]
    assert "ip_address" not in rejected["unknown_project"]["payload"]
    [not_json] = bq_rows(bq, "rejected", f"source = '{broken}'")
    assert not_json["reason"] == "invalid_object" and not_json["route"] == "track"
    custom = json.loads(
        bq_rows(bq, "sites", f"hash = '{project}' AND url = '{samples.site_url(2)}'")[0]["custom_fields"]
    )
    assert custom == {"license_type": "pro"}

    before = snapshot(db, bq, [project, stranger])
    again = run_both()  # notification mode: what it drained was acknowledged, or comes again as duplicates
    hour_mode = run_both("--hour", hour)  # reprocess the hour: all duplicates
    for report in [*again.values(), *hour_mode.values()]:
        for line in report["routes"].values():
            assert line["rows_written"] == 0 and line["rejected"] == 0
            assert line["duplicates_skipped"] == line["objects_read"]
    assert hour_mode["tracking"]["routes"]["track"]["objects_read"] >= 6
    assert snapshot(db, bq, [project, stranger]) == before


def test_what_real_sites_send_reaches_mongodb_and_bigquery_decoded_and_kept(ingest_url, db, bq):
    """HTML-escaped titles and names are decoded once; custom reason slugs are kept; nothing is rejected."""
    project = new_project(db, deactivation_reasons={"too-expensive": "Too dear"})
    body = fixtures.track_body_wordpress().replace("0123456789abcdef0123456789abcdef", project)
    url = "https://bakery.example.org/shop?lang=de&ref=wp"
    response = requests.post(ingest_url + "track", data=body.encode(), headers=FORM, timeout=30)
    assert response.status_code == 200, response.text
    rng = random.Random(3)
    custom = samples.deactivate_payload(rng, project, 1)
    custom["reason_id"], custom["reason_info"] = "switched-to-pro", "Price &amp; support"
    custom["site"] = samples.wp_title("L'Atelier")
    post(ingest_url, "deactivate", custom)
    run_both()

    site = db[site_state.SITES].find_one({"hash": project, "url": url})
    assert site["site"] == 'Bakery & Café "Ñandú"' and site["last_name"] == "O'Brien & Sons"
    [row] = bq_rows(bq, "sites", f"hash = '{project}' AND url = '{url}'")
    assert row["site"] == 'Bakery & Café "Ñandú"' and row["last_name"] == "O'Brien & Sons"
    [deactivation] = bq_rows(bq, "deactivations", f"hash = '{project}'")
    assert deactivation["reason_id"] == "switched-to-pro" and deactivation["reason_known"] is False
    assert deactivation["reason_info"] == "Price &amp; support"  # the user's own text, as received
    assert deactivation["site"] == "L'Atelier"
    latest = db[site_state.DEACTIVATIONS].find_one({"hash": project})
    assert (latest["reason_id"], latest["reason_known"]) == ("switched-to-pro", False)
    assert bq_rows(bq, "rejected", f"hash = '{project}'") == []


def test_a_ping_ingest_accepted_under_its_settings_is_never_rejected_for_a_limit(monkeypatch, bucket, db, bq):
    """MAX_KEYS=5000: ingest stores a 2,502-key ping, and the pipeline writes it (it re-checks no limit)."""
    project = new_project(db)
    monkeypatch.setenv("MAX_KEYS", "5000")
    handler.reset_instance()
    app = functions_framework.create_app(target="track", source=str(ROOT / "functions" / "track" / "main.py"))
    extra = "&".join(f"extra%5Bk{i}%5D=v" for i in range(2500))
    body = f"hash={project}&url=https%3A%2F%2Fmany-keys.example.org&{extra}"
    try:
        response = app.test_client().post("/", data=body, content_type=FORM["Content-Type"])
    finally:
        monkeypatch.undo()
        handler.reset_instance()
    assert response.status_code == 200, response.get_json()
    report = run("tracking")
    assert report["routes"]["track"]["objects_read"] >= 1
    assert len(bq_rows(bq, "sites", f"hash = '{project}'")) == 1
    assert bq_rows(bq, "rejected", f"hash = '{project}'") == []


def test_out_of_order_pings_keep_the_newest_state(bucket, db, bq):
    project = new_project(db)
    rng = random.Random(8)
    t_old = datetime.now(UTC).replace(minute=0, second=1, microsecond=0)
    t_new = t_old + timedelta(minutes=30)
    new_body = samples.track_payload(rng, project, 1)
    new_body["project_version"] = "9.9.9"
    old_body = samples.track_payload(rng, project, 1)
    old_body["project_version"] = "1.0.0"

    put_ping(bucket, "track", t_new, new_body)
    run("tracking")
    put_ping(bucket, "track", t_old, old_body)  # arrives late
    run("tracking")

    [site] = db[site_state.SITES].find({"hash": project})
    assert site["project_version"] == "9.9.9"
    assert site["first_seen"] == t_old.replace(tzinfo=site["first_seen"].tzinfo)
    assert site["last_seen"] == t_new.replace(tzinfo=site["last_seen"].tzinfo)
    assert len(bq_rows(bq, "sites", f"hash = '{project}'")) == 2  # both are history


def test_site_updates_give_the_same_document_in_any_order(db):
    """A site can be folded in several write batches of one run, in any order (LatestPerSite)."""
    rng = random.Random(11)
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    project = {"hash": uuid.uuid4().hex, "custom_fields": []}
    site_records = []
    for ping_id, minutes in (("b", 0), ("a", 30), ("c", 30), ("d", 10)):  # a tie at 30: ping_id "c" wins
        body = samples.track_payload(rng, project["hash"], 1)
        body["project_version"] = ping_id
        ping = StoredPing(ping_id, "track", at + timedelta(minutes=minutes), body)
        site_records.append(records.site_record(ping, project))
    documents = set()
    for order in (site_records, site_records[::-1], site_records[1:] + site_records[:1]):
        db[site_state.SITES].delete_many({"hash": project["hash"]})
        for record in order:  # one update per batch: the worst case
            at_once = record["received_at"]
            site_state.apply(db[site_state.SITES], [site_state.site_update(record, at_once, at_once, False)])
        [document] = db[site_state.SITES].find({"hash": project["hash"]}, {"_id": 0})
        assert (document["project_version"], document["ping_id"]) == ("c", "c")
        assert (document["first_seen"], document["last_seen"]) == (at, at + timedelta(minutes=30))
        documents.add(repr(sorted(document.items())))
    assert len(documents) == 1
    db[site_state.SITES].delete_many({"hash": project["hash"]})


def test_mongodb_down_fails_the_run_and_a_rerun_completes_without_duplicates(ingest_url, db, bq):
    project = new_project(db)
    rng = random.Random(13)
    ids = [post(ingest_url, "track", samples.track_payload(rng, project, i)) for i in range(5)]
    mongo = next(s for s in stack.SERVICES if s.name == "mongodb")
    stack.stop(mongo)
    try:
        # A short lease, so that the drained notifications come back before the re-run
        # (the scheduled run keeps the 600 s default: the next hour's run gets them).
        with pytest.raises(Exception, match=r"MongoDB failed during loading projects: ServerSelectionTimeoutError"):
            build.run(["tracking", "--runner", build.LOCAL_RUNNER, "--lease_seconds", "10"])
    finally:
        stack.start(mongo)
    time.sleep(1)
    report = run("tracking")  # nothing was acknowledged: the notifications come again
    assert report["routes"]["track"]["objects_read"] >= 5
    rows = bq_rows(bq, "sites", f"hash = '{project}'")
    assert sorted(r["ping_id"] for r in rows) == sorted(ids)  # each once
    assert db[site_state.SITES].count_documents({"hash": project}) == 5


def test_mongodb_stopped_mid_run_fails_it_and_a_rerun_completes_without_duplicates(bucket, db, bq, monkeypatch):
    """MongoDB is up when the run starts (projects load) and goes down as the first sites upsert begins."""
    project = new_project(db)
    rng = random.Random(17)
    hour = datetime(2026, 2, 3, 4, tzinfo=UTC)  # an hour of this test's own, emptied first
    for blob in bucket.list_blobs(prefix=stored_ping.hour_prefix("track", hour)):
        blob.delete()
    for i in range(60):
        put_ping(bucket, "track", hour + timedelta(seconds=i), samples.track_payload(rng, project, i))
    mongo = next(s for s in stack.SERVICES if s.name == "mongodb")
    upsert = connectors.UpsertSites.process

    def stop_mongodb_then_upsert(self, batch, projects):
        stack.stop(mongo)  # a no-op once stopped
        yield from upsert(self, batch, projects)

    monkeypatch.setattr(connectors.UpsertSites, "process", stop_mongodb_then_upsert)
    try:
        with pytest.raises(Exception, match=r"MongoDB failed during the sites upsert: \w+"):
            build.run(["tracking", "--runner", build.LOCAL_RUNNER, "--hour", f"{hour:%Y-%m-%dT%H}"])
    finally:
        monkeypatch.undo()
        stack.start(mongo)
    assert bq_rows(bq, "sites", f"hash = '{project}'") == []  # the run died before its MERGE

    report = run("tracking", "--hour", f"{hour:%Y-%m-%dT%H}")
    assert report["routes"]["track"] == {
        "objects_read": 60,
        "rows_written": 60,
        "rejected": 0,
        "duplicates_skipped": 0,
        "balanced": True,
    }
    assert len(bq_rows(bq, "sites", f"hash = '{project}'")) == 60
    assert db[site_state.SITES].count_documents({"hash": project}) == 60


class _MailReceiver(http.server.BaseHTTPRequestHandler):
    """The mail API's stand-in: records each accepted call; `fail_next` calls get 503, and
    `refuse_next` calls 400 with the request body echoed back (as an API may quote what it refused)."""

    calls: ClassVar[list[dict]] = []
    fail_next: ClassVar[int] = 0
    refuse_next: ClassVar[int] = 0

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.loads(raw)
        cls = type(self)
        if cls.fail_next:
            cls.fail_next -= 1
            self.send_response(503)
            self.end_headers()
            return
        if cls.refuse_next:
            cls.refuse_next -= 1
            self.send_response(400)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return
        cls.calls.append({"body": body, "authorization": self.headers.get("Authorization")})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def mail_api():
    _MailReceiver.calls = []
    _MailReceiver.fail_next = 0
    _MailReceiver.refuse_next = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MailReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/subscribe", _MailReceiver
    server.shutdown()


def test_mail_integration_called_once_per_new_site(ingest_url, db, mail_api):
    url, receiver = mail_api
    project = new_project(
        db, mail_integrations={"mailchimp": {"enabled": True, "list_id": "L1"}, "mailjet": {"enabled": False}}
    )
    quiet = new_project(db)  # no integration: never mailed
    rng = random.Random(21)
    for site in (1, 2):
        post(ingest_url, "track", samples.track_payload(rng, project, site))
    post(ingest_url, "track", samples.track_payload(rng, quiet, 1))
    receiver.fail_next = 1  # the first call fails: retried
    run("tracking", "--mail_api_url", url, "--mail_api_token", "t0ken")

    mine = [c for c in receiver.calls if c["body"]["project"] == project]
    assert len(mine) == 1
    assert mine[0]["authorization"] == "Bearer t0ken"
    assert mine[0]["body"]["integrations"] == ["mailchimp"]
    assert sorted(c["url"] for c in mine[0]["body"]["contacts"]) == [samples.site_url(1), samples.site_url(2)]
    assert not [c for c in receiver.calls if c["body"]["project"] == quiet]

    post(ingest_url, "track", samples.track_payload(rng, project, 2))  # known site
    post(ingest_url, "track", samples.track_payload(rng, project, 3))  # new site
    run("tracking", "--mail_api_url", url)
    run("tracking", "--mail_api_url", url, "--hour", datetime.now(UTC).strftime("%Y-%m-%dT%H"))
    mine = [c for c in receiver.calls if c["body"]["project"] == project]
    assert [[c["url"] for c in call["body"]["contacts"]] for call in mine[1:]] == [[samples.site_url(3)]]
    statuses = {d["url"]: d["mail"]["status"] for d in db[site_state.SITES].find({"hash": project})}
    assert set(statuses.values()) == {site_state.MAIL_SENT}


def test_mail_failure_is_counted_and_never_fails_the_job(ingest_url, db):
    project = new_project(db, mail_integrations={"wemail": {"enabled": True}})
    post(ingest_url, "track", samples.track_payload(random.Random(1), project, 1))
    run("tracking", "--mail_api_url", "http://127.0.0.1:9/nothing-listens")
    [site] = db[site_state.SITES].find({"hash": project})
    assert site["mail"]["status"] == site_state.MAIL_FAILED and site["mail"]["error"]


def run_counted(name: str, *args: str) -> dict[str, int]:
    """One run (as `run`); its Beam counters by name."""
    from apache_beam.metrics.metric import MetricsFilter

    pipeline, result, waited = build.run([name, "--runner", build.LOCAL_RUNNER, *args])
    assert waited and reconciliation.report_from_metrics(pipeline, result)["balanced"]
    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (counter.committed or 0)
    return totals


def contacts_sent(receiver, project: str) -> list[str]:
    """The urls of the project's contacts the mail API accepted, call after call."""
    calls = [call["body"] for call in receiver.calls if call["body"]["project"] == project]
    return [contact["url"] for body in calls for contact in body["contacts"]]


def mail_of(db, project: str) -> dict[str, dict]:
    return {d["url"]: d["mail"] for d in db[site_state.SITES].find({"hash": project}, {"url": 1, "mail": 1})}


def test_mail_failure_keeps_a_summary_that_quotes_no_contact(ingest_url, db, mail_api):
    url, receiver = mail_api
    project = new_project(db, mail_integrations={"mailchimp": {"enabled": True}})
    body = samples.track_payload(random.Random(3), project, 1)
    body["admin_email"] = f"quoted-{uuid.uuid4().hex[:8]}@example.org"
    post(ingest_url, "track", body)
    receiver.refuse_next = 1  # 400, the request (and its contacts) echoed in the answer
    counters = run_counted("tracking", "--mail_api_url", url)
    [mail] = mail_of(db, project).values()
    assert mail["status"] == site_state.MAIL_FAILED and mail["attempts"] == 1
    assert mail["error"] == "mail API answered 400"
    assert body["admin_email"] not in repr(mail)
    assert counters["mail_failed"] >= 1


def test_mail_retries_failed_and_lost_claims_with_a_bound(ingest_url, db, mail_api):
    """`failed` is due again after a backoff, a `sending` claim older than MAIL_RECLAIM_AFTER is taken
    again, both by later runs in which the site does not ping; after MAIL_MAX_ATTEMPTS calls, `abandoned`."""
    url, receiver = mail_api
    project = new_project(db, mail_integrations={"mailchimp": {"enabled": True}})
    rng = random.Random(29)
    for site in range(1, 6):
        post(ingest_url, "track", samples.track_payload(rng, project, site))
    run("tracking")  # no mail API in this run: every site stays pending
    assert {m["status"] for m in mail_of(db, project).values()} == {site_state.MAIL_PENDING}

    now = datetime.now(UTC)
    sites = db[site_state.SITES]
    past, ahead = now - timedelta(minutes=1), now + timedelta(minutes=30)

    def set_mail(site: int, **mail):
        sites.update_one({"hash": project, "url": samples.site_url(site)}, {"$set": {"mail": mail}})

    # 1: failed, due again; 2: failed, backing off; 3: left `sending` by a worker that died an hour
    # and more ago; 4: `sending` as the code before due_at left it; 5: a claim in flight.
    set_mail(1, status=site_state.MAIL_FAILED, attempts=1, due_at=past, error="mail API answered 503")
    set_mail(2, status=site_state.MAIL_FAILED, attempts=1, due_at=ahead)
    lost = now - site_state.MAIL_RECLAIM_AFTER - timedelta(minutes=1)
    set_mail(
        3,
        status=site_state.MAIL_SENDING,
        claim="dead",
        attempts=1,
        claimed_at=lost,
        due_at=lost + site_state.MAIL_RECLAIM_AFTER,
    )
    set_mail(4, status=site_state.MAIL_SENDING, claim="old")
    set_mail(
        5,
        status=site_state.MAIL_SENDING,
        claim="live",
        attempts=1,
        claimed_at=now,
        due_at=now + site_state.MAIL_RECLAIM_AFTER,
    )

    counters = run_counted("tracking", "--mail_api_url", url)  # no site pings in this run
    assert sorted(contacts_sent(receiver, project)) == [samples.site_url(i) for i in (1, 3, 4)]
    mail = mail_of(db, project)
    assert {u: m["status"] for u, m in mail.items()} == {
        samples.site_url(1): site_state.MAIL_SENT,
        samples.site_url(2): site_state.MAIL_FAILED,
        samples.site_url(3): site_state.MAIL_SENT,
        samples.site_url(4): site_state.MAIL_SENT,
        samples.site_url(5): site_state.MAIL_SENDING,
    }
    assert mail[samples.site_url(1)]["attempts"] == 2 and "error" not in mail[samples.site_url(1)]
    assert counters["mail_claimed_failed"] >= 1 and counters["mail_claimed_sending"] >= 2
    assert counters["mail_sent"] >= 3

    # The last attempt fails: abandoned, and no later run tries it again.
    set_mail(2, status=site_state.MAIL_FAILED, attempts=site_state.MAIL_MAX_ATTEMPTS - 1, due_at=past)
    receiver.refuse_next = 1
    counters = run_counted("tracking", "--mail_api_url", url)
    abandoned = mail_of(db, project)[samples.site_url(2)]
    assert abandoned["status"] == site_state.MAIL_ABANDONED and abandoned["attempts"] == site_state.MAIL_MAX_ATTEMPTS
    assert counters["mail_abandoned"] >= 1
    calls = len(receiver.calls)
    run("tracking", "--mail_api_url", url)
    assert len(receiver.calls) == calls


def test_forged_new_sites_double_opt_in_and_an_hourly_bound(ingest_url, db, mail_api):
    """Contacts are sent asking for double opt-in unless the project turns it off, and at most
    --mail_contacts_per_project_hour per project and hour: the rest wait, pending, for a later hour."""
    url, receiver = mail_api
    project = new_project(db, mail_integrations={"mailchimp": {"enabled": True}})
    trusting = new_project(db, mail_integrations={"mailjet": {"enabled": True}}, mail_double_opt_in=False)
    rng = random.Random(37)
    for site in range(1, 6):
        post(ingest_url, "track", samples.track_payload(rng, project, site))
    post(ingest_url, "track", samples.track_payload(rng, trusting, 1))
    counters = run_counted("tracking", "--mail_api_url", url, "--mail_contacts_per_project_hour", "3")

    mine = [c["body"] for c in receiver.calls if c["body"]["project"] == project]
    assert {body["double_opt_in"] for body in mine} == {True}
    assert [c["body"]["double_opt_in"] for c in receiver.calls if c["body"]["project"] == trusting] == [False]
    first = contacts_sent(receiver, project)
    assert len(first) == 3 and counters["mail_deferred_over_bound"] >= 2
    waiting = {u: m for u, m in mail_of(db, project).items() if m["status"] == site_state.MAIL_PENDING}
    assert len(waiting) == 2
    next_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert {m["due_at"].replace(tzinfo=UTC) for m in waiting.values()} == {next_hour}

    run("tracking", "--mail_api_url", url, "--mail_contacts_per_project_hour", "3")  # the same hour: nothing
    assert len(contacts_sent(receiver, project)) == 3

    # The next hour (its quota document is new, and the deferred sites are due): the rest go out, once.
    db[site_state.MAIL_QUOTA].delete_many({"hash": project})
    db[site_state.SITES].update_many(
        {"hash": project, "mail.status": site_state.MAIL_PENDING}, {"$set": {"mail.due_at": datetime.now(UTC)}}
    )
    run("tracking", "--mail_api_url", url, "--mail_contacts_per_project_hour", "3")
    assert sorted(contacts_sent(receiver, project)) == [samples.site_url(i) for i in range(1, 6)]
    assert {m["status"] for m in mail_of(db, project).values()} == {site_state.MAIL_SENT}


def test_indexes(db):
    sites = db[site_state.SITES].index_information()
    assert sites["hash_url_unique"]["unique"] is True
    assert sites["hash_last_seen_url"]["key"] == [("hash", 1), ("last_seen", -1), ("url", 1)]
    assert "hash_last_seen" not in sites  # its prefix, dropped
    assert sites["hash_mail_due"]["key"] == [("hash", 1), ("mail.status", 1), ("mail.due_at", 1)]
    key = {"hash": f"dup-{uuid.uuid4().hex}", "url": "https://dup.example.org"}
    db[site_state.SITES].insert_one(dict(key))
    try:
        with pytest.raises(pymongo.errors.DuplicateKeyError):
            db[site_state.SITES].insert_one(dict(key))
    finally:
        db[site_state.SITES].delete_many(key)


# --- Notification leases (telemetry/pipelines/leases.py) --------------------------------

LEASE = 10  # the shortest --lease_seconds


def _subscription(route: str) -> str:
    from telemetry.common import config

    name = config.subscription_name(os.environ["PINGS_TOPIC"], route)
    return f"projects/{os.environ['GCP_PROJECT']}/subscriptions/{name}"


class _ConcurrentPuller(threading.Thread):
    """Pulls the tracking pipeline's subscriptions every second while a run works, as a
    second run would; whatever it gets (a redelivery) is counted and handed straight back."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.got: list[str] = []
        self.pulls = 0

    def run(self):
        subscriber = cloud.pubsub_subscriber()
        try:
            while not self.stop.wait(1):
                for route in ("track", "tracking-skipped"):
                    response = subscriber.pull(
                        request={
                            "subscription": _subscription(route),
                            "max_messages": 1000,
                            "return_immediately": True,
                        },
                        timeout=30,
                    )
                    self.pulls += 1
                    if response.received_messages:
                        self.got += [m.message.attributes.get("objectId", "") for m in response.received_messages]
                        subscriber.modify_ack_deadline(
                            request={
                                "subscription": _subscription(route),
                                "ack_ids": [m.ack_id for m in response.received_messages],
                                "ack_deadline_seconds": 0,
                            }
                        )
        finally:
            subscriber.close()


def _pending(route: str) -> int:
    """How many notifications a pull gets now (handed back at once)."""
    subscriber = cloud.pubsub_subscriber()
    got = 0
    try:
        for _ in range(3):  # the emulator may answer a first immediate pull empty
            response = subscriber.pull(
                request={"subscription": _subscription(route), "max_messages": 1000, "return_immediately": True},
                timeout=30,
            )
            if response.received_messages:
                got += len(response.received_messages)
                subscriber.modify_ack_deadline(
                    request={
                        "subscription": _subscription(route),
                        "ack_ids": [m.ack_id for m in response.received_messages],
                        "ack_deadline_seconds": 0,
                    }
                )
            time.sleep(0.2)
    finally:
        subscriber.close()
    return got


def _slow_sites_upsert(monkeypatch, seconds: float, on_start=None) -> None:
    """Fault injection: the first MongoDB sites write of the run (after the drain) waits `seconds` first."""
    upsert = connectors.UpsertSites.process
    slept = []

    def slow_upsert(self, batch, projects):
        if not slept:
            slept.append(True)
            if on_start:
                on_start()
            time.sleep(seconds)
        yield from upsert(self, batch, projects)

    monkeypatch.setattr(connectors.UpsertSites, "process", slow_upsert)


def test_a_run_longer_than_its_lease_keeps_its_notifications_and_acknowledges_each_once(
    ingest_url, db, bq, monkeypatch
):
    run("tracking")  # drain what earlier tests left, so that the counts below are this test's
    project = new_project(db)
    rng = random.Random(23)
    ids = [post(ingest_url, "track", samples.track_payload(rng, project, i)) for i in range(8)]
    puller = _ConcurrentPuller()  # from when the drain is over
    _slow_sites_upsert(monkeypatch, 2.5 * LEASE, on_start=puller.start)
    started = time.monotonic()
    try:
        pipeline, result, _ = build.run(["tracking", "--runner", build.LOCAL_RUNNER, "--lease_seconds", str(LEASE)])
    finally:
        puller.stop.set()
        if puller.is_alive():
            puller.join()
        monkeypatch.undo()
    took = time.monotonic() - started
    assert took > 2.5 * LEASE  # the leases were extended at least twice, or the run would have lost them
    assert puller.pulls >= 2 * LEASE and puller.got == []  # no notification came to another pull during the run
    report = reconciliation.report_from_metrics(pipeline, result)
    assert report["routes"]["track"] == {
        "objects_read": 8,
        "rows_written": 8,
        "rejected": 0,
        "duplicates_skipped": 0,
        "balanced": True,
    }
    counters = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]}
    # Each drained once and acknowledged once: the 8 on track, and whatever else came (the
    # emulator applies no subscription filter: tracking-skipped gets the 8 too, and ignores them).
    ignored = sum(counters.get(f"notifications_ignored_{route}", 0) for route in ("track", "tracking-skipped"))
    assert counters["notifications_acked"] == 8 + ignored
    time.sleep(LEASE + 2)  # a lease that was not acknowledged would have lapsed by now
    assert _pending("track") == 0 and _pending("tracking-skipped") == 0
    rows = bq_rows(bq, "sites", f"hash = '{project}'")
    assert sorted(r["ping_id"] for r in rows) == sorted(ids)
    assert db[site_state.SITES].count_documents({"hash": project}) == 8


def test_a_run_past_its_bound_fails_and_its_notifications_come_back_for_the_next_run(ingest_url, db, bq, monkeypatch):
    run("tracking")
    project = new_project(db)
    rng = random.Random(29)
    ids = [post(ingest_url, "track", samples.track_payload(rng, project, i)) for i in range(5)]
    _slow_sites_upsert(monkeypatch, 2 * LEASE)
    try:
        with pytest.raises(
            Exception, match=r"longer than --max_run_seconds=12: its \d+ notifications are not acknowledged"
        ):
            build.run(
                ["tracking", "--runner", build.LOCAL_RUNNER, "--lease_seconds", str(LEASE), "--max_run_seconds", "12"]
            )
    finally:
        monkeypatch.undo()
    report = run("tracking")  # at once: the failed run's leases were ended, or had lapsed past its bound
    assert report["routes"]["track"]["objects_read"] == 5
    rows = bq_rows(bq, "sites", f"hash = '{project}'")
    assert sorted(r["ping_id"] for r in rows) == sorted(ids)  # each once, whichever run wrote it
    assert db[site_state.SITES].count_documents({"hash": project}) == 5


def test_pings_that_pass_ingest_but_not_the_sinks_are_rejected_with_reasons_and_the_runs_balance(bucket, db, bq):
    """Values that cannot be cast, INT64 overflows, `plugins` that is a string, a url that
    entity decoding breaks, and receipt times BigQuery refuses (over five years back, over
    one ahead): each lands in `rejected` with its reason, and no run fails."""
    project = new_project(db, custom_fields=["license"])
    now = datetime.now(UTC)
    hour = (now - timedelta(days=random.randint(40, 300))).replace(minute=0, second=0, microsecond=0)
    site = {"hash": project, "url": "https://hostile.example.org"}
    invalid_values = [
        {**site, "users": {"total": "abc"}},
        {**site, "active_plugins": "1e999"},
        {**site, "inactive_plugins": "9" * 25},
        {**site, "wp": {"multisite": "maybe"}},
        {**site, "plugins": "akismet"},
        {**site, "extra": {"license": 2**64}},
    ]
    for body in invalid_values:
        put_ping(bucket, "track", hour + timedelta(minutes=1), body)
    # Ingest now refuses credentials in a url; an object stored before is set aside on reading.
    put_ping(bucket, "track", hour + timedelta(minutes=1), {**site, "url": "https://&lbrack;@x.org"})
    put_ping(bucket, "track", hour + timedelta(minutes=2), {**site, "users": {"total": "3"}})  # a good one
    put_ping(bucket, "deactivate", hour + timedelta(minutes=3), {**site, "reason_id": "other", "is_local": "perhaps"})
    put_ping(bucket, "tracking-skipped", hour + timedelta(minutes=4), {"hash": project, "previously_skipped": "x"})
    too_old, too_new = now - timedelta(days=6 * 366), now + timedelta(days=2 * 366)
    old_name = put_ping(bucket, "track", too_old, site)
    put_ping(bucket, "track", too_new, site)

    def hour_arg(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H")

    reports = [run("tracking", "--hour", hour_arg(h)) for h in (hour, too_old, too_new)]
    reports.append(run("deactivation", "--hour", hour_arg(hour)))
    assert reports[0]["routes"]["track"]["rejected"] >= len(invalid_values) + 1

    rejected = bq_rows(bq, "rejected", f"hash = '{project}'")
    reasons = sorted((r["route"], r["reason"]) for r in rejected)
    assert reasons == sorted(
        [("track", records.INVALID_VALUE)] * len(invalid_values)
        + [("deactivate", records.INVALID_VALUE), ("tracking-skipped", records.INVALID_VALUE)]
        + [("track", records.RECEIVED_AT_OUT_OF_RANGE)] * 2
        + [("track", records.INVALID_PAYLOAD)]
    ), reasons
    details = {r["detail"].split(" ")[0] for r in rejected if r["reason"] == records.INVALID_VALUE}
    assert details == {"users[total]", "active_plugins", "inactive_plugins", "wp[multisite]", "plugins", "extra",
                       "is_local", "previously_skipped"}  # fmt: skip
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for row in (r for r in rejected if r["reason"] == records.RECEIVED_AT_OUT_OF_RANGE):
        assert row["received_at"] in (today, today + timedelta(days=1))  # dated by the day it was set aside
        assert row["detail"].startswith("[received_at ")
    assert len(bq_rows(bq, "sites", f"hash = '{project}'")) == 1
    assert db[site_state.SITES].count_documents({"hash": project}) == 1

    # The same day, a re-run stores the out-of-range rejection once.
    run("tracking", "--hour", hour_arg(too_old))
    assert len(bq_rows(bq, "rejected", f"source = '{old_name}'")) == 1
