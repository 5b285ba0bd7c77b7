"""End-to-end demo on a local stack of its own (`make demo` starts it in
.local/demo, wiped first, and stops it afterwards).

1. Adds three projects: SEO Toolkit (a plugin with a custom field and a
   MailChimp integration), Forms Pro (a plugin) and Aurora Theme (a theme).
2. Writes the 30 days before today as raw pings into their hour folders:
   about 2,000 sites with real-world shares, pinging weekly, some stopping,
   deactivating or declining to share (telemetry/local/population.py). Each
   backdated envelope is marked synthetic.
3. Posts a few hundred live pings through $INGEST_URL, as the WordPress client
   library encodes them, invalid ones among them.
4. Runs the pipelines: a backfill over the month's hours, then notification
   mode for the live pings (the month's own notifications come too: the MERGE
   keeps each ping once).
5. Runs the analytics job over the month, and prints a summary per project
   from the serving copy, and the spike alerts of the month's days
   (telemetry/notify/spike.py: SEO Toolkit's 3.3.0 breaks sites mid-month).
6. Runs notify once (telemetry/notify/run.py) and prints what it sent per event
   type, from its outbox and from the local SMTP relay's mailbox.
7. Writes the vendor's report, out/report.html, checks it in headless Chromium
   and saves out/report.png.

Seeded, and anchored on today's date: a second run the same day prints the same figures.
"""

from __future__ import annotations

import http.server
import json
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path
from typing import ClassVar

import requests

from telemetry.analytics import job as analytics
from telemetry.analytics import metrics
from telemetry.common import cloud, config, mongo, progress, wire
from telemetry.common.projects import alert_recipients, load_project, save_project, with_alerts
from telemetry.common.stored_ping import StoredPing
from telemetry.ingest.object_writer import ObjectWriter
from telemetry.ingest.settings import IngestSettings
from telemetry.local import population, smtp_server, stack
from telemetry.local.samples import http_build_query
from telemetry.notify import events, figures_ready, outbox, spike
from telemetry.notify import run as notify
from telemetry.notify.contract import CollectContext
from telemetry.notify.settings import NotifySettings
from telemetry.pipelines import build, reconciliation
from telemetry.report import browser
from telemetry.report import page as report

SEED = 2026
FORM = "application/x-www-form-urlencoded; charset=UTF-8"
OUT = Path(__file__).resolve().parents[1] / "out"
LIVE_TRACK, LIVE_NEW, LIVE_DEACTIVATE, LIVE_SKIPPED = 240, 30, 20, 12
UNKNOWN_PROJECT = "0000000000000000000000000000dead"
BAD_REQUESTS = [
    ("track", "url=https%3A%2F%2Fno-hash.example.org", FORM),
    ("track", f"hash={population.PROJECTS[0].hash}&url=not-a-url", FORM),
    ("track", f"hash={population.PROJECTS[0].hash}&url=javascript%3Aalert(1)", FORM),
    ("deactivate", f"hash={population.PROJECTS[0].hash}&url=https%3A%2F%2Fx.org&extra[%24where]=1", FORM),
    ("tracking-skipped", "{not json", "application/json"),
    ("tracking-skipped", "hash=abc", "text/plain"),
    ("track", "a" * 300_000, FORM),
    ("track", "&".join(f"k{i}=1" for i in range(3000)), FORM),
]


class MailApiStandIn(http.server.BaseHTTPRequestHandler):
    """Plays the dashboard's API (no local stand-in exists): records each subscribe call."""

    calls: ClassVar[list[dict]] = []

    def do_POST(self):
        type(self).calls.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


class Step:
    """Prints a step's title, then its time when it ends."""

    number = 0

    def __init__(self, title: str):
        Step.number += 1
        self.title = title

    def __enter__(self):
        print(f"\n[{Step.number}] {self.title}", flush=True)
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            print(f"    done in {time.monotonic() - self.started:.1f} s", flush=True)


