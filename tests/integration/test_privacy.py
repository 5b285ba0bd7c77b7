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
from google.cloud import bigquery

from telemetry.admin import erase
from telemetry.analytics import job as analytics
from telemetry.common import cloud, projects, stored_ping
from telemetry.common.projects import PROJECTS
from telemetry.common.stored_ping import StoredPing
from telemetry.local import samples, stack
from telemetry.notify import outbox as notify_outbox
from telemetry.notify import run as notify
from telemetry.notify.settings import NotifySettings
from telemetry.pipelines import records, site_state, warehouse
from tests.integration import loopback
from tests.integration.test_pipelines import FORM, new_project

ROOT = Path(__file__).resolve().parents[2]
# scripts/erase.py, the command under test, loaded from its file (scripts/ is not a package).
_spec = importlib.util.spec_from_file_location("erase_script", ROOT / "scripts" / "erase.py")
erase_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(erase_script)


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
    """All that the stores hold that a test's pings could have reached, as one text: MongoDB,
    every table of the history and staging datasets (staging tables of failed runs included),
    the bucket's objects under `prefixes` and the work bucket's staging files."""
    collections = (site_state.SITES, site_state.DEACTIVATIONS, "analytics", notify_outbox.EVENTS)
    parts = [repr(list(db[c].find({}, {"_id": 0}))) for c in collections]
    for dataset in (os.environ["BQ_DATASET"], os.environ["BQ_STAGING_DATASET"]):
        for table in bq.list_tables(f"{bq.project}.{dataset}"):
            sql = f"SELECT TO_JSON_STRING(t) AS j FROM `{bq.project}.{dataset}.{table.table_id}` t"
            parts += [row["j"] for row in bq.query(sql).result()]
    for prefix in prefixes:
        for blob in bucket.list_blobs(prefix=prefix):
            parts.append(blob.download_as_bytes().decode("utf-8", "replace"))
    work = cloud.storage_client(bq.project).bucket(os.environ["WORK_BUCKET"])
    for blob in work.list_blobs(prefix=erase.STAGING_OBJECT_PREFIX):
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
        "sites": list(db[site_state.SITES].find(query, {"_id": 0})),
        "deactivations": list(db[site_state.DEACTIVATIONS].find(query, {"_id": 0})),
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

    # The notify run stores each deactivation's event of a project someone listens to (here: an
    # alert recipient of project one), the user's words included (telemetry/notify/).
    projects.save_project(db, projects.with_alerts(projects.load_project(db, one), ["vendor@example.org"]))
    notify.run_once(bq, db, NotifySettings.from_env())

    url = samples.site_url(1)
    gone = db[site_state.SITES].find_one({"hash": one, "url": url})
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
        "mongodb.sites.mail_error": 0,
        "mongodb.deactivations": 1,
        "mongodb.notify_events": 1,  # the deactivation's event, as the notify run stored it
        "bigquery.sites": 2,
        "bigquery.deactivations": 1,
        "bigquery.rejected": 1,
        "bigquery.tracking_skipped": 0,
        "bigquery.site_days": 0,  # the analytics job has not run on it
        "bigquery.staging": 0,
        "storage.staging": 0,
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
    assert db[site_state.SITES].count_documents({"hash": one}) == 2  # nulled, not deleted

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


# --- Copies erase used to miss -------------------------------------------------------

STAGED_AT = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)  # an hour of this test's own: no run lists it


def staged_rows(bucket, project: dict, table: str, payloads: list[dict]) -> list[dict]:
    """Rows of `table` as a failed run staged them, for pings stored (at STAGED_AT) as ingest would."""
    rows = []
    for index, body in enumerate(payloads):
        ping = StoredPing(str(uuid.uuid4()), "track", STAGED_AT + timedelta(seconds=index), body)
        bucket.blob(ping.object_name).upload_from_string(ping.to_json(), content_type=stored_ping.CONTENT_TYPE)
        if table == "rejected":
            record = records.rejected_row(ping.object_name, records.INVALID_VALUE, "test", ping.received_at, body)
        else:
            record = records.site_record(ping, project)
        rows.append(records.bigquery_row(record, warehouse.columns(table)))
    return rows


