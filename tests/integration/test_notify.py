"""The notify run against the local stack: BigQuery (bqemulator), MongoDB (SecantusDB),
the stack's SMTP relay (aiosmtpd: STARTTLS and AUTH required, mail read back from its
Maildir) and webhook receivers that verify every signature with `standardwebhooks`.

Each test has a MongoDB database and a BigQuery dataset of its own (the outbox and the
watermark are per database). The committed data is written as the pipelines commit
it: deactivation rows into the `deactivations` history, and sites folded into MongoDB
`sites` by the pipelines' own `site_state.site_update`. The run's clock is injected, so
24 hours of retries take no sleeping.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from telemetry.admin import cli as admin
from telemetry.common import cloud, config, mongo, projects, sites, tables, webhook_secrets
from telemetry.local import smtp_server, stack
from telemetry.notify import events, outbox, run, site_events, webhooks
from telemetry.notify.settings import NotifySettings
from telemetry.pipelines import site_state

from .notify_receiver import Receiver

HOUR = timedelta(hours=1)


class Clock:
    """The run's clock: starts now, moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world():
    """A database and a dataset of this test's own, with the history tables the producers read."""
    suffix = uuid.uuid4().hex[:10]
    db = mongo.database(os.environ["MONGODB_URI"], f"notify_test_{suffix}")
    bq = cloud.bigquery_client(os.environ["GCP_PROJECT"])
    dataset = f"notify_test_{suffix}"
    bq.create_dataset(dataset)
    for name in ("deactivations", "sites"):
        tables.ensure_table(bq, dataset, tables.layout(name, "pipelines"))
    # The analytics job's progress, which the digest, figures.ready and spike producers read.
    tables.ensure_table(bq, dataset, tables.layout("analytics_progress", "analytics"))
    settings = dataclasses.replace(NotifySettings.from_env(), dataset=dataset, mongodb_db=db.name)
    site_state.ensure_indexes(db)
    yield db, bq, settings
    bq.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
    db.client.drop_database(db.name)
    db.client.close()


@pytest.fixture
def receivers():
    base = config.get_int("NOTIFY_RECEIVER_PORT")
    started: list[Receiver] = []

    def make(index: int, **options) -> Receiver:
        receiver = Receiver(base + index, **options).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


def add_project(db, project_hash: str, **notify) -> dict:
    document = projects.project_document(
        project_hash, f"Project {project_hash}", deactivation_reasons={"too-pricey": "It costs too much"}
    )
    if "recipients" in notify:
        document = projects.with_alerts(document, notify["recipients"], exclude=notify.get("exclude", []))
    endpoint = None
    if "webhook" in notify:
        receiver, types = notify["webhook"]
        document, endpoint = projects.with_webhook(document, receiver.url, types, allow_http=True)
        receiver.secret = webhook_secrets.new_secret()
        stored = webhook_secrets.secret_document(project_hash, endpoint["id"], receiver.secret, datetime.now(UTC))
        webhook_secrets.add(db, stored)
    projects.save_project(db, document)
    return endpoint


def deactivated(bq, settings, project_hash: str, n: int, at: datetime, reason: str, info: str) -> str:
    ping_id = f"ping-{uuid.uuid4().hex}"
    row = {
        "hash": project_hash, "url": f"https://site{n}.example", "site": f"Site {n}", "reason_id": reason,
        "reason_known": True, "reason_info": info, "project_version": "2.1.0", "ping_id": ping_id,
        "received_at": at.isoformat(),
    }  # fmt: skip
    assert bq.insert_rows_json(f"{bq.project}.{settings.dataset}.deactivations", [row]) == []
    return ping_id


def first_ping(db, project_hash: str, url: str, at: datetime) -> None:
    record = {
        "hash": project_hash, "url": url, "site": "New site", "status": "active", "project_version": "2.1.0",
        "wp_version": "6.9", "php_version": "8.3", "ping_id": f"ping-{uuid.uuid4().hex}", "received_at": at,
    }  # fmt: skip
    site_state.apply(db["sites"], [site_state.site_update(record, at, at, mail=False)])


