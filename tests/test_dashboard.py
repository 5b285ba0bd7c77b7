"""The dashboard's pure parts: cursors and limits, CSV cells and streams, keys, the OpenAPI description."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.dashboard import csv_export, items, keys, openapi, paging

# --- limits and cursors --------------------------------------------------------------------


def test_limit_defaults_to_50_and_takes_1_to_500():
    assert paging.parse_limit(None) == 50
    assert paging.parse_limit("1") == 1
    assert paging.parse_limit("500") == 500


@pytest.mark.parametrize("raw", ["0", "501", "-1", "", "abc", "1.5", " 5", "5 ", "１２", "+5", "0x10", "99999999999"])
def test_a_limit_out_of_bounds_or_not_an_integer_is_refused(raw):
    with pytest.raises(paging.InvalidLimit):
        paging.parse_limit(raw)


@given(
    st.sampled_from(["sites", "deactivations"]),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)).map(
        lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)
    ),
    st.text(min_size=1, max_size=2048),
)
def test_a_cursor_names_exactly_its_position(kind, at, url):
    position = paging.Position(kind, at, url)
    cursor = paging.encode(position)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    assert len(cursor) <= paging.MAX_CURSOR_CHARS
    assert paging.decode(cursor, kind) == position


def _raw(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64!",
        "====",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _raw({"kind": "sites"}),
        _raw(["sites", 1]),
        _raw(["sites", "1", "https://a.example"]),
        _raw(["sites", 1.5, "https://a.example"]),
        _raw(["sites", True, "https://a.example"]),
        _raw(["sites", 1, ""]),
        _raw(["sites", 1, None]),
        _raw(["sites", 10**30, "https://a.example"]),
        _raw(["sites", -(10**30), "https://a.example"]),
        _raw(["deactivations", 1, "https://a.example"]),  # another list's cursor
        _raw(["sites", 1, "https://a.example", "extra"]),
        "A" * (paging.MAX_CURSOR_CHARS + 1),
        base64.urlsafe_b64encode(b"[" * 2900).decode().rstrip("="),  # nested past json's recursion limit
    ],
)
def test_anything_but_a_cursor_of_this_list_is_refused(cursor):
    with pytest.raises(paging.InvalidCursor):
        paging.decode(cursor, "sites")


@given(st.text(max_size=200))
def test_decoding_any_text_either_gives_a_position_or_refuses_it(text):
    try:
        position = paging.decode(text, "sites")
    except paging.InvalidCursor:
        return
    assert position.kind == "sites" and position.url


def test_after_is_a_time_range_with_the_url_as_tie_break():
    at = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert paging.after(paging.Position("sites", at, "https://b.example"), "last_seen") == {
        "last_seen": {"$lte": at},
        "$or": [{"last_seen": {"$lt": at}}, {"url": {"$gt": "https://b.example"}}],
    }


# --- CSV ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_text_that_a_spreadsheet_would_read_as_a_formula_is_neutralised(start):
    assert csv_export.cell(start + 'HYPERLINK("http://x")') == "'" + start + 'HYPERLINK("http://x")'


@pytest.mark.parametrize("text", [" =1+1", "\n=1+1", "  @SUM(A1)", "\r\n-2"])
def test_a_formula_behind_leading_space_or_a_line_break_is_neutralised_too(text):
    # OWASP names the first character only; spreadsheets skip leading space, so the guard does too,
    # whatever the pipelines strip before the documents reach the dashboard.
    assert csv_export.cell(text) == "'" + text


def test_other_cells_are_left_as_they_are():
    assert csv_export.cell("https://a.example") == "https://a.example"
    assert csv_export.cell("a=1") == "a=1"
    assert csv_export.cell(-3) == -3  # numbers the product wrote are not text
    assert csv_export.cell(None) == ""
    assert csv_export.cell(True) == "true"
    assert csv_export.cell(datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
    assert csv_export.cell({"b": 1, "a": "=x"}) == '{"a": "=x", "b": 1}'
    assert csv_export.cell(["-x"]) == '["-x"]'


def test_a_stream_is_a_header_and_one_row_per_document_in_chunks():
    documents = [{"url": f"https://s{i}.example", "site": "=1+1" if i == 7 else f"Site, {i}\n"} for i in range(1234)]
    chunks = list(csv_export.stream(("url", "site"), iter(documents), dict))
    assert len(chunks) == 3  # 1,235 rows in chunks of 500
    parsed = list(csv.reader(io.StringIO("".join(chunks))))
    assert parsed[0] == ["url", "site"]
    assert len(parsed) == 1235
    assert parsed[1] == ["https://s0.example", "Site, 0\n"]
    assert parsed[8] == ["https://s7.example", "'=1+1"]


def test_a_stream_of_nothing_is_the_header_alone():
    assert "".join(csv_export.stream(("url", "site"), iter([]), dict)) == "url,site\r\n"


# --- items ------------------------------------------------------------------------------------


def test_a_deactivation_carries_its_reason_label_the_project_s_or_the_slug():
    doc = {"url": "u", "reason_id": "too-expensive", "received_at": datetime(2026, 1, 1, tzinfo=UTC)}
    item = items.deactivation_item(doc, {"too-expensive": "It is too expensive"})
    assert item["reason"] == "It is too expensive" and item["deactivated_at"] == doc["received_at"]
    assert items.deactivation_item({**doc, "reason_id": "other"}, {})["reason"] == "other"
    assert items.deactivation_item({**doc, "reason_id": None}, {})["reason"] is None


def test_a_site_item_shows_no_personal_field():
    doc = {"url": "u", "admin_email": "a@b.example", "first_name": "A", "ip_address": "192.0.2.0", "mail": {}}
    assert set(items.site_item(doc)) == set(items.SITE_FIELDS)
    assert not {"admin_email", "first_name", "last_name", "ip_address", "mail", "ping_id"} & set(items.SITE_FIELDS)


# --- keys -------------------------------------------------------------------------------------


def test_a_key_has_256_random_bits_and_its_id_inside():
    made = {keys.make_key() for _ in range(200)}
    assert len({key for _, key in made}) == 200
    for key_id, key in made:
        match = keys.KEY_PATTERN.fullmatch(key)
        assert match and match["id"] == key_id
        assert len(base64.urlsafe_b64decode(match["secret"] + "=")) == 32


def test_the_stored_digest_is_sha256_of_the_key_and_never_the_key():
    _, key = keys.make_key()
    assert keys.digest(key) == hashlib.sha256(key.encode()).hexdigest()
    assert key not in keys.digest(key)


# --- OpenAPI ----------------------------------------------------------------------------------


def test_the_description_is_openapi_3_and_names_every_route():
    spec = openapi.SPEC
    assert spec["openapi"].startswith("3.0")
    assert set(spec["paths"]) == {
        "/v1/openapi.json",
        "/v1/projects/{hash}/sites",
        "/v1/projects/{hash}/sites.csv",
        "/v1/projects/{hash}/deactivations",
        "/v1/projects/{hash}/deactivations.csv",
        "/v1/projects/{hash}/figures",
    }
    json.dumps(spec)  # serialisable as it is served


def test_every_api_operation_describes_the_503_with_its_retry_after():
    """app.py answers 503 with Retry-After on any route when MongoDB fails; the contract says so."""
    for path, operations in openapi.SPEC["paths"].items():
        if path == "/v1/openapi.json":  # served without the database
            continue
        unavailable = operations["get"]["responses"]["503"]
        assert unavailable["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        assert "Retry-After" in unavailable["headers"]


def test_every_route_of_the_app_is_described_and_every_description_has_a_route():
    from telemetry.dashboard.app import create_app

    app = create_app(database=lambda: pytest.fail("no database is needed to list the routes"))
    routes = {
        re.sub(r"<(?:\w+:)?project_hash>", "{hash}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")  # the JSON API; the pages (pages.py) are not its contract
    }
    assert routes == set(openapi.SPEC["paths"])


def test_times_and_days_have_four_digit_years_whatever_the_year():
    """strftime("%Y") writes year 404 as "404" on glibc; the API writes ISO 8601 (found by schemathesis)."""
    assert items.iso_time(datetime(404, 6, 23, 1, 2, 3, 4000, tzinfo=UTC)) == "0404-06-23T01:02:03.004Z"


def test_pages_and_figures_are_bounded_on_the_server_by_the_client_s_own_timeout(monkeypatch):
    """maxTimeMS on every page and figures query, equal to MONGODB_TIMEOUT_SECONDS: a query the
    function gave up on stops on the cluster too. (No server is contacted: pymongo builds a cursor
    lazily; `_max_time_ms` is the pinned pymongo's own field for what it will send.)"""
    import pymongo

    from telemetry.dashboard import queries

    monkeypatch.setenv("MONGODB_TIMEOUT_SECONDS", "7")
    db = pymongo.MongoClient("mongodb://127.0.0.1:9", connect=False)["unused"]
    at = datetime(2026, 11, 1, tzinfo=UTC)
    cursors = [
        queries.sites_page_cursor(db, "h", queries.SiteFilters(q="x"), 50, None),
        queries.deactivations_page_cursor(db, "h", None, 50, paging.Position("deactivations", at, "https://a")),
        queries.figures_cursor(db, "h", None, at.date(), at.date()),
    ]
    assert [cursor._max_time_ms for cursor in cursors] == [7000, 7000, 7000]
