"""The dashboard's JSON API, against the function the local stack serves at DASHBOARD_URL and its MongoDB.

The contract of issue 16, section 2: keys (401/404), isolation between
projects, keyset pages that neither repeat nor skip while sites ping, limits,
cursors, filters, deactivations with their labels, figures, CSV exports, and
the `telemetry-admin` command line.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from telemetry.analytics import metrics
from telemetry.common import projects, sites, webhook_secrets
from telemetry.dashboard import errors, items, keys, queries
from telemetry.pipelines import site_state
from tests.integration.dashboard_seed import (
    BASE_TIME,
    deactivation_doc,
    figure_docs,
    new_key,
    new_project,
    site_doc,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base(db) -> str:
    url = os.environ.get("DASHBOARD_URL")
    if not url:
        pytest.fail("DASHBOARD_URL is not set: run `make test`, or `make up` and `. .local/env` first")
    return url.rstrip("/")


def get(base: str, path: str, key: str | None = None, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(f"{base}{path}", headers=headers, params=params, timeout=60)


def assert_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body == {"ok": False, "error": code, "message": body["message"]} and body["message"]


@pytest.fixture(scope="module")
def project(db):
    """A project of 60 sites (10 deactivated, 20 on version 1.0.0), 5 deactivations, 3 days of figures."""
    project_hash = new_project(db, "Contract", reasons={"too-expensive": "It is too expensive"})
    sites = [
        site_doc(
            project_hash,
            i,
            status="deactivated" if i % 6 == 0 else "active",
            project_version="1.0.0" if i % 3 == 0 else "2.1.0",
            site='=HYPERLINK("http://evil.example")' if i == 7 else f"Site {i}",
        )
        for i in range(60)
    ]
    db[site_state.SITES].insert_many(sites)
    reasons = ["too-expensive", "other", None, "too-expensive", "found-better-plugin"]
    db[site_state.DEACTIVATIONS].insert_many([deactivation_doc(project_hash, i, r) for i, r in enumerate(reasons)])
    db[metrics.COLLECTION].insert_many(figure_docs(project_hash, ["2026-11-01", "2026-11-02", "2026-11-03"]))
    return {"hash": project_hash, "key": new_key(db, project_hash), "sites": sites}


@pytest.fixture(scope="module")
def other(db):
    project_hash = new_project(db, "Other vendor")
    db[site_state.SITES].insert_many([site_doc(project_hash, 1000 + i) for i in range(5)])
    db[site_state.DEACTIVATIONS].insert_one(deactivation_doc(project_hash, 1000, "other"))
    db[metrics.COLLECTION].insert_many(figure_docs(project_hash, ["2026-11-02"]))
    return {"hash": project_hash, "key": new_key(db, project_hash)}


ENDPOINTS = ("sites", "sites.csv", "deactivations", "deactivations.csv", "figures")


# --- auth and isolation -----------------------------------------------------------------------


def test_the_description_is_served_without_a_key(base):
    response = get(base, "/v1/openapi.json")
    assert response.status_code == 200 and response.json()["openapi"].startswith("3.0")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_no_key_a_malformed_or_an_unknown_key_is_a_401(base, project, endpoint):
    path = f"/v1/projects/{project['hash']}/{endpoint}"
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Bearer {keys.make_key()[1]}"},  # well formed, never stored
        {"Authorization": f"Bearer {project['key'][:-1]}{'A' if project['key'][-1] != 'A' else 'B'}"},  # wrong secret
    ):
        response = requests.get(base + path, headers=headers, timeout=60)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_key_is_a_401_at_once(base, db, project):
    key = keys.create(db, project["hash"])
    assert get(base, f"/v1/projects/{project['hash']}/sites", key.key).status_code == 200
    assert keys.revoke(db, key.id)
    assert_error(get(base, f"/v1/projects/{project['hash']}/sites", key.key), 401, "unauthorized")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_one_project_s_key_reads_nothing_of_another_project(base, project, other, endpoint):
    """Another project's path answers exactly what a project that does not exist answers."""
    theirs = get(base, f"/v1/projects/{other['hash']}/{endpoint}", project["key"])
    nobody = get(base, f"/v1/projects/{'f' * 32}/{endpoint}", project["key"])
    assert_error(theirs, 404, "not_found")
    assert theirs.json() == nobody.json()
    assert theirs.content == nobody.content
    mine = get(base, f"/v1/projects/{project['hash']}/{endpoint}", project["key"])
    assert mine.status_code == 200
    assert "site-001000" not in mine.text and other["hash"] not in mine.text