def mails_to(*addresses: str) -> list:
    return [m for m in smtp_server.received(stack.SMTP_DIR) if m["To"] in addresses]


def test_an_alert_per_deactivation_carrying_its_reason_and_text_and_a_rerun_sends_nothing_new(world):
    db, bq, settings = world
    clock = Clock()
    tag = uuid.uuid4().hex[:8]
    ops, dev = f"ops-{tag}@vendor.example", f"dev-{tag}@vendor.example"
    add_project(db, f"alerts{tag}", recipients=[ops, dev], exclude=["none"])
    add_project(db, f"quiet{tag}")  # no recipients and no webhook: its deactivation is no event at all
    ping_a = deactivated(bq, settings, f"alerts{tag}", 1, clock.now - 2 * HOUR, "too-pricey", "Cheaper at the rival")
    deactivated(bq, settings, f"alerts{tag}", 2, clock.now - HOUR, "other", "Line one\nLine two <b>")
    deactivated(bq, settings, f"alerts{tag}", 3, clock.now - HOUR, "none", "")  # excluded reason
    deactivated(bq, settings, f"quiet{tag}", 4, clock.now - HOUR, "other", "x")

    summary = run.run_once(bq, db, settings, clock)
    assert summary.failed_producers == []
    assert summary.events_new == 3 and summary.deliveries == {"sent": 4}
    assert db[outbox.EVENTS].count_documents({"project": f"quiet{tag}"}) == 0

    received = mails_to(ops, dev)
    assert sorted(m["To"] for m in received) == sorted([ops, ops, dev, dev])
    by_site = {}
    for mail in received:
        by_site.setdefault(mail["Subject"], []).append(mail)
    first = f"Project alerts{tag} deactivated on https://site1.example: It costs too much"
    second = f"Project alerts{tag} deactivated on https://site2.example: other"
    assert sorted(by_site) == sorted([first, second])
    text = by_site[first][0].get_body(("plain",)).get_content()
    assert "Reason: It costs too much" in text and "Their words: Cheaper at the rival" in text
    assert by_site[first][0]["X-Telemetry-Event-Id"] == events.event_id(events.SITE_DEACTIVATED, ping_a)
    html = by_site[second][0].get_body(("html",)).get_content()
    assert "Line one\nLine two &lt;b&gt;" in html

    # A re-run over the same window (the overlap reads it all again), and a run an hour later.
    assert run.run_once(bq, db, settings, clock).events_new == 0
    clock.now += HOUR
    again = run.run_once(bq, db, settings, clock)
    assert (again.events_new, again.deliveries_created, again.deliveries) == (0, 0, {})
    assert len(mails_to(ops, dev)) == 4


def test_site_activated_and_deactivated_webhooks_once_each_with_valid_signatures(world, receivers):
    db, bq, settings = world
    clock = Clock()
    hook = receivers(0)
    tag = uuid.uuid4().hex[:8]
    endpoint = add_project(db, f"hooks{tag}", webhook=(hook, [events.SITE_ACTIVATED, events.SITE_DEACTIVATED]))
    first_ping(db, f"hooks{tag}", "https://new.example", clock.now - 30 * time_minute())
    first_ping(db, f"hooks{tag}", "https://old.example", clock.now - 30 * 24 * HOUR)  # before the window
    first_ping(db, f"hooks{tag}", "https://old.example", clock.now - HOUR)  # not new: pinged before
    ping = deactivated(bq, settings, f"hooks{tag}", 1, clock.now - HOUR, "too-pricey", "Too much")

    for _ in range(2):
        run.run_once(bq, db, settings, clock)
        clock.now += HOUR
    run.run_once(bq, db, settings, clock)

    assert hook.unverified == 0
    assert sorted((r.type, r.webhook_id) for r in hook.received) == sorted([
        (events.SITE_ACTIVATED, events.event_id(events.SITE_ACTIVATED, f"hooks{tag}", "https://new.example")),
        (events.SITE_DEACTIVATED, events.event_id(events.SITE_DEACTIVATED, ping)),
    ])  # fmt: skip
    by_type = {r.type: r.data for r in hook.received}
    assert by_type[events.SITE_ACTIVATED]["url"] == "https://new.example"
    assert by_type[events.SITE_DEACTIVATED]["reason_label"] == "It costs too much"
    assert by_type[events.SITE_DEACTIVATED]["reason_info"] == "Too much"
    assert db[outbox.DELIVERIES].count_documents({"target": endpoint["id"], "status": outbox.SENT}) == 2