def as_stored(ping: population.Ping) -> StoredPing:
    """The envelope ingest would have written for this ping, marked synthetic."""
    raw = http_build_query(ping.body)
    payload = wire.parse_body(raw.encode(), "application/x-www-form-urlencoded", "utf-8", LIMITS)
    return StoredPing(
        id=ping.id,
        route=ping.route,
        received_at=ping.received_at,
        payload=payload,
        user_agent=f"WordPress/7.1; {ping.body.get('url', 'https://example.org')}",
        content_type=FORM,
        client_ip="198.51.100.1",
        raw=raw,
        synthetic=True,
    )


LIMITS = IngestSettings.from_env().limits


def write_month(month: population.Month) -> None:
    writer = ObjectWriter(replace(IngestSettings.from_env(), storage_attempts=5))
    envelopes = [as_stored(ping) for ping in month.pings]
    with ThreadPoolExecutor(max_workers=4) as pool:  # the writer's pool holds 10 connections
        written = pool.map(lambda e: writer.put(e.object_name, e.to_json()), envelopes)
        for _ in progress.track(written, "demo: wrote", "objects", total=len(envelopes)):
            pass
    routes = Counter(e.route for e in envelopes)
    print(f"    {', '.join(f'{r} {n}' for r, n in sorted(routes.items()))}; first {month.start:%Y-%m-%d %H:%M} UTC")


def post_live(month: population.Month, ingest_url: str) -> Counter:
    rng = random.Random(SEED)
    now = datetime.now(UTC)
    sites = rng.sample(month.sites_still_sharing, LIVE_TRACK + LIVE_DEACTIVATE)
    pings = [("track", site.track(now, month.start)) for site in sites[:LIVE_TRACK]]
    pings += [("deactivate", site.deactivate(now, month.start)) for site in sites[LIVE_TRACK:]]
    for n in range(LIVE_NEW):  # installed today, and the admin agreed to share
        project = population.PROJECTS[n % len(population.PROJECTS)]
        site = population.Site(project, project.sites + n, random.Random(rng.random()))
        pings.append(("track", site.track(now, month.start)))
    for n in range(LIVE_SKIPPED):  # installed today, and the admin declined
        project = population.PROJECTS[n % len(population.PROJECTS)]
        pings.append(("tracking-skipped", {"hash": project.hash, "previously_skipped": "false", "client": "2.0.4"}))
    stranger = dict(pings[0][1], hash=UNKNOWN_PROJECT)  # accepted by ingest, set aside by the pipeline
    odd_reason = dict(pings[LIVE_TRACK][1], reason_id="no such reason!")  # not a slug: invalid_reason
    pings += [("track", stranger), ("deactivate", odd_reason)]
    rng.shuffle(pings)

    answers: Counter = Counter()
    with requests.Session() as session:
        for route, body in progress.track(pings, "demo: posted", "pings"):
            response = session.post(
                ingest_url + route,
                data=http_build_query(body),
                headers={"Content-Type": FORM, "User-Agent": f"WordPress/7.1; {body.get('url', '')}"},
                timeout=30,
            )
            answers[(route, response.status_code)] += 1
        for route, body, content_type in BAD_REQUESTS:
            response = session.post(ingest_url + route, data=body, headers={"Content-Type": content_type}, timeout=30)
            answers[(route, response.status_code)] += 1
            print(f"    bad request to {route:16} -> {response.status_code} {response.json()['error']}")
    for (route, status), count in sorted(answers.items()):
        print(f"    {route:16} HTTP {status}: {count}")
    return answers


# The demo processes a month of new sites within one real hour; in production they
# arrive over the month, well within the hourly bound on contacts per project.
DEMO_MAIL_CONTACTS_PER_PROJECT_HOUR = "100000"


def run_pipelines(mail_api_url: str, *hours: str) -> None:
    for name in build.PIPELINES:
        print(f"    {name} pipeline running ...", flush=True)
        mail = ["--mail_api_url", mail_api_url, "--mail_contacts_per_project_hour", DEMO_MAIL_CONTACTS_PER_PROJECT_HOUR]
        pipeline, result, _ = build.run([name, "--runner", build.LOCAL_RUNNER, *mail, *hours])
        report_text = reconciliation.format_report(reconciliation.report_from_metrics(pipeline, result))
        print("    " + report_text.replace("\n", "\n    "))


