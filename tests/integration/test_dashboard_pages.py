"""The dashboard's pages in headless Chromium (make system-deps installs it), against the function the local
stack serves at DASHBOARD_URL and its MongoDB; the session's edges (CSRF, revocation, other sites) over HTTP."""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import date

import pytest
import requests

from telemetry.analytics import metrics
from telemetry.common.projects import PROJECTS
from telemetry.dashboard import keys, sessions
from telemetry.local import dashboard_browser
from telemetry.pipelines import site_state
from telemetry.report import browser, charts
from telemetry.report import page as report
from tests.analytics_samples import CUSTOM_FIELD, documents
from tests.integration.dashboard_seed import deactivation_doc, new_key, new_project, site_doc

pytestmark = pytest.mark.integration

END = date(2025, 3, 31)
SITES = 60  # every third deactivated, versions 2.0.0 and 2.1.0 alternating
DEACTIVATIONS = 30
REASONS = {"too-expensive": "Too expensive", "missing-feature": "Missing a feature"}


@pytest.fixture(scope="module")
def chromium():
    if not browser.available():
        message = f"no Chromium at {browser.CHROMIUM}: `make system-deps` installs Debian's chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def base(db) -> str:
    url = os.environ.get("DASHBOARD_URL")
    if not url:
        pytest.fail("DASHBOARD_URL is not set: run `make test`, or `make up` and `. .local/env` first")
    return url.rstrip("/")


@pytest.fixture(scope="module")
def project(db):
    project_hash = new_project(db, name="Pages Plugin", reasons=REASONS)
    db[site_state.SITES].insert_many(
        [
            site_doc(
                project_hash,
                i,
                status="deactivated" if i % 3 == 0 else "active",
                project_version="2.0.0" if i % 2 else "2.1.0",
            )
            for i in range(SITES)
        ]
    )
    db[site_state.DEACTIVATIONS].insert_many(
        [
            deactivation_doc(project_hash, i, "too-expensive" if i % 2 else "missing-feature", reason_info=f"why {i}")
            for i in range(DEACTIVATIONS)
        ]
    )
    db[metrics.COLLECTION].insert_many(documents(project_hash, END, days=40))
    yield project_hash, new_key(db, project_hash)
    for collection in (PROJECTS, site_state.SITES, site_state.DEACTIVATIONS, metrics.COLLECTION):
        db[collection].delete_many({"hash": project_hash})


def rows(page, section: str) -> list[str]:
    return page.eval_on_selector_all(f"#{section} tbody tr", "els => els.map(el => el.innerText)")


def wait_for_page(page, section: str, number: int) -> None:
    page.wait_for_selector(f"#{section}[data-state=loaded][data-page='{number}']")


