"""Hosting country and network through the pipelines on the local stack: the labels reach BigQuery
`sites` and MongoDB `sites`, the address stays truncated, and every label that is missing is counted.

The pings are stored straight into the bucket (as ingest writes them) because their `client_ip` must be
a public address, which no request to the local gateway can come from (it runs on loopback).
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from telemetry.common import cloud, stored_ping
from telemetry.common.stored_ping import StoredPing
from telemetry.pipelines import geo, site_state
from tests.integration.test_pipelines import bq_rows, new_project, run_counted

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "geo"


def put(bucket, route: str, received_at: datetime, body: dict, client_ip: str | None) -> None:
    ping = StoredPing(str(uuid.uuid4()), route, received_at, body, client_ip=client_ip)
    bucket.blob(ping.object_name).upload_from_string(ping.to_json(), content_type=stored_ping.CONTENT_TYPE)


def empty_hour(bucket, hour: datetime) -> None:
    for route in ("track", "deactivate"):
        for blob in bucket.list_blobs(prefix=stored_ping.hour_prefix(route, hour)):
            blob.delete()


def labels(db, bq, project: str) -> tuple[dict, dict]:
    """{url: (country, hosting, ip_address)} of BigQuery `sites` and of MongoDB `sites`."""
    rows = bq_rows(bq, "sites", f"hash = '{project}'")
    docs = db[site_state.SITES].find({"hash": project})
    return (
        {r["url"]: (r["country"], r["hosting"], r["ip_address"]) for r in rows},
        {d["url"]: (d["country"], d["hosting"], d["ip_address"]) for d in docs},
    )


def test_the_bundled_data_labels_sites_in_bigquery_and_mongodb(bucket, db, bq):
    project = new_project(db)
    hour = datetime(2026, 3, 4, 5, tzinfo=UTC)  # an hour of this test's own, emptied first
    empty_hour(bucket, hour)

    def site(n: int, route: str, ip_address: str | None, client_ip: str | None, **extra) -> None:
        body = {"hash": project, "url": f"https://site{n}.example.org", "ip_address": ip_address, **extra}
        put(bucket, route, hour + timedelta(minutes=n), body, client_ip)

    site(1, "track", "5.9.0.1", "127.0.0.1")  # Hetzner, Germany
    site(2, "track", "", "145.14.144.1")  # no ip_address: the request's client, Hostinger
    site(3, "track", "2606:4700::1111", None)  # IPv6, Cloudflare
    site(4, "track", "not an address", "192.168.1.1")  # nothing public: kept, unlabelled
    site(5, "deactivate", "51.15.0.1", None, reason_id="too-expensive")  # Scaleway, France, deactivated

    counters = run_counted("tracking", "--hour", f"{hour:%Y-%m-%dT%H}")
    counters_deactivation = run_counted("deactivation", "--hour", f"{hour:%Y-%m-%dT%H}")

    in_bigquery, in_mongodb = labels(db, bq, project)
    expected = {
        "https://site1.example.org": ("DE", "Hetzner", "5.9.0.0"),
        "https://site2.example.org": ("DE", "Hostinger", None),
        "https://site3.example.org": ("US", "Cloudflare", "2606:4700::"),
        "https://site4.example.org": (None, None, None),
        "https://site5.example.org": ("FR", "Scaleway", "51.15.0.0"),
    }
    assert in_bigquery == expected
    assert in_mongodb == expected
    assert counters[geo.FROM_IP_ADDRESS] == 2 and counters[geo.FROM_CLIENT_IP] == 1
    assert counters[geo.IP_ADDRESS_ABSENT] == 1 and counters[geo.IP_ADDRESS_MALFORMED] == 1
    assert counters[geo.NO_PUBLIC_ADDRESS] == 1
    assert counters_deactivation[geo.FROM_IP_ADDRESS] == 1


def test_a_vendors_maxmind_databases_in_cloud_storage(bucket, db, bq):
    """GEO_DATABASES naming gs:// objects: downloaded once per process, each answering what its type holds."""
    project = new_project(db)
    hour = datetime(2026, 3, 4, 6, tzinfo=UTC)
    empty_hour(bucket, hour)
    # In the pipelines' work bucket, whose objects no notification reports to a pipeline.
    work = cloud.storage_client(bq.project).bucket(os.environ["WORK_BUCKET"])
    uris = []
    for name in ("GeoLite2-Country-Test.mmdb", "GeoLite2-ASN-Test.mmdb"):
        object_name = f"geo-test/{uuid.uuid4().hex}/{name}"
        work.blob(object_name).upload_from_filename(str(FIXTURES / name))
        uris.append(f"gs://{work.name}/{object_name}")

    for n, address in enumerate(("81.2.69.142", "1.0.0.1", "31.224.0.1")):
        body = {"hash": project, "url": f"https://mm{n}.example.org", "ip_address": address}
        put(bucket, "track", hour + timedelta(minutes=n), body, None)
    counters = run_counted("tracking", "--hour", f"{hour:%Y-%m-%dT%H}", "--geo_databases", ",".join(uris))

    in_bigquery, in_mongodb = labels(db, bq, project)
    expected = {
        "https://mm0.example.org": ("GB", None, "81.2.69.0"),  # the country database's record
        "https://mm1.example.org": (None, "Google Cloud", "1.0.0.0"),  # AS15169, by number
        "https://mm2.example.org": (None, "Deutsche Telekom AG", "31.224.0.0"),  # its organisation text
    }
    assert in_bigquery == expected and in_mongodb == expected
    assert counters[geo.FROM_IP_ADDRESS] == 3 and geo.DATABASE_UNREADABLE not in counters