def project_summary(project: population.DemoProject, docs: dict[tuple[str, str], dict], today: str) -> list[str]:
    """A few lines of one project's figures, from its serving documents by (metric, day)."""

    def total(metric: str) -> int:
        return sum(d.get("value") or 0 for (m, _), d in docs.items() if m == metric)

    def top(metric: str, n: int = 3) -> str:
        breakdown = docs.get((metric, today), {}).get("breakdown", {})
        count = sum(breakdown.values()) or 1
        leaders = sorted(breakdown.items(), key=lambda item: -item[1])[:n]
        return ", ".join(f"{label} {100 * c / count:.0f}%" for label, c in leaders)

    reasons: Counter = Counter()
    for (metric, _), d in docs.items():
        if metric == "deactivation_reasons":
            reasons.update(d["breakdown"])
    rates = [d["value"] for (m, _), d in docs.items() if m == "opt_in_rate" and d.get("value") is not None]
    mean_rate = 100 * sum(rates) / max(len(rates), 1)
    return [
        f"  {project.name} ({project.type}, {project.hash})",
        f"    active sites today {docs.get(('active_sites', today), {}).get('value')}, "
        f"new sites over the month {total('new_sites')}, deactivations {total('deactivations')}, "
        f"mean daily opt-in rate {mean_rate:.0f}%",
        f"    top reasons: {', '.join(f'{r} {n}' for r, n in reasons.most_common(3))}",
        f"    WordPress: {top('wp_version')}; PHP: {top('php_version')}",
        f"    database: {top('mysql_version', 4)}; server: {top('server_software')}",
        f"    version of {project.name}: {top('project_version')}",
    ]


def summary(db, today: str) -> list[str]:
    lines = []
    for project in population.PROJECTS:
        documents = db[metrics.COLLECTION].find({"hash": project.hash}, {"_id": 0})
        lines += project_summary(project, {(d["metric"], d["day"]): d for d in documents}, today)
    return lines


def spike_alerts(db, month: population.Month) -> list[str]:
    """The spike alerts of every final day of the month (a notify run checks only the last few), one line each."""
    settings = NotifySettings.from_env()
    context = CollectContext(
        bigquery=cloud.bigquery_client(settings.project),
        db=db,
        dataset=settings.dataset,
        projects={p.hash: p.document() for p in population.PROJECTS},
        since=month.start,
        until=datetime.now(UTC),
        max_bytes_billed=settings.max_bytes_billed,
        bigquery_timeout_seconds=settings.bigquery_timeout_seconds,
        max_site_events_per_day=settings.max_site_events_per_day,
    )
    final = figures_ready.final_through(context)
    first = month.start.date()
    days = [first + timedelta(days=n) for n in range((final - first).days + 1)] if final else []
    names = {p.hash: p.name for p in population.PROJECTS}
    lines = []
    for alert in spike.alerts(context, days):
        d = alert.data
        lines.append(
            f"    {names[alert.project]} {d['day']}: {d['deactivations']} deactivations over a trailing mean of "
            f"{d['trailing_mean']:.1f} (bar {d['threshold']:.1f}); version "
            + ", ".join(f"{v['version']} {v['excess']:+.0f}" for v in d["versions"])
            + "; reasons "
            + ", ".join(f"{r['reason']} {r['excess']:+.0f}" for r in d["reasons"])
        )
    return lines or ["    none"]