def test_signed_in_the_page_draws_every_chart_pages_filters_and_downloads(base, db, project, chromium, tmp_path):
    project_hash, key = project
    with dashboard_browser.dashboard_page(base) as (page, watch):
        dashboard_browser.sign_in(page, base, key)
        assert page.url == f"{base}/projects/{project_hash}"
        dashboard_browser.wait_until_loaded(page)

        expected, drawn, no_data = dashboard_browser.charts_state(page)
        keys = charts.chart_keys(db[PROJECTS].find_one({"hash": project_hash}))
        assert charts.CHART_KEYS[-1] != keys[-1] == metrics.custom_field(CUSTOM_FIELD).name
        assert sorted(expected) == sorted(keys) and no_data == []
        assert sorted(drawn) == sorted(expected)
        assert "latest day: 2025-03-31" in page.inner_text("#latest")
        assert len(page.query_selector_all("#kpis .kpi")) == 4

        first = rows(page, "sites")
        assert len(first) == 25 and "site-000059" in first[0]  # newest last_seen first
        assert "\tDE · Hetzner\t" in first[0]  # the Hosted column
        page.click("#sites [data-page=next]")
        wait_for_page(page, "sites", 2)
        second = rows(page, "sites")
        assert len(second) == 25 and not set(first) & set(second)
        page.click("#sites [data-page=previous]")
        wait_for_page(page, "sites", 1)
        assert rows(page, "sites") == first

        page.select_option("#sites-filters select[name=status]", "deactivated")
        wait_for_page(page, "sites", 1)
        page.wait_for_function("() => document.querySelectorAll('#sites tbody tr').length === 20")
        deactivated = rows(page, "sites")
        assert all("\tdeactivated\t" in row for row in deactivated)
        page.fill("#sites-filters input[name=version]", "2.0.0")
        page.click("#sites-filters button[type=submit]")
        page.wait_for_function("() => document.querySelectorAll('#sites tbody tr').length === 10")
        narrowed = rows(page, "sites")
        assert all("2.0.0" in row and "\tdeactivated\t" in row for row in narrowed)
        page.fill("#sites-filters input[name=q]", "site-000003")
        page.click("#sites-filters button[type=submit]")
        page.wait_for_function("() => document.querySelectorAll('#sites tbody tr').length === 1")
        page.fill("#sites-filters input[name=q]", "")
        page.click("#sites-filters button[type=submit]")
        page.wait_for_function("() => document.querySelectorAll('#sites tbody tr').length === 10")

        with page.expect_download() as download:
            page.click("#sites-csv")
        table = list(csv.DictReader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))
        assert len(table) == 10
        assert {row["status"] for row in table} == {"deactivated"} and {row["project_version"] for row in table} == {
            "2.0.0"
        }

        reasons = rows(page, "deactivations")
        assert len(reasons) == 25
        assert "Too expensive\twhy 29" in reasons[0] and "Missing a feature\twhy 28" in reasons[1]
        with page.expect_download() as download:
            page.click("#deactivations-csv")
        assert len(list(csv.DictReader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))) == 30

        assert page.evaluate("() => document.cookie") == ""  # HttpOnly: the page's script cannot read it
        cookie = {c["name"]: c for c in page.context.cookies()}[sessions.COOKIE]
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        assert not any(key in url for url in watch.requests)

        page.click("form.sign-out button")
        page.wait_for_url(f"{base}/sign-in")
        assert sessions.COOKIE not in {c["name"] for c in page.context.cookies()}
        page.goto(f"{base}/projects/{project_hash}")
        assert page.url == f"{base}/sign-in"
    assert watch.foreign_requests == []
    assert watch.clean, watch.summary()


def test_a_wrong_key_is_refused(base, project, chromium):
    project_hash, key = project
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with dashboard_browser.dashboard_page(base) as (page, watch):
        for attempt in (wrong, "not a key"):
            dashboard_browser.sign_in(page, base, attempt)
            assert page.url == f"{base}/sign-in"
            assert "not valid" in page.inner_text(".error")
        assert sessions.COOKIE not in {c["name"] for c in page.context.cookies()}
        page.goto(f"{base}/projects/{project_hash}")
        assert page.url == f"{base}/sign-in"
        # A 401 answer shows as a console error ("Failed to load resource"): the only ones allowed here.
        assert all("401" in text for text in watch.console_errors), watch.summary()
        assert watch.foreign_requests == [] and watch.page_errors == []


# --- the session over HTTP -------------------------------------------------------------------------


def form_session(base: str) -> tuple[str, str]:
    """(the CSRF token of the sign-in form, its cookie), as a browser gets them."""
    answer = requests.get(f"{base}/sign-in", timeout=10)
    assert answer.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', answer.text).group(1)
    cookie = answer.cookies.get(sessions.CSRF_COOKIE)
    assert cookie == token
    return token, cookie


def sign_in(base: str, key: str) -> requests.Response:
    token, cookie = form_session(base)
    return requests.post(
        f"{base}/sign-in",
        data={"key": key, "csrf_token": token},
        headers={"Cookie": f"{sessions.CSRF_COOKIE}={cookie}", "Origin": base},
        allow_redirects=False,
        timeout=10,
    )


def session_cookie(answer: requests.Response) -> str:
    header = answer.headers["Set-Cookie"]
    assert "HttpOnly" in header and "Secure" in header and "SameSite=Strict" in header and "Path=/" in header
    return answer.cookies[sessions.COOKIE]


