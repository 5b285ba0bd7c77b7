"""Property-based tests (hypothesis) of the wire format and of everything an accepted ping goes through.

What `wire` documents: `parse_body` returns the payload or raises `PayloadError`
(`UnsupportedMediaType` is one); `check_structure` and `validate` raise
`PayloadError` (validate's ValueError for an unknown route is a caller's bug, not
input); `is_site_url` answers True or False. Whatever ingest accepts must then
be stored (`StoredPing.to_json`), read back unchanged (`records.read_stored_ping`)
and become its route's record, where the only allowed failure is
`records.Rejected` with one of `records.REJECTION_REASONS`.

Profiles (tests/conftest.py): `dev` draws new examples each run; `ci` (CI=true)
is derandomized, so CI is reproducible. Either way each property runs a few
hundred examples, with no deadline (the machine is shared and noisy).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from telemetry.common import wire
from telemetry.common.stored_ping import StoredPing
from telemetry.ingest.settings import IngestSettings
from telemetry.pipelines import records

LIMITS = IngestSettings.from_env({}).limits
FORM, JSON = wire.FORM, wire.JSON
WHEN = datetime(2026, 11, 23, 11, 47, 18, 123456, tzinfo=UTC)
PROJECT = {"custom_fields": ["license", "orders"], "deactivation_reasons": {"too-slow": "Too slow"}}
BASE = "hash=abc&url=https%3A%2F%2Fx.org&"

# Pieces of raw form text: PHP's bracket edge cases, `+`, percent-escapes valid and
# not (truncated, invalid UTF-8, an encoded surrogate), NUL, the MongoDB-operator
# characters, separators, and non-ASCII.
PIECES = [
    "a", "b", "z", "0", "1", "-", "_", "é", "日", "\U0001f600",
    "[", "]", "[]", "[x]", "][", "[[", "]]", "[][]", "[0]", "[-1]",
    "%5B", "%5D", "%5b%5d", "+", "%20", "%2B", "%00", "\x00",
    "%", "%2", "%zz", "%C3", "%C3%A9", "%FF", "%ED%A0%80", "%F4%90%80%80", "%E2%82",
    "$", "%24", ".", "%2E", "=", "&", ";", "#", "?", "\\", "\\x41", "\\u00e9", "%5C",
]  # fmt: skip
piece_text = st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=12).map("".join)
long_key = st.integers(200, 600).map(lambda n: "k" * n)
raw_name = st.sampled_from(["a[", "a]", "a[][]", "[x]", "a[b]c", "a[b][c][d][e][f][g]", "a%5Bb%5D", ""]) | piece_text
raw_name = raw_name | long_key
raw_pair = st.tuples(raw_name, piece_text).map(lambda p: f"{p[0]}={p[1]}") | raw_name
form_text = st.lists(raw_pair, max_size=20).map("&".join)

# Fields the record builders cast, with values that cast and values that do not.
CAST_FIELDS = [
    "users[total]", "active_plugins", "inactive_plugins", "wp[multisite]", "wp[debug_mode]", "is_local",
    "tracking_skipped", "previously_skipped", "plugins", "plugins[]", "plugins[a]", "plugins[a][name]",
    "plugins[a][version][]", "reason_id", "reason_info", "extra[license]", "extra[orders][]", "site[]", "wp",
    "users", "url", "hash",
]  # fmt: skip
CAST_VALUES = [
    "", "0", "1", "12", "-3", "abc", "1e999", "1.5", "--1", "-", "maybe", "Yes", "no", "9" * 19, "9" * 25,
    "9" * 5000, "%EF%BC%91", "https%3A%2F%2F%26lbrack%3B%40x.org", "https%3A%2F%2Fy.org", "other", "a b", "%00",
]  # fmt: skip
cast_pair = st.tuples(st.sampled_from(CAST_FIELDS), st.sampled_from(CAST_VALUES)).map(lambda p: f"{p[0]}={p[1]}")
ping_form_text = st.lists(cast_pair | raw_pair, max_size=12).map(lambda pairs: BASE + "&".join(pairs))

json_scalar = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(CAST_VALUES)
)
json_value = st.recursive(
    json_scalar,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=30,
)
json_fields = st.dictionaries(st.sampled_from([f.split("[")[0] for f in CAST_FIELDS]) | st.text(max_size=6), json_value)
MIMETYPES = [FORM, JSON, "APPLICATION/JSON", "text/plain", "multipart/form-data", "", "application/json; x"]
CHARSETS = [None, "utf-8", "UTF8", "latin-1", "utf-16", "", "utf-8\x00"]


def _parse(body: bytes, mimetype: str = FORM, charset: str | None = None) -> dict | None:
    """The payload, or None for a documented refusal. Anything else propagates: the test fails."""
    try:
        payload = wire.parse_body(body, mimetype, charset, LIMITS)
    except wire.PayloadError as e:
        assert e.code and e.message and 400 <= e.status < 500
        return None
    assert isinstance(payload, dict)
    return payload


def _assert_safe_for_the_sinks(payload: dict) -> None:
    wire.check_keys(payload)  # what the pipelines re-check must pass
    stack = [payload]
    while stack:
        node = stack.pop()
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            assert isinstance(key, (str, int))
            if isinstance(value, (dict, list)):
                stack.append(value)


def _through_the_pipeline(payload: dict, raw: str) -> None:
    """Store, read back, build records: only Rejected may stop a ping the wire format accepts."""
    for route in wire.ROUTES:
        try:
            wire.validate(route, payload)
        except wire.PayloadError:
            continue
        ping = StoredPing(id="p-1", route=route, received_at=WHEN, payload=payload, raw=raw, client_ip="::1")
        read = records.read_stored_ping(ping.object_name, ping.to_json(), now=WHEN)
        assert json.dumps(read.payload, sort_keys=True) == json.dumps(payload, sort_keys=True)
        assert read.raw == raw and read.received_at == WHEN and read.route == route
        try:
            if route == wire.TRACK:
                record = records.site_record(read, PROJECT)
                for field in ("users_total", "active_plugins", "inactive_plugins"):
                    assert record[field] is None or records.INT64_MIN <= record[field] <= records.INT64_MAX
                assert all(isinstance(p["slug"], str) for p in record["plugins"])
            elif route == wire.DEACTIVATE:
                records.deactivation_record(read, PROJECT)
            else:
                records.tracking_skipped_row(read)
        except records.Rejected as e:
            assert e.reason in records.REJECTION_REASONS and e.detail


@given(st.binary(max_size=2048), st.sampled_from(MIMETYPES), st.sampled_from(CHARSETS))
def test_arbitrary_bytes_parse_or_get_a_documented_error(body, mimetype, charset):
    _parse(body, mimetype, charset)


@given(form_text)
@example("a[=1")
@example("a]=1")
@example("a[][]=1&a[][]=2")
@example("[x]=1")
@example("a[b]c=1")
@example("a%5Bb%5D=1&a[b]=2")
@example("a=1&a[b]=2&a=3")
@example("a%00=1")
@example("a=%ED%A0%80")
@example("a=%C3")
@example("k" * 300 + "=1")
def test_form_bodies_parse_or_get_a_documented_error(text):
    payload = _parse(text.encode("utf-8", "surrogatepass"))
    if payload is not None:
        _assert_safe_for_the_sinks(payload)
        for value in payload.values():
            assert isinstance(value, (str, list, dict))


@given(form_text)
def test_the_form_parser_agrees_with_parse_qsl_on_pairs(text):
    """The pairs step is urllib's, exactly; only the nesting is ours."""
    from urllib.parse import parse_qsl

    try:
        expected = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        expected = None
    try:
        fields = wire._form_fields(text, wire.Limits(6, 10**6, 10**6, 10**6))
        got = [(name, value) for (name, _path, _ints), value in fields]
    except wire.PayloadError as e:
        assert e.code == "invalid_encoding" and expected is None
        return
    assert got == expected


