"""End-to-end demo on the local stack (run by `make demo`, which starts and stops the stack).

1. Adds two projects to MongoDB `projects` (one with a MailChimp integration).
2. Posts a realistic hour of pings from their sites, as the WordPress client
   library encodes them, plus a few bad requests, and shows what landed in
   Cloud Storage and the notifications Pub/Sub delivered.
3. Runs both hourly pipelines and shows the latest state in MongoDB, the
   history in BigQuery, the rejected records, a site title as WordPress sent
   it (HTML-escaped) beside the decoded one the dashboard reads, the plugin
   authors' own deactivation reasons, and the mail integration's calls
   (received by a small HTTP server standing in for the dashboard's API).
4. Runs the pipelines again: nothing new is read, nothing changes.
"""

from __future__ import annotations

import http.server
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter
from typing import ClassVar

import requests

from telemetry.common import cloud, config, stored_ping
from telemetry.common.wire import ROUTES
from telemetry.local.samples import (
    deactivate_payload,
    http_build_query,
    project_hash,
    track_payload,
    tracking_skipped_payload,
)
from telemetry.pipelines import build, mongodb

FORM = "application/x-www-form-urlencoded; charset=UTF-8"

UNKNOWN_PROJECT = project_hash("not-a-customer")
BAD_REQUESTS = [
    ("track", "url=https%3A%2F%2Fno-hash.example.org", FORM),
    ("track", f"hash={project_hash('demo-seo')}&url=not-a-url", FORM),
    ("deactivate", f"hash={project_hash('demo-seo')}&url=https%3A%2F%2Fx.org&extra[%24where]=1", FORM),
    ("tracking-skipped", "{not json", "application/json"),
]


class MailApiStandIn(http.server.BaseHTTPRequestHandler):
    """Plays the dashboard's API server: records each subscribe call."""

    calls: ClassVar[list[dict]] = []

    def do_POST(self):
        type(self).calls.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def add_projects(db) -> list[str]:
    seo, forms = project_hash("demo-seo"), project_hash("demo-forms")
    db[mongodb.PROJECTS].replace_one(
        {"hash": seo},
        {
            "hash": seo,
            "name": "SEO Toolkit",
            "type": "plugin",
            "custom_fields": ["license_type"],
            "mail_integrations": {"mailchimp": {"enabled": True, "list_id": "demo-list"}},
            "deactivation_reasons": {"too-expensive": "It is too expensive"},
        },
        upsert=True,
    )
    db[mongodb.PROJECTS].replace_one(
        {"hash": forms},
        {
            "hash": forms,
            "name": "Forms Pro",
            "type": "plugin",
            "custom_fields": ["orders_count"],
            "mail_integrations": {},
        },
        upsert=True,
    )
    print(f"projects: SEO Toolkit ({seo}, MailChimp), Forms Pro ({forms})")
    return [seo, forms]


def run_pipelines(mail_api_url: str) -> None:
    for name in build.PIPELINES:
        pipeline, result, _ = build.run([name, "--runner", build.LOCAL_RUNNER, "--mail_api_url", mail_api_url])
        print(build.format_report(build.report_from_metrics(pipeline, result)))


def show_what_real_sites_send(db, bucket, projects: list[str]) -> None:
    """One title WordPress sent HTML-escaped, as sent and as stored; the plugin authors' own reasons."""
    escaped = db[mongodb.SITES].find_one({"hash": {"$in": projects}, "site": {"$regex": "[&\"']"}})
    if escaped:
        route = "track" if escaped["status"] == "active" else "deactivate"
        blob = bucket.blob(stored_ping.object_name(route, escaped["received_at"], escaped["ping_id"]))
        if blob.exists():
            sent = json.loads(blob.download_as_bytes())["payload"]["site"]
            print(f"  a title as the site sent it: {sent!r}; as MongoDB and BigQuery hold it: {escaped['site']!r}")
    custom = db[mongodb.DEACTIVATIONS].distinct("reason_id", {"hash": {"$in": projects}, "reason_known": False})
    if custom:
        print(f"  deactivation reasons neither the client nor the project lists, kept: {', '.join(sorted(custom))}")


def show_results(db, projects: list[str]) -> None:
    bq = cloud.bigquery_client(config.require("GCP_PROJECT"))
    dataset = config.require("BQ_DATASET")
    for project_hash_ in projects:
        name = db[mongodb.PROJECTS].find_one({"hash": project_hash_})["name"]
        sites = db[mongodb.SITES]
        active = sites.count_documents({"hash": project_hash_, "status": "active"})
        deactivated = sites.count_documents({"hash": project_hash_, "status": "deactivated"})
        print(
            f"  MongoDB sites of {name}: {active} active, {deactivated} deactivated; "
            f"deactivations: {db[mongodb.DEACTIVATIONS].count_documents({'hash': project_hash_})}"
        )
    newest = db[mongodb.SITES].find({"hash": projects[0]}, {"_id": 0}).sort("last_seen", -1).limit(1)[0]
    shown = {
        k: newest[k]
        for k in (
            "url",
            "site",
            "wp_version",
            "php_version",
            "users_total",
            "multisite",
            "custom_fields",
            "status",
            "first_seen",
            "last_seen",
            "mail",
        )
    }
    print("  newest site document (some fields):")
    print("   ", json.dumps(shown, default=str, ensure_ascii=False))
    for table in ("sites", "deactivations", "tracking_skipped", "rejected"):
        count = next(iter(bq.query(f"SELECT COUNT(*) FROM `{bq.project}.{dataset}.{table}`").result()))[0]
        print(f"  BigQuery {dataset}.{table}: {count} rows")
    reasons = bq.query(
        f"SELECT reason, COUNT(*) n FROM `{bq.project}.{dataset}.rejected` GROUP BY reason ORDER BY reason"
    )
    print("  rejected by reason: " + ", ".join(f"{r['reason']} {r['n']}" for r in reasons.result()))


