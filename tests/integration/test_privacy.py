"""Personal data against the local stack: what the logs, `rejected` and the sinks keep, and the erase command.

Each site's personal values are unique to the test (uuid-based email, names,
IPv6 addresses, reason text), so "nothing left" is checked by searching every
store for the values themselves: MongoDB, every BigQuery table of the dataset,
the bucket's objects of the hour, and the log lines.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from telemetry.common import stored_ping
from telemetry.local import samples, stack
from telemetry.pipelines import erase, mongodb
from tests.integration import loopback
from tests.integration.test_pipelines import FORM, new_project

ROOT = Path(__file__).resolve().parents[2]
# scripts/erase.py, the command under test, loaded from its file (scripts/ is not a package).
_spec = importlib.util.spec_from_file_location("erase_script", ROOT / "scripts" / "erase.py")
erase_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(erase_script)

TABLES = ("sites", "deactivations", "tracking_skipped", "rejected")


def person(rng: random.Random) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        "admin_email": f"owner-{tag}@example.org",
        "first_name": f"Ada{tag}",
        "last_name": f"Lovelace{tag}",
        "ip_address": f"2001:db8:{rng.randrange(1, 0xFFFF):x}:{rng.randrange(1, 0xFFFF):x}::{tag[:4]}",
        # The address the ping comes from: a loopback one of its own (tests/integration/loopback.py).
        "client_ip": f"127.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}",
        "reason_info": f"my phone is 555-{tag}",
    }


def post(route: str, body: dict, client_ip: str) -> str:
    """Post from `client_ip`: the gateway appends it to X-Forwarded-For, as Google's front end does."""
    with loopback.session_from(client_ip) as session:
        response = session.post(
            os.environ["INGEST_URL"] + route, data=samples.http_build_query(body), headers=FORM, timeout=30
        )
    assert response.status_code == 200, response.text
    return response.json()["id"]


def site_pings(rng, project_hash: str, index: int, who: dict[str, str], rejected: bool = True) -> list[str]:
    """A track and a deactivate ping with the person's data (and one deactivate the pipelines reject)."""
    track = samples.track_payload(rng, project_hash, index)
    track.update({k: who[k] for k in ("admin_email", "first_name", "last_name", "ip_address")})
    deactivate = {**track, "reason_id": "too-expensive", "reason_info": who["reason_info"]}
    ids = [post("track", track, who["client_ip"]), post("deactivate", deactivate, who["client_ip"])]
    if rejected:
        ids.append(post("deactivate", {**deactivate, "reason_id": "not a slug!"}, who["client_ip"]))
    return ids


def values(who: dict[str, str]) -> list[str]:
    return list(who.values())


def run_pipeline_logged(name: str) -> str:
    """One pipeline run in a process of its own (notification mode); its whole output."""
    done = subprocess.run(
        [sys.executable, "-m", "telemetry.pipelines.build", name, "--runner", "FnApiRunner"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def everything(db, bq, bucket, prefixes: list[str]) -> str:
    """All that the stores hold that a test's pings could have reached, as one text."""
    parts = [repr(list(db[c].find({}, {"_id": 0}))) for c in (mongodb.SITES, mongodb.DEACTIVATIONS, "analytics")]
    for table in TABLES:
        sql = f"SELECT TO_JSON_STRING(t) AS j FROM `{bq.project}.{os.environ['BQ_DATASET']}.{table}` t"
        parts += [row["j"] for row in bq.query(sql).result()]
    for prefix in prefixes:
        for blob in bucket.list_blobs(prefix=prefix):
            parts.append(blob.download_as_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def state_of(db, bq, project_hash: str, url: str) -> dict:
    def rows(table):
        sql = (
            f"SELECT TO_JSON_STRING(t) AS j FROM `{bq.project}.{os.environ['BQ_DATASET']}.{table}` t "
            f"WHERE hash = '{project_hash}' AND url = '{url}'"
        )
        return sorted(row["j"] for row in bq.query(sql).result())

    query = {"hash": project_hash, "url": url}
    return {
        "sites": list(db[mongodb.SITES].find(query, {"_id": 0})),
        "deactivations": list(db[mongodb.DEACTIVATIONS].find(query, {"_id": 0})),
        "bq_sites": rows("sites"),
        "bq_deactivations": rows("deactivations"),
    }


def erase_cli(capsys, *args: str) -> str:
    assert erase_script.main(list(args)) == 0
    return capsys.readouterr().out


def counts(output: str) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1]) for line in output.splitlines()[1:]}