def time_minute() -> timedelta:
    return timedelta(minutes=1)


def test_a_failing_receiver_is_retried_with_backoff_then_set_aside_after_24_hours(world, receivers, caplog):
    db, bq, settings = world
    clock = Clock()
    hook = receivers(1, status=503)
    tag = uuid.uuid4().hex[:8]
    add_project(db, f"failing{tag}", webhook=(hook, [events.SITE_DEACTIVATED]))
    deactivated(bq, settings, f"failing{tag}", 1, clock.now - HOUR, "other", "")
    rng = random.Random(3)
    started = clock.now

    first = run.run_once(bq, db, settings, clock, rng=rng)
    assert first.deliveries == {"pending": 1} and len(hook.received) == 1
    delivery = db[outbox.DELIVERIES].find_one()
    assert delivery["last_status"] == 503 and "receiver says no" in delivery["last_error"]
    wait = delivery["due_at"] - clock.now
    assert settings.retry_first / 2 <= wait <= settings.retry_first

    # Not due yet: a run now tries nothing.
    assert run.run_once(bq, db, settings, clock, rng=rng).deliveries == {}
    tries_at = [started]
    while db[outbox.DELIVERIES].find_one()["status"] == outbox.PENDING:
        clock.now = db[outbox.DELIVERIES].find_one()["due_at"]  # the first run after it is due
        run.run_once(bq, db, settings, clock, rng=rng)
        tries_at.append(clock.now)
    delivery = db[outbox.DELIVERIES].find_one()
    assert delivery["status"] == outbox.SET_ASIDE and delivery["last_status"] == 503
    assert delivery["attempts"] == len(hook.received) == len(tries_at)
    gaps = [b - a for a, b in itertools.pairwise(tries_at)]
    assert all(later >= earlier / 2 for earlier, later in itertools.pairwise(gaps))  # backing off
    assert max(gaps) <= settings.retry_max
    assert tries_at[-1] - started < settings.retry_window <= tries_at[-1] - started + settings.retry_max
    assert len({r.webhook_id for r in hook.received}) == 1  # every try the same id
    set_aside = [r for r in caplog.records if getattr(r, "counter", None) == "notify_deliveries_set_aside"]
    assert [(r.last_status, r.attempts, r.reason) for r in set_aside] == [
        (503, delivery["attempts"], "HTTP 503: receiver says no")
    ]
    # Set aside: later runs leave it alone.
    clock.now += 48 * HOUR
    assert run.run_once(bq, db, settings, clock).deliveries == {}


def test_a_slow_receiver_of_one_project_delays_no_other_projects_delivery(world, receivers):
    db, bq, settings = world
    settings = dataclasses.replace(settings, read_timeout=2.0, project_concurrency=1, workers=4)
    clock = Clock()
    slow, fast = receivers(2, delay_seconds=5.0), receivers(3)
    tag = uuid.uuid4().hex[:8]
    add_project(db, f"slow{tag}", webhook=(slow, [events.SITE_DEACTIVATED]))
    add_project(db, f"fast{tag}", webhook=(fast, [events.SITE_DEACTIVATED]))
    for n in range(4):
        deactivated(bq, settings, f"slow{tag}", n, clock.now - HOUR, "other", "")
        deactivated(bq, settings, f"fast{tag}", n, clock.now - HOUR, "other", "")

    started = time.monotonic()
    summary = run.run_once(bq, db, settings, clock)
    took = time.monotonic() - started

    # The slow project's four tries ran one at a time, each cut off by the read timeout...
    assert summary.deliveries == {"sent": 4, "pending": 4} and took >= 4 * settings.read_timeout
    assert all(
        d["last_error"].startswith("ReadTimeoutError") for d in db[outbox.DELIVERIES].find({"project": f"slow{tag}"})
    )
    # ...while the other project's were all delivered before the slow one's first try timed out.
    assert len(fast.received) == 4
    assert max(r.at for r in fast.received) < min(r.at for r in slow.received) + settings.read_timeout