@given(json_fields)
@example({"hash": "abc", "url": "https://x.org", "users": {"total": 10**30}})
@example({"hash": "abc", "url": "https://x.org", "extra": {"license": 10**30}})
@example({"hash": "abc", "url": "https://x.org", "active_plugins": float("inf")})
@example({"hash": "abc", "url": "https://x.org", "plugins": "akismet"})
def test_json_bodies_go_all_the_way_or_get_a_documented_error(fields):
    body = {"hash": "abc", "url": "https://x.org", **fields}
    text = json.dumps(body, ensure_ascii=False)
    payload = _parse(text.encode("utf-8", "surrogatepass"), JSON)
    if payload is not None:
        _assert_safe_for_the_sinks(payload)
        _through_the_pipeline(payload, text)


@given(ping_form_text)
@example(BASE + "users[total]=--1")
@example(BASE + "users[total]=" + "9" * 5000)
@example(BASE + "url=https%3A%2F%2F%26lbrack%3B%40x.org")
@example(BASE + "plugins=akismet")
def test_accepted_form_pings_go_all_the_way(text):
    payload = _parse(text.encode())
    if payload is not None:
        _through_the_pipeline(payload, text)


@given(st.text(max_size=300))
def test_check_structure_on_any_key_or_value(text):
    for payload in ({text: "v"}, {"a": {text: [text]}}, {"a": [{text: text}]}):
        try:
            wire.check_structure(payload, LIMITS)
        except wire.PayloadError:
            pass


host_piece = st.sampled_from(
    ["x", "a" * 64, "a" * 63, "", ".", "..", "-", "_", "xn--", "例え", "1.2.3.4", "999.1.1.1", "[::1]", "[::1",
     "::1", "0x7f.1", "%2e", "@", "user:pw@", ":80", ":0", ":65536", ":-1", ":x", "#", "?", "/", "\\", " ", "\x00"]
)  # fmt: skip
url_text = st.tuples(
    st.sampled_from(["http://", "https://", "HTTP://", "javascript:", "data:", "ftp://", "//", "http:/", ""]),
    st.lists(host_piece | st.text(max_size=5), max_size=8).map("".join),
).map("".join)


@given(url_text | st.text(max_size=100))
@example("https://" + "a" * 10_000 + ".org")
@example("https://" + ".".join(["a" * 63] * 4) + ".org")
@example("https://x..org")
@example("https://u:p@x.org:99999/")
@example("javascript:alert(1)//https://x.org")
def test_is_site_url_answers_true_or_false(url):
    answer = wire.is_site_url(url)
    assert answer in (True, False)
    if answer:
        assert url.strip().lower().startswith(("http://", "https://")) and len(url) <= wire.MAX_URL_CHARS