def stage_as_a_failed_run(bq, work, dataset: str, table: str, rows: list[dict], via_file: bool) -> tuple[str, str]:
    """A failed run's staging, written the way the pipelines write it: into `_staging_<table>_<run id>`,
    streamed (older runs, in the history dataset) or loaded from an NDJSON file in the work bucket under
    `loads/<run id>/<table>/` (the load-job path). Stood in for a run that died before its MERGE,
    which no pipeline here can be made to do on purpose without patching its internals.
    Returns the table's id and the file's name ("" when streamed)."""
    run_id = uuid.uuid4().hex[:12]
    table_id = f"{bq.project}.{dataset}.{erase.STAGING_TABLE_PREFIX}{table}_{run_id}"
    schema = [bigquery.SchemaField.from_api_repr(f) for f in warehouse.schema_json(table)]
    bq.create_table(bigquery.Table(table_id, schema=schema))
    if not via_file:
        assert bq.insert_rows_json(table_id, rows) == []
        return table_id, ""
    name = f"{erase.STAGING_OBJECT_PREFIX}{run_id}/{table}/part-0{erase.STAGING_FILE_SUFFIX}"
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    work.blob(name).upload_from_string(data.encode(), content_type="application/x-ndjson")
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON, schema=schema)
    bq.load_table_from_uri(f"gs://{work.name}/{name}", table_id, job_config=config).result()
    return table_id, name


def table_rows(bq, table_id: str) -> list[dict]:
    return [dict(row) for row in bq.query(f"SELECT * FROM `{table_id}` ORDER BY received_at").result()]