def test_a_run_that_dies_between_sending_and_marking_sends_again_with_the_same_id(world, receivers):
    db, bq, settings = world
    clock = Clock()
    hook = receivers(0)
    tag = uuid.uuid4().hex[:8]
    endpoint = add_project(db, f"crash{tag}", webhook=(hook, [events.SITE_DEACTIVATED]))
    deactivated(bq, settings, f"crash{tag}", 1, clock.now - HOUR, "other", "")
    # A run that finds the event, then dies: it claimed the delivery and sent it, and never marked it.
    settings_no_time = dataclasses.replace(settings, run_budget=timedelta(0))
    assert run.run_once(bq, db, settings_no_time, clock).deliveries == {"left": 1}
    (pending,) = outbox.due(db, clock.now, 10)
    dead_claim = outbox.claim(db, pending["_id"], clock.now)
    event = outbox.event_of(db, pending["event_id"])
    assert webhooks.deliver(event, endpoint, [hook.secret], settings).ok

    clock.now += outbox.CLAIM_LEASE / 2  # the claim holds: nothing is sent
    assert run.run_once(bq, db, settings, clock).deliveries == {}
    clock.now += outbox.CLAIM_LEASE  # the claim lapsed: sent again, with the same id
    assert run.run_once(bq, db, settings, clock).deliveries == {"sent": 1}
    assert [r.webhook_id for r in hook.received] == [event.id, event.id] and hook.unverified == 0
    # The dead run's late mark changes nothing: the newer claim recorded the delivery.
    late = outbox.finish(
        db, dead_claim, outbox.Outcome(False, error="late"), clock.now, HOUR, HOUR, HOUR, random.Random()
    )
    assert late == outbox.SENDING
    assert db[outbox.DELIVERIES].find_one({"_id": pending["_id"]})["status"] == outbox.SENT


def test_a_renderer_that_raises_is_a_failed_try_retried_then_set_aside(world):
    db, bq, settings = world
    clock = Clock()
    tag = uuid.uuid4().hex[:8]
    add_project(db, f"broken{tag}", recipients=[f"ops-{tag}@vendor.example"])
    deactivated(bq, settings, f"broken{tag}", 1, clock.now - HOUR, "other", "")

    def broken(event, project):
        raise RuntimeError("no template for this")

    renderers = {events.SITE_DEACTIVATED: broken}
    assert run.run_once(bq, db, settings, clock, renderers=renderers).deliveries == {"pending": 1}
    assert db[outbox.DELIVERIES].find_one()["last_error"] == "RuntimeError: no template for this"
    clock.now += settings.retry_window
    assert run.run_once(bq, db, settings, clock, renderers=renderers).deliveries == {"set_aside": 1}
    assert mails_to(f"ops-{tag}@vendor.example") == []


# --- the daily cap of site events ---


def deactivations_at(bq, settings, project_hash: str, times: list[datetime], first: int = 0) -> list[str]:
    """Deactivation rows of sites first..first+len-1, one at each time, inserted in one request."""
    rows = [
        {"hash": project_hash, "url": f"https://site{first + n}.example", "site": f"Site {first + n}",
         "reason_id": "other", "reason_known": True, "reason_info": "", "project_version": "2.1.0",
         "ping_id": f"ping-{uuid.uuid4().hex}", "received_at": at.isoformat()}
        for n, at in enumerate(times)
    ]  # fmt: skip
    assert bq.insert_rows_json(f"{bq.project}.{settings.dataset}.deactivations", rows) == []
    return [row["ping_id"] for row in rows]


