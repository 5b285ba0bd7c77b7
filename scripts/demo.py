"""End-to-end demo on the local stack (run by `make demo`, which starts and stops the stack).

Posts a realistic hour of pings from a few sites of two projects, as the
WordPress client library encodes them, plus a few bad requests; then shows
what landed in Cloud Storage and the notifications Pub/Sub delivered.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, storage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sample_pings import (  # noqa: E402
    deactivate_payload,
    http_build_query,
    project_hash,
    track_payload,
    tracking_skipped_payload,
)

from telemetry import config  # noqa: E402
from telemetry.payload import ROUTES  # noqa: E402

FORM = "application/x-www-form-urlencoded; charset=UTF-8"

BAD_REQUESTS = [
    ("track", "url=https%3A%2F%2Fno-hash.example.org", FORM),
    ("track", f"hash={project_hash('demo-seo')}&url=not-a-url", FORM),
    ("deactivate", f"hash={project_hash('demo-seo')}&url=https%3A%2F%2Fx.org&extra[%24where]=1", FORM),
    ("tracking-skipped", "{not json", "application/json"),
]


def main() -> int:
    ingest_url = config.require("INGEST_URL")
    project, topic = config.require("GCP_PROJECT"), config.require("PINGS_TOPIC")
    rng = random.Random(2026)
    projects = [project_hash("demo-seo"), project_hash("demo-forms")]

    subscriber = pubsub_v1.SubscriberClient()
    watch = subscriber.subscription_path(project, f"demo-{uuid.uuid4().hex[:8]}")
    subscriber.create_subscription(request={"name": watch, "topic": f"projects/{project}/topics/{topic}"})

    pings: list[tuple[str, dict]] = []
    for site in range(40):
        pings.append(("track", track_payload(rng, projects[site % 2], site)))
    for site in rng.sample(range(40), 6):
        pings.append(("deactivate", deactivate_payload(rng, projects[site % 2], site)))
    for _ in range(12):
        pings.append(("tracking-skipped", tracking_skipped_payload(rng, rng.choice(projects))))
    rng.shuffle(pings)

    http = requests.Session()
    answers = Counter()
    print(f"posting {len(pings)} pings and {len(BAD_REQUESTS)} bad requests to {ingest_url}")
    for route, body in pings:
        response = http.post(
            ingest_url + route,
            data=http_build_query(body),
            headers={
                "Content-Type": FORM,
                "User-Agent": f"Appsero/{uuid.uuid5(uuid.NAMESPACE_URL, body['hash']).hex};",
            },
        )
        answers[(route, response.status_code)] += 1
    for route, body, content_type in BAD_REQUESTS:
        response = http.post(ingest_url + route, data=body, headers={"Content-Type": content_type})
        print(f"  bad request to {route:16} -> {response.status_code} {response.json()['error']}")
        answers[(route, response.status_code)] += 1
    for (route, status), count in sorted(answers.items()):
        print(f"  {route:16} HTTP {status}: {count}")

    bucket_name = config.require("TRACKING_BUCKET")
    bucket = storage.Client(project=project, credentials=AnonymousCredentials()).bucket(bucket_name)
    print(f"\nwhere they landed (gs://{bucket_name}/, newest hour per route):")
    newest = None
    for route in ROUTES:
        names = sorted(blob.name for blob in bucket.list_blobs(prefix=f"{route}/"))
        if names:
            hour = names[-1].rsplit("/", 1)[0]
            print(f"  {hour}/  {sum(1 for n in names if n.startswith(hour + '/'))} objects")
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
            received[message.message.attributes["objectId"].split("/", 1)[0]] += 1
        if response.received_messages:
            subscriber.acknowledge(
                request={"subscription": watch, "ack_ids": [m.ack_id for m in response.received_messages]}
            )
    subscriber.delete_subscription(request={"subscription": watch})
    print(f"\nOBJECT_FINALIZE notifications on topic {topic}: " + ", ".join(f"{r} {received[r]}" for r in ROUTES))
    routes = ", ".join(config.subscription_name(topic, r) for r in ROUTES)
    print(f"(the pipelines' subscriptions {routes} hold the same notifications)")
    ok = sum(count for (_, status), count in answers.items() if status == 200)
    return 0 if ok == len(pings) and sum(received.values()) == len(pings) else 1


if __name__ == "__main__":
    sys.exit(main())