def sites_with(base: str, project_hash: str, cookie: str, **headers: str) -> requests.Response:
    return requests.get(
        f"{base}/v1/projects/{project_hash}/sites",
        headers={"Cookie": f"{sessions.COOKIE}={cookie}", **headers},
        timeout=10,
    )


def test_the_session_opens_the_api_for_its_own_project_until_the_key_is_revoked(base, db):
    project_hash = new_project(db, name="Session Plugin")
    other = new_project(db, name="Other Plugin")
    made = keys.create(db, project_hash, note="session test")
    answer = sign_in(base, made.key)
    assert answer.status_code == 303 and answer.headers["Location"].endswith(f"/projects/{project_hash}")
    cookie = session_cookie(answer)
    assert made.key not in answer.headers["Set-Cookie"] and made.key not in answer.headers["Location"]

    assert sites_with(base, project_hash, cookie).status_code == 200
    assert sites_with(base, other, cookie).status_code == 404
    page = requests.get(
        f"{base}/projects/{project_hash}", headers={"Cookie": f"{sessions.COOKIE}={cookie}"}, timeout=10
    )
    assert page.status_code == 200 and "Session Plugin" in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert "<script>" not in page.text and " style=" not in page.text  # nothing inline

    # Another site's request (the browser says so) does not ride on the session.
    assert sites_with(base, project_hash, cookie, **{"Sec-Fetch-Site": "cross-site"}).status_code == 401
    # A changed cookie is no session.
    assert (
        sites_with(base, project_hash, cookie[:-2] + ("xy" if not cookie.endswith("xy") else "zz")).status_code == 401
    )

    keys.revoke(db, made.id)
    assert sites_with(base, project_hash, cookie).status_code == 401
    again = requests.get(
        f"{base}/projects/{project_hash}",
        headers={"Cookie": f"{sessions.COOKIE}={cookie}"},
        allow_redirects=False,
        timeout=10,
    )
    assert again.status_code == 303 and again.headers["Location"].endswith("/sign-in")
    db[PROJECTS].delete_many({"hash": {"$in": [project_hash, other]}})


def test_forms_without_their_token_or_from_another_origin_are_refused(base, db):
    project_hash = new_project(db, name="Csrf Plugin")
    key = new_key(db, project_hash)
    token, cookie = form_session(base)
    headers = {"Cookie": f"{sessions.CSRF_COOKIE}={cookie}"}
    no_token = requests.post(f"{base}/sign-in", data={"key": key}, headers=headers, allow_redirects=False, timeout=10)
    assert no_token.status_code == 403 and sessions.COOKIE not in no_token.cookies
    elsewhere = requests.post(
        f"{base}/sign-in",
        data={"key": key, "csrf_token": token},
        headers={**headers, "Origin": "https://attacker.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert elsewhere.status_code == 403 and sessions.COOKIE not in elsewhere.cookies
    assert requests.get(f"{base}/sign-in?key={key}", timeout=10).status_code == 200  # a key in a URL does nothing
    assert requests.post(f"{base}/sign-out", allow_redirects=False, timeout=10).status_code == 403
    db[PROJECTS].delete_many({"hash": project_hash})


def test_the_page_s_charts_are_the_report_s(base, db, project):
    """One chart definition: charts.json carries the very specs the offline report embeds for the same data."""
    project_hash, key = project
    cookie = session_cookie(sign_in(base, key))
    served = requests.get(
        f"{base}/projects/{project_hash}/charts.json", headers={"Cookie": f"{sessions.COOKIE}={cookie}"}, timeout=30
    ).json()
    projects, docs = report.load(db, days=charts.DEFAULT_DAYS, hashes=[project_hash])
    (section,), latest = report.sections(projects, docs)
    assert served["latest_day"] == latest == "2025-03-31"
    keys = list(charts.chart_keys(projects[project_hash]))
    assert [c["key"] for c in served["charts"]] == [c.key for c in section.charts] == keys
    assert [c["spec"] for c in served["charts"]] == [c.spec for c in section.charts]
    assert [(k["label"], k["value"]) for k in served["kpis"]] == list(section.kpis)