def held_back_counts(caplog) -> list[tuple[str, int]]:
    return [
        (r.project, r.count)
        for r in caplog.records
        if getattr(r, "counter", None) == site_events.HELD_BACK_COUNTER and r.reason == site_events.HELD_BACK_REASON
    ]


def a_clock_inside_a_day() -> tuple[Clock, datetime]:
    """The run's clock, at least an hour into its UTC day (the flood below fits in that hour), and the day's start."""
    clock = Clock()
    midnight = clock.now.replace(hour=0, minute=0, second=0)
    clock.now = max(clock.now, midnight + HOUR)
    return clock, midnight


def test_a_flood_of_deactivations_sends_the_cap_and_one_summary_while_another_project_gets_every_alert(
    world, receivers, caplog
):
    db, bq, settings = world
    cap = 5
    settings = dataclasses.replace(settings, max_site_events_per_day=cap)
    clock, midnight = a_clock_inside_a_day()
    day = midnight.date().isoformat()
    hook = receivers(4)
    tag = uuid.uuid4().hex[:8]
    flooded, calm = f"flood{tag}", f"calm{tag}"
    ops, calm_ops = f"ops-{tag}@vendor.example", f"calm-{tag}@vendor.example"
    add_project(db, flooded, recipients=[ops], webhook=(hook, [events.SITE_DEACTIVATED]))
    add_project(db, calm, recipients=[calm_ops])
    # 12 forged deactivations of the flooded project in the day's first minutes, 3 real ones of the other.
    flood = deactivations_at(bq, settings, flooded, [midnight + n * time_minute() for n in range(1, 13)])
    deactivations_at(bq, settings, calm, [midnight + n * time_minute() for n in range(1, 4)], first=100)

    first = run.run_once(bq, db, settings, clock)
    assert first.failed_producers == [] and first.site_events_held_back == 12 - cap

    # The flooded project: its first `cap` deactivations one by one, then one summary, by mail and by webhook.
    individual = sorted(events.event_id(events.SITE_DEACTIVATED, ping) for ping in flood[:cap])
    summary_id = events.event_id(events.SITE_DEACTIVATED_OVERFLOW, flooded, day)
    mails = mails_to(ops)
    assert sorted(m["X-Telemetry-Event-Id"] for m in mails) == sorted([*individual, summary_id])
    (summary_mail,) = [m for m in mails if m["X-Telemetry-Event-Id"] == summary_id]
    # The sent header is right: a subject that fits on a line of its own, not after `Subject: `, is
    # folded before it. Python before 3.12.8 parses such a fold back with a leading space
    # (python/cpython gh-124452); mail clients unfold it away.
    assert summary_mail["Subject"].lstrip() == f"Project {flooded}: 7 more deactivations on {day}, see the dashboard"
    assert f"GET /v1/projects/{flooded}/deactivations" in summary_mail.get_body(("plain",)).get_content()
    assert hook.unverified == 0
    assert sorted(r.webhook_id for r in hook.received if r.type == events.SITE_DEACTIVATED) == individual
    (posted,) = [r for r in hook.received if r.type == events.SITE_DEACTIVATED_OVERFLOW]
    assert posted.webhook_id == summary_id
    assert (posted.data["day"], posted.data["cap"], posted.data["held_back"]) == (day, cap, 12 - cap)
    # The other project's alerts all arrive.
    assert len(mails_to(calm_ops)) == 3
    assert held_back_counts(caplog) == [(flooded, 12 - cap)]

    # An hour later: 4 more forged ones, one committed late that ranks first of the day, and a real one of
    # the other project. Nothing new for the flooded project (no send past the cap, no second summary);
    # the counter counts the 5 newly held back.
    caplog.clear()
    clock.now += HOUR
    deactivations_at(bq, settings, flooded, [midnight + n * time_minute() for n in range(20, 24)], first=20)
    deactivations_at(bq, settings, flooded, [midnight], first=30)
    deactivations_at(bq, settings, calm, [midnight + 30 * time_minute()], first=103)
    second = run.run_once(bq, db, settings, clock)
    assert second.events_new == 1 and second.deliveries == {"sent": 1}
    assert len(mails_to(ops)) == cap + 1 and len(hook.received) == cap + 1
    assert len(mails_to(calm_ops)) == 4
    assert held_back_counts(caplog) == [(flooded, 5)]
    stored = db[outbox.EVENTS].find_one({"_id": summary_id})
    assert stored["data"]["held_back"] == 12 - cap and stored["held_back_counted"] == 17 - cap

    # A re-run over the same window sends nothing and counts nothing again.
    caplog.clear()
    again = run.run_once(bq, db, settings, clock)
    assert (again.events_new, again.deliveries_created, again.deliveries, again.site_events_held_back) == (0, 0, {}, 0)
    assert held_back_counts(caplog) == []
    assert len(mails_to(ops)) == cap + 1 and len(hook.received) == cap + 1 and len(mails_to(calm_ops)) == 4