def fill(db, ingest_url: str) -> Counter:
    """Steps 1 to 5: the projects, the month of pings, the live pings, the pipelines, the analytics job;
    prints the summary. Returns the live pings' answers by (route, HTTP status). `make dashboard` runs it too."""
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)

    with Step("three projects in MongoDB `projects`"):
        for project in population.PROJECTS:
            save_project(db, project.document())
            print(f"    {project.name} ({project.type}, {project.hash}), {project.sites} sites")

    with Step(f"{population.HISTORY_DAYS} days of history as raw pings in their hour folders (synthetic)"):
        month = population.month(SEED, end=today)
        write_month(month)

    with Step(f"live pings through {ingest_url}, invalid ones among them"):
        answers = post_live(month, ingest_url)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MailApiStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mail_api_url = f"http://127.0.0.1:{server.server_address[1]}/subscribe"
    last_hour = today - timedelta(hours=1)
    with Step(f"pipelines, backfill: every hour from {month.start:%Y-%m-%d} to {last_hour:%Y-%m-%d %H}:00"):
        run_pipelines(mail_api_url, "--hour", f"{month.start:%Y-%m-%dT%H}", "--hour_to", f"{last_hour:%Y-%m-%dT%H}")
    with Step("pipelines, notification mode: the live pings (and the month's notifications, kept once)"):
        run_pipelines(mail_api_url)
    server.shutdown()
    contacts = sum(len(call["contacts"]) for call in MailApiStandIn.calls)
    print(f"    mail integration: {len(MailApiStandIn.calls)} calls to the dashboard API, {contacts} new contacts")

    with Step("analytics job over the month"):
        job = analytics.AnalyticsJob(
            cloud.bigquery_client(config.require("GCP_PROJECT")), db, analytics.AnalyticsSettings.from_env()
        )
        result = job.run(datetime.now(UTC), since=month.start.date())
        print(f"    {len(result.days)} days, {result.documents} documents in MongoDB `{metrics.COLLECTION}`")

    print("\nsummary (from the serving copy, as the dashboard reads it):")
    print("\n".join(summary(db, now.strftime(metrics.DAY_FORMAT))))
    print('\nspike alerts over the month, every day checked (docs/notify.md, "Spike alert"):')
    print("\n".join(spike_alerts(db, month)))
    return answers


def main() -> int:
    progress.keep_lines()  # `make demo` quiets the logs (LOG_LEVEL=WARNING), not its progress
    ingest_url = config.require("INGEST_URL")
    db = mongo.database(config.require("MONGODB_URI"), config.require("MONGODB_DB"))
    answers = fill(db, ingest_url)

    with Step("notify, one run: alerts and webhooks from what the pipelines committed (the last day)"):
        for project in population.PROJECTS:  # each vendor's alert recipient, where it has none
            stored = load_project(db, project.hash)
            if not alert_recipients(stored):
                save_project(db, with_alerts(stored, [f"alerts@{project.hash[:8]}.example"]))
        notify.run_once(cloud.bigquery_client(config.require("GCP_PROJECT")), db, NotifySettings.from_env())
        tally = outbox.tally(db)
        print(f"    events: {', '.join(f'{t} {n}' for t, n in sorted(tally['events'].items())) or 'none'}")
        for (kind, channel, status), n in sorted(tally["deliveries"].items()):
            print(f"    {kind} by {channel}: {n} {status}")
        mails = Counter(m["X-Telemetry-Event-Type"] for m in smtp_server.received(stack.SMTP_DIR))
        print(f"    SMTP relay's mailbox: {', '.join(f'{t} {n}' for t, n in sorted(mails.items())) or 'empty'}")
        for message in smtp_server.received(stack.SMTP_DIR):  # the digests and spike alerts, by subject
            if message["X-Telemetry-Event-Type"] in (events.DIGEST, events.DEACTIVATION_SPIKE):
                print(f"    {' '.join(str(make_header(decode_header(message['Subject']))).split())}")

    with Step("the vendor's report"):
        OUT.mkdir(exist_ok=True)
        html_path = report.write(db, OUT / "report.html", hashes=[p.hash for p in population.PROJECTS])
        print(f"    {html_path} ({html_path.stat().st_size // 1024} KiB)")
        check = browser.check_and_screenshot(html_path, OUT / "report.png")
        print(f"    headless Chromium: {check.summary()}")
    db.client.close()
    accepted = sum(n for (_, status), n in answers.items() if status == 200)
    refused = sum(n for (_, status), n in answers.items() if 400 <= status < 500)
    sent = LIVE_TRACK + LIVE_NEW + LIVE_DEACTIVATE + LIVE_SKIPPED + 2
    ok = check.ok and accepted == sent and refused == len(BAD_REQUESTS)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