# --- pages ------------------------------------------------------------------------------------


def test_sites_are_newest_first_with_every_field_and_limit_defaults_to_50(base, project):
    response = get(base, f"/v1/projects/{project['hash']}/sites", project["key"])
    assert response.status_code == 200
    body = response.json()
    assert len(body["items"]) == 50 and body["next_cursor"]
    first = body["items"][0]
    assert list(first) == list(items.SITE_FIELDS)
    assert first["url"] == "https://site-000059.example.org"
    assert first["last_seen"] == "2026-11-01T00:59:00.000Z"
    assert (first["country"], first["hosting"]) == ("DE", "Hetzner")
    assert "admin_email" not in first and "ip_address" not in first
    rest = get(base, f"/v1/projects/{project['hash']}/sites", project["key"], cursor=body["next_cursor"]).json()
    assert len(rest["items"]) == 10 and rest["next_cursor"] is None


@pytest.mark.parametrize("limit", ["0", "501", "-1", "abc", "1.5", ""])
def test_a_limit_out_of_bounds_is_a_400(base, project, limit):
    assert_error(get(base, f"/v1/projects/{project['hash']}/sites", project["key"], limit=limit), 400, "invalid_limit")


def test_the_largest_limit_is_500(base, project):
    body = get(base, f"/v1/projects/{project['hash']}/sites", project["key"], limit=500).json()
    assert len(body["items"]) == 60 and body["next_cursor"] is None


def test_a_bad_cursor_or_another_list_s_cursor_is_a_400(base, project):
    path = f"/v1/projects/{project['hash']}"
    for cursor in ("x", "eyJ4IjoxfQ", "A" * 5000):
        assert_error(get(base, f"{path}/sites", project["key"], cursor=cursor), 400, "invalid_cursor")
    cursor = get(base, f"{path}/deactivations", project["key"], limit=1).json()["next_cursor"]
    assert_error(get(base, f"{path}/sites", project["key"], cursor=cursor), 400, "invalid_cursor")