def test_a_flood_of_new_sites_posts_the_cap_and_one_summary_and_nobody_listening_gets_no_event(world, receivers):
    db, bq, settings = world
    cap = 3
    settings = dataclasses.replace(settings, max_site_events_per_day=cap)
    clock, midnight = a_clock_inside_a_day()
    hook = receivers(5)
    tag = uuid.uuid4().hex[:8]
    flooded, unheard = f"newflood{tag}", f"unheard{tag}"
    add_project(db, flooded, webhook=(hook, [events.SITE_ACTIVATED]))
    add_project(db, unheard, recipients=[f"ops-{tag}@vendor.example"])  # alerts only: site.activated is not mailed
    for n in range(8):
        first_ping(db, flooded, f"https://new{n}.example", midnight + (n + 1) * time_minute())
        first_ping(db, unheard, f"https://new{n}.example", midnight + (n + 1) * time_minute())

    for _ in range(2):
        summary = run.run_once(bq, db, settings, clock)
        clock.now += HOUR

    assert hook.unverified == 0
    assert sorted(r.data["url"] for r in hook.received if r.type == events.SITE_ACTIVATED) == [
        f"https://new{n}.example" for n in range(cap)
    ]
    (posted,) = [r for r in hook.received if r.type == events.SITE_ACTIVATED_OVERFLOW]
    assert posted.data["held_back"] == 8 - cap and posted.data["list_path"] == f"/v1/projects/{flooded}/sites"
    assert len(hook.received) == cap + 1 and summary.events_new == 0
    assert db[outbox.EVENTS].count_documents({"project": unheard}) == 0


def test_a_run_walks_new_sites_per_project_on_their_index_and_drops_the_former_one(world):
    db, bq, settings = world
    db["sites"].create_index([("first_seen", 1)], name=sites.FORMER_FIRST_SEEN_INDEX)  # as an older notify made it
    run.run_once(bq, db, settings, Clock())
    indexes = db["sites"].index_information()
    assert indexes[sites.SITES_BY_FIRST_SEEN]["key"] == [("hash", 1), ("first_seen", 1), ("url", 1)]
    assert sites.FORMER_FIRST_SEEN_INDEX not in indexes
    query = {"hash": "p", "first_seen": {"$gte": datetime(2026, 12, 1, tzinfo=UTC)}}
    plan = db["sites"].find(query).sort([("first_seen", 1), ("url", 1)]).limit(3).explain()["queryPlanner"]
    assert sites.SITES_BY_FIRST_SEEN in str(plan["winningPlan"])  # an IXSCAN of it (SecantusDB sorts above it)


# --- where the signing secrets live (telemetry/common/webhook_secrets.py) ---


@pytest.fixture
def admin_env(world, monkeypatch):
    """telemetry-admin against the test's own database, webhooks to the local receivers allowed."""
    db, _, _ = world
    monkeypatch.setenv("MONGODB_DB", db.name)
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_WEBHOOKS", "1")
    return db


def admin_output(capsys, *argv: str) -> list[str]:
    capsys.readouterr()
    assert admin.main(list(argv)) == 0
    return capsys.readouterr().out.splitlines()