def test_erase_reaches_every_copy(db, bq, bucket, capsys):
    """The copies erase used to miss: the site under another URL form, `custom_fields`, `rejected.payload`'s
    `extra`, `mail.error` on every site of a batch, and the staging tables and files of failed runs."""
    rng = random.Random(31)
    project = new_project(db, custom_fields=["billing_email"])
    gone, kept = person(rng), person(rng)
    gone["billing_email"], kept["billing_email"] = (f"billing-{uuid.uuid4().hex[:10]}@example.org" for _ in "ab")
    work = cloud.storage_client(bq.project).bucket(os.environ["WORK_BUCKET"])
    url = samples.site_url(1)  # https://site-1.example.org

    def ping(who: dict, index: int, site_url: str) -> dict:
        body = samples.track_payload(rng, project, index, extra={"billing_email": who["billing_email"]})
        body.update({k: who[k] for k in ("admin_email", "first_name", "last_name", "ip_address")}, url=site_url)
        return body

    # The same site under three URL forms; its rejected deactivation (payload with `extra`) under a fourth.
    for form in (url, "HTTP://WWW.Site-1.example.org/", "http://site-1.example.org:80"):
        post("track", ping(gone, 1, form), gone["client_ip"])
    rejected = {
        **ping(gone, 1, "https://www.site-1.example.org/"),
        "reason_id": "not a slug!",
        "reason_info": gone["reason_info"],
    }
    post("deactivate", rejected, gone["client_ip"])
    post("track", ping(kept, 2, samples.site_url(2)), kept["client_ip"])
    run_pipeline_logged("tracking")
    run_pipeline_logged("deactivation")
    assert db[site_state.SITES].count_documents({"hash": project}) == 4  # three forms of site 1, and site 2
    # The analytics job's state of the day copies each site's custom fields (site_days); the
    # figures name no billing email: no value is held by MIN_LABEL_SITES sites.
    job = analytics.AnalyticsJob(bq, db, analytics.AnalyticsSettings.from_env())
    job.compute_day(datetime.now(UTC).date())

    # mail.error as the mail step stored it before it kept only a summary: the API's answer,
    # quoting the batch's contacts, on every site of the batch.
    answer = f'mail API answered 400: b\'{{"contacts": [{{"email": "{gone["admin_email"]}"\''
    db[site_state.SITES].update_many({"hash": project}, {"$set": {"mail": {"status": "failed", "error": answer}}})

    # Failed runs' staging: a streamed table left in the history dataset by an older run, and a
    # load-job run's files and tables in the work bucket and the staging dataset.
    project_doc = db[PROJECTS].find_one({"hash": project})
    history, scratch = os.environ["BQ_DATASET"], os.environ["BQ_STAGING_DATASET"]
    site_rows = staged_rows(bucket, project_doc, "sites", [ping(gone, 1, url)])
    both_rows = staged_rows(
        bucket,
        project_doc,
        "sites",
        [ping(gone, 1, "https://www.site-1.example.org"), ping(kept, 2, samples.site_url(2))],
    )
    staged = {
        "legacy": stage_as_a_failed_run(bq, work, history, "sites", site_rows, via_file=False),
        "sites": stage_as_a_failed_run(bq, work, scratch, "sites", both_rows, via_file=True),
        "rejected": stage_as_a_failed_run(
            bq, work, scratch, "rejected", staged_rows(bucket, project_doc, "rejected", [rejected]), via_file=True
        ),
    }
    before = {name: table_rows(bq, table_id) for name, (table_id, _) in staged.items()}
    prefixes = [stored_ping.hour_prefix(r, STAGED_AT) for r in stored_ping.wire.ROUTES] + [
        stored_ping.hour_prefix(r, datetime.now(UTC) - timedelta(hours=h))
        for r in stored_ping.wire.ROUTES
        for h in (0, 1)
    ]
    left = everything(db, bq, bucket, prefixes)
    for value in values(gone):
        assert value in left, value  # every copy is there to be erased

    dry = counts(erase_cli(capsys, "site", "--hash", project, "--url", "https://SITE-1.example.org/", "--dry-run"))
    expected = {
        "mongodb.sites": 3,  # the three URL forms
        "mongodb.sites.mail_error": 4,  # every site of the project: any error may quote any contact of its batch
        "mongodb.deactivations": 0,
        "mongodb.notify_events": 0,
        "bigquery.sites": 3,
        "bigquery.deactivations": 0,
        "bigquery.rejected": 1,
        "bigquery.tracking_skipped": 0,
        "bigquery.site_days": 3,  # the day's rows of the three URL forms
        "bigquery.staging": 3,  # the legacy table's row, the load-job tables' site row and rejected row
        "storage.staging": 2,  # the rows of the two files
        "storage.objects": 7,  # three tracks, the rejected deactivation, the three staged pings
    }
    assert dry == expected
    assert counts(erase_cli(capsys, "site", "--hash", project, "--url", url)) == expected
    assert counts(erase_cli(capsys, "site", "--hash", project, "--url", url)) == dict.fromkeys(expected, 0)

    left = everything(db, bq, bucket, prefixes)
    for value in values(gone):
        assert value not in left, value
    for value in values(kept):
        if value != kept["reason_info"]:  # no deactivation was sent for the kept site
            assert value in left, value
    # Staging is nulled in place, never emptied: a run still going would stage, load, merge and
    # count exactly the rows it wrote, and its keys.
    for name, (table_id, file) in staged.items():
        key = "source" if name == "rejected" else "ping_id"
        assert [r[key] for r in table_rows(bq, table_id)] == [r[key] for r in before[name]]
        if file:
            lines = work.blob(file).download_as_bytes().decode().splitlines()
            assert [json.loads(line)[key] for line in lines] == [r[key] for r in before[name]]
    kept_site = db[site_state.SITES].find_one({"hash": project, "url": samples.site_url(2)})
    assert kept_site["custom_fields"] == {"billing_email": kept["billing_email"]}
    assert "error" not in kept_site["mail"] and kept_site["mail"]["status"] == "failed"

    # The whole project: the kept site's copies too, staging included; a second erase finds nothing.
    first = counts(erase_cli(capsys, "project", "--hash", project))
    assert first["bigquery.staging"] == 1 and first["storage.staging"] == 1, first  # the kept site's staged row
    assert counts(erase_cli(capsys, "project", "--hash", project)) == dict.fromkeys(expected, 0)
    left = everything(db, bq, bucket, prefixes)
    for value in values(kept):
        assert value not in left, value


def test_erase_refuses_a_url_it_could_not_match(capsys):
    with pytest.raises(SystemExit):
        erase_script.parse(["site", "--hash", "0" * 32, "--url", "https://[@x.org"])
    assert "--url is not a URL" in capsys.readouterr().err