def main() -> int:
    ingest_url = config.require("INGEST_URL")
    project, topic = config.require("GCP_PROJECT"), config.require("PINGS_TOPIC")
    rng = random.Random(2026)
    db = mongodb.database(config.require("MONGODB_URI"), config.require("MONGODB_DB"))
    projects = add_projects(db)

    subscriber = cloud.pubsub_subscriber()
    watch = subscriber.subscription_path(project, f"demo-{uuid.uuid4().hex[:8]}")
    subscriber.create_subscription(request={"name": watch, "topic": f"projects/{project}/topics/{topic}"})

    pings: list[tuple[str, dict]] = []
    for site in range(40):
        pings.append(("track", track_payload(rng, projects[site % 2], site)))
    for site in rng.sample(range(40), 6):
        pings.append(("deactivate", deactivate_payload(rng, projects[site % 2], site)))
    for _ in range(12):
        pings.append(("tracking-skipped", tracking_skipped_payload(rng, rng.choice(projects))))
    pings.append(("track", track_payload(rng, UNKNOWN_PROJECT, 99)))  # accepted by ingest, rejected by the pipeline
    odd_reason = deactivate_payload(rng, projects[0], 7)
    odd_reason["reason_id"] = "no such reason!"  # not a slug: set aside as invalid_reason
    pings.append(("deactivate", odd_reason))
    rng.shuffle(pings)

    session = requests.Session()
    answers = Counter()
    print(f"posting {len(pings)} pings and {len(BAD_REQUESTS)} bad requests to {ingest_url}")
    for route, body in pings:
        response = session.post(
            ingest_url + route,
            data=http_build_query(body),
            headers={
                "Content-Type": FORM,
                "User-Agent": f"Appsero/{uuid.uuid5(uuid.NAMESPACE_URL, body['hash']).hex};",
            },
        )
        answers[(route, response.status_code)] += 1
    for route, body, content_type in BAD_REQUESTS:
        response = session.post(ingest_url + route, data=body, headers={"Content-Type": content_type})
        print(f"  bad request to {route:16} -> {response.status_code} {response.json()['error']}")
        answers[(route, response.status_code)] += 1
    for (route, status), count in sorted(answers.items()):
        print(f"  {route:16} HTTP {status}: {count}")

    bucket_name = config.require("TRACKING_BUCKET")
    bucket = cloud.storage_client(project).bucket(bucket_name)
    print(f"\nwhere they landed (gs://{bucket_name}/, newest hour per route):")
    newest = None
    for route in ROUTES:
        names = sorted(blob.name for blob in bucket.list_blobs(prefix=f"{route}/"))
        if names:
            prefix = names[-1].rsplit("/", 1)[0] + "/"
            print(f"  {prefix}  {sum(1 for n in names if n.startswith(prefix))} objects")
            newest = newest or names[-1]
    if newest:
        obj = json.loads(bucket.blob(newest).download_as_bytes())
        shown = {
            **obj,
            "raw": obj["raw"][:80] + "...",
            "payload": {k: obj["payload"][k] for k in list(obj["payload"])[:6]},
        }
        print(f"\none stored object, gs://{bucket_name}/{newest} (payload and raw shortened):")
        print(json.dumps(shown, indent=2, ensure_ascii=False))

    received = Counter()
    deadline = time.monotonic() + 20
    while sum(received.values()) < len(pings) and time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": watch, "max_messages": 500}, timeout=10)
        for message in response.received_messages:
            received[stored_ping.route_of(message.message.attributes["objectId"])] += 1
        if response.received_messages:
            subscriber.acknowledge(
                request={"subscription": watch, "ack_ids": [m.ack_id for m in response.received_messages]}
            )
    subscriber.delete_subscription(request={"subscription": watch})
    print(f"\nOBJECT_FINALIZE notifications on topic {topic}: " + ", ".join(f"{r} {received[r]}" for r in ROUTES))
    routes = ", ".join(config.subscription_name(topic, r) for r in ROUTES)
    print(f"(the pipelines' subscriptions {routes} hold the same notifications)")
    ok = sum(count for (_, status), count in answers.items() if status == 200)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MailApiStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mail_api_url = f"http://127.0.0.1:{server.server_address[1]}/subscribe"
    print(f"\nrunning the hourly pipelines ({build.LOCAL_RUNNER}, notification mode):")
    run_pipelines(mail_api_url)
    show_results(db, projects)
    show_what_real_sites_send(db, bucket, projects)
    contacts = sum(len(call["contacts"]) for call in MailApiStandIn.calls)
    print(f"  mail integration: {len(MailApiStandIn.calls)} call(s) to the dashboard API, {contacts} new contacts")
    print("\nrunning them again: the notifications were acknowledged, nothing is read twice:")
    run_pipelines(mail_api_url)
    server.shutdown()
    db.client.close()
    return 0 if ok == len(pings) and sum(received.values()) == len(pings) else 1


if __name__ == "__main__":
    sys.exit(main())