def test_an_added_webhook_is_signed_with_its_secret_kept_apart_from_the_project(world, receivers, admin_env, capsys):
    db, bq, settings = world
    clock = Clock()
    hook = receivers(0)
    project_hash = f"apart{uuid.uuid4().hex[:8]}"
    admin_output(capsys, "project", "add", "--name", "Apart", "--hash", project_hash)
    out = admin_output(
        capsys, "webhook", "add", "--project", project_hash, "--url", hook.url, "--event", "site.deactivated"
    )
    hook.secret = out[-1]
    (endpoint,) = projects.webhook_endpoints(projects.load_project(db, project_hash))
    # The secret is in `webhook_secrets` only: nowhere in the project's whole document.
    stored = db[projects.PROJECTS].find_one({"hash": project_hash})
    assert "whsec_" not in repr(stored) and set(stored["webhooks"][0]) == {"id", "url", "events"}
    held = db[webhook_secrets.WEBHOOK_SECRETS].find_one({"project": project_hash, "endpoint": endpoint["id"]})
    assert held["secret"] == hook.secret and hook.secret.startswith("whsec_")

    deactivated(bq, settings, project_hash, 1, clock.now - HOUR, "other", "")
    assert run.run_once(bq, db, settings, clock).deliveries == {"sent": 1}
    assert hook.unverified == 0 and [r.type for r in hook.received] == [events.SITE_DEACTIVATED]


def test_after_a_rotation_both_secrets_sign_for_24_hours_then_only_the_new_one(world, receivers, admin_env, capsys):
    db, bq, settings = world
    clock = Clock()
    old_side, new_side = receivers(0), receivers(1)  # the same deliveries, each verifying with one secret
    project_hash = f"rotate{uuid.uuid4().hex[:8]}"
    admin_output(capsys, "project", "add", "--name", "Rotating", "--hash", project_hash)
    for hook in (old_side, new_side):
        out = admin_output(
            capsys, "webhook", "add", "--project", project_hash, "--url", hook.url, "--event", "site.deactivated"
        )
        hook.secret = out[-1]
    endpoints = projects.webhook_endpoints(projects.load_project(db, project_hash))
    rotated = {}
    for endpoint, hook in zip(endpoints, (old_side, new_side), strict=True):
        rotated[hook.port] = admin_output(
            capsys, "webhook", "rotate-secret", "--project", project_hash, endpoint["id"]
        )[-1]
        held = webhook_secrets.load(db, project_hash, endpoint["id"])
        assert (held["secret"], held["previous_secret"]) == (rotated[hook.port], hook.secret)
    new_side.secret = rotated[new_side.port]  # this receiver switched at once; the other one did not yet
    assert "whsec_" not in repr(db[projects.PROJECTS].find_one({"hash": project_hash}))

    deactivated(bq, settings, project_hash, 1, clock.now - HOUR, "other", "")
    assert run.run_once(bq, db, settings, clock).deliveries == {"sent": 2}
    assert (len(old_side.received), len(new_side.received), old_side.unverified, new_side.unverified) == (1, 1, 0, 0)

    # 23 hours on (the run's clock): the old secret still signs.
    clock.now += 23 * HOUR
    deactivated(bq, settings, project_hash, 2, clock.now - HOUR, "other", "")
    assert run.run_once(bq, db, settings, clock).deliveries == {"sent": 2}
    assert (len(old_side.received), old_side.unverified) == (2, 0)

    # 25 hours on: only the new one; a receiver still on the old one refuses the delivery.
    clock.now += 2 * HOUR
    deactivated(bq, settings, project_hash, 3, clock.now - HOUR, "other", "")
    assert run.run_once(bq, db, settings, clock).deliveries == {"sent": 1, "pending": 1}
    assert (len(old_side.received), old_side.unverified) == (2, 1)
    assert (len(new_side.received), new_side.unverified) == (3, 0)