def test_paging_while_sites_ping_never_repeats_or_skips_an_unchanged_site(base, db):
    """Ties on last_seen included; between pages, sites ahead and behind the cursor ping, and new ones arrive."""
    project_hash = new_project(db, "Paging")
    key = new_key(db, project_hash)
    # 200 sites, five to a last_seen (ties broken by url).
    db[site_state.SITES].insert_many(
        [site_doc(project_hash, i, last_seen=BASE_TIME + timedelta(minutes=i // 5)) for i in range(200)]
    )
    changed: set[str] = set()
    seen: list[str] = []
    cursor = None
    now = BASE_TIME + timedelta(days=1)
    page_number = 0
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        body = get(base, f"/v1/projects/{project_hash}/sites", key, **params).json()
        seen += [item["url"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        page_number += 1
        # A site not reached yet pings (moves to the front: changed, may be missed), one already
        # listed pings (must not come again), a new site arrives, and one not reached yet changes
        # a field other than its place in the order.
        ahead = f"https://site-{max(0, 199 - 7 * page_number - 20):06d}.example.org"
        behind = seen[0]
        now += timedelta(seconds=1)
        for url in (ahead, behind):
            db[site_state.SITES].update_one({"hash": project_hash, "url": url}, {"$set": {"last_seen": now}})
            changed.add(url)
        db[site_state.SITES].insert_one(site_doc(project_hash, 10_000 + page_number, last_seen=now))
        db[site_state.SITES].update_one(
            {"hash": project_hash, "url": f"https://site-{max(0, 150 - page_number):06d}.example.org"},
            {"$set": {"wp_version": "6.8"}},
        )
    assert len(seen) == len(set(seen)), "a site was listed twice"
    unchanged = {f"https://site-{i:06d}.example.org" for i in range(200)} - changed
    assert unchanged <= set(seen), f"skipped: {sorted(unchanged - set(seen))[:5]}"
    order = [url for url in seen if url in unchanged]
    expected = sorted(unchanged, key=lambda url: (-(int(url[13:19]) // 5), url))
    assert order == expected


# --- filters ----------------------------------------------------------------------------------


def test_status_version_and_q_narrow_the_list(base, project):
    path, key = f"/v1/projects/{project['hash']}/sites", project["key"]
    deactivated = get(base, path, key, status="deactivated", limit=500).json()["items"]
    assert {s["url"] for s in deactivated} == {s["url"] for s in project["sites"] if s["status"] == "deactivated"}
    old = get(base, path, key, version="1.0.0", limit=500).json()["items"]
    assert len(old) == 20 and {s["project_version"] for s in old} == {"1.0.0"}
    both = get(base, path, key, version="1.0.0", status="active", limit=500).json()["items"]
    assert len(both) == 10
    found = get(base, path, key, q="SITE-00004", limit=500).json()["items"]  # any case, url or title
    assert sorted(s["url"] for s in found) == [f"https://site-{i:06d}.example.org" for i in range(40, 50)]
    assert [s["url"] for s in get(base, path, key, q="hyperlink(").json()["items"]] == [
        "https://site-000007.example.org"
    ]
    # Regex characters are text: ".*" is found nowhere, "(" is no syntax error.
    assert get(base, path, key, q=".*").json()["items"] == []
    assert get(base, path, key, q="[(").json()["items"] == []


def test_filters_out_of_bounds_are_a_400(base, project):
    path, key = f"/v1/projects/{project['hash']}/sites", project["key"]
    assert_error(get(base, path, key, status="gone"), 400, "invalid_parameter")
    assert_error(get(base, path, key, q="a\x00b"), 400, "invalid_parameter")
    assert_error(get(base, path, key, q="x" * 201), 400, "invalid_parameter")
    assert_error(get(base, path, key, version="x" * 101), 400, "invalid_parameter")
    path = f"/v1/projects/{project['hash']}/deactivations"
    assert_error(get(base, path, key, reason="no spaces"), 400, "invalid_parameter")


def test_filtered_pages_chain_through_their_cursors(base, project):
    path, key = f"/v1/projects/{project['hash']}/sites", project["key"]
    urls, cursor = [], None
    while True:
        body = get(base, path, key, status="active", limit=7, **({"cursor": cursor} if cursor else {})).json()
        urls += [s["url"] for s in body["items"]]
        if not (cursor := body["next_cursor"]):
            break
    assert len(urls) == len(set(urls)) == 50


# --- deactivations ----------------------------------------------------------------------------


def test_deactivations_carry_the_reason_label_and_filter_by_reason(base, project):
    path, key = f"/v1/projects/{project['hash']}/deactivations", project["key"]
    body = get(base, path, key).json()
    assert body["next_cursor"] is None
    assert [d["url"] for d in body["items"]] == [f"https://site-{i:06d}.example.org" for i in (4, 3, 2, 1, 0)]
    first = body["items"][-1]
    assert list(first) == list(items.DEACTIVATION_FIELDS)
    assert first["reason_id"] == "too-expensive" and first["reason"] == "It is too expensive"
    assert first["reason_info"] == "info 0" and first["deactivated_at"] == "2026-11-01T00:00:00.000Z"
    by_reason = {d["reason_id"]: d["reason"] for d in body["items"]}
    assert by_reason == {"too-expensive": "It is too expensive", "other": "other", None: None,
                         "found-better-plugin": "found-better-plugin"}  # fmt: skip
    narrowed = get(base, path, key, reason="too-expensive").json()["items"]
    assert [d["url"] for d in narrowed] == ["https://site-000003.example.org", "https://site-000000.example.org"]
    paged = get(base, path, key, limit=2).json()
    assert len(paged["items"]) == 2 and paged["next_cursor"]


# --- figures ----------------------------------------------------------------------------------


def test_figures_are_the_serving_copy_s_documents_of_the_days(base, project):
    path, key = f"/v1/projects/{project['hash']}/figures", project["key"]
    body = get(base, path, key, **{"from": "2026-11-01", "to": "2026-11-03"}).json()
    assert body["from"] == "2026-11-01" and body["to"] == "2026-11-03"
    assert len(body["items"]) == 9
    assert body["items"][0] == {"metric": "active_sites", "day": "2026-11-01", "value": 100}
    rate = [f for f in body["items"] if f["metric"] == "opt_in_rate"]
    assert rate[0] == {"metric": "opt_in_rate", "day": "2026-11-01", "value": None}
    wp = [f for f in body["items"] if f["metric"] == "wp_version"]
    assert wp[0]["breakdown"] == {"6.7": 60, "6.6": 40} and "value" not in wp[0]
    one = get(base, path, key, metric="active_sites", **{"from": "2026-11-02", "to": "2026-11-02"}).json()
    assert one["items"] == [{"metric": "active_sites", "day": "2026-11-02", "value": 101}]
    recent = get(base, path, key).json()  # the 30 days to today: none seeded there
    today = datetime.now(UTC).date()
    assert recent["to"] == today.isoformat() and recent["from"] == (today - timedelta(days=29)).isoformat()


def test_figures_out_of_bounds_are_a_400(base, project):
    path, key = f"/v1/projects/{project['hash']}/figures", project["key"]
    assert_error(get(base, path, key, metric="nope"), 400, "invalid_parameter")
    assert_error(get(base, path, key, **{"from": "2026-11-03", "to": "2026-11-01"}), 400, "invalid_parameter")
    assert_error(get(base, path, key, **{"from": "2024-01-01", "to": "2026-11-01"}), 400, "invalid_parameter")
    assert_error(get(base, path, key, to="2026-13-01"), 400, "invalid_parameter")
    assert_error(get(base, path, key, to="20261101"), 400, "invalid_parameter")
    assert_error(get(base, path, key, to="0001-01-05"), 400, "invalid_parameter")  # no room for the default 30 days
    assert get(base, path, key, **{"from": "0001-01-01", "to": "0001-01-01"}).json()["items"] == []


# --- CSV --------------------------------------------------------------------------------------


def test_an_export_whose_query_fails_gets_the_json_503(base, db, project):
    """The export's first chunk is made before its answer starts, so a query MongoDB refuses
    (here: the index it names is gone) is the JSON 503 of every route, not the server's HTML 500."""
    db[sites.SITES].drop_index(sites.UNIQUE_INDEX)
    try:
        response = get(base, f"/v1/projects/{project['hash']}/sites.csv", project["key"])
        assert_error(response, 503, "unavailable")
        assert response.headers["Retry-After"] == str(errors.DATABASE_RETRY_AFTER_SECONDS)  # as openapi.py says
    finally:
        site_state.ensure_indexes(db)
    assert get(base, f"/v1/projects/{project['hash']}/sites.csv", project["key"]).status_code == 200


def test_sites_csv_has_a_header_every_matching_row_and_no_formula(base, project):
    response = get(base, f"/v1/projects/{project['hash']}/sites.csv", project["key"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == list(items.SITE_FIELDS)
    assert len(rows) == 61
    by_url = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert by_url["https://site-000007.example.org"]["site"] == '\'=HYPERLINK("http://evil.example")'
    assert by_url["https://site-000001.example.org"]["last_seen"] == "2026-11-01T00:01:00.000Z"
    assert by_url["https://site-000001.example.org"]["custom_fields"] == '{"license_type": "pro"}'
    assert by_url["https://site-000001.example.org"]["hosting"] == "Hetzner"
    filtered = get(base, f"/v1/projects/{project['hash']}/sites.csv", project["key"], status="deactivated", q="site")
    assert len(list(csv.reader(io.StringIO(filtered.text)))) == 1 + 10


def test_deactivations_csv_has_the_labels(base, project):
    response = get(base, f"/v1/projects/{project['hash']}/deactivations.csv", project["key"], reason="too-expensive")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == list(items.DEACTIVATION_FIELDS)
    assert [row[3] for row in rows[1:]] == ["It is too expensive", "It is too expensive"]


# --- other answers ----------------------------------------------------------------------------


def test_unknown_paths_and_methods_get_the_envelope(base, project):
    assert_error(get(base, "/v1/nothing"), 404, "not_found")
    response = requests.post(f"{base}/v1/projects/{project['hash']}/sites", timeout=60)
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


# --- telemetry-admin --------------------------------------------------------------------------


def admin(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "telemetry-admin"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_telemetry_admin_adds_a_project_makes_lists_and_revokes_a_key(base, db):
    project_hash = f"admin-{os.urandom(6).hex()}"
    added = admin("project", "add", "--name", "Admin test", "--hash", project_hash, "--deactivation-reason", "x=Why")
    assert added.returncode == 0, added.stderr
    assert project_hash in admin("project", "list").stdout

    created = admin("key", "create", "--project", project_hash, "--note", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert keys.KEY_PATTERN.fullmatch(key)
    assert get(base, f"/v1/projects/{project_hash}/sites", key).json() == {"items": [], "next_cursor": None}
    stored = db[keys.COLLECTION].find_one({"project": project_hash})
    assert key not in str(stored) and stored["sha256"] == keys.digest(key)

    key_id = keys.KEY_PATTERN.fullmatch(key)["id"]
    listed = admin("key", "list", "--project", project_hash).stdout
    assert key_id in listed and key not in listed and stored["sha256"] not in listed
    assert admin("key", "revoke", key_id).returncode == 0
    assert_error(get(base, f"/v1/projects/{project_hash}/sites", key), 401, "unauthorized")
    assert admin("key", "revoke", "000000000000").returncode == 1
    missing = admin("key", "create", "--project", "no-such-project")
    assert missing.returncode == 1 and "no project" in missing.stderr


def test_the_dashboards_read_of_a_project_holds_no_webhook_secret(db, stack_env):
    """Neither of a project whose endpoint `telemetry-admin webhook add` made, nor of one an older
    release stored with its secrets inside the document (not migrated yet): the dashboard's
    process never holds a signing secret."""
    added = new_project(db, "Hooked")
    url = "https://hooks.vendor.example/t"
    made = admin("webhook", "add", "--project", added, "--url", url, "--event", "site.activated")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.splitlines()[-1]
    legacy = new_project(db, "Legacy hooks")
    endpoint = {"id": "wh_0123456789abcdef", "url": "https://hooks.vendor.example/l", "events": ["site.activated"]}
    db[projects.PROJECTS].update_one(
        {"hash": legacy}, {"$set": {"webhooks": [{**endpoint, "secret": webhook_secrets.new_secret()}]}}
    )
    try:
        for project_hash in (added, legacy):
            read = queries.project(db, project_hash)
            assert read["webhooks"] and "whsec_" not in repr(read) and secret not in repr(read)
            assert all(set(e) == {"id", "url", "events"} for e in read["webhooks"])
    finally:
        db[projects.PROJECTS].delete_many({"hash": {"$in": [added, legacy]}})
        db[webhook_secrets.WEBHOOK_SECRETS].delete_many({"project": added})