def test_personal_data_policy_logs_and_erase(db, bq, bucket, capsys):
    rng = random.Random(11)
    one, two = new_project(db), new_project(db)
    people = {key: person(rng) for key in ("gone", "kept", "p2a", "p2b", "stranger")}
    log_file = stack.LOG_DIR / "ingest.log"
    log_start = log_file.stat().st_size
    now = datetime.now(UTC)

    gone_ids = site_pings(rng, one, 1, people["gone"])
    site_pings(rng, one, 2, people["kept"])
    site_pings(rng, two, 3, people["p2a"], rejected=False)
    site_pings(rng, two, 4, people["p2b"])
    post("tracking-skipped", samples.tracking_skipped_payload(rng, two), people["p2a"]["client_ip"])
    # A track ping of an unknown project, with personal data: rejected (unknown_project).
    stranger = samples.track_payload(rng, uuid.uuid4().hex, 5)
    stranger.update({k: people["stranger"][k] for k in ("admin_email", "first_name", "last_name", "ip_address")})
    post("track", stranger, people["stranger"]["client_ip"])

    # Ingest's log lines: one per request, none with a personal value (the client address truncated).
    lines = [json.loads(x) for x in log_file.read_text()[log_start:].splitlines() if x.startswith("{")]
    assert gone_ids[0] in {line.get("ping_id") for line in lines}
    logged = json.dumps(lines)
    for who in people.values():
        for value in values(who):
            assert value not in logged
    for who in people.values():  # the truncated client address is there
        assert str(ipaddress.ip_network(who["client_ip"] + "/24", strict=False).network_address) in logged

    # The pipelines' output, a run that rejects records with personal data included.
    pipeline_output = run_pipeline_logged("tracking") + run_pipeline_logged("deactivation")
    for who in people.values():
        for value in values(who):
            assert value not in pipeline_output

    url = samples.site_url(1)
    gone = db[mongodb.SITES].find_one({"hash": one, "url": url})
    assert gone["admin_email"] == people["gone"]["admin_email"]  # the default keeps the contact
    truncated = ipaddress.ip_network(people["gone"]["ip_address"] + "/48", strict=False).network_address
    assert gone["ip_address"] == str(truncated)
    rejected = list(
        bq.query(
            f"SELECT TO_JSON_STRING(t) AS j FROM `{bq.project}.{os.environ['BQ_DATASET']}.rejected` t "
            f"WHERE hash IN ('{one}', '{two}', '{stranger['hash']}')"
        ).result()
    )
    assert len(rejected) == 4  # gone, kept, p2b, stranger
    for row in rejected:
        for who in people.values():
            for field in ("admin_email", "first_name", "last_name", "ip_address", "client_ip"):
                assert who[field] not in row["j"]

    # A ping received after the run: only the erase's scan of recent hours finds it.
    # (Its notifications stay for a later run, which finds the objects gone: `missing_object`.)
    site_pings(rng, one, 1, people["gone"], rejected=False)
    prefixes = sorted(
        {stored_ping.hour_prefix(r, now + timedelta(hours=h)) for r in stored_ping.wire.ROUTES for h in (0, 1)}
    )
    kept_before = state_of(db, bq, one, samples.site_url(2))

    # Through the BigQuery mapping alone (no scan): the processed track, deactivate and rejected objects.
    dry = counts(erase_cli(capsys, "site", "--hash", one, "--url", url + "/", "--dry-run", "--recent-hours", "0"))
    assert dry == {
        "mongodb.sites": 1,
        "mongodb.deactivations": 1,
        "bigquery.sites": 2,
        "bigquery.deactivations": 1,
        "bigquery.rejected": 1,
        "bigquery.tracking_skipped": 0,
        "storage.objects": 3,
    }

    out = erase_cli(capsys, "site", "--hash", one, "--url", url)
    assert counts(out)["storage.objects"] == 5 and counts(out)["bigquery.sites"] == 2, out
    assert counts(erase_cli(capsys, "site", "--hash", one, "--url", url)) == dict.fromkeys(dry, 0)

    left = everything(db, bq, bucket, prefixes)
    for value in values(people["gone"]):
        assert value not in left, value
    for value in values(people["kept"]) + values(people["p2a"]):
        assert value in left, value
    assert state_of(db, bq, one, samples.site_url(2)) == kept_before
    assert db[mongodb.SITES].count_documents({"hash": one}) == 2  # nulled, not deleted

    out = erase_cli(capsys, "project", "--hash", two)
    assert counts(out)["mongodb.sites"] == 2 and counts(out)["storage.objects"] == 6, out
    left = everything(db, bq, bucket, prefixes)
    for who in ("p2a", "p2b"):
        for value in values(people[who]):
            assert value not in left, value
    assert state_of(db, bq, one, samples.site_url(2)) == kept_before


@pytest.mark.parametrize("url", ["https://Example.org/", "https://example.org"])
def test_site_target_normalises_its_url(url):
    target = erase.Target.site("h", url)
    assert target.url == "https://example.org"
    assert target.matches({"hash": "h", "url": "HTTPS://EXAMPLE.ORG/"})
    assert not target.matches({"hash": "other", "url": "https://example.org"})