def test_an_endpoint_without_a_secret_is_never_posted_and_is_set_aside_with_the_reason(world, receivers):
    db, bq, settings = world
    clock = Clock()
    hook = receivers(0)
    project_hash = f"nosecret{uuid.uuid4().hex[:8]}"
    endpoint = add_project(db, project_hash, webhook=(hook, [events.SITE_DEACTIVATED]))
    assert webhook_secrets.delete(db, project_hash, endpoint["id"]) == 1
    deactivated(bq, settings, project_hash, 1, clock.now - HOUR, "other", "")

    assert run.run_once(bq, db, settings, clock).deliveries == {"pending": 1}
    while db[outbox.DELIVERIES].find_one()["status"] == outbox.PENDING:
        clock.now = db[outbox.DELIVERIES].find_one()["due_at"]
        run.run_once(bq, db, settings, clock)
    delivery = db[outbox.DELIVERIES].find_one()
    assert delivery["status"] == outbox.SET_ASIDE and "no signing secret for webhook" in delivery["last_error"]
    assert hook.received == [] and hook.unverified == 0  # nothing was ever posted


def test_migrating_an_older_releases_project_document_moves_its_secrets(world, receivers, admin_env, capsys):
    db, bq, settings = world
    clock = Clock()
    hook = receivers(0)
    hook.secret, previous = webhook_secrets.new_secret(), webhook_secrets.new_secret()
    project_hash, other_hash = f"legacy{uuid.uuid4().hex[:8]}", f"legacy{uuid.uuid4().hex[:8]}"
    until = clock.now + HOUR  # whole seconds: MongoDB keeps milliseconds
    # As an older release stored them: the secrets inside each endpoint of the project document.
    for h, endpoint_id in ((project_hash, "wh_0123456789abcdef"), (other_hash, "wh_fedcba9876543210")):
        db[projects.PROJECTS].insert_one({
            "hash": h, "name": "Legacy", "type": "plugin",
            "webhooks": [{"id": endpoint_id, "url": hook.url, "secret": hook.secret, "previous_secret": previous,
                          "previous_secret_until": until, "events": ["site.deactivated"]}],
        })  # fmt: skip
    # Before the migration: no reader returns the secrets, no writer drops them, and nothing is posted.
    assert "whsec_" not in repr(projects.load_projects(db, [project_hash, other_hash]))
    with pytest.raises(projects.InvalidProject, match="migrate-secrets"):
        projects.save_project(db, projects.load_project(db, project_hash))
    deactivated(bq, settings, project_hash, 1, clock.now - HOUR, "other", "")
    assert run.run_once(bq, db, settings, clock).deliveries == {"pending": 1}
    assert hook.received == [] and hook.unverified == 0

    # A command that changes one project moves that project's secrets first.
    admin_output(capsys, "digest", "set", "--project", other_hash, "weekly")
    assert "whsec_" not in repr(db[projects.PROJECTS].find_one({"hash": other_hash}))
    assert webhook_secrets.load(db, other_hash, "wh_fedcba9876543210")["secret"] == hook.secret

    out = admin_output(capsys, "webhook", "migrate-secrets")
    assert out == [
        "webhook secrets: 1 moved to webhook_secrets, 0 already there; 1 project documents cleared of secrets"
    ]
    stored = db[projects.PROJECTS].find_one({"hash": project_hash})
    assert "whsec_" not in repr(stored) and stored["webhooks"][0]["url"] == hook.url
    held = webhook_secrets.load(db, project_hash, "wh_0123456789abcdef")
    assert (held["secret"], held["previous_secret"]) == (hook.secret, previous)
    assert held["previous_secret_until"] == until
    # Idempotent: a second run finds nothing to move.
    again = admin_output(capsys, "webhook", "migrate-secrets")
    assert again == [
        "webhook secrets: 0 moved to webhook_secrets, 0 already there; 0 project documents cleared of secrets"
    ]

    # The delivery that waited is signed with the moved secret at its next try.
    clock.now = db[outbox.DELIVERIES].find_one()["due_at"]
    assert run.run_once(bq, db, settings, clock).deliveries == {"sent": 1}
    assert hook.unverified == 0 and len(hook.received) == 1
